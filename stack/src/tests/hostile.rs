//! Input nobody should send: bad checksums and headers, impossible
//! addresses, fragments, spoofed SYNs and floods; the budgets and
//! lifetimes that keep them bounded, and ICMP.

use super::*;

#[test]
fn bad_checksum_truncated_and_malformed_packets_are_counted_drops() {
    let mut h = h();
    h.establish();
    let mut pkt = h.data_seg(0, b"hello").packet();
    let last = pkt.len() - 1;
    pkt[last] ^= 0xff;
    h.stack.handle_packet(h.now, &pkt);
    assert_eq!(h.stack.stats().drop_bad_tcp, 1);
    let good = h.data_seg(0, b"hello").packet();
    h.stack.handle_packet(h.now, &good[..30]);
    assert!(h.stack.stats().drop_bad_ip + h.stack.stats().drop_bad_tcp >= 2);
    // A TCP option with length 1 is malformed.
    let mut bad_opt = h.data_seg(0, b"").packet();
    bad_opt[20 + 12] = 0x60; // data offset 6 words: 4 option bytes
    bad_opt.splice(40..40, [8u8, 1, 0, 0]);
    let total = bad_opt.len() as u16;
    bad_opt[2..4].copy_from_slice(&total.to_be_bytes());
    h.stack.handle_packet(h.now, &bad_opt);
    for n in 0..good.len() {
        h.stack.handle_packet(h.now, &good[..n]);
    }
    assert!(h.read_all().is_empty());
    assert_eq!(h.state(), State::Established);
}

/// `pkt` rewritten to come from `src` and go to `dst`, checksums redone.
fn readdressed(mut pkt: Vec<u8>, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    pkt[12..16].copy_from_slice(&src.octets());
    pkt[16..20].copy_from_slice(&dst.octets());
    pkt[10..12].copy_from_slice(&[0, 0]);
    let ip_sum = !crate::checksum::sum(&pkt[..20]);
    pkt[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    pkt[36..38].copy_from_slice(&[0, 0]);
    let tcp_sum = crate::checksum::tcp_checksum(src.into(), dst.into(), &pkt[20..]);
    pkt[36..38].copy_from_slice(&tcp_sum.to_be_bytes());
    pkt
}

//= RFC 1122 section 3.2.1.3
//# (a) { 0, 0 } ... MUST NOT be sent, except as a source address as part of
//# an initialization procedure
#[test]
fn syns_from_impossible_sources_or_to_broadcast_are_dropped_and_counted() {
    let mut h = h();
    let syn = Seg {
        ctl: Ctl::Syn,
        seq: CLIENT_ISN,
        win: 65535,
        mss: Some(1460),
        ..Default::default()
    };
    let server = SERVER_IP;
    let sources = [
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(240, 0, 0, 9),
    ];
    for src in sources {
        let pkt = readdressed(syn.packet(), src, server);
        h.stack.handle_packet(h.now, &pkt);
    }
    // A SYN to a broadcast or multicast address, from a fine source.
    for dst in [Ipv4Addr::BROADCAST, Ipv4Addr::new(239, 1, 2, 3)] {
        let pkt = readdressed(syn.packet(), CLIENT_IP, dst);
        h.stack.handle_packet(h.now, &pkt);
    }
    assert!(h.recv_all().is_empty(), "answered an impossible address");
    assert_eq!(
        h.stack.connection_count(),
        0,
        "a half-open connection was made"
    );
    assert_eq!(h.stack.stats().drop_bad_address, 7);
    // The same SYN from a real address is answered.
    h.send(syn);
    assert_eq!(h.recv_one().ctl, Ctl::Syn);
}

//= RFC 1122 section 3.3.2
//# A host ... MAY discard fragments; the policy is documented
#[test]
fn ip_fragments_are_refused_and_counted() {
    let mut h = h();
    h.establish();
    let mut first = h.data_seg(0, b"hello").packet();
    first[6] |= 0x20; // more fragments
    h.stack
        .handle_packet(h.now, &readdressed(first, CLIENT_IP, SERVER_IP));
    let mut later = h.data_seg(0, b"hello").packet();
    later[7] = 3; // offset 24 bytes
    h.stack
        .handle_packet(h.now, &readdressed(later, CLIENT_IP, SERVER_IP));
    assert_eq!(h.stack.stats().drop_fragment, 2);
    assert!(h.read_all().is_empty());
    assert!(h.stack.stats().counters().contains(&("drop_fragment", 2)));
}

/// `pkt` (addressed and checksummed) cut into IPv4 fragments of `size`
/// payload bytes (a multiple of 8), each with its own header checksum.
fn fragments_of(pkt: &[u8], size: usize) -> Vec<Vec<u8>> {
    let payload = &pkt[20..];
    let mut out = Vec::new();
    for (i, part) in payload.chunks(size).enumerate() {
        let mut f = pkt[..20].to_vec();
        f.extend_from_slice(part);
        let more = (i + 1) * size < payload.len();
        let field = ((i * size / 8) as u16) | if more { 0x2000 } else { 0 };
        let len = f.len() as u16;
        f[2..4].copy_from_slice(&len.to_be_bytes());
        f[6..8].copy_from_slice(&field.to_be_bytes());
        f[10..12].copy_from_slice(&[0, 0]);
        let sum = !crate::checksum::sum(&f[..20]);
        f[10..12].copy_from_slice(&sum.to_be_bytes());
        out.push(f);
    }
    out
}

//= RFC 1122 section 3.3.2
//# A host MUST be capable of receiving a datagram of 576 bytes which it
//# may receive in fragments
/// With `FragmentPolicy::Reassemble` fragments in any order make whole
/// segments, and fragments from addresses no host owns get no memory.
#[test]
fn with_reassembly_fragments_make_whole_segments() {
    let mut h = Harness::new(Config {
        fragments: crate::FragmentPolicy::LINUX_REASSEMBLY,
        ..test_config()
    });
    let syn = Seg {
        ctl: Ctl::Syn,
        seq: CLIENT_ISN,
        win: 65535,
        mss: Some(1460),
        sack_perm: true,
        ..Default::default()
    };
    let syn_pkt = readdressed(syn.packet(), CLIENT_IP, SERVER_IP);
    let mut frags = fragments_of(&syn_pkt, 16);
    assert_eq!(frags.len(), 2);
    frags.reverse();
    for f in &frags {
        h.stack.handle_packet(h.now, f);
    }
    let synack = h.recv_one();
    assert_eq!(synack.ctl, Ctl::Syn);
    assert_eq!(synack.ack, Some(CLIENT_ISN + 1));
    assert_eq!(h.stack.stats().fragments_reassembled, 1);
    assert_eq!(h.stack.stats().drop_fragment, 0);
    h.iss = synack.seq;
    h.send(h.ack_seg(CLIENT_ISN + 1, synack.seq + 1));
    let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    let seg = readdressed(h.data_seg(0, &data).packet(), CLIENT_IP, SERVER_IP);
    for f in fragments_of(&seg, 256) {
        h.stack.handle_packet(h.now, &f);
    }
    h.stack.accept(SERVER).unwrap();
    assert_eq!(h.read_all(), data);
    assert_eq!(h.stack.fragment_bytes(), 0);
    let martian = readdressed(syn.packet(), Ipv4Addr::new(224, 0, 0, 1), SERVER_IP);
    h.stack.handle_packet(h.now, &fragments_of(&martian, 8)[0]);
    assert_eq!(h.stack.fragment_bytes(), 0);
    assert_eq!(h.stack.stats().drop_bad_address, 1);
}

/// An unacceptable ACK in SYN-RECEIVED is answered with one RST, counted once.
#[test]
fn a_reset_for_an_unacceptable_ack_is_counted_once() {
    let mut h = h();
    h.send(Seg {
        ctl: Ctl::Syn,
        seq: CLIENT_ISN,
        win: 65535,
        mss: Some(1460),
        ..Default::default()
    });
    let synack = h.recv_one();
    h.send(h.ack_seg(CLIENT_ISN + 1, synack.seq + 1000));
    let rst = h.recv_one();
    assert_eq!(rst.ctl, Ctl::Rst);
    assert_eq!(h.stack.stats().resets_sent, 1);
}

/// Spoofed SYNs from many ports (no final ACK ever comes): each gets the
/// SYN-ACK and `synack_retries` retransmissions, Linux's count, then its
/// half-open entry is gone. None outlives the retries.
#[test]
fn half_open_connections_get_five_synack_retries_then_expire() {
    let mut h = h();
    let spoofed = 300u16;
    for i in 0..spoofed {
        let syn = Seg {
            ctl: Ctl::Syn,
            seq: CLIENT_ISN + u32::from(i) * 1000,
            win: 65535,
            mss: Some(1460),
            ..Default::default()
        };
        let mut pkt = syn.packet();
        pkt[20..22].copy_from_slice(&(10_000 + i).to_be_bytes());
        let pkt = readdressed(pkt, CLIENT_IP, SERVER_IP);
        h.stack.handle_packet(h.now, &pkt);
    }
    assert_eq!(h.stack.connection_count(), usize::from(spoofed));
    let start = h.now;
    let mut synacks = h.recv_all().len();
    while let Some(t) = h.stack.poll_timeout() {
        if t > start + Duration::from_secs(600) {
            break;
        }
        h.now = t.max(h.now);
        h.stack.handle_timeout(h.now);
        synacks += h.recv_all().iter().filter(|s| s.ctl == Ctl::Syn).count();
    }
    assert_eq!(h.stack.connection_count(), 0, "half-open entries left");
    assert_eq!(
        synacks,
        usize::from(spoofed) * 6,
        "SYN-ACKs per spoofed SYN: 1 + 5"
    );
    let took = h.now.total_millis() - start.total_millis();
    assert!(
        (60_000..=70_000).contains(&took),
        "the last entry went after {took} ms (Linux: about 63 s)"
    );
}

fn spoofed_syn(port: u16) -> Vec<u8> {
    let syn = Seg {
        ctl: Ctl::Syn,
        seq: CLIENT_ISN,
        win: 65535,
        mss: Some(1460),
        ..Default::default()
    };
    let mut pkt = syn.packet();
    pkt[20..22].copy_from_slice(&port.to_be_bytes());
    readdressed(pkt, CLIENT_IP, SERVER_IP)
}

/// A backup never sends the SYN-ACK whose retransmissions would end a
/// half-open connection, and the primary's end of it reaches backups through
/// the log only for connections logged as opened, which half-open ones never
/// are. So a half-open entry has a lifetime of its own in every role: the
/// primary's SYN-ACK schedule and one initial RTO more. Without it a burst
/// of spoofed SYNs filled a backup's backlog for good, and the primary
/// (which answers a SYN only when its backups hold it) accepted nothing.
#[test]
fn a_backups_half_open_entries_expire_and_free_the_backlog() {
    let mut h = Harness::new(Config {
        syn_backlog: 8,
        ..test_config()
    });
    h.stack.set_role(h.now, Role::Backup);
    let start = h.now;
    for port in 0..8u16 {
        h.stack.handle_packet(h.now, &spoofed_syn(41_000 + port));
    }
    assert_eq!(h.stack.connection_count(), 8);
    h.stack.handle_packet(h.now, &spoofed_syn(42_000));
    assert_eq!(h.stack.stats().drop_syn_overflow, 1, "the backlog is full");
    while let Some(at) = h.stack.poll_timeout() {
        if at > start + Duration::from_secs(600) {
            break;
        }
        h.now = at;
        h.stack.handle_timeout(at);
    }
    assert_eq!(h.stack.connection_count(), 0, "half-open entries remain");
    assert_eq!(h.stack.stats().half_open_expired, 8);
    assert_eq!(
        (h.now - start).total_millis(),
        64_000,
        "63 s + one initial RTO"
    );
    assert!(h.recv_all().is_empty(), "a backup sends nothing");
    h.stack.handle_packet(h.now, &spoofed_syn(42_001));
    assert_eq!(h.stack.connection_count(), 1, "the backlog has room again");
}

/// A primary answers a SYN only once its backups hold it; if they never
/// confirm it, the entry still ends.
#[test]
fn a_primary_whose_backups_never_confirm_a_syn_forgets_it() {
    let mut h = h();
    h.stack.set_role(h.now, Role::Primary);
    h.stack.handle_packet(h.now, &spoofed_syn(43_000));
    assert!(
        h.recv_all().is_empty(),
        "no SYN-ACK before the backups hold the SYN"
    );
    assert_eq!(h.stack.connection_count(), 1);
    let deadline = h
        .stack
        .poll_timeout()
        .expect("a half-open entry has a timer");
    h.now = deadline;
    h.stack.handle_timeout(deadline);
    assert_eq!(h.stack.connection_count(), 0);
    assert_eq!(h.stack.stats().half_open_expired, 1);
}

#[test]
fn the_half_open_lifetime_does_not_touch_established_connections() {
    let mut h = h();
    h.establish();
    h.advance(Duration::from_secs(3600));
    assert_eq!(h.state(), State::Established);
    assert_eq!(h.stack.stats().half_open_expired, 0);
}

//= RFC 4987 section 3.6
//# SYN cookies ... the state is encoded in the initial sequence number
/// Half-open connections are bounded over all listeners too: a flood
/// spread over ports meets the same bound and gets cookies beyond it.
#[test]
fn half_open_connections_are_bounded_over_all_listeners() {
    let mut h = Harness::new(Config {
        max_half_open: 2,
        ..test_config()
    });
    for port in [81u16, 82] {
        h.stack.listen(SocketAddr::from((SERVER_IP, port))).unwrap();
    }
    let syn = Seg {
        ctl: Ctl::Syn,
        seq: 77,
        mss: Some(1460),
        ..Default::default()
    };
    for (i, port) in [SERVER.port(), 81, 82].into_iter().enumerate() {
        let mut pkt = syn.packet();
        pkt[20..22].copy_from_slice(&(40_000 + i as u16).to_be_bytes());
        pkt[22..24].copy_from_slice(&port.to_be_bytes());
        let pkt = readdressed(pkt, CLIENT_IP, SERVER_IP);
        h.stack.handle_packet(h.now, &pkt);
    }
    assert_eq!(h.recv_all().len(), 3, "every SYN is answered");
    assert_eq!(
        h.stack.connection_count(),
        2,
        "state for two, a cookie for the third"
    );
    assert_eq!(h.stack.stats().syn_cookies_sent, 1);
}

#[test]
fn syn_flood_falls_back_to_cookies() {
    let mut cfg = test_config();
    cfg.syn_backlog = 1;
    let mut h = Harness::new(cfg);
    // Fill the backlog with a half-open connection from another port.
    let mut other = Seg {
        ctl: Ctl::Syn,
        seq: 1,
        mss: Some(1460),
        ..Default::default()
    }
    .packet();
    other[20..22].copy_from_slice(&40001u16.to_be_bytes());
    let mut p = smoltcp::wire::TcpPacket::new_unchecked(&mut other[20..]);
    p.fill_checksum(&(CLIENT_IP).into(), &(SERVER_IP).into());
    h.stack.handle_packet(h.now, &other);
    h.recv_all();
    h.send(Seg {
        ctl: Ctl::Syn,
        seq: CLIENT_ISN,
        win: 65535,
        mss: Some(1460),
        sack_perm: true,
        ..Default::default()
    });
    let synack = h.recv_one();
    assert_eq!(h.stack.stats().syn_cookies_sent, 1);
    assert!(
        h.stack.conn_info(h.key).is_none(),
        "no state kept for a cookie SYN-ACK"
    );
    h.send(Seg {
        seq: CLIENT_ISN + 1,
        ack: Some(synack.seq + 1),
        win: 1024,
        payload: b"hi".to_vec(),
        ..Default::default()
    });
    assert_eq!(h.stack.stats().syn_cookies_accepted, 1);
    assert_eq!(h.stack.accept(SERVER), Some(h.key));
    assert_eq!(h.read_all(), b"hi");
    // A forged cookie is refused with a RST.
    let mut forged = Seg {
        seq: 77,
        ack: Some(synack.seq.wrapping_add(12345)),
        win: 1,
        ..Default::default()
    }
    .packet();
    forged[20..22].copy_from_slice(&40002u16.to_be_bytes());
    let mut p = smoltcp::wire::TcpPacket::new_unchecked(&mut forged[20..]);
    p.fill_checksum(&(CLIENT_IP).into(), &(SERVER_IP).into());
    h.stack.handle_packet(h.now, &forged);
    assert_eq!(h.stack.stats().syn_cookies_rejected, 1);
}

#[test]
fn icmp_echo_is_answered() {
    use smoltcp::wire::Icmpv4Repr;
    let mut h = h();
    let req = Icmpv4Repr::EchoRequest {
        ident: 7,
        seq_no: 3,
        data: b"ping",
    };
    let mut buf = vec![0u8; 64];
    let n = wire::emit_icmp(&mut buf, CLIENT_IP, SERVER_IP, 64, &req).unwrap();
    h.stack.handle_packet(h.now, &buf[..n]);
    let mut out = vec![0u8; 128];
    let n = h.stack.poll_transmit(h.now, &mut out).expect("echo reply");
    match wire::parse(&out[..n]).unwrap() {
        wire::Packet::Icmp {
            dst,
            repr:
                Icmpv4Repr::EchoReply {
                    ident,
                    seq_no,
                    data,
                },
            ..
        } => {
            assert_eq!((dst, ident, seq_no, data), (CLIENT_IP, 7, 3, &b"ping"[..]));
        }
        other => panic!("unexpected {other:?}"),
    }
}
