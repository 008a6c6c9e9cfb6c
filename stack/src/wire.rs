//! Packet parsing and emission on top of `smoltcp::wire`: the only module
//! that names smoltcp. The representation types the TCP core works with
//! (`TcpRepr`, `Icmpv4Repr`, ...) are re-exported from here.
//!
//! Parsing verifies the IPv4 and TCP checksums and rejects truncated headers,
//! malformed options and impossible flag combinations; the caller counts the
//! error and drops the packet.

use std::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::phy::ChecksumCapabilities;

use crate::checksum;
use smoltcp::wire::{Icmpv4Packet, IpAddress, TcpPacket, UdpPacket};

pub use smoltcp::wire::{
    Icmpv4DstUnreachable, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpRepr,
    TcpSeqNumber, TcpTimestampRepr,
};

/// Why a packet was dropped at parse time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Not IPv4, truncated, or a bad header checksum.
    BadIp,
    /// An IP fragment. Hydra does not reassemble: a TCP sender that does
    /// path MTU discovery never fragments, and reassembly buffers are what
    /// fragment floods aim at. Counted, and the sender's retransmission
    /// (after an ICMP-driven MTU change, or a smaller MSS) gets through.
    Fragment,
    /// Truncated TCP header, bad checksum, malformed options, bad flags.
    BadTcp,
    /// ICMP or UDP that does not parse.
    BadOther,
}

/// One parsed TCP segment with its addresses.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    /// Source address and port.
    pub src: SocketAddrV4,
    /// Destination address and port.
    pub dst: SocketAddrV4,
    /// The TCP header fields, options and payload.
    pub tcp: TcpRepr<'a>,
}

/// A parsed IPv4 packet, by protocol.
#[derive(Debug)]
pub enum Packet<'a> {
    /// A TCP segment.
    Tcp(Segment<'a>),
    /// An ICMP message (the stack answers echo requests and acts on destination unreachable).
    Icmp {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
        /// The parsed ICMP message.
        repr: Icmpv4Repr<'a>,
    },
    /// A UDP datagram to us: answered with ICMP port unreachable. Keeps the
    /// original IP header + 8 bytes for the ICMP quote.
    Udp {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
        /// The original IP header and first 8 bytes of the datagram.
        quote: &'a [u8],
    },
    /// Another IP protocol (dropped and counted).
    Other {
        /// The IP protocol number.
        protocol: u8,
    },
}

fn caps() -> ChecksumCapabilities {
    ChecksumCapabilities::default()
}

/// Source and destination of an IPv4 packet whose header is well formed
/// (a fragment too), without looking at its payload.
pub fn ipv4_addresses(bytes: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let ip = Ipv4Packet::new_checked(bytes).ok()?;
    Some((ip.src_addr(), ip.dst_addr()))
}

/// Parse one IPv4 packet, verifying checksums.
pub fn parse(bytes: &[u8]) -> Result<Packet<'_>, ParseError> {
    let ip = Ipv4Packet::new_checked(bytes).map_err(|_| ParseError::BadIp)?;
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Err(ParseError::Fragment);
    }
    let ip_repr = Ipv4Repr::parse(&ip, &caps()).map_err(|_| ParseError::BadIp)?;
    let ip_total = ip.total_len() as usize;
    let header_len = ip.header_len() as usize;
    let payload = &bytes[header_len..ip_total];
    let (src, dst) = (ip_repr.src_addr, ip_repr.dst_addr);
    match ip_repr.next_header {
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(payload).map_err(|_| ParseError::BadTcp)?;
            // Verified here, with our faster sum, rather than by smoltcp.
            if !checksum::tcp_is_valid(src, dst, payload) {
                return Err(ParseError::BadTcp);
            }
            let mut verified = caps();
            verified.tcp = smoltcp::phy::Checksum::None;
            let repr = TcpRepr::parse(
                &tcp,
                &IpAddress::Ipv4(src),
                &IpAddress::Ipv4(dst),
                &verified,
            )
            .map_err(|_| ParseError::BadTcp)?;
            Ok(Packet::Tcp(Segment {
                src: SocketAddrV4::new(src, repr.src_port),
                dst: SocketAddrV4::new(dst, repr.dst_port),
                tcp: repr,
            }))
        }
        IpProtocol::Icmp => {
            let icmp = Icmpv4Packet::new_checked(payload).map_err(|_| ParseError::BadOther)?;
            let repr = Icmpv4Repr::parse(&icmp, &caps()).map_err(|_| ParseError::BadOther)?;
            Ok(Packet::Icmp { src, dst, repr })
        }
        IpProtocol::Udp => {
            UdpPacket::new_checked(payload).map_err(|_| ParseError::BadOther)?;
            let quote_len = (header_len + 8).min(ip_total);
            Ok(Packet::Udp {
                src,
                dst,
                quote: &bytes[..quote_len],
            })
        }
        other => Ok(Packet::Other {
            protocol: other.into(),
        }),
    }
}

/// Length of the IPv4 header the stack emits (no options), in bytes.
pub const IPV4_HEADER_LEN: usize = 20;

/// Emit an IPv4 + TCP packet into `buf`. `header` carries everything but the
/// payload, which is given as up to two slices (a ring buffer's halves).
/// Returns the packet length, or `None` if `buf` is too small.
pub fn emit_tcp(
    buf: &mut [u8],
    src: SocketAddrV4,
    dst: SocketAddrV4,
    ttl: u8,
    header: &TcpRepr<'_>,
    payload: (&[u8], &[u8]),
) -> Option<usize> {
    let payload_len = payload.0.len() + payload.1.len();
    let tcp_len = header.header_len() + payload_len;
    let total = IPV4_HEADER_LEN + tcp_len;
    if buf.len() < total || total > u16::MAX as usize {
        return None;
    }
    let ip_repr = Ipv4Repr {
        src_addr: *src.ip(),
        dst_addr: *dst.ip(),
        next_header: IpProtocol::Tcp,
        payload_len: tcp_len,
        hop_limit: ttl,
    };
    let mut ip = Ipv4Packet::new_unchecked(&mut buf[..total]);
    ip_repr.emit(&mut ip, &caps());
    let tcp_buf = &mut buf[IPV4_HEADER_LEN..total];
    let mut no_csum = caps();
    no_csum.tcp = smoltcp::phy::Checksum::None;
    let mut repr = *header;
    repr.payload = &[];
    {
        let mut tcp = TcpPacket::new_unchecked(&mut *tcp_buf);
        repr.emit(
            &mut tcp,
            &IpAddress::Ipv4(*src.ip()),
            &IpAddress::Ipv4(*dst.ip()),
            &no_csum,
        );
    }
    let hl = header.header_len();
    tcp_buf[hl..hl + payload.0.len()].copy_from_slice(payload.0);
    tcp_buf[hl + payload.0.len()..].copy_from_slice(payload.1);
    let sum = checksum::tcp_checksum(*src.ip(), *dst.ip(), tcp_buf);
    TcpPacket::new_unchecked(tcp_buf).set_checksum(sum);
    Some(total)
}

/// Emit an ICMPv4 packet (echo reply, port unreachable).
pub fn emit_icmp(
    buf: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    repr: &Icmpv4Repr<'_>,
) -> Option<usize> {
    let total = IPV4_HEADER_LEN + repr.buffer_len();
    if buf.len() < total {
        return None;
    }
    let ip_repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmp,
        payload_len: repr.buffer_len(),
        hop_limit: ttl,
    };
    let mut ip = Ipv4Packet::new_unchecked(&mut buf[..total]);
    ip_repr.emit(&mut ip, &caps());
    let mut icmp = Icmpv4Packet::new_unchecked(&mut buf[IPV4_HEADER_LEN..total]);
    repr.emit(&mut icmp, &caps());
    Some(total)
}

/// An ICMP port unreachable from `local` to `remote` quoting `quote` (the
/// start of the datagram that found no socket), or `None` when the quote
/// does not begin with an IPv4 header.
pub fn port_unreachable(
    local: Ipv4Addr,
    remote: Ipv4Addr,
    ttl: u8,
    quote: &[u8],
) -> Option<Vec<u8>> {
    let ip = Ipv4Packet::new_checked(quote).ok()?;
    let header = Ipv4Repr::parse(&ip, &ChecksumCapabilities::ignored()).ok()?;
    let repr = Icmpv4Repr::DstUnreachable {
        reason: Icmpv4DstUnreachable::PortUnreachable,
        header,
        data: &quote[ip.header_len() as usize..],
    };
    let mut buf = vec![0u8; IPV4_HEADER_LEN + repr.buffer_len()];
    let n = emit_icmp(&mut buf, local, remote, ttl, &repr)?;
    buf.truncate(n);
    Some(buf)
}

/// Cut the IPv4 TCP segment in `packet` after `at` bytes of its payload:
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

/// Cut the IPv4 TCP segment in `packet` into segments of `size` data bytes
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

/// The headers of an IPv4 TCP segment that can be cut into several.
struct CuttableSegment {
    src: IpAddress,
    dst: IpAddress,
    ip_len: usize,
    /// IPv4 and TCP headers' length.
    head: usize,
    total: usize,
    flags_of_last: (bool, bool),
}

impl CuttableSegment {
    fn parse(packet: &[u8]) -> Option<CuttableSegment> {
        let ip = Ipv4Packet::new_checked(packet).ok()?;
        if ip.next_header() != IpProtocol::Tcp || ip.more_frags() || ip.frag_offset() != 0 {
            return None;
        }
        let (ip_len, total) = (usize::from(ip.header_len()), usize::from(ip.total_len()));
        let tcp = TcpPacket::new_checked(&packet[ip_len..total]).ok()?;
        if tcp.syn() || tcp.urg() {
            return None;
        }
        Some(CuttableSegment {
            src: IpAddress::Ipv4(ip.src_addr()),
            dst: IpAddress::Ipv4(ip.dst_addr()),
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
        let mut ip = Ipv4Packet::new_unchecked(&mut *part);
        ip.set_total_len(total);
        ip.fill_checksum();
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

/// A valid IPv4 TCP segment carrying `payload`, for tests.
#[cfg(test)]
pub(crate) fn test_segment(control: TcpControl, payload: &[u8]) -> Vec<u8> {
    let header = TcpRepr {
        src_port: 40000,
        dst_port: 80,
        control,
        seq_number: TcpSeqNumber(1_000),
        ack_number: Some(TcpSeqNumber(77)),
        window_len: 512,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: Some(TcpTimestampRepr::new(5, 6)),
        payload: &[],
    };
    let mut buf = vec![0u8; 70_000];
    let src = SocketAddrV4::new([198, 18, 0, 1].into(), 40000);
    let dst = SocketAddrV4::new([198, 18, 0, 2].into(), 80);
    let n = emit_tcp(&mut buf, src, dst, 64, &header, (payload, &[])).unwrap();
    buf.truncate(n);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_of(packet: &[u8]) -> TcpRepr<'_> {
        match parse(packet) {
            Ok(Packet::Tcp(s)) => s.tcp,
            other => panic!("not a valid TCP segment: {other:?}"),
        }
    }

    #[test]
    fn a_cut_segment_is_two_valid_segments_carrying_the_same_bytes() {
        let payload: Vec<u8> = (0..65_400u32).map(|i| (i % 251) as u8).collect();
        let mut packet = test_segment(TcpControl::Fin, &payload);
        let mut rest = vec![0u8; 65_535];
        let (a, b) = split_tcp(&mut packet, 30_000, &mut rest).unwrap();
        let (first, second) = (tcp_of(&packet[..a]), tcp_of(&rest[..b]));
        assert_eq!(first.seq_number, TcpSeqNumber(1_000));
        assert_eq!(second.seq_number, TcpSeqNumber(31_000));
        assert_eq!(first.control, TcpControl::None);
        assert_eq!(second.control, TcpControl::Fin);
        assert_eq!(first.timestamp, second.timestamp);
        assert_eq!([first.payload, second.payload].concat(), payload);
    }

    #[test]
    fn a_large_segment_is_cut_as_segmentation_offload_would() {
        let payload: Vec<u8> = (0..5_000u32).map(|i| (i % 253) as u8).collect();
        let packet = test_segment(TcpControl::Fin, &payload);
        let parts = segment_tcp(&packet, 1448).unwrap();
        assert_eq!(parts.len(), 4);
        let tcps: Vec<TcpRepr<'_>> = parts.iter().map(|p| tcp_of(p)).collect();
        for (i, t) in tcps.iter().enumerate() {
            assert_eq!(t.seq_number, TcpSeqNumber(1_000 + 1448 * i as i32));
            let fin = i == 3;
            assert_eq!(t.control == TcpControl::Fin, fin, "part {i}");
        }
        assert_eq!(
            tcps.iter()
                .flat_map(|t| t.payload.to_vec())
                .collect::<Vec<_>>(),
            payload
        );
        assert_eq!(segment_tcp(&packet, 0), None);
        let one = segment_tcp(&packet, 10_000).unwrap();
        assert_eq!(one, vec![packet.clone()]);
    }

    #[test]
    fn what_cannot_be_cut_is_left_alone() {
        let mut rest = vec![0u8; 65_535];
        let mut syn = test_segment(TcpControl::Syn, &[1; 100]);
        let before = syn.clone();
        assert_eq!(split_tcp(&mut syn, 50, &mut rest), None);
        assert_eq!(syn, before);
        let mut short = test_segment(TcpControl::Psh, &[1; 100]);
        assert_eq!(split_tcp(&mut short, 100, &mut rest), None);
        assert_eq!(split_tcp(&mut short, 0, &mut rest), None);
        assert_eq!(split_tcp(&mut short, 50, &mut rest[..60]), None);
        assert_eq!(split_tcp(&mut short[..30], 10, &mut rest), None);
        assert_eq!(split_tcp(&mut [0u8; 0], 10, &mut rest), None);
        let mut udp = short.clone();
        udp[9] = 17;
        assert_eq!(split_tcp(&mut udp, 50, &mut rest), None);
    }
}
