//! Sizing a socket's kernel buffers beyond the system's default limit:
//! the redirector's copy sockets and a replica's copy receiver carry
//! bursts of a whole window of client packets.

use std::io;
use std::os::fd::AsRawFd;

/// Which kernel buffer of a socket to size.
#[derive(Debug, Clone, Copy)]
pub enum SocketBuffer {
    /// `SO_RCVBUF`.
    Receive,
    /// `SO_SNDBUF`.
    Send,
}

/// Size a socket's kernel buffer past `net.core.[rw]mem_max` when we may
/// (root: `SO_RCVBUFFORCE`), else as far as the limit allows.
pub fn size_socket_buffer(
    socket: &impl AsRawFd,
    which: SocketBuffer,
    bytes: usize,
) -> io::Result<()> {
    let (force, plain) = match which {
        SocketBuffer::Receive => (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        SocketBuffer::Send => (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    };
    let value = bytes.min(i32::MAX as usize) as libc::c_int;
    for opt in [force, plain] {
        // SAFETY: setsockopt with a pointer to a c_int of the size given.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &value as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return Ok(());
        }
    }
    Err(io::Error::last_os_error())
}
