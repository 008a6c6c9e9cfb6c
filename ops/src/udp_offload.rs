//! UDP segmentation offload for the redirector's copies of client packets.
//!
//! The redirector sends a run of equal-sized packets to a replica as one
//! `sendmsg` with `UDP_SEGMENT`; the kernel carries it as one buffer as far
//! as the replica's socket, which (with `UDP_GRO`) hands it over whole with
//! the segment size, and the replica splits it: it sees the same packets,
//! with the same boundaries, as if each had been sent alone. One system call and one trip through the kernel's stack per run instead
//! of per packet.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

/// Most segments the kernel takes in one `UDP_SEGMENT` send (UDP_MAX_SEGMENTS).
pub const MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one UDP datagram, coalesced or not.
pub const MAX_COALESCED: usize = 65_507;

/// Send `packets` to `to` as one coalesced datagram cut every
/// `segment_size` bytes. All packets but the last must be exactly
/// `segment_size` long, the last at most that; at most [`MAX_SEGMENTS`]
/// packets and [`MAX_COALESCED`] bytes.
pub fn send_segments(
    socket: &UdpSocket,
    to: SocketAddr,
    packets: &[&[u8]],
    segment_size: usize,
) -> io::Result<()> {
    debug_assert!(packets.len() <= MAX_SEGMENTS);
    let mut iov: Vec<libc::iovec> = packets
        .iter()
        .map(|p| libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        })
        .collect();
    let (mut addr, addr_len) = sockaddr(to);
    // Room for one cmsg carrying a u16, aligned as the kernel expects.
    let mut control = [0u64; 4];
    // SAFETY: an all-zero msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = addr_len;
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len() as _;
    if packets.len() > 1 {
        // SAFETY: CMSG_SPACE is a pure size computation.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
        debug_assert!(space <= std::mem::size_of_val(&control));
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` writable, aligned bytes, so
        // CMSG_FIRSTHDR returns a valid header with room for a u16 payload.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = libc::UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment_size as u16);
        }
    }
    // SAFETY: msg and everything it points to live across the call.
    let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `SO_NO_CHECK` (asm-generic value; the libc crate exports it for L4Re only).
const SO_NO_CHECK: libc::c_int = 11;

/// Send datagrams from `socket` without a UDP checksum (IPv4 allows it):
/// the kernel then neither computes one over a copy nor verifies one at
/// the replica. Worth it for copies of large coalesced segments, which
/// travel in IP fragments no device checksums; the copied packet's own
/// TCP checksum, verified by the replica's stack, still covers every byte.
/// Coalesced (`UDP_SEGMENT`) sends need a checksum: the kernel refuses
/// them on such a socket.
pub fn disable_checksums(socket: &UdpSocket) -> io::Result<()> {
    switch_on(socket, libc::SOL_SOCKET, SO_NO_CHECK)
}

/// Ask the kernel to deliver coalesced datagrams whole (`UDP_GRO`).
pub fn enable_gro(socket: &UdpSocket) -> io::Result<()> {
    switch_on(socket, libc::SOL_UDP, libc::UDP_GRO)
}

/// Set an integer socket option to 1.
fn switch_on(socket: &UdpSocket, level: libc::c_int, name: libc::c_int) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads a c_int from a valid pointer.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One datagram as received: its length, sender, and the segment size if
/// the kernel coalesced several datagrams into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes written into the buffer.
    pub len: usize,
    /// The sender, when it was an IPv4 or IPv6 address.
    pub from: Option<SocketAddr>,
    /// The size of each coalesced datagram (the last may be shorter).
    pub segment_size: Option<usize>,
    /// The datagram did not fit `buf` and was cut.
    pub truncated: bool,
}

/// Receive one datagram (possibly coalesced) into `buf`.
pub fn recv_coalesced(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Received> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: all-zero sockaddr_storage and msghdr are valid.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut control = [0u64; 8];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg and everything it points to live across the call.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut segment_size = None;
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of
    // well-formed cmsgs; the CMSG_* walk stays inside them.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == libc::UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                if size > 0 {
                    segment_size = Some(size as usize);
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    let from = socket_addr(&addr);
    Ok(Received {
        len: n as usize,
        from,
        segment_size,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
    })
}

/// `a` as the kernel takes it, and its length.
fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid; we fill the fields we use.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than, and aligned for, sockaddr_in.
            let s = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = a.port().to_be();
            s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than, and aligned for, sockaddr_in6.
            let s = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_port = a.port().to_be();
            s.sin6_addr.s6_addr = a.ip().octets();
            s.sin6_flowinfo = a.flowinfo().to_be();
            s.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// The address the kernel wrote into `storage`, if of a family we know.
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the kernel wrote a sockaddr_in.
            let s =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                u32::from_be(s.sin_addr.s_addr).into(),
                u16::from_be(s.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the kernel wrote a sockaddr_in6.
            let s = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                s.sin6_addr.s6_addr.into(),
                u16::from_be(s.sin6_port),
                u32::from_be(s.sin6_flowinfo),
                s.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// Cuts a received coalesced datagram back into its packets.
    fn segments(datagram: &[u8], segment_size: Option<usize>) -> impl Iterator<Item = &[u8]> {
        let size = segment_size.unwrap_or(datagram.len()).max(1);
        datagram.chunks(size)
    }

    fn pair() -> (UdpSocket, UdpSocket, SocketAddr) {
        pair_on(Ipv4Addr::LOCALHOST.into())
    }

    fn pair_on(ip: std::net::IpAddr) -> (UdpSocket, UdpSocket, SocketAddr) {
        let rx = UdpSocket::bind((ip, 0)).unwrap();
        let tx = UdpSocket::bind((ip, 0)).unwrap();
        let to = rx.local_addr().unwrap();
        (tx, rx, to)
    }

    #[test]
    fn a_run_travels_over_ipv6_and_names_its_sender() {
        let (tx, rx, to) = pair_on(std::net::Ipv6Addr::LOCALHOST.into());
        enable_gro(&rx).unwrap();
        let sent = packets(&[1200, 1200, 77]);
        let slices: Vec<&[u8]> = sent.iter().map(Vec::as_slice).collect();
        send_segments(&tx, to, &slices, 1200).unwrap();
        assert_eq!(received_packets(&rx, sent.len()), sent);
        send_segments(&tx, to, &[b"who"], 3).unwrap();
        let mut buf = [0u8; 16];
        let r = recv_coalesced(&rx, &mut buf).unwrap();
        assert_eq!(r.from, Some(tx.local_addr().unwrap()));
    }

    fn received_packets(rx: &UdpSocket, count: usize) -> Vec<Vec<u8>> {
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while out.len() < count {
            let r = recv_coalesced(rx, &mut buf).unwrap();
            assert!(!r.truncated);
            out.extend(segments(&buf[..r.len], r.segment_size).map(<[u8]>::to_vec));
        }
        out
    }

    fn packets(sizes: &[usize]) -> Vec<Vec<u8>> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|b| (b * 7 + i) as u8).collect())
            .collect()
    }

    #[test]
    fn a_run_arrives_as_the_same_packets_with_and_without_gro() {
        for gro in [false, true] {
            let (tx, rx, to) = pair();
            if gro {
                enable_gro(&rx).unwrap();
            }
            let sent = packets(&[1400, 1400, 1400, 1400, 321]);
            let slices: Vec<&[u8]> = sent.iter().map(Vec::as_slice).collect();
            send_segments(&tx, to, &slices, 1400).unwrap();
            assert_eq!(received_packets(&rx, sent.len()), sent, "gro {gro}");
        }
    }

    #[test]
    fn a_single_packet_needs_no_segmentation() {
        let (tx, rx, to) = pair();
        enable_gro(&rx).unwrap();
        let sent = packets(&[77]);
        send_segments(&tx, to, &[&sent[0]], 77).unwrap();
        let mut buf = vec![0u8; 2048];
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let r = recv_coalesced(&rx, &mut buf).unwrap();
        assert_eq!(&buf[..r.len], &sent[0][..]);
        assert_eq!(r.from.unwrap().port(), tx.local_addr().unwrap().port());
    }

    #[test]
    fn a_datagram_larger_than_the_buffer_is_reported_cut() {
        let (tx, rx, to) = pair();
        tx.send_to(&[1u8; 600], to).unwrap();
        let mut buf = vec![0u8; 100];
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let r = recv_coalesced(&rx, &mut buf).unwrap();
        assert!(r.truncated);
    }
}
