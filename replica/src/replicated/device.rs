//! The replica's device: input is the redirector's UDP copies of client
//! packets, output goes to the TUN device (the kernel routes it to the client).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

use ackchannel::transport::{size_socket_buffer, SocketBuffer};
use stack::phy::tun::Tun;
use stack::phy::Device;

/// Counters of input the device refused.
#[derive(Debug, Default, Clone, Copy)]
pub struct DeviceDrops {
    /// Datagrams not from the redirector.
    pub foreign_source: u64,
}

/// Receive buffer of the data socket.
const DATA_BUFFER: usize = 32 << 20;

pub struct ReplicaDevice {
    data: UdpSocket,
    tun: Tun,
    redirector_ip: std::net::Ipv4Addr,
    pub drops: DeviceDrops,
}

impl ReplicaDevice {
    pub fn new(
        data: UdpSocket,
        tun: Tun,
        redirector_ip: std::net::Ipv4Addr,
    ) -> io::Result<ReplicaDevice> {
        data.set_nonblocking(true)?;
        // A backup busy with a burst must not lose copies in the kernel: a
        // lost copy costs the client a retransmission timeout.
        size_socket_buffer(&data, SocketBuffer::Receive, DATA_BUFFER)?;
        Ok(ReplicaDevice {
            data,
            tun,
            redirector_ip,
            drops: DeviceDrops::default(),
        })
    }
}

impl Device for ReplicaDevice {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Bounded: at most one datagram per call; the driver bounds the batch.
        loop {
            let (n, from) = self.data.recv_from(buf)?;
            match from {
                SocketAddr::V4(a) if *a.ip() == self.redirector_ip => return Ok(n),
                _ => self.drops.foreign_source += 1,
            }
        }
    }

    fn send(&mut self, packet: &[u8]) -> io::Result<()> {
        self.tun.send(packet)
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.data.as_raw_fd())
    }

    fn mtu(&self) -> usize {
        self.tun.mtu()
    }
}
