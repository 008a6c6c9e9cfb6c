//! Packet parsing and emission on top of `smoltcp::wire`.
//!
//! Parsing verifies the IPv4 and TCP checksums and rejects truncated headers,
//! malformed options and impossible flag combinations; the caller counts the
//! error and drops the packet.

use std::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr,
    UdpPacket,
};

pub use smoltcp::wire::{TcpControl, TcpSeqNumber, TcpTimestampRepr};

/// Why a packet was dropped at parse time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Not IPv4, truncated, bad header checksum, or fragmented.
    BadIp,
    /// Truncated TCP header, bad checksum, malformed options, bad flags.
    BadTcp,
    /// ICMP or UDP that does not parse.
    BadOther,
}

/// One parsed TCP segment with its addresses.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub tcp: TcpRepr<'a>,
}

/// A parsed IPv4 packet, by protocol.
#[derive(Debug)]
pub enum Packet<'a> {
    Tcp(Segment<'a>),
    Icmp {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        repr: Icmpv4Repr<'a>,
    },
    /// A UDP datagram to us: answered with ICMP port unreachable. Keeps the
    /// original IP header + 8 bytes for the ICMP quote.
    Udp {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        quote: &'a [u8],
    },
    Other {
        protocol: u8,
    },
}

fn caps() -> ChecksumCapabilities {
    ChecksumCapabilities::default()
}

/// Parse one IPv4 packet, verifying checksums.
pub fn parse(bytes: &[u8]) -> Result<Packet<'_>, ParseError> {
    let ip = Ipv4Packet::new_checked(bytes).map_err(|_| ParseError::BadIp)?;
    let ip_repr = Ipv4Repr::parse(&ip, &caps()).map_err(|_| ParseError::BadIp)?;
    let ip_total = ip.total_len() as usize;
    let header_len = ip.header_len() as usize;
    let payload = &bytes[header_len..ip_total];
    let (src, dst) = (ip_repr.src_addr, ip_repr.dst_addr);
    match ip_repr.next_header {
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(payload).map_err(|_| ParseError::BadTcp)?;
            let repr = TcpRepr::parse(&tcp, &IpAddress::Ipv4(src), &IpAddress::Ipv4(dst), &caps())
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
    let mut tcp = TcpPacket::new_unchecked(tcp_buf);
    tcp.fill_checksum(&IpAddress::Ipv4(*src.ip()), &IpAddress::Ipv4(*dst.ip()));
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
