//! The one wrapper around `poll(2)`: wait until any of some file
//! descriptors is readable, or a timeout.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// Waits until one of `fds` is readable (or has an error or hang-up
/// pending), at most `timeout` (`None`: no limit). Returns, for each
/// descriptor in order, whether it is ready; all `false` after a timeout
/// or a signal. A timeout is rounded up to whole milliseconds, so a
/// positive one never becomes a busy zero-wait.
pub fn wait_readable(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms: libc::c_int = match timeout {
        None => -1,
        Some(t) => t.as_micros().div_ceil(1000).min(libc::c_int::MAX as u128) as libc::c_int,
    };
    // SAFETY: `pollfds` is a valid, initialised array of `pollfd` of the
    // length passed, alive for the whole call.
    let rc = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(err);
    }
    Ok(pollfds.iter().map(|p| p.revents != 0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn reports_which_descriptor_is_readable() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let (_c, d) = UnixStream::pair().unwrap();
        let fds = [b.as_raw_fd(), d.as_raw_fd()];
        assert_eq!(
            wait_readable(&fds, Some(Duration::ZERO)).unwrap(),
            [false, false]
        );
        a.write_all(b"x").unwrap();
        assert_eq!(
            wait_readable(&fds, Some(Duration::from_secs(5))).unwrap(),
            [true, false]
        );
    }
}
