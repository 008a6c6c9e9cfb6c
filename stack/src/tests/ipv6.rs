//! TCP over IPv6 and ICMPv6: the handshake, data, resets and options as over
//! IPv4, the IPv6 MSS, checksums over the IPv6 pseudo-header, extension
//! headers, hop limits, echo, port unreachable and Packet Too Big.

use std::net::{Ipv6Addr, SocketAddr};

use smoltcp::wire::{Icmpv6DstUnreachable, Icmpv6Repr, Ipv6Repr};

use super::*;

const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x19, 0, 0, 0, 0, 0, 1);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x18, 0, 0, 0, 0, 0, 1);

fn h6() -> Harness {
    Harness::between(
        test_config(),
        SocketAddr::new(SERVER6.into(), 0),
        SocketAddr::new(CLIENT6.into(), 0),
    )
}

/// Every packet the stack wants to send, raw.
fn transmitted(h: &mut Harness) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while let Some(n) = h.stack.poll_transmit(h.now, &mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

/// An ICMPv6 message from the client to the server.
fn icmpv6_to_server(repr: &Icmpv6Repr<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 1500];
    let n = wire::emit_icmpv6(&mut buf, CLIENT6, SERVER6, 64, repr).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn a_connection_over_ipv6_opens_carries_data_and_closes() {
    let mut h = h6();
    let key = h.establish();
    assert!(key.local.is_ipv6() && key.remote.is_ipv6());
    h.send(h.data_seg(0, b"hello over six"));
    assert_eq!(h.read_all(), b"hello over six");
    h.stack.send(key, b"and back").unwrap();
    let out = h.recv_all();
    assert!(
        out.iter().any(|s| s.payload == b"and back"),
        "reply not sent: {out:?}"
    );
    let fin = Seg {
        ctl: Ctl::Fin,
        ..h.data_seg(14, b"")
    };
    h.send(fin);
    assert_eq!(h.state(), State::CloseWait);
}

//= RFC 9293 section 3.7.1
//# TCP implementations SHOULD send an MSS Option in every SYN segment
// The MSS follows the family: the IPv6 header is 20 bytes longer.
#[test]
fn the_syn_ack_over_ipv6_advertises_the_ipv6_mss_and_answers_every_option() {
    let mut h = h6();
    h.send(client_syn());
    let raw = transmitted(&mut h);
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0][0] >> 4, 6, "the SYN-ACK is an IPv6 packet");
    let synack = Seg::from_packet(&raw[0]).unwrap();
    assert_eq!(synack.ctl, Ctl::Syn);
    assert_eq!(synack.mss, Some(test_config().mss - 20));
    assert_eq!(synack.ws.is_some(), test_config().window_scaling);
    assert!(synack.sack_perm);
    assert!(synack.ts.is_some());
    // The same ISN every member of a group would compute for this tuple.
    let key = h.key;
    let isn =
        crate::tcp::isn::server_isn(&test_config().isn_key, key.local, key.remote, CLIENT_ISN);
    assert_eq!(synack.seq, isn);
}

#[test]
fn a_peer_without_an_mss_option_gets_the_ipv6_default() {
    let mut h = h6();
    let syn = Seg {
        mss: None,
        ..client_syn()
    };
    h.send(syn);
    let synack = h.recv_one();
    h.iss = synack.seq;
    h.send(h.ack_seg(CLIENT_ISN + 1, synack.seq + 1));
    h.stack.accept(h.key.local).unwrap();
    h.stack.send(h.key, &[7u8; 5000]).unwrap();
    let sizes: Vec<usize> = h.recv_all().iter().map(|s| s.payload.len()).collect();
    assert!(
        sizes.iter().all(|&n| n <= 1220) && sizes.contains(&(1220 - 12)),
        "segments of {sizes:?}: 1,220 bytes (RFC 9293 3.7.1) less the timestamp option"
    );
}

#[test]
fn a_segment_to_no_listener_is_reset_over_ipv6() {
    let mut h = h6();
    let stray = Seg {
        seq: 5,
        ack: Some(77),
        win: 100,
        ..Default::default()
    };
    let to_nowhere = SocketAddr::new(SERVER6.into(), 81);
    let mut pkt = stray.packet_between(h.key.remote, to_nowhere);
    pkt[40 + 2..40 + 4].copy_from_slice(&81u16.to_be_bytes());
    let sum_at = 40 + 16;
    pkt[sum_at..sum_at + 2].fill(0);
    let sum = crate::checksum::tcp_checksum(CLIENT6.into(), SERVER6.into(), &pkt[40..]);
    pkt[sum_at..sum_at + 2].copy_from_slice(&sum.to_be_bytes());
    h.stack.handle_packet(h.now, &pkt);
    let out = transmitted(&mut h);
    assert_eq!(out.len(), 1);
    let rst = Seg::from_packet(&out[0]).unwrap();
    assert_eq!((rst.ctl, rst.seq), (Ctl::Rst, 77));
}

#[test]
fn bad_checksums_truncations_and_forbidden_addresses_are_dropped_and_counted() {
    let mut h = h6();
    let good = client_syn().packet_between(h.key.remote, h.key.local);
    let mut bad_sum = good.clone();
    *bad_sum.last_mut().unwrap() ^= 1;
    h.stack.handle_packet(h.now, &bad_sum);
    assert_eq!(h.stack.stats().drop_bad_tcp, 1);
    for len in [0, 10, 39, 41, 59] {
        h.stack.handle_packet(h.now, &good[..len]);
    }
    // Payload length past the packet's end.
    let mut long = good.clone();
    long[4..6].copy_from_slice(&2000u16.to_be_bytes());
    h.stack.handle_packet(h.now, &long);
    assert!(h.stack.stats().drop_bad_ip + h.stack.stats().drop_bad_tcp >= 6);
    // From a multicast, an unspecified or an IPv4-mapped source, or to a
    // multicast destination.
    let sources = ["ff02::1", "::", "::ffff:198.18.0.1", "::1"];
    for src in sources {
        let from = SocketAddr::new(src.parse().unwrap(), 0);
        h.stack
            .handle_packet(h.now, &client_syn().packet_between(from, h.key.local));
    }
    let to_multicast = SocketAddr::new("ff02::2".parse().unwrap(), 0);
    h.stack.handle_packet(
        h.now,
        &client_syn().packet_between(h.key.remote, to_multicast),
    );
    assert_eq!(h.stack.stats().drop_bad_address, 5);
    assert!(transmitted(&mut h).is_empty());
    assert_eq!(h.stack.connection_count(), 0);
}

#[test]
fn any_hop_limit_reaches_the_host_and_replies_use_the_configured_one() {
    let mut h = h6();
    let mut syn = client_syn().packet_between(h.key.remote, h.key.local);
    syn[7] = 0;
    h.stack.handle_packet(h.now, &syn);
    let out = transmitted(&mut h);
    assert_eq!(out.len(), 1, "a host takes a packet whatever its hop limit");
    assert_eq!(out[0][7], test_config().ttl);
}

#[test]
fn extension_headers_before_tcp_are_walked() {
    let mut h = h6();
    let syn = client_syn().packet_between(h.key.remote, h.key.local);
    // Insert a Destination Options header (8 bytes of PadN) before TCP.
    let mut with_options = syn[..40].to_vec();
    with_options[6] = 60;
    let payload_len = u16::from_be_bytes([syn[4], syn[5]]) + 8;
    with_options[4..6].copy_from_slice(&payload_len.to_be_bytes());
    with_options.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    with_options.extend_from_slice(&syn[40..]);
    h.stack.handle_packet(h.now, &with_options);
    let out = transmitted(&mut h);
    assert_eq!(out.len(), 1, "the SYN behind the header is answered");
    // An option that must not be skipped discards the packet.
    with_options[42] = 0x82;
    let before = h.stack.stats().drop_bad_ip;
    h.stack.handle_packet(h.now, &with_options);
    assert_eq!(h.stack.stats().drop_bad_ip, before + 1);
}

#[test]
fn ipv6_fragments_are_dropped_and_counted() {
    let mut h = h6();
    let syn = client_syn().packet_between(h.key.remote, h.key.local);
    let mut first = syn[..40].to_vec();
    first[6] = 44;
    let payload_len = u16::from_be_bytes([syn[4], syn[5]]) + 8;
    first[4..6].copy_from_slice(&payload_len.to_be_bytes());
    first.extend_from_slice(&[6, 0, 0, 1, 0, 0, 0, 9]); // offset 0, more fragments
    first.extend_from_slice(&syn[40..]);
    h.stack.handle_packet(h.now, &first);
    assert_eq!(h.stack.stats().drop_fragment, 1);
    assert!(transmitted(&mut h).is_empty());
}

//= RFC 4443 section 4.1
//# Every node MUST implement an ICMPv6 Echo responder function
#[test]
fn an_echo_request_is_answered_and_neighbour_discovery_ignored() {
    let mut h = h6();
    let ping = icmpv6_to_server(&Icmpv6Repr::EchoRequest {
        ident: 9,
        seq_no: 4,
        data: b"ping6",
    });
    h.stack.handle_packet(h.now, &ping);
    let out = transmitted(&mut h);
    assert_eq!(out.len(), 1);
    // The stack itself ignores echo replies: read this one with smoltcp.
    let ip = smoltcp::wire::Ipv6Packet::new_checked(&out[0][..]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (SERVER6, CLIENT6));
    let icmp = smoltcp::wire::Icmpv6Packet::new_checked(&out[0][40..]).unwrap();
    let caps = smoltcp::phy::ChecksumCapabilities::default();
    match Icmpv6Repr::parse(&SERVER6, &CLIENT6, &icmp, &caps).unwrap() {
        Icmpv6Repr::EchoReply {
            ident,
            seq_no,
            data,
        } => assert_eq!((ident, seq_no, data), (9, 4, &b"ping6"[..])),
        other => panic!("not an echo reply: {other:?}"),
    }
    // A router solicitation (type 133) as Linux sends on a new link.
    let mut rs = vec![0x60, 0, 0, 0, 0, 8, 58, 255];
    rs.extend_from_slice(&CLIENT6.octets());
    rs.extend_from_slice(&"ff02::2".parse::<Ipv6Addr>().unwrap().octets());
    rs.extend_from_slice(&[133, 0, 0, 0, 0, 0, 0, 0]);
    h.stack.handle_packet(h.now, &rs);
    assert_eq!(h.stack.stats().icmp_ignored, 1);
    assert!(transmitted(&mut h).is_empty());
}

//= RFC 4443 section 3.1
//# Destination Unreachable message SHOULD be generated by the destination
//# node ... if the transport protocol (e.g., UDP) has no listener
#[test]
fn a_udp_datagram_gets_a_port_unreachable_quoting_it() {
    let mut h = h6();
    let mut udp = vec![0x60, 0, 0, 0, 0, 12, 17, 64];
    udp.extend_from_slice(&CLIENT6.octets());
    udp.extend_from_slice(&SERVER6.octets());
    udp.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 12, 0, 0, b'q', b'u', b'r', b'y']);
    h.stack.handle_packet(h.now, &udp);
    let out = transmitted(&mut h);
    assert_eq!(out.len(), 1);
    match wire::parse(&out[0]).unwrap() {
        wire::Packet::Icmpv6 {
            dst,
            repr:
                Icmpv6Repr::DstUnreachable {
                    reason,
                    header,
                    data,
                },
            ..
        } => {
            assert_eq!(dst, CLIENT6);
            assert_eq!(reason, Icmpv6DstUnreachable::PortUnreachable);
            assert_eq!((header.src_addr, header.dst_addr), (CLIENT6, SERVER6));
            assert_eq!(data, &udp[40..], "the whole datagram is quoted");
        }
        other => panic!("not a port unreachable: {other:?}"),
    }
}

/// A Packet Too Big for the server's segment `quoted` (an IPv6 packet it sent).
fn packet_too_big(mtu: u32, quoted: &[u8]) -> Vec<u8> {
    let header = Ipv6Repr {
        src_addr: SERVER6,
        dst_addr: CLIENT6,
        next_header: wire::IpProtocol::Tcp,
        payload_len: quoted.len() - 40,
        hop_limit: 64,
    };
    icmpv6_to_server(&Icmpv6Repr::PktTooBig {
        mtu,
        header,
        data: &quoted[40..],
    })
}

//= RFC 8201 section 4
//# a node MUST reduce the size of the packets it is sending along the path
#[test]
fn a_packet_too_big_lowers_the_mss_and_resends_at_the_new_size() {
    let mut h = h6();
    let key = h.establish();
    h.stack.send(key, &vec![0x42u8; 6000]).unwrap();
    let sent = transmitted(&mut h);
    assert!(sent.len() >= 2);
    let first_len = sent[0].len();
    assert_eq!(first_len, 1500, "full-sized segments fill a 1,500-byte MTU");
    h.stack
        .handle_packet(h.now, &packet_too_big(1400, &sent[0]));
    assert_eq!(h.stack.stats().icmp_packet_too_big, 1);
    assert_eq!(h.stack.stats().path_mtu_lowered, 1);
    let resent = transmitted(&mut h);
    assert!(
        !resent.is_empty(),
        "nothing resent after the Packet Too Big"
    );
    assert!(resent.iter().all(|p| p.len() <= 1400), "too big after PMTU");
    let first = Seg::from_packet(&resent[0]).unwrap();
    assert_eq!(
        first.seq,
        h.iss + 1,
        "resent from the first unacknowledged byte"
    );
    // Below the IPv6 minimum MTU: taken as 1,280.
    h.stack
        .handle_packet(h.now, &packet_too_big(600, &resent[0]));
    let again = transmitted(&mut h);
    assert!(again.iter().all(|p| p.len() <= 1280));
    assert!(again.iter().any(|p| p.len() == 1280));
}

//= RFC 5927 section 4.1
//# the TCP sequence number contained in the payload of the ICMP error
//# message ... be checked to be within the range SND.UNA < SEG.SEQ < SND.NXT
#[test]
fn a_packet_too_big_quoting_nothing_in_flight_is_ignored() {
    let mut h = h6();
    let key = h.establish();
    h.stack.send(key, &[1u8; 3000]).unwrap();
    let sent = transmitted(&mut h);
    let mut forged = sent[0].clone();
    // A sequence number far from anything sent.
    forged[40 + 4..40 + 8].copy_from_slice(&(h.iss.wrapping_add(1 << 30)).to_be_bytes());
    h.stack.handle_packet(h.now, &packet_too_big(1280, &forged));
    assert_eq!(h.stack.stats().icmp_packet_too_big, 1);
    assert_eq!(h.stack.stats().path_mtu_lowered, 0);
    assert!(transmitted(&mut h).is_empty());
}
