//! The replica's device: input is the redirector's UDP copies of client
//! packets (runs of them coalesced into one datagram, which it cuts back
//! into packets), output goes to the TUN device (the kernel routes it to
//! the client).

use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, RawFd};

use ackchannel::transport::{size_socket_buffer, SocketBuffer};
use ackchannel::udp_offload::{enable_gro, recv_coalesced, MAX_COALESCED};
use stack::phy::tun::Tun;
use stack::phy::Device;

/// Counters of input the device refused.
#[derive(Debug, Default, Clone, Copy)]
pub struct DeviceDrops {
    /// Datagrams not from the redirector.
    pub foreign_source: u64,
    /// Datagrams cut because they did not fit the receive buffer, or
    /// packets longer than the stack's buffer.
    pub oversized: u64,
}

/// Receive buffer of the data socket.
const DATA_BUFFER: usize = 32 << 20;

pub struct ReplicaDevice {
    data: UdpSocket,
    tun: Tun,
    redirector_ip: std::net::Ipv4Addr,
    /// The last datagram received and how far it has been handed out.
    datagram: Vec<u8>,
    datagram_len: usize,
    segment_size: usize,
    next_segment: usize,
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
        if let Err(e) = enable_gro(&data) {
            // Still correct: the kernel then cuts coalesced datagrams itself.
            tracing::warn!("UDP_GRO unavailable ({e}); receiving copies one by one");
        }
        Ok(ReplicaDevice {
            data,
            tun,
            redirector_ip,
            datagram: vec![0; MAX_COALESCED],
            datagram_len: 0,
            segment_size: 0,
            next_segment: 0,
            drops: DeviceDrops::default(),
        })
    }
}

impl ReplicaDevice {
    /// Copy the next packet of the current datagram into `buf`, if any is
    /// left. A packet longer than `buf` is dropped (counted).
    fn next_packet(&mut self, buf: &mut [u8]) -> Option<usize> {
        while self.next_segment < self.datagram_len {
            let start = self.next_segment;
            let end = (start + self.segment_size).min(self.datagram_len);
            self.next_segment = end;
            let packet = &self.datagram[start..end];
            if packet.len() > buf.len() {
                self.drops.oversized += 1;
                continue;
            }
            buf[..packet.len()].copy_from_slice(packet);
            return Some(packet.len());
        }
        None
    }
}

impl Device for ReplicaDevice {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Bounded: at most one packet per call; the driver bounds the batch.
        loop {
            if let Some(n) = self.next_packet(buf) {
                return Ok(n);
            }
            let got = recv_coalesced(&self.data, &mut self.datagram)?;
            if got.from.map(|a| *a.ip()) != Some(self.redirector_ip) {
                self.drops.foreign_source += 1;
                continue;
            }
            if got.truncated {
                self.drops.oversized += 1;
                continue;
            }
            self.datagram_len = got.len;
            self.segment_size = got.segment_size.unwrap_or(got.len).max(1);
            self.next_segment = 0;
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

    /// The redirector passes segments the kernel coalesced (up to a
    /// datagram's size) on whole.
    fn max_packet_in(&self) -> usize {
        MAX_COALESCED
    }

    fn has_buffered_input(&self) -> bool {
        self.next_segment < self.datagram_len
    }
}
