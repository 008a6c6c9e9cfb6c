//! An in-memory link: two devices joined by a datagram socket pair. Packet
//! boundaries are kept and each end has a real file descriptor, so the socket
//! API's driver can wait on it exactly as on a TUN device. Used by tests and
//! examples that need no privileges.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;

use super::Device;

/// One end of a [`pair`].
#[derive(Debug)]
pub struct PipeEnd {
    sock: UnixDatagram,
    mtu: usize,
}

/// Two connected ends; what one sends the other receives.
pub fn pair(mtu: usize) -> io::Result<(PipeEnd, PipeEnd)> {
    let (a, b) = UnixDatagram::pair()?;
    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    Ok((PipeEnd { sock: a, mtu }, PipeEnd { sock: b, mtu }))
}

impl Device for PipeEnd {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.recv(buf)
    }

    fn send(&mut self, packet: &[u8]) -> io::Result<()> {
        self.sock.send(packet).map(|_| ())
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.sock.as_raw_fd())
    }

    fn mtu(&self) -> usize {
        self.mtu
    }
}
