//! Linux TUN device, opened with `ioctl(TUNSETIFF)` on `/dev/net/tun`.
//!
//! Why our own 150 lines and not a crate: we need exactly one thing (a
//! non-blocking IFF_TUN|IFF_NO_PI fd, later IFF_VNET_HDR for offloads), with no
//! async runtime and no extra dependency tree on a 2-core build machine; the
//! maintained crates (tun-rs, tun) wrap the same ioctl behind a larger API.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use super::Device;
use crate::checksum;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUN_F_CSUM: libc::c_ulong = 0x01;
const TUN_F_TSO4: libc::c_ulong = 0x02;
const TUN_F_TSO6: libc::c_ulong = 0x04;

#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Packets the kernel queues toward us (the device's transmit queue).
/// The kernel's default of 500 overflows when a burst of a full TCP window
/// arrives while our reader is descheduled; each drop costs the sender a
/// retransmission. TCP windows bound what can ever be queued.
const QUEUE_LEN: libc::c_int = 8192;

/// ifreq with an int in its union (MTU, queue length).
#[repr(C)]
struct IfReqMtu {
    name: [libc::c_char; libc::IFNAMSIZ],
    mtu: libc::c_int,
    _pad: [u8; 20],
}

/// An open TUN interface carrying bare IPv4 packets.
pub struct Tun {
    file: File,
    name: String,
    mtu: usize,
    /// Receive offload: the kernel hands over TCP segments coalesced up to
    /// 64 KiB (each read is preceded by a virtio-net header).
    offload: bool,
    /// The kernel takes large segments to cut (false once it refused one).
    kernel_segments: bool,
}

fn ifname(name: &str) -> io::Result<[libc::c_char; libc::IFNAMSIZ]> {
    let c = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))?;
    let bytes = c.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "interface name {name:?} longer than {} bytes",
                libc::IFNAMSIZ - 1
            ),
        ));
    }
    let mut out = [0 as libc::c_char; libc::IFNAMSIZ];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = *b as libc::c_char;
    }
    Ok(out)
}

impl Tun {
    /// Create (or attach to) TUN interface `name`, non-blocking, and bring it up
    /// with the given MTU.
    pub fn open(name: &str, mtu: usize) -> io::Result<Tun> {
        Tun::open_with(name, mtu, false)
    }

    /// Like [`Tun::open`], with receive offload: the kernel no longer cuts
    /// the large TCP segments local senders (and GRO) make into MTU-sized
    /// packets for us, so one read carries up to 64 KiB of a stream. Falls
    /// back to plain packets if the kernel refuses the offload.
    pub fn open_offload(name: &str, mtu: usize) -> io::Result<Tun> {
        Tun::open_with(name, mtu, true)
    }

    fn open_with(name: &str, mtu: usize, offload: bool) -> io::Result<Tun> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| io::Error::new(e.kind(), format!("open /dev/net/tun: {e}")))?;
        let mut req = IfReqFlags {
            name: ifname(name)?,
            flags: IFF_TUN | IFF_NO_PI | if offload { IFF_VNET_HDR } else { 0 },
            _pad: [0; 22],
        };
        // SAFETY: TUNSETIFF reads and writes an ifreq of the size we pass.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("TUNSETIFF {name}: {e}")));
        }
        if offload {
            // Checksum offload is a prerequisite of segmentation offload.
            // SAFETY: TUNSETOFFLOAD takes the flags as its integer argument.
            let rc = unsafe {
                libc::ioctl(
                    file.as_raw_fd(),
                    TUNSETOFFLOAD as _,
                    TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
                )
            };
            if rc < 0 {
                tracing::warn!(
                    "TUN offload refused on {name} ({}); reading plain packets",
                    io::Error::last_os_error()
                );
            }
        }
        let tun = Tun {
            file,
            name: name.to_string(),
            mtu,
            offload,
            kernel_segments: offload,
        };
        tun.configure_link(mtu)?;
        Ok(tun)
    }

    /// Set MTU and IFF_UP through an ordinary socket's interface ioctls.
    fn configure_link(&self, mtu: usize) -> io::Result<()> {
        // SAFETY: plain socket(2) call; the fd is closed below.
        let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if sock < 0 {
            return Err(io::Error::last_os_error());
        }
        let result = (|| {
            let mut mtu_req = IfReqMtu {
                name: ifname(&self.name)?,
                mtu: mtu as libc::c_int,
                _pad: [0; 20],
            };
            // SAFETY: SIOCSIFMTU takes an ifreq with the MTU in the union.
            if unsafe { libc::ioctl(sock, libc::SIOCSIFMTU as _, &mut mtu_req) } < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut qlen_req = IfReqMtu {
                name: ifname(&self.name)?,
                mtu: QUEUE_LEN,
                _pad: [0; 20],
            };
            // SAFETY: SIOCSIFTXQLEN takes an ifreq with ifr_qlen in the union.
            if unsafe { libc::ioctl(sock, libc::SIOCSIFTXQLEN as _, &mut qlen_req) } < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut flags = IfReqFlags {
                name: ifname(&self.name)?,
                flags: 0,
                _pad: [0; 22],
            };
            // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write ifr_flags.
            if unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS as _, &mut flags) } < 0 {
                return Err(io::Error::last_os_error());
            }
            flags.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            if unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS as _, &mut flags) } < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })();
        // SAFETY: sock is a valid fd we own.
        unsafe { libc::close(sock) };
        result.map_err(|e| io::Error::new(e.kind(), format!("configure {}: {e}", self.name)))
    }

    /// The interface's name (e.g. `hydra0`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Make an offloaded packet what a wire packet would be: a coalesced one
/// gets its IPv4 length and header checksum (or IPv6 payload length) for
/// its real size, and a
/// checksum the kernel left for the device to fill (`NEEDS_CSUM`) is
/// computed, so the stack parses and verifies it like any other.
fn finish_offloaded(hdr: &[u8; VNET_HDR_LEN], packet: &mut [u8]) {
    let flags = hdr[0];
    let gso_type = hdr[1];
    let csum_start = usize::from(u16::from_le_bytes([hdr[6], hdr[7]]));
    let csum_offset = usize::from(u16::from_le_bytes([hdr[8], hdr[9]]));
    if gso_type != VNET_GSO_NONE && packet.len() >= 20 && packet[0] >> 4 == 4 {
        let ihl = usize::from(packet[0] & 0x0f) * 4;
        if ihl >= 20 && packet.len() >= ihl && packet.len() <= usize::from(u16::MAX) {
            let total = packet.len() as u16;
            packet[2..4].copy_from_slice(&total.to_be_bytes());
            packet[10..12].fill(0);
            let sum = !checksum::sum(&packet[..ihl]);
            packet[10..12].copy_from_slice(&sum.to_be_bytes());
        }
    }
    let v6_header = crate::wire::IPV6_HEADER_LEN;
    if gso_type != VNET_GSO_NONE && packet.len() >= v6_header && packet[0] >> 4 == 6 {
        if let Ok(payload_len) = u16::try_from(packet.len() - v6_header) {
            packet[4..6].copy_from_slice(&payload_len.to_be_bytes());
        }
    }
    if flags & VNET_F_NEEDS_CSUM != 0 && csum_start + csum_offset + 2 <= packet.len() {
        // The field holds the pseudo-header's sum: summing the rest over
        // it gives the full checksum.
        let at = csum_start + csum_offset;
        let sum = !checksum::sum(&packet[csum_start..]);
        packet[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    }
}

/// The virtio-net header asking the kernel to cut the TCP segment `packet`
/// (IPv4, or IPv6 without extension headers) into segments of
/// `segment_payload` data bytes, and a copy of the packet's IP and TCP
/// headers with what the kernel expects in the checksum field: the
/// pseudo-header's sum only (it completes the sum for each segment it
/// makes).
fn offload_header(
    packet: &[u8],
    segment_payload: usize,
) -> io::Result<([u8; VNET_HDR_LEN], Vec<u8>)> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
    let (ip_len, gso_type, src, dst) = match packet.first().map(|b| b >> 4) {
        Some(4) if packet.len() >= 40 && packet[9] == 6 => {
            let ip_len = usize::from(packet[0] & 0x0f) * 4;
            let addr = |at: usize| -> IpAddr {
                std::net::Ipv4Addr::from([
                    packet[at],
                    packet[at + 1],
                    packet[at + 2],
                    packet[at + 3],
                ])
                .into()
            };
            (ip_len, VNET_GSO_TCPV4, addr(12), addr(16))
        }
        Some(6) if packet.len() >= 60 && packet[6] == 6 => {
            let addr = |at: usize| -> IpAddr {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&packet[at..at + 16]);
                std::net::Ipv6Addr::from(octets).into()
            };
            (40, VNET_GSO_TCPV6, addr(8), addr(24))
        }
        _ => return Err(invalid("not an IPv4 or IPv6 TCP segment")),
    };
    let tcp_len = packet.len().saturating_sub(ip_len);
    if ip_len < 20 || tcp_len < 20 {
        return Err(invalid("truncated headers"));
    }
    let head = ip_len + usize::from(packet[ip_len + 12] >> 4) * 4;
    let segment = u16::try_from(segment_payload).map_err(|_| invalid("segment too large"))?;
    if head > packet.len() || segment == 0 {
        return Err(invalid("bad TCP header or segment size"));
    }
    let mut headers = packet[..head].to_vec();
    let pseudo = checksum::pseudo_header_tcp(src, dst, tcp_len);
    headers[ip_len + 16..ip_len + 18].copy_from_slice(&pseudo.to_be_bytes());
    let mut hdr = [0u8; VNET_HDR_LEN];
    hdr[0] = VNET_F_NEEDS_CSUM;
    hdr[1] = gso_type;
    hdr[2..4].copy_from_slice(&(head as u16).to_le_bytes());
    hdr[4..6].copy_from_slice(&segment.to_le_bytes());
    hdr[6..8].copy_from_slice(&(ip_len as u16).to_le_bytes());
    hdr[8..10].copy_from_slice(&16u16.to_le_bytes());
    Ok((hdr, headers))
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// The virtio-net header that precedes each packet with `IFF_VNET_HDR`.
const VNET_HDR_LEN: usize = 10;
const VNET_F_NEEDS_CSUM: u8 = 1;
const VNET_GSO_NONE: u8 = 0;
const VNET_GSO_TCPV4: u8 = 1;
const VNET_GSO_TCPV6: u8 = 4;

impl Tun {
    /// Cut a large segment into wire segments here and write each.
    fn send_in_pieces(&mut self, packet: &[u8], segment_payload: usize) -> io::Result<()> {
        let pieces = crate::wire::segment_tcp(packet, segment_payload).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "not a segment that can be cut")
        })?;
        pieces.iter().try_for_each(|p| self.send(p))
    }
}

impl Device for Tun {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.offload {
            return self.file.read(buf);
        }
        let mut hdr = [0u8; VNET_HDR_LEN];
        let n = self
            .file
            .read_vectored(&mut [IoSliceMut::new(&mut hdr), IoSliceMut::new(buf)])?;
        let len = n.saturating_sub(VNET_HDR_LEN);
        finish_offloaded(&hdr, &mut buf[..len]);
        Ok(len)
    }

    fn send(&mut self, packet: &[u8]) -> io::Result<()> {
        let n = if self.offload {
            // A zero header: a whole packet, checksums done.
            let hdr = [0u8; VNET_HDR_LEN];
            self.file
                .write_vectored(&[IoSlice::new(&hdr), IoSlice::new(packet)])?
                .saturating_sub(VNET_HDR_LEN)
        } else {
            self.file.write(packet)?
        };
        if n != packet.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short TUN write"));
        }
        Ok(())
    }

    fn segmentation_offload(&self) -> bool {
        self.offload
    }

    fn send_segmented(&mut self, packet: &[u8], segment_payload: usize) -> io::Result<()> {
        if !self.offload {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "TUN opened without offload",
            ));
        }
        if !self.kernel_segments {
            return self.send_in_pieces(packet, segment_payload);
        }
        let (hdr, headers) = offload_header(packet, segment_payload)?;
        let written = self.file.write_vectored(&[
            IoSlice::new(&hdr),
            IoSlice::new(&headers),
            IoSlice::new(&packet[headers.len()..]),
        ]);
        match written {
            Ok(n) if n == VNET_HDR_LEN + packet.len() => Ok(()),
            Ok(_) => Err(io::Error::new(io::ErrorKind::WriteZero, "short TUN write")),
            // A kernel that will not cut it: every large segment would fail
            // again (TCP retransmits the same), so cut them here from now on.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::warn!(
                    "{}: the kernel refused a segment to cut ({e}); cutting segments in userspace",
                    self.name
                );
                self.kernel_segments = false;
                self.send_in_pieces(packet, segment_payload)
            }
            Err(e) => Err(e),
        }
    }

    fn max_packet_in(&self) -> usize {
        if self.offload {
            u16::MAX as usize
        } else {
            self.mtu
        }
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.file.as_raw_fd())
    }

    fn mtu(&self) -> usize {
        self.mtu
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;
    use crate::wire::TcpControl;

    /// A valid IPv4+TCP packet with `payload`, as the wire would carry it.
    fn packet(payload: &[u8]) -> Vec<u8> {
        crate::wire::test_segment(TcpControl::Psh, payload)
    }

    #[test]
    fn a_segment_handed_to_the_kernel_to_cut_carries_the_partial_checksum_it_expects() {
        let original = packet(&vec![0x5a; 20_000]);
        let (hdr, headers) = offload_header(&original, 1448).unwrap();
        assert_eq!(hdr[1], VNET_GSO_TCPV4);
        assert_eq!(u16::from_le_bytes([hdr[2], hdr[3]]), 52); // with timestamps
        assert_eq!(u16::from_le_bytes([hdr[4], hdr[5]]), 1448);
        // Completing the partial checksum as the kernel does gives back the
        // packet the stack emitted.
        let mut written = [headers.as_slice(), &original[headers.len()..]].concat();
        assert_ne!(written, original);
        finish_offloaded(&hdr, &mut written);
        assert_eq!(written, original);
        assert!(offload_header(&original[..30], 1448).is_err());
        assert!(offload_header(&original, 0).is_err());
    }

    /// What the kernel hands over for a coalesced segment: the TCP checksum
    /// field holds only the pseudo-header's sum, the IPv4 header is not
    /// final.
    fn as_offloaded(mut p: Vec<u8>) -> ([u8; VNET_HDR_LEN], Vec<u8>) {
        let tcp_len = p.len() - 20;
        let addr = |at: usize| {
            IpAddr::from(std::net::Ipv4Addr::new(
                p[at],
                p[at + 1],
                p[at + 2],
                p[at + 3],
            ))
        };
        let pseudo = checksum::pseudo_header_tcp(addr(12), addr(16), tcp_len);
        p[36..38].copy_from_slice(&pseudo.to_be_bytes());
        p[2..4].fill(0);
        p[10..12].copy_from_slice(&[0xde, 0xad]);
        let mut hdr = [0u8; VNET_HDR_LEN];
        hdr[0] = VNET_F_NEEDS_CSUM;
        hdr[1] = 1; // VIRTIO_NET_HDR_GSO_TCPV4
        hdr[4..6].copy_from_slice(&1448u16.to_le_bytes());
        hdr[6..8].copy_from_slice(&20u16.to_le_bytes());
        hdr[8..10].copy_from_slice(&16u16.to_le_bytes());
        (hdr, p)
    }

    #[test]
    fn a_coalesced_segment_becomes_a_valid_packet() {
        for len in [0usize, 1, 1447, 1448, 30_001, 65_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let wire_packet = packet(&payload);
            let (hdr, mut p) = as_offloaded(wire_packet.clone());
            assert!(wire::parse(&p).is_err(), "len {len}: not parseable before");
            finish_offloaded(&hdr, &mut p);
            assert_eq!(p, wire_packet, "len {len}");
            assert!(wire::parse(&p).is_ok(), "len {len}");
        }
    }

    /// A valid IPv6+TCP packet with `payload`.
    fn packet_v6(payload: &[u8]) -> Vec<u8> {
        let src = "[fd00::1]:40000".parse().unwrap();
        let dst = "[fd00::2]:80".parse().unwrap();
        crate::wire::test_segment_between(src, dst, TcpControl::Psh, payload)
    }

    #[test]
    fn an_ipv6_segment_is_cut_by_the_kernel_and_coalesced_ones_are_finished() {
        let original = packet_v6(&vec![0x33; 20_000]);
        let (hdr, headers) = offload_header(&original, 1428).unwrap();
        assert_eq!(hdr[1], VNET_GSO_TCPV6);
        assert_eq!(u16::from_le_bytes([hdr[2], hdr[3]]), 72);
        assert_eq!(u16::from_le_bytes([hdr[6], hdr[7]]), 40);
        let mut written = [headers.as_slice(), &original[headers.len()..]].concat();
        assert_ne!(written, original);
        finish_offloaded(&hdr, &mut written);
        assert_eq!(written, original);
        // A coalesced segment whose payload length the kernel left stale.
        let mut coalesced = written.clone();
        coalesced[4..6].fill(0);
        coalesced[56..58].copy_from_slice(&headers[56..58]);
        assert!(wire::parse(&coalesced).is_err());
        finish_offloaded(&hdr, &mut coalesced);
        assert_eq!(coalesced, original);
        assert!(wire::parse(&coalesced).is_ok());
    }

    #[test]
    fn a_plain_packet_is_left_alone() {
        let wire_packet = packet(b"hello");
        let mut p = wire_packet.clone();
        finish_offloaded(&[0; VNET_HDR_LEN], &mut p);
        assert_eq!(p, wire_packet);
    }

    #[test]
    fn a_header_pointing_past_the_packet_changes_nothing() {
        let wire_packet = packet(b"hello");
        let mut p = wire_packet.clone();
        let mut hdr = [0u8; VNET_HDR_LEN];
        hdr[0] = VNET_F_NEEDS_CSUM;
        hdr[6..8].copy_from_slice(&60_000u16.to_le_bytes());
        finish_offloaded(&hdr, &mut p);
        assert_eq!(p, wire_packet);
    }
}
