//! Building the packets the stack sends: TCP segments over IPv4 or IPv6,
//! ICMP echo replies and port unreachables.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{Icmpv4Packet, Icmpv6Packet, Ipv6Packet, TcpPacket};

use super::ipv6::IPV6_HEADER_LEN;
use super::{
    address, caps, Icmpv4DstUnreachable, Icmpv4Repr, Icmpv6DstUnreachable, Icmpv6Repr, IpProtocol,
    Ipv4Packet, Ipv4Repr, Ipv6Repr, TcpRepr,
};
use crate::checksum;

/// Length of the IPv4 header the stack emits (no options), in bytes.
pub const IPV4_HEADER_LEN: usize = 20;

/// Length of the IP header the stack puts before a packet to or from `ip`
/// (it emits no IPv4 options and no IPv6 extension headers).
pub fn ip_header_len(ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(_) => IPV4_HEADER_LEN,
        IpAddr::V6(_) => IPV6_HEADER_LEN,
    }
}

/// Emit an IP + TCP packet into `buf`, IPv4 or IPv6 by the addresses'
/// family. `header` carries everything but the payload, which is given as
/// up to two slices (a ring buffer's halves). Returns the packet length, or
/// `None` if `buf` is too small, the packet too long for its IP header, or
/// the addresses of two families.
pub fn emit_tcp(
    buf: &mut [u8],
    src: SocketAddr,
    dst: SocketAddr,
    ttl: u8,
    header: &TcpRepr<'_>,
    payload: (&[u8], &[u8]),
) -> Option<usize> {
    let payload_len = payload.0.len() + payload.1.len();
    let tcp_len = header.header_len() + payload_len;
    let ip_len = ip_header_len(src.ip());
    let total = ip_len + tcp_len;
    // Within IPv4's total length, and so within any buffer of MAX_PACKET.
    if buf.len() < total || total > usize::from(u16::MAX) {
        return None;
    }
    emit_ip_header(&mut buf[..total], src.ip(), dst.ip(), IpProtocol::Tcp, ttl)?;
    let tcp_buf = &mut buf[ip_len..total];
    let mut no_csum = caps();
    no_csum.tcp = smoltcp::phy::Checksum::None;
    let mut repr = *header;
    repr.payload = &[];
    {
        let mut tcp = TcpPacket::new_unchecked(&mut *tcp_buf);
        repr.emit(&mut tcp, &address(src.ip()), &address(dst.ip()), &no_csum);
    }
    let hl = header.header_len();
    tcp_buf[hl..hl + payload.0.len()].copy_from_slice(payload.0);
    tcp_buf[hl + payload.0.len()..].copy_from_slice(payload.1);
    let sum = checksum::tcp_checksum(src.ip(), dst.ip(), tcp_buf);
    TcpPacket::new_unchecked(tcp_buf).set_checksum(sum);
    Some(total)
}

/// Write the IP header of a `packet.len()`-byte packet carrying `protocol`.
fn emit_ip_header(
    packet: &mut [u8],
    src: IpAddr,
    dst: IpAddr,
    protocol: IpProtocol,
    ttl: u8,
) -> Option<()> {
    match (src, dst) {
        (IpAddr::V4(src_addr), IpAddr::V4(dst_addr)) => {
            let repr = Ipv4Repr {
                src_addr,
                dst_addr,
                next_header: protocol,
                payload_len: packet.len() - IPV4_HEADER_LEN,
                hop_limit: ttl,
            };
            repr.emit(&mut Ipv4Packet::new_unchecked(packet), &caps());
        }
        (IpAddr::V6(src_addr), IpAddr::V6(dst_addr)) => {
            let repr = Ipv6Repr {
                src_addr,
                dst_addr,
                next_header: protocol,
                payload_len: packet.len() - IPV6_HEADER_LEN,
                hop_limit: ttl,
            };
            repr.emit(&mut Ipv6Packet::new_unchecked(packet));
        }
        _ => return None,
    }
    Some(())
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
    emit_ip_header(
        &mut buf[..total],
        src.into(),
        dst.into(),
        IpProtocol::Icmp,
        ttl,
    )?;
    let mut icmp = Icmpv4Packet::new_unchecked(&mut buf[IPV4_HEADER_LEN..total]);
    repr.emit(&mut icmp, &caps());
    Some(total)
}

/// Emit an ICMPv6 packet (echo reply, port unreachable), checksummed.
pub fn emit_icmpv6(
    buf: &mut [u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    repr: &Icmpv6Repr<'_>,
) -> Option<usize> {
    let total = IPV6_HEADER_LEN + repr.buffer_len();
    if buf.len() < total {
        return None;
    }
    emit_ip_header(
        &mut buf[..total],
        src.into(),
        dst.into(),
        IpProtocol::Icmpv6,
        hop_limit,
    )?;
    let mut icmp = Icmpv6Packet::new_unchecked(&mut buf[IPV6_HEADER_LEN..total]);
    repr.emit(&src, &dst, &mut icmp, &caps());
    Some(total)
}

/// A port unreachable from `local` to `remote` quoting `packet` (the
/// datagram that found no socket): ICMPv4 quoting its IP header and first
/// 8 bytes (RFC 792), or ICMPv6 quoting as much as fits in the minimum
/// IPv6 MTU (RFC 4443 section 3.1). `None` when `packet` does not begin
/// with an IP header of the addresses' family.
pub fn port_unreachable(local: IpAddr, remote: IpAddr, ttl: u8, packet: &[u8]) -> Option<Vec<u8>> {
    match (local, remote) {
        (IpAddr::V4(local), IpAddr::V4(remote)) => {
            let ip = Ipv4Packet::new_checked(packet).ok()?;
            let header = Ipv4Repr::parse(&ip, &ChecksumCapabilities::ignored()).ok()?;
            let start = usize::from(ip.header_len());
            let quote_end = (start + 8).min(usize::from(ip.total_len()));
            let repr = Icmpv4Repr::DstUnreachable {
                reason: Icmpv4DstUnreachable::PortUnreachable,
                header,
                data: &packet[start..quote_end],
            };
            let mut buf = vec![0u8; IPV4_HEADER_LEN + repr.buffer_len()];
            let n = emit_icmp(&mut buf, local, remote, ttl, &repr)?;
            buf.truncate(n);
            Some(buf)
        }
        (IpAddr::V6(local), IpAddr::V6(remote)) => {
            let ip = Ipv6Packet::new_checked(packet).ok()?;
            let header = Ipv6Repr {
                src_addr: ip.src_addr(),
                dst_addr: ip.dst_addr(),
                next_header: ip.next_header(),
                payload_len: usize::from(ip.payload_len()),
                hop_limit: ip.hop_limit(),
            };
            let repr = Icmpv6Repr::DstUnreachable {
                reason: Icmpv6DstUnreachable::PortUnreachable,
                header,
                data: &packet[IPV6_HEADER_LEN..],
            };
            let mut buf = vec![0u8; IPV6_HEADER_LEN + repr.buffer_len()];
            let n = emit_icmpv6(&mut buf, local, remote, ttl, &repr)?;
            buf.truncate(n);
            Some(buf)
        }
        _ => None,
    }
}
