//! The device boundary: where IP packets enter and leave the stack.
//!
//! The core never touches a device; drivers (the socket API's driver thread,
//! the replica binary, the simulator) move packets between a [`Device`] and
//! [`crate::Stack`].

use std::io;
use std::os::fd::RawFd;

pub mod pipe;
#[cfg(target_os = "linux")]
pub mod tun;

/// A source and sink of whole IPv4 packets.
pub trait Device {
    /// Read one packet into `buf`. Non-blocking devices return `WouldBlock`.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Write one packet.
    fn send(&mut self, packet: &[u8]) -> io::Result<()>;
    /// File descriptor to wait on for readability, if the device has one.
    fn raw_fd(&self) -> Option<RawFd>;
    /// Largest packet the device carries (its MTU).
    fn mtu(&self) -> usize;
    /// Packets already read from the fd but not yet returned by `recv`
    /// (a device that reads several per system call): the driver must call
    /// `recv` again before it sleeps on the fd.
    fn has_buffered_input(&self) -> bool {
        false
    }
    /// Largest packet `recv` may return: above the MTU for a device with
    /// receive offload (coalesced TCP segments).
    fn max_packet_in(&self) -> usize {
        self.mtu()
    }
    /// Whether [`Device::send_segmented`] works: the device (the kernel
    /// behind it) cuts a large TCP segment into MTU-sized ones.
    fn segmentation_offload(&self) -> bool {
        false
    }
    /// Write one TCP segment larger than the MTU, to be cut into segments
    /// of `segment_payload` data bytes each (the last may be shorter).
    fn send_segmented(&mut self, packet: &[u8], segment_payload: usize) -> io::Result<()> {
        let _ = (packet, segment_payload);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no segmentation offload",
        ))
    }
}
