//! SIGTERM/SIGINT handling without async-signal-unsafe code: the signals are
//! blocked in every thread (mask set before any thread starts, inherited)
//! and one thread takes them synchronously with `sigtimedwait`.

use std::io;
use std::time::Duration;

/// SIGTERM and SIGINT, blocked in every thread and taken by whoever waits.
pub struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    /// Block SIGTERM and SIGINT. Call before spawning threads.
    pub fn block() -> io::Result<Signals> {
        // SAFETY: sigset_t is plain data initialised by sigemptyset before use.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            Ok(Signals { set })
        }
    }

    /// Wait up to `timeout` for SIGTERM or SIGINT; returns the signal number.
    pub fn wait(&self, timeout: Duration) -> Option<i32> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: valid set and timespec; no siginfo requested.
        let sig = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
        (sig > 0).then_some(sig)
    }
}
