//! One connection's life segment by segment: handshake and options,
//! data and acknowledgements, RFC 5961's and RFC 7323's checks, closing,
//! retransmission and persist timers, Nagle.

use super::*;

#[test]
fn handshake_negotiates_options() {
    let mut h = h();
    h.send(Seg {
        ctl: Ctl::Syn,
        seq: CLIENT_ISN,
        win: 65535,
        mss: Some(1400),
        ws: Some(7),
        sack_perm: true,
        ts: Some((100, 0)),
        ..Default::default()
    });
    let synack = h.recv_one();
    assert_eq!(synack.ctl, Ctl::Syn);
    assert_eq!(synack.ack, Some(CLIENT_ISN + 1));
    assert_eq!(synack.mss, Some(1460));
    assert!(synack.ws.is_some());
    assert!(synack.sack_perm);
    assert_eq!(
        synack.ts.map(|t| t.1),
        Some(100),
        "SYN-ACK echoes the client's TSval"
    );
    assert_eq!(
        h.stack.accept(SERVER),
        None,
        "not acceptable before the final ACK"
    );
    h.send(h.ack_seg(CLIENT_ISN + 1, synack.seq + 1));
    assert_eq!(h.stack.accept(SERVER), Some(h.key));
    assert_eq!(h.state(), State::Established);
}

//= RFC 6528 section 3
//# ISN = M + F(localip, localport, remoteip, remoteport, secretkey)
#[test]
fn replicas_with_one_key_choose_the_same_isn() {
    let mut a = h();
    let mut b = h();
    a.establish();
    b.establish();
    assert_eq!(a.iss, b.iss);
    let mut cfg = test_config();
    cfg.isn_key = [7; 16];
    let mut c = Harness::new(cfg);
    c.establish();
    assert_ne!(a.iss, c.iss, "a different key must give a different ISN");
}

//= RFC 6528 section 3
//# The secret key ... SHOULD be of at least 128 bits
#[test]
fn two_stacks_started_the_same_way_choose_different_isns() {
    let mut a = Harness::new(Config::default());
    let mut b = Harness::new(Config::default());
    a.establish();
    b.establish();
    assert_eq!(a.key, b.key, "the same 4-tuple");
    assert_ne!(a.iss, b.iss, "ISNs a reader of the source could predict");
}

#[test]
fn in_order_data_is_delivered_and_acked_every_second_segment() {
    let mut h = h();
    h.establish();
    h.send(h.data_seg(0, &[1u8; 1000]));
    assert!(
        h.recv_all().is_empty(),
        "first segment waits for the delayed ACK"
    );
    h.send(h.data_seg(1000, &[2u8; 1000]));
    let ack = h.recv_one();
    assert_eq!(ack.ack, Some(CLIENT_ISN + 1 + 2000));
    let data = h.read_all();
    assert_eq!(data.len(), 2000);
    assert!(data[..1000].iter().all(|&b| b == 1) && data[1000..].iter().all(|&b| b == 2));
}

/// A coalesced segment (receive offload, GRO) carrying several full-sized
/// segments is acknowledged at once, as they would have been: counted as
/// one, the last of a burst waited for the delayed-ACK timer.
#[test]
fn a_coalesced_segment_of_several_full_segments_is_acked_at_once() {
    let mut h = h();
    h.establish();
    h.send(h.data_seg(0, &[3u8; 4 * 1460]));
    assert_eq!(h.recv_one().ack, Some(CLIENT_ISN + 1 + 4 * 1460));
}

#[test]
fn delayed_ack_fires_after_timeout() {
    let mut h = h();
    h.establish();
    h.send(h.data_seg(0, b"x"));
    assert!(h.recv_all().is_empty());
    h.advance(Duration::from_millis(41));
    assert_eq!(h.recv_one().ack, Some(CLIENT_ISN + 2));
}

//= RFC 2018 section 4
//# the first SACK block MUST specify the contiguous block of data containing the segment
//# which triggered this ACK
/// The stack-wide budget for out-of-order bytes holds whatever the
/// per-connection limit allows, and in-order data still gets through.
#[test]
fn out_of_order_bytes_stay_within_the_stack_wide_budget() {
    let mut h = Harness::new(Config {
        ooo_budget: 3000,
        ..test_config()
    });
    h.establish();
    for i in 1..=6u32 {
        h.send(h.data_seg(i * 2000, &[7u8; 1000]));
        h.recv_all();
    }
    assert!(
        h.stack.out_of_order_bytes() <= 3000,
        "{}",
        h.stack.out_of_order_bytes()
    );
    assert_eq!(h.stack.out_of_order_bytes(), 3000);
    assert_eq!(h.stack.stats().drop_ooo_budget, 3);
    // In order, always taken.
    h.send(h.data_seg(0, &[1u8; 1000]));
    assert_eq!(h.read_all().len(), 1000);
}

#[test]
fn out_of_order_data_gets_immediate_dup_ack_with_sack() {
    let mut h = h();
    h.establish();
    h.send(h.data_seg(100, &[9u8; 50]));
    let ack = h.recv_one();
    assert_eq!(ack.ack, Some(CLIENT_ISN + 1));
    assert_eq!(ack.sacks, vec![(CLIENT_ISN + 101, CLIENT_ISN + 151)]);
    h.send(h.data_seg(0, &[8u8; 100]));
    let ack = h.recv_one();
    assert_eq!(
        ack.ack,
        Some(CLIENT_ISN + 151),
        "hole filled: cumulative ACK covers both"
    );
    assert!(ack.sacks.is_empty());
    assert_eq!(h.read_all().len(), 150);
}

#[test]
fn out_of_order_bytes_do_not_move_the_right_edge_left() {
    // Two backups hold the same bytes in order; one also holds bytes past
    // a hole. Both must report the same right edge: the one with fewer
    // bytes may become primary after the other advertised its edge.
    let backup = || {
        let mut b = h();
        b.stack.set_role(b.now, Role::Backup);
        b.establish_silently();
        b.send(b.data_seg(0, &[1u8; 100]));
        b
    };
    let mut plain = backup();
    let mut holding = backup();
    holding.send(holding.data_seg(1000, &[2u8; 1400]));
    let (held, edge, _) = plain.stack.receive_progress(plain.key).unwrap();
    let (held_too, edge_too, _) = holding.stack.receive_progress(holding.key).unwrap();
    assert_eq!(held, held_too);
    assert_eq!(
        edge_too, edge,
        "out-of-order bytes moved the right edge left"
    );
}

//= RFC 9293 section 3.7.1
//# the TCP sender SHOULD reduce the segment size by the TCP options length
#[test]
fn data_segments_carrying_sack_blocks_still_fit_the_peers_mss() {
    let mut h = h();
    h.establish();
    h.send(Seg {
        win: 65535,
        ..h.ack_seg(CLIENT_ISN + 1, h.iss + 1)
    });
    // Three holes in what the client sent: every segment we send carries
    // SACK blocks (2 + 8 per block) besides the timestamps.
    for off in [100, 300, 500] {
        h.send(h.data_seg(off, &[9u8; 50]));
    }
    h.recv_all();
    h.stack.send(h.key, &vec![7u8; 8 * 1460]).unwrap();
    let mut buf = vec![0u8; 70000];
    let mut sent = 0;
    while let Some(n) = h.stack.poll_transmit(h.now, &mut buf) {
        let seg = Seg::from_packet(&buf[..n]).unwrap();
        assert_eq!(seg.sacks.len(), 3, "the segments report the holes");
        // IP (20) and TCP (20) headers plus at most the MSS of 1460.
        assert!(n <= 1500, "a {n}-byte packet for an MSS of 1460");
        sent += seg.payload.len();
    }
    assert!(
        sent >= 4 * 1400,
        "the initial window went out ({sent} bytes)"
    );
}

//= RFC 5961 section 3.2
//# If the RST bit is set and the sequence number exactly matches the next expected sequence
//# number (RCV.NXT), then TCP MUST reset the connection.
#[test]
fn rst_at_rcv_nxt_resets() {
    let mut h = h();
    h.establish();
    h.send(Seg {
        ctl: Ctl::Rst,
        seq: CLIENT_ISN + 1,
        ..Default::default()
    });
    assert_eq!(h.state(), State::Closed);
    let mut buf = [0u8; 8];
    assert_eq!(
        h.stack.recv(h.key, &mut buf),
        Err(crate::iface::RecvError::Reset)
    );
    assert!(h.stack.poll_event().is_some());
}

//= RFC 5961 section 3.2
//# If the RST bit is set and the sequence number does not exactly match the next expected
//# sequence value, yet is within the current receive window, TCP MUST send an
//# acknowledgment (challenge ACK)
#[test]
fn in_window_rst_gets_challenge_ack() {
    let mut h = h();
    h.establish();
    h.send(Seg {
        ctl: Ctl::Rst,
        seq: CLIENT_ISN + 500,
        ..Default::default()
    });
    assert_eq!(h.state(), State::Established);
    let ack = h.recv_one();
    assert_eq!(ack.ctl, Ctl::None);
    assert_eq!(ack.ack, Some(CLIENT_ISN + 1));
    assert_eq!(h.stack.stats().challenge_acks, 1);
}

#[test]
fn out_of_window_rst_is_dropped_silently() {
    let mut h = h();
    h.establish();
    h.send(Seg {
        ctl: Ctl::Rst,
        seq: CLIENT_ISN.wrapping_add(1 << 30),
        ..Default::default()
    });
    assert_eq!(h.state(), State::Established);
    assert!(h.recv_all().is_empty());
}

//= RFC 5961 section 4.2
//# ... if the SYN bit is set, irrespective of the sequence number, TCP MUST send an ACK
//# (also referred to as challenge ACK) to the remote peer
#[test]
fn syn_in_established_gets_challenge_ack() {
    let mut h = h();
    h.establish();
    h.send(Seg {
        ctl: Ctl::Syn,
        seq: CLIENT_ISN + 10,
        ts: Some((300, 0)),
        ..Default::default()
    });
    assert_eq!(h.state(), State::Established);
    let ack = h.recv_one();
    assert_eq!(ack.ack, Some(CLIENT_ISN + 1));
    assert_eq!(h.stack.stats().challenge_acks, 1);
}

//= RFC 5961 section 5.2
//# All incoming segments whose ACK value doesn't satisfy the above condition MUST be
//# discarded and an ACK sent back.
#[test]
fn ack_above_snd_nxt_is_discarded_with_challenge_ack() {
    let mut h = h();
    h.establish();
    let mut seg = h.data_seg(0, b"evil");
    seg.ack = Some(h.iss + 1 + 100_000);
    h.send(seg);
    assert_eq!(h.recv_one().ack, Some(CLIENT_ISN + 1));
    assert!(
        h.read_all().is_empty(),
        "data of a segment with a bad ACK is not accepted"
    );
    assert_eq!(h.stack.stats().challenge_acks, 1);
}

//= RFC 7323 section 5.3
//# If there is a Timestamps option in the arriving segment, SEG.TSval < TS.Recent, ...
//# then treat the arriving segment as not acceptable
#[test]
fn old_timestamp_is_rejected_by_paws() {
    let mut h = h();
    h.establish();
    let mut seg = h.data_seg(0, b"new");
    seg.ts = Some((500, 1));
    h.send(seg);
    h.recv_all();
    let mut old = h.data_seg(3, b"old");
    old.ts = Some((400, 1));
    h.send(old);
    assert_eq!(h.stack.stats().drop_paws, 1);
    assert_eq!(
        h.recv_one().ack,
        Some(CLIENT_ISN + 4),
        "PAWS drop answers with an ACK"
    );
    assert_eq!(h.read_all(), b"new");
}

#[test]
fn segment_for_closed_port_gets_rst() {
    let mut h = h();
    let mut seg = Seg {
        ctl: Ctl::Syn,
        seq: 5,
        ..Default::default()
    };
    seg.payload.clear();
    let mut pkt = seg.packet();
    pkt[22..24].copy_from_slice(&81u16.to_be_bytes()); // dst port 81
    pkt[36..38].copy_from_slice(&[0, 0]);
    let mut p = smoltcp::wire::TcpPacket::new_unchecked(&mut pkt[20..]);
    p.fill_checksum(
        &smoltcp::wire::IpAddress::Ipv4(SERVER_IP),
        &smoltcp::wire::IpAddress::Ipv4(CLIENT_IP),
    );
    // Recompute with the right address order (src = client).
    p.fill_checksum(
        &smoltcp::wire::IpAddress::Ipv4(CLIENT_IP),
        &smoltcp::wire::IpAddress::Ipv4(SERVER_IP),
    );
    h.stack.handle_packet(h.now, &pkt);
    let rst = h.recv_one();
    assert_eq!(rst.ctl, Ctl::Rst);
    assert_eq!(rst.ack, Some(6));
}

#[test]
fn peer_fin_then_close_goes_through_close_wait_and_last_ack() {
    let mut h = h();
    h.establish();
    let mut fin = h.data_seg(0, b"bye");
    fin.ctl = Ctl::Fin;
    h.send(fin);
    assert_eq!(h.state(), State::CloseWait);
    assert_eq!(h.recv_one().ack, Some(CLIENT_ISN + 5));
    assert_eq!(h.read_all(), b"bye");
    let mut buf = [0u8; 4];
    assert_eq!(h.stack.recv(h.key, &mut buf), Ok(0), "end of stream");
    h.stack.close(h.key);
    let our_fin = h.recv_one();
    assert_eq!(our_fin.ctl, Ctl::Fin);
    assert_eq!(h.state(), State::LastAck);
    h.send(h.ack_seg(CLIENT_ISN + 5, h.iss + 2));
    assert!(h.stack.conn_info(h.key).is_none(), "freed after LAST-ACK");
}

#[test]
fn active_close_reaches_time_wait_and_expires() {
    let mut h = h();
    h.establish();
    h.stack.close(h.key);
    assert_eq!(h.recv_one().ctl, Ctl::Fin);
    assert_eq!(h.state(), State::FinWait1);
    h.send(h.ack_seg(CLIENT_ISN + 1, h.iss + 2));
    assert_eq!(h.state(), State::FinWait2);
    h.send(Seg {
        ctl: Ctl::Fin,
        ..h.ack_seg(CLIENT_ISN + 1, h.iss + 2)
    });
    assert_eq!(h.state(), State::TimeWait);
    assert_eq!(h.recv_one().ack, Some(CLIENT_ISN + 2));
    h.advance(Duration::from_secs(61));
    assert!(h.stack.conn_info(h.key).is_none());
}

//= RFC 6298 section 5
//# (5.4) Retransmit the earliest segment that has not been acknowledged by the TCP receiver.
//# (5.5) The host MUST set RTO <- RTO * 2 ("back off the timer").
#[test]
fn rto_retransmits_and_backs_off() {
    let mut h = h();
    h.establish();
    h.stack.send(h.key, b"data").unwrap();
    let first = h.recv_one();
    assert_eq!(first.payload, b"data");
    let rto1 = h.stack.poll_timeout().unwrap() - h.now;
    h.advance(rto1);
    let again = h.recv_one();
    assert_eq!(again.seq, first.seq);
    assert_eq!(again.payload, b"data");
    let rto2 = h.stack.poll_timeout().unwrap() - h.now;
    assert!(
        rto2 >= rto1.saturating_mul(2) - Duration::from_millis(1),
        "{rto2} vs {rto1}"
    );
    assert_eq!(h.stack.stats().rto_expirations, 1);
}

//= RFC 5681 section 3.2
//# The fast retransmit algorithm uses the arrival of 3 duplicate ACKs ... as an indication
//# that a segment has been lost.
#[test]
fn three_dup_acks_trigger_fast_retransmit() {
    let mut h = h();
    h.establish();
    h.send(Seg {
        win: 65535,
        ..h.ack_seg(CLIENT_ISN + 1, h.iss + 1)
    });
    let data = vec![7u8; 8 * 1448];
    h.stack.send(h.key, &data).unwrap();
    let segs = h.recv_all();
    assert!(segs.len() >= 4, "initial window sends several segments");
    let una = h.iss + 1;
    for i in 0..3 {
        let mut d = h.ack_seg(CLIENT_ISN + 1, una);
        d.win = 65535;
        d.sacks = vec![(una + 1448, una + 1448 * (i + 2))];
        h.send(d);
    }
    let out = h.recv_all();
    assert!(
        out.iter().any(|s| s.seq == una && !s.payload.is_empty()),
        "first segment resent: {out:?}"
    );
    assert_eq!(h.stack.stats().fast_retransmits, 1);
}

#[test]
fn zero_window_is_probed_by_the_persist_timer() {
    let mut h = h();
    h.establish();
    h.send(Seg {
        win: 0,
        ..h.ack_seg(CLIENT_ISN + 1, h.iss + 1)
    });
    h.stack.send(h.key, b"waiting").unwrap();
    assert!(h.recv_all().is_empty(), "nothing fits a zero window");
    let deadline = h.stack.poll_timeout().expect("persist timer armed");
    h.now = deadline;
    h.stack.handle_timeout(h.now);
    let probe = h.recv_one();
    assert_eq!(probe.payload.len(), 1);
    assert_eq!(probe.seq, h.iss + 1);
}

//= RFC 1122 section 4.2.2.17
//# the sending TCP MUST allow the connection to stay open as long as the
//# receiving TCP continues to send acknowledgments in response to the probe
#[test]
fn a_zero_window_answered_for_longer_than_the_retransmission_limit_keeps_the_connection() {
    let mut h = h();
    h.establish();
    let zero = Seg {
        win: 0,
        ..h.ack_seg(CLIENT_ISN + 1, h.iss + 1)
    };
    h.send(zero.clone());
    h.stack.send(h.key, b"waiting").unwrap();
    assert!(h.recv_all().is_empty(), "nothing fits a zero window");
    // Well past max_retransmissions backed-off timeouts (about 15 minutes).
    let end = h.now + Duration::from_secs(3600);
    let mut probes = 0;
    while h.now < end {
        let deadline = h
            .stack
            .poll_timeout()
            .expect("a probe timer while the window is closed");
        h.now = deadline.max(h.now);
        h.stack.handle_timeout(h.now);
        for seg in h.recv_all() {
            assert_ne!(seg.ctl, Ctl::Rst, "reset after {probes} answered probes");
            probes += 1;
            // The receiver answers every probe: still no room.
            h.send(zero.clone());
        }
        assert_eq!(
            h.state(),
            State::Established,
            "dropped after {probes} answered probes"
        );
    }
    assert!(probes > 16, "only {probes} probes in an hour");
    // The window opens: the data goes, the connection is whole.
    h.send(Seg {
        win: 1024,
        ..h.ack_seg(CLIENT_ISN + 1, h.iss + 1)
    });
    let sent: Vec<u8> = h.recv_all().into_iter().flat_map(|s| s.payload).collect();
    assert_eq!(sent, b"waiting");
    assert_eq!(h.state(), State::Established);
}

#[test]
fn nagle_holds_small_segments_until_acked_unless_nodelay() {
    let mut h = h();
    h.establish();
    h.send(Seg {
        win: 65535,
        ..h.ack_seg(CLIENT_ISN + 1, h.iss + 1)
    });
    h.stack.send(h.key, b"a").unwrap();
    assert_eq!(h.recv_one().payload, b"a");
    h.stack.send(h.key, b"b").unwrap();
    assert!(
        h.recv_all().is_empty(),
        "Nagle holds a small segment while data is outstanding"
    );
    h.stack.set_nodelay(h.key, true);
    assert_eq!(h.recv_one().payload, b"b");
}

#[test]
fn the_window_after_a_syn_ack_never_exceeds_the_buffer() {
    // Found by the group simulator: the SYN-ACK's unscaled window was
    // recorded as if scaled, so later ACKs offered up to 65535 << shift.
    let mut s = h();
    s.send(client_syn());
    let synack = s.recv_one();
    let shift = u32::from(synack.ws.expect("window scaling negotiated"));
    s.iss = synack.seq;
    s.send(s.ack_seg(CLIENT_ISN + 1, synack.seq + 1));
    s.stack.accept(SERVER).expect("established");
    s.send(s.data_seg(0, &[1u8; 100]));
    s.send(s.data_seg(100, &[1u8; 100]));
    let cap = test_config().recv_buffer as u64;
    for seg in s.recv_all() {
        let offered = u64::from(seg.win) << shift;
        assert!(
            offered <= cap,
            "offered {offered} bytes of window with a {cap}-byte buffer"
        );
    }
}
