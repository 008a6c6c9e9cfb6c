//! The replica's device: input is the redirector's UDP copies of client
//! packets (runs of them coalesced into one datagram, which it cuts back
//! into packets), output goes to the TUN device (the kernel routes it to
//! the client).

use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hydra_ops::socket_buffer::{size_socket_buffer, SocketBuffer};
use hydra_ops::udp_offload::{enable_gro, recv_coalesced, MAX_COALESCED};
use stack::phy::tun::Tun;
use stack::phy::Device;

/// Counters of input the device refused, shared with the metrics page
/// (the device itself runs on the driver thread).
#[derive(Debug, Default)]
pub struct DeviceDrops {
    /// Datagrams not from the redirector.
    pub foreign_source: AtomicU64,
    /// Datagrams cut because they did not fit the receive buffer, or
    /// packets longer than the stack's buffer.
    pub oversized: AtomicU64,
}

impl DeviceDrops {
    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Receive buffer of the data socket.
const DATA_BUFFER: usize = 32 << 20;

/// The redirector's copies, a packet at a time: a coalesced datagram is
/// cut back into the packets it carries.
pub struct CopyReceiver {
    data: UdpSocket,
    /// The configured redirectors' addresses: copies come from these only.
    redirector_ips: Vec<std::net::IpAddr>,
    /// What is left of the last coalesced datagram and how far it has been
    /// handed out.
    datagram: Vec<u8>,
    datagram_len: usize,
    segment_size: usize,
    next_segment: usize,
    pub drops: Arc<DeviceDrops>,
}

impl CopyReceiver {
    /// Copies from the redirectors at `redirector_ips` only (any of them:
    /// a standby's copies are the same client packets), on the data socket
    /// `data`.
    pub fn new(data: UdpSocket, redirector_ips: Vec<std::net::IpAddr>) -> io::Result<CopyReceiver> {
        data.set_nonblocking(true)?;
        // A backup busy with a burst must not lose copies in the kernel: a
        // lost copy costs the client a retransmission timeout.
        size_socket_buffer(&data, SocketBuffer::Receive, DATA_BUFFER)?;
        if let Err(e) = enable_gro(&data) {
            // Still correct: the kernel then cuts coalesced datagrams itself.
            tracing::warn!("UDP_GRO unavailable ({e}); receiving copies one by one");
        }
        Ok(CopyReceiver {
            data,
            redirector_ips,
            datagram: vec![0; MAX_COALESCED],
            datagram_len: 0,
            segment_size: 0,
            next_segment: 0,
            drops: Arc::default(),
        })
    }

    /// Copy the next packet of the current datagram into `buf`, if any is
    /// left. A packet longer than `buf` is dropped (counted).
    fn next_packet(&mut self, buf: &mut [u8]) -> Option<usize> {
        while self.next_segment < self.datagram_len {
            let start = self.next_segment;
            let end = (start + self.segment_size).min(self.datagram_len);
            self.next_segment = end;
            let packet = &self.datagram[start..end];
            if packet.len() > buf.len() {
                DeviceDrops::count(&self.drops.oversized);
                continue;
            }
            buf[..packet.len()].copy_from_slice(packet);
            return Some(packet.len());
        }
        None
    }

    /// The next copied packet, or `WouldBlock`.
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Bounded: at most one packet per call; the driver bounds the batch.
        loop {
            if let Some(n) = self.next_packet(buf) {
                return Ok(n);
            }
            // A datagram is read straight into `buf` when it fits (a large
            // copy is not copied twice); only the rest of a coalesced run is
            // kept for the next calls.
            let direct = buf.len() >= MAX_COALESCED;
            let into: &mut [u8] = if direct { buf } else { &mut self.datagram };
            let got = recv_coalesced(&self.data, into)?;
            if !got
                .from
                .is_some_and(|a| self.redirector_ips.contains(&a.ip()))
            {
                DeviceDrops::count(&self.drops.foreign_source);
                continue;
            }
            if got.truncated {
                DeviceDrops::count(&self.drops.oversized);
                continue;
            }
            let segment_size = got.segment_size.unwrap_or(got.len).max(1);
            if !direct {
                self.datagram_len = got.len;
                self.segment_size = segment_size;
                self.next_segment = 0;
                continue;
            }
            if segment_size < got.len {
                let rest = got.len - segment_size;
                self.datagram[..rest].copy_from_slice(&buf[segment_size..got.len]);
                self.datagram_len = rest;
                self.segment_size = segment_size;
                self.next_segment = 0;
            }
            return Ok(got.len.min(segment_size));
        }
    }

    pub fn has_buffered_input(&self) -> bool {
        self.next_segment < self.datagram_len
    }
}

pub struct ReplicaDevice {
    copies: CopyReceiver,
    tun: Tun,
}

impl ReplicaDevice {
    pub fn new(copies: CopyReceiver, tun: Tun) -> ReplicaDevice {
        ReplicaDevice { copies, tun }
    }
}

impl Device for ReplicaDevice {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.copies.recv(buf)
    }

    fn send(&mut self, packet: &[u8]) -> io::Result<()> {
        self.tun.send(packet)
    }

    fn segmentation_offload(&self) -> bool {
        self.tun.segmentation_offload()
    }

    fn send_segmented(&mut self, packet: &[u8], segment_payload: usize) -> io::Result<()> {
        self.tun.send_segmented(packet, segment_payload)
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.copies.data.as_raw_fd())
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
        self.copies.has_buffered_input()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hydra_ops::udp_offload::send_segments;
    use std::net::{Ipv4Addr, SocketAddr};

    fn pair() -> (UdpSocket, CopyReceiver, SocketAddr) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        (
            tx,
            CopyReceiver::new(rx, vec![Ipv4Addr::LOCALHOST.into()]).unwrap(),
            to,
        )
    }

    /// Every packet, in order, then WouldBlock (waits out loopback delivery).
    fn drain(rx: &mut CopyReceiver, buf: &mut [u8], expect: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while got.len() < expect && std::time::Instant::now() < deadline {
            match rx.recv(buf) {
                Ok(n) => got.push(buf[..n].to_vec()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(matches!(rx.recv(buf), Err(e) if e.kind() == io::ErrorKind::WouldBlock));
        got
    }

    #[test]
    fn runs_and_large_copies_come_out_as_the_packets_sent() {
        let (tx, mut rx, to) = pair();
        let packets: Vec<Vec<u8>> = [1400, 1400, 1400, 300]
            .iter()
            .enumerate()
            .map(|(i, &n)| vec![i as u8 + 1; n])
            .collect();
        let run: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        send_segments(&tx, to, &run, 1400).unwrap();
        let large = vec![9u8; 60_000];
        send_segments(&tx, to, &[&large], large.len()).unwrap();
        // Read into a buffer that takes a whole datagram (straight in) and
        // into one that does not (through the receiver's own buffer).
        for len in [MAX_COALESCED, 1500] {
            let mut buf = vec![0u8; len];
            if len < MAX_COALESCED {
                send_segments(&tx, to, &run, 1400).unwrap();
            }
            let got = drain(
                &mut rx,
                &mut buf,
                packets.len() + usize::from(len == MAX_COALESCED),
            );
            assert_eq!(got[..packets.len()], packets[..]);
            if len == MAX_COALESCED {
                assert_eq!(got[packets.len()], large);
            }
        }
        // The large copy did not fit the small buffer's path: none was sent
        // then, so nothing was dropped.
        assert_eq!(rx.drops.oversized.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn copies_from_another_address_are_counted_and_dropped() {
        let (_, mut rx, to) = pair();
        let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
        stranger.send_to(&[1, 2, 3], to).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut buf = vec![0u8; MAX_COALESCED];
        assert!(matches!(rx.recv(&mut buf), Err(e) if e.kind() == io::ErrorKind::WouldBlock));
        assert_eq!(rx.drops.foreign_source.load(Ordering::Relaxed), 1);
    }
}
