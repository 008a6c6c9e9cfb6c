//! Cutting one large TCP segment into several, as segmentation offload
//! does: for a device without it, and for the redirector's copies.

use std::net::IpAddr;

use smoltcp::wire::{IpAddress, Ipv6Packet, TcpPacket};

use super::ipv6::IPV6_HEADER_LEN;
use super::{address, IpProtocol, Ipv4Packet};

/// Cut the TCP segment in `packet` (IPv4, or IPv6 without extension
/// headers) after `at` bytes of its payload:
/// `packet` keeps the first part, `rest` receives the second (the same
/// headers, the sequence number moved on by `at`). FIN and PSH stay with the
/// second part, CWR with the first; both get their lengths and checksums.
/// Returns the two lengths, or `None` (nothing changed) when the packet is
/// not such a segment with more than `at` bytes of data, carries SYN or URG
/// (whose meaning a cut would change), or `rest` is too small.
pub fn split_tcp(packet: &mut [u8], at: usize, rest: &mut [u8]) -> Option<(usize, usize)> {
    let h = CuttableSegment::parse(packet)?;
    let rest_len = h.head + h.data_len().checked_sub(at).filter(|&n| n > 0)?;
    if at == 0 || rest.len() < rest_len {
        return None;
    }
    rest[..h.head].copy_from_slice(&packet[..h.head]);
    rest[h.head..rest_len].copy_from_slice(&packet[h.head + at..h.total]);
    let first_len = h.head + at;
    h.finish_part(&mut packet[..first_len], 0, false);
    h.finish_part(&mut rest[..rest_len], at, true);
    Some((first_len, rest_len))
}

/// Cut the TCP segment in `packet` (IPv4, or IPv6 without extension
/// headers) into segments of `size` data bytes
/// (the last may be shorter), as a device with segmentation offload does:
/// FIN and PSH on the last, CWR on the first. `None` when it is not such a
/// segment or carries SYN or URG.
pub fn segment_tcp(packet: &[u8], size: usize) -> Option<Vec<Vec<u8>>> {
    let h = CuttableSegment::parse(packet)?;
    if size == 0 {
        return None;
    }
    let data = &packet[h.head..h.total];
    let count = data.len().div_ceil(size).max(1);
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let chunk = &data[(i * size).min(data.len())..((i + 1) * size).min(data.len())];
        let mut part = Vec::with_capacity(h.head + chunk.len());
        part.extend_from_slice(&packet[..h.head]);
        part.extend_from_slice(chunk);
        h.finish_part(&mut part, i * size, i + 1 == count);
        out.push(part);
    }
    Some(out)
}

/// The headers of a TCP segment that can be cut into several.
struct CuttableSegment {
    src: IpAddress,
    dst: IpAddress,
    /// IPv6 (whose header has a payload length and no checksum) or IPv4.
    v6: bool,
    ip_len: usize,
    /// IP and TCP headers' length.
    head: usize,
    total: usize,
    flags_of_last: (bool, bool),
}

impl CuttableSegment {
    fn parse(packet: &[u8]) -> Option<CuttableSegment> {
        let (src, dst, ip_len, total): (IpAddr, IpAddr, usize, usize) = if packet.first()? >> 4 == 6
        {
            let ip = Ipv6Packet::new_checked(packet).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            let total = IPV6_HEADER_LEN + usize::from(ip.payload_len());
            (
                ip.src_addr().into(),
                ip.dst_addr().into(),
                IPV6_HEADER_LEN,
                total,
            )
        } else {
            let ip = Ipv4Packet::new_checked(packet).ok()?;
            if ip.next_header() != IpProtocol::Tcp || ip.more_frags() || ip.frag_offset() != 0 {
                return None;
            }
            let (ip_len, total) = (usize::from(ip.header_len()), usize::from(ip.total_len()));
            (ip.src_addr().into(), ip.dst_addr().into(), ip_len, total)
        };
        let tcp = TcpPacket::new_checked(&packet[ip_len..total]).ok()?;
        if tcp.syn() || tcp.urg() {
            return None;
        }
        Some(CuttableSegment {
            src: address(src),
            dst: address(dst),
            v6: ip_len == IPV6_HEADER_LEN,
            ip_len,
            head: ip_len + usize::from(tcp.header_len()),
            total,
            flags_of_last: (tcp.fin(), tcp.psh()),
        })
    }

    fn data_len(&self) -> usize {
        self.total - self.head
    }

    /// Give the part starting `offset` data bytes in its length, sequence
    /// number, flags and checksums.
    fn finish_part(&self, part: &mut [u8], offset: usize, last: bool) {
        let total = part.len() as u16;
        if self.v6 {
            let payload_len = total - IPV6_HEADER_LEN as u16;
            Ipv6Packet::new_unchecked(&mut *part).set_payload_len(payload_len);
        } else {
            let mut ip = Ipv4Packet::new_unchecked(&mut *part);
            ip.set_total_len(total);
            ip.fill_checksum();
        }
        let mut tcp = TcpPacket::new_unchecked(&mut part[self.ip_len..]);
        tcp.set_seq_number(tcp.seq_number() + offset);
        tcp.set_fin(last && self.flags_of_last.0);
        tcp.set_psh(last && self.flags_of_last.1);
        if offset > 0 {
            tcp.set_cwr(false);
        }
        tcp.fill_checksum(&self.src, &self.dst);
    }
}
