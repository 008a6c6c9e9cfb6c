//! The stack in a group: backups that send nothing, primaries that gate
//! their acknowledgements, take-over, connection transfer and fills.

use super::*;

#[test]
fn a_connection_taken_out_and_imported_carries_on_mid_transfer() {
    let mut a = h();
    a.establish();
    a.send(a.data_seg(0, b"first half "));
    a.stack.send(a.key, b"reply-1").unwrap();
    let sent = a.recv_all();
    assert!(sent.iter().any(|s| s.payload == b"reply-1"));
    let snap = a.stack.take_connection(a.key).unwrap();
    let bytes = snap.encode();
    let snap2 = crate::tcp::snapshot::ConnSnapshot::decode(&bytes).unwrap();
    assert_eq!(snap, snap2);
    assert!(a.stack.conn_info(a.key).is_none());
    assert!(a.recv_all().is_empty(), "export is silent: no RST, no FIN");

    let mut b = Harness::new(test_config());
    b.iss = a.iss;
    b.now = a.now;
    b.stack.import(b.now, snap2).unwrap();
    b.recv_all();
    b.send(b.data_seg(11, b"second half"));
    assert_eq!(b.read_all(), b"first half second half");
    // Unacknowledged output is retransmitted by the new stack.
    b.advance(Duration::from_secs(2));
    let out = b.recv_all();
    assert!(out.iter().any(|s| s.payload == b"reply-1"), "{out:?}");
}

/// Gate a primary at the client's first byte (no member confirmed any),
/// with a 64 KiB window; returns that first byte's sequence number.
fn gate_at_the_start(p: &mut Harness) -> Seq {
    let start = Seq(CLIENT_ISN + 1);
    p.stack.set_gate(
        p.key,
        Some(Gate {
            ack: start,
            right_edge: start + 65535u32,
        }),
    );
    start
}

#[test]
fn backup_sends_nothing_and_primary_gates_acks() {
    let mut p = h();
    let mut b = h();
    b.stack.set_role(b.now, Role::Backup);
    p.stack.set_role(p.now, Role::Primary);
    p.establish();
    // The backup sees the same client packets; it never answers.
    b.send(client_syn());
    assert!(b.recv_all().is_empty());
    b.iss = p.iss;
    b.send(b.ack_seg(CLIENT_ISN + 1, p.iss + 1));
    assert!(b.stack.accept(SERVER).is_some());
    // Gate the primary at the start: data arrives but the ACK stays at the gate.
    let start = gate_at_the_start(&mut p);
    p.send(p.data_seg(0, &[5u8; 1000]));
    p.send(p.data_seg(1000, &[5u8; 1000]));
    let acks = p.recv_all();
    assert!(
        acks.iter().all(|s| s.ack == Some(CLIENT_ISN + 1)),
        "{acks:?}"
    );
    // The backup confirms: raising the gate makes the primary ACK at once.
    p.stack.set_gate(
        p.key,
        Some(Gate {
            ack: start + 2000u32,
            right_edge: start + 65535u32,
        }),
    );
    assert_eq!(p.recv_one().ack, Some(CLIENT_ISN + 2001));
    b.send(b.data_seg(0, &[5u8; 1000]));
    assert!(b.recv_all().is_empty());
    assert_eq!(b.stack.receive_progress(b.key).unwrap().0, start + 1000u32);
}

/// A backup that lost the client's handshake ACK holds a half-open copy;
/// the primary's "opened" record completes it, so it confirms the
/// client's bytes at once instead of at the client's retransmission.
#[test]
fn a_backup_that_missed_the_handshake_ack_is_completed_by_the_open_record() {
    let mut p = h();
    let mut b = h();
    b.stack.set_role(b.now, Role::Backup);
    p.stack.set_role(p.now, Role::Primary);
    p.establish();
    let record = p.stack.open_record(p.key).expect("the primary's record");
    b.send(client_syn());
    assert!(b.recv_all().is_empty());
    assert_eq!(b.state(), State::SynReceived, "the ACK's copy was lost");
    // Data while half-open and before the record: not confirmed.
    b.iss = p.iss;
    let mut early = b.data_seg(0, b"early");
    early.ack = None;
    b.send(early);
    assert_eq!(
        b.stack.receive_progress(b.key).map(|p| p.0),
        Some(Seq(CLIENT_ISN + 1))
    );

    assert!(b.stack.complete_half_open(&record));
    assert_eq!(b.state(), State::Established);
    assert_eq!(b.stack.accept(SERVER), Some(b.key));
    assert_eq!(b.stack.stats().half_open_completed, 1);
    b.send(b.data_seg(0, &[7u8; 1000]));
    assert_eq!(
        b.stack.receive_progress(b.key).unwrap().0,
        Seq(CLIENT_ISN + 1001),
        "the completed copy confirms the client's bytes"
    );
    assert!(b.recv_all().is_empty(), "a backup still sends nothing");
    // Another incarnation's record, or an established copy, is left alone.
    assert!(!b.stack.complete_half_open(&record));
    let mut other = record;
    other.irs = other.irs + 5u32;
    let mut c = h();
    c.stack.set_role(c.now, Role::Backup);
    c.send(client_syn());
    assert!(!c.stack.complete_half_open(&other));
    assert_eq!(c.state(), State::SynReceived);
}

#[test]
fn backup_promoted_retransmits_unacked_output_and_acks_at_once() {
    let mut b = h();
    b.stack.set_role(b.now, Role::Backup);
    b.send(client_syn());
    let iss = crate::tcp::isn::server_isn(&test_config().isn_key, SERVER, CLIENT, CLIENT_ISN);
    b.iss = iss;
    b.send(b.ack_seg(CLIENT_ISN + 1, iss + 1));
    let key = b.stack.accept(SERVER).unwrap();
    b.stack.send(key, b"0123456789").unwrap();
    // The client acknowledged 4 bytes the primary sent.
    b.send(Seg {
        win: 1024,
        ..b.ack_seg(CLIENT_ISN + 1, iss + 5)
    });
    assert!(b.recv_all().is_empty());
    b.stack.set_role(b.now, Role::Primary);
    let out = b.recv_all();
    assert!(
        out.iter()
            .any(|s| s.seq == iss + 5 && s.payload == b"456789"),
        "{out:?}"
    );
    assert!(out.iter().all(|s| s.ack == Some(CLIENT_ISN + 1)));
    assert!(
        out.iter().all(|s| s.ts.unwrap().0 >= 1),
        "timestamps jump forward"
    );
}

#[test]
fn backup_accepts_acks_for_output_its_application_has_not_written_yet() {
    let mut b = h();
    b.stack.set_role(b.now, Role::Backup);
    b.send(Seg {
        ctl: Ctl::Syn,
        seq: CLIENT_ISN,
        win: 65535,
        mss: Some(1460),
        ..Default::default()
    });
    let iss = crate::tcp::isn::server_isn(&test_config().isn_key, SERVER, CLIENT, CLIENT_ISN);
    b.send(Seg {
        seq: CLIENT_ISN + 1,
        ack: Some(iss + 1),
        win: 1024,
        ..Default::default()
    });
    let key = b.stack.accept(SERVER).unwrap();
    b.send(Seg {
        seq: CLIENT_ISN + 1,
        ack: Some(iss + 7),
        win: 1024,
        ..Default::default()
    });
    assert_eq!(b.stack.stats().challenge_acks, 0);
    b.stack.send(key, b"abcdefghij").unwrap();
    assert_eq!(
        b.stack.conn_info(key).unwrap().send_queued,
        4,
        "the 6 acknowledged bytes are not kept"
    );
    let _ = Event::Closed(key);
}

//= docs/design.md rule 2
//# So any byte the client has seen acknowledged is held by every live replica.
#[test]
fn primary_acknowledges_nothing_before_a_gate_is_set() {
    let mut p = h();
    p.stack.set_role(p.now, Role::Primary);
    p.establish();
    p.send(p.data_seg(0, &[1u8; 1000]));
    p.advance(Duration::from_millis(500));
    let out = p.recv_all();
    assert!(out.iter().all(|s| s.ack == Some(CLIENT_ISN + 1)), "{out:?}");
    // Nor is the byte delivered to the application before the log commits it.
    let mut buf = [0u8; 10];
    assert_eq!(
        p.stack.recv(p.key, &mut buf),
        Err(crate::iface::RecvError::WouldBlock)
    );
}

/// Sweep seed 302386: the backup lost the client's segment acknowledging
/// the old primary's last output, then took over before its application
/// wrote that output. The client's ACKs are above anything the new primary
/// sent; answering each with a challenge ACK deadlocked the connection.
#[test]
fn promoted_backup_accepts_acks_for_output_the_old_primary_sent() {
    let mut b = h();
    b.stack.set_role(b.now, Role::Backup);
    let key = b.establish_silently();
    b.stack.set_role(b.now, Role::Primary);
    b.recv_all();
    // The old primary had sent 6 bytes; the client acknowledges them.
    b.send(b.ack_seg(CLIENT_ISN + 1, b.iss + 7));
    assert_eq!(b.stack.stats().challenge_acks, 0);
    b.stack.send(key, b"abcdefghij").unwrap();
    let out = b.recv_all();
    let sent: Vec<u8> = out.iter().flat_map(|s| s.payload.clone()).collect();
    assert_eq!(sent, b"ghij", "{out:?}");
    assert!(out.iter().all(|s| s.seq == b.iss + 7), "{out:?}");
    // Far above anything a primary could have sent: still refused.
    b.send(b.ack_seg(CLIENT_ISN + 1, b.iss.wrapping_add(7 + (1 << 30))));
    assert_eq!(b.stack.stats().challenge_acks, 1);
}

#[test]
fn promoted_backup_acknowledges_only_committed_bytes_until_confirmed() {
    let mut b = h();
    b.stack.set_role(b.now, Role::Backup);
    b.establish_silently();
    b.send(b.data_seg(0, &[7u8; 3000]));
    // The log committed 1000 bytes before the old primary died.
    let start = Seq(CLIENT_ISN + 1);
    b.stack.set_delivery_limit(b.key, Some(start + 1000u32));
    b.stack.set_role(b.now, Role::Primary);
    let out = b.recv_all();
    assert!(!out.is_empty(), "takeover must ACK at once");
    assert!(
        out.iter().all(|s| s.ack == Some(CLIENT_ISN + 1001)),
        "{out:?}"
    );
    // Confirmations from the surviving backups raise the gate.
    b.stack.set_gate(
        b.key,
        Some(Gate {
            ack: start + 3000u32,
            right_edge: start + 65535u32,
        }),
    );
    assert_eq!(b.recv_one().ack, Some(CLIENT_ISN + 3001));
}

#[test]
fn a_backup_fills_a_lost_copy_from_bytes_the_primary_held() {
    let mut p = h();
    let mut b = h();
    b.stack.set_role(b.now, Role::Backup);
    p.stack.set_role(p.now, Role::Primary);
    p.establish();
    let bk = b.establish_silently();
    let start = Seq(CLIENT_ISN + 1);
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    for off in [0u32, 1000, 2000] {
        p.send(p.data_seg(off, &data[off as usize..off as usize + 1000]));
    }
    // The backup's copy of the middle segment was lost.
    b.send(b.data_seg(0, &data[..1000]));
    b.send(b.data_seg(2000, &data[2000..]));
    assert_eq!(b.stack.receive_progress(bk).unwrap().0, start + 1000u32);
    let held = p.stack.held_bytes(p.key, start + 1000u32, 1 << 20).unwrap();
    assert_eq!(held, &data[1000..]);
    assert_eq!(
        p.stack.held_bytes(p.key, start + 3000u32, 10),
        None,
        "nothing past rcv_nxt"
    );
    b.stack.fill_received(bk, start + 1000u32, &held[..1000]);
    assert_eq!(
        b.stack.receive_progress(bk).unwrap().0,
        start + 3000u32,
        "the hole and the queued data"
    );
    assert!(b.recv_all().is_empty(), "a backup stays silent");
    b.stack.set_delivery_limit(bk, None);
    assert_eq!(b.read_all(), data);
}

/// A harness whose stack listens on the server port the way `listen` says.
fn listening(listen: impl FnOnce(&mut Stack, SocketAddr)) -> Harness {
    let mut h = h();
    h.stack = Stack::new(test_config());
    listen(&mut h.stack, h.key.local);
    h
}

#[test]
fn only_connections_of_a_plain_listener_are_independent() {
    let mut plain = h();
    let key = plain.establish();
    assert!(plain.stack.is_independent(key));

    let mut ordered = listening(|s, local| s.listen_ordered(local).unwrap());
    let key = ordered.establish();
    assert!(
        !ordered.stack.is_independent(key),
        "an ordered listener's connections share its state"
    );

    let mut passive = listening(|s, local| s.listen_passive(local).unwrap());
    let key = passive.establish();
    assert!(
        !passive.stack.is_independent(key),
        "a passive listener's connections are checkpointed, not delivered at the gate"
    );
    assert!(!plain.stack.is_independent(ConnKey {
        local: SERVER,
        remote: SocketAddr::from(([198, 18, 0, 9], 1)),
    }));
}

#[test]
fn a_primary_names_in_sack_blocks_only_what_every_member_holds() {
    let mut p = h();
    p.stack.set_role(p.now, Role::Primary);
    p.establish();
    let start = gate_at_the_start(&mut p);
    // Bytes 100..200 and 300..400 arrive; 0..100 is lost.
    p.send(p.data_seg(100, &[1u8; 100]));
    p.send(p.data_seg(300, &[1u8; 100]));
    assert_eq!(
        p.stack.held_beyond(p.key),
        [
            Some((start + 100u32, start + 200u32)),
            Some((start + 300u32, start + 400u32)),
            None
        ]
    );
    let acks = p.recv_all();
    assert!(
        !acks.is_empty(),
        "out-of-order data is acknowledged at once"
    );
    assert!(
        acks.iter().all(|s| s.sacks.is_empty()),
        "no member is known to hold anything out of order yet: {acks:?}"
    );
    // The members hold 150..200 and 300..400 of it: a duplicate ACK names
    // exactly that, the most recent block first.
    p.stack.set_sack_allowed(
        p.key,
        [
            Some((start + 150u32, start + 200u32)),
            Some((start + 300u32, start + 400u32)),
            None,
        ],
    );
    let dup = p.recv_one();
    assert_eq!(dup.ack, Some(CLIENT_ISN + 1));
    assert_eq!(
        dup.sacks,
        vec![
            (CLIENT_ISN + 301, CLIENT_ISN + 401),
            (CLIENT_ISN + 151, CLIENT_ISN + 201)
        ]
    );
    // The same ranges again change nothing and send nothing.
    p.stack.set_sack_allowed(
        p.key,
        [
            Some((start + 150u32, start + 200u32)),
            Some((start + 300u32, start + 400u32)),
            None,
        ],
    );
    assert!(p.recv_all().is_empty());
}
