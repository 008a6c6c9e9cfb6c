//! Child processes that must not outlive their parent.
//!
//! A redirector announces its floating address with `arping`, which keeps
//! sending for a few seconds; if the redirector is killed meanwhile, an
//! orphaned `arping` would go on announcing the dead redirector's link
//! address after the standby has claimed the address, and pull the
//! clients back to the dead one.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Have the kernel SIGKILL the child when the thread that spawns it ends
/// (its process killed, or the thread itself returning).
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed; prctl is one, and nothing
    // here allocates or takes a lock.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_dies_with_the_thread_that_spawned_it() {
        use std::os::unix::process::ExitStatusExt;
        let mut child = std::thread::spawn(|| {
            die_with_parent(Command::new("sleep").arg("30"))
                .spawn()
                .expect("sleep runs")
        })
        .join()
        .unwrap();
        // The spawning thread has ended: the kernel kills the child at once
        // rather than after 30 s.
        let started = std::time::Instant::now();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}
