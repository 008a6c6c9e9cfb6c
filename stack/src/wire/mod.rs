//! Packet parsing and emission on top of `smoltcp::wire`: the only module
//! that names smoltcp. The representation types the TCP core works with
//! (`TcpRepr`, `Icmpv4Repr`, `Icmpv6Repr`, ...) are re-exported from here.
//!
//! Parsing takes IPv4 and IPv6 alike (by the version nibble), verifies the
//! IPv4 header checksum and every TCP checksum, walks IPv6 extension headers
//! within a bound, and rejects truncated headers, malformed options and
//! impossible flag combinations; the caller counts the error and drops the
//! packet.

mod cut;
mod emit;
pub mod ipv6;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use smoltcp::phy::ChecksumCapabilities;

use crate::checksum;
use smoltcp::wire::{Icmpv4Packet, Icmpv6Packet, IpAddress, TcpPacket, UdpPacket};

pub use cut::{segment_tcp, split_tcp};
pub use emit::{
    emit_icmp, emit_icmpv6, emit_tcp, ip_header_len, port_unreachable, IPV4_HEADER_LEN,
};
pub use ipv6::IPV6_HEADER_LEN;
pub use smoltcp::wire::{
    Icmpv4DstUnreachable, Icmpv4Repr, Icmpv6DstUnreachable, Icmpv6Repr, IpProtocol, Ipv4Packet,
    Ipv4Repr, Ipv6Repr, TcpControl, TcpRepr, TcpSeqNumber, TcpTimestampRepr,
};

/// Why a packet was dropped at parse time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Neither IPv4 nor IPv6, truncated, a bad IPv4 header checksum, or an
    /// IPv6 extension header chain a host must not process (see [`ipv6`]).
    BadIp,
    /// An IP fragment: reassembled or dropped by the stack's
    /// `FragmentPolicy` (IPv4), always dropped (IPv6). A TCP sender that
    /// does path MTU discovery never fragments.
    Fragment,
    /// Truncated TCP header, bad checksum, malformed options, bad flags.
    BadTcp,
    /// ICMP or UDP that does not parse.
    BadOther,
}

/// One parsed TCP segment with its addresses (both of one family).
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// The TCP header fields, options and payload.
    pub tcp: TcpRepr<'a>,
}

/// A parsed IP packet, by protocol.
#[derive(Debug)]
pub enum Packet<'a> {
    /// A TCP segment.
    Tcp(Segment<'a>),
    /// An ICMPv4 message (the stack answers echo requests and acts on destination unreachable).
    Icmp {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
        /// The parsed ICMP message.
        repr: Icmpv4Repr<'a>,
    },
    /// An ICMPv6 message the stack acts on: echo request, destination
    /// unreachable, packet too big.
    Icmpv6 {
        /// Source address.
        src: Ipv6Addr,
        /// Destination address.
        dst: Ipv6Addr,
        /// The parsed ICMPv6 message.
        repr: Icmpv6Repr<'a>,
    },
    /// An ICMPv6 message a host on a point-to-point link has no use for
    /// (neighbour discovery, multicast listener reports, echo replies):
    /// ignored.
    Icmpv6Ignored,
    /// A UDP datagram to us: answered with ICMP port unreachable.
    Udp {
        /// Source address.
        src: IpAddr,
        /// Destination address.
        dst: IpAddr,
        /// The datagram's IP packet, which the unreachable message quotes
        /// (as much of it as the family's rules allow).
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

/// Parse one IPv4 or IPv6 packet, verifying checksums.
pub fn parse(bytes: &[u8]) -> Result<Packet<'_>, ParseError> {
    match bytes.first().map(|b| b >> 4) {
        Some(4) => parse_ipv4(bytes),
        Some(6) => parse_ipv6(bytes),
        _ => Err(ParseError::BadIp),
    }
}

fn parse_ipv4(bytes: &[u8]) -> Result<Packet<'_>, ParseError> {
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
        IpProtocol::Tcp => parse_tcp(src.into(), dst.into(), payload),
        IpProtocol::Icmp => {
            let icmp = Icmpv4Packet::new_checked(payload).map_err(|_| ParseError::BadOther)?;
            let repr = Icmpv4Repr::parse(&icmp, &caps()).map_err(|_| ParseError::BadOther)?;
            Ok(Packet::Icmp { src, dst, repr })
        }
        IpProtocol::Udp => {
            UdpPacket::new_checked(payload).map_err(|_| ParseError::BadOther)?;
            Ok(Packet::Udp {
                src: src.into(),
                dst: dst.into(),
                quote: &bytes[..ip_total],
            })
        }
        other => Ok(Packet::Other {
            protocol: other.into(),
        }),
    }
}

fn parse_ipv6(bytes: &[u8]) -> Result<Packet<'_>, ParseError> {
    let ip = ipv6::parse(bytes)?;
    let payload = &bytes[ip.upper..ip.end];
    let (src, dst) = (ip.src, ip.dst);
    match IpProtocol::from(ip.protocol) {
        IpProtocol::Tcp => parse_tcp(src.into(), dst.into(), payload),
        IpProtocol::Icmpv6 => parse_icmpv6(src, dst, payload),
        IpProtocol::Udp => {
            UdpPacket::new_checked(payload).map_err(|_| ParseError::BadOther)?;
            Ok(Packet::Udp {
                src: src.into(),
                dst: dst.into(),
                quote: &bytes[..ip.end],
            })
        }
        other => Ok(Packet::Other {
            protocol: other.into(),
        }),
    }
}

/// ICMPv6 message types the stack acts on (RFC 4443).
const ICMPV6_DST_UNREACHABLE: u8 = 1;
const ICMPV6_PACKET_TOO_BIG: u8 = 2;
const ICMPV6_ECHO_REQUEST: u8 = 128;

fn parse_icmpv6<'a>(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    payload: &'a [u8],
) -> Result<Packet<'a>, ParseError> {
    let icmp = Icmpv6Packet::new_checked(payload).map_err(|_| ParseError::BadOther)?;
    let kind = payload.first().copied().unwrap_or_default();
    if ![
        ICMPV6_DST_UNREACHABLE,
        ICMPV6_PACKET_TOO_BIG,
        ICMPV6_ECHO_REQUEST,
    ]
    .contains(&kind)
    {
        return Ok(Packet::Icmpv6Ignored);
    }
    let repr = Icmpv6Repr::parse(&src, &dst, &icmp, &caps()).map_err(|_| ParseError::BadOther)?;
    Ok(Packet::Icmpv6 { src, dst, repr })
}

fn parse_tcp(src: IpAddr, dst: IpAddr, payload: &[u8]) -> Result<Packet<'_>, ParseError> {
    let tcp = TcpPacket::new_checked(payload).map_err(|_| ParseError::BadTcp)?;
    // Verified here, with our faster sum, rather than by smoltcp.
    if !checksum::tcp_is_valid(src, dst, payload) {
        return Err(ParseError::BadTcp);
    }
    let mut verified = caps();
    verified.tcp = smoltcp::phy::Checksum::None;
    let repr = TcpRepr::parse(&tcp, &address(src), &address(dst), &verified)
        .map_err(|_| ParseError::BadTcp)?;
    Ok(Packet::Tcp(Segment {
        src: SocketAddr::new(src, repr.src_port),
        dst: SocketAddr::new(dst, repr.dst_port),
        tcp: repr,
    }))
}

/// smoltcp's name for an address.
fn address(ip: IpAddr) -> IpAddress {
    match ip {
        IpAddr::V4(a) => IpAddress::Ipv4(a),
        IpAddr::V6(a) => IpAddress::Ipv6(a),
    }
}

/// A valid TCP segment from `src` to `dst` carrying `payload`, for tests.
#[cfg(test)]
pub(crate) fn test_segment_between(
    src: SocketAddr,
    dst: SocketAddr,
    control: TcpControl,
    payload: &[u8],
) -> Vec<u8> {
    let header = TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
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
    let n = emit_tcp(&mut buf, src, dst, 64, &header, (payload, &[])).unwrap();
    buf.truncate(n);
    buf
}

/// A valid IPv4 TCP segment carrying `payload`, for tests.
#[cfg(test)]
pub(crate) fn test_segment(control: TcpControl, payload: &[u8]) -> Vec<u8> {
    let src = SocketAddr::from(([198, 18, 0, 1], 40000));
    let dst = SocketAddr::from(([198, 18, 0, 2], 80));
    test_segment_between(src, dst, control, payload)
}

#[cfg(test)]
mod tests;
