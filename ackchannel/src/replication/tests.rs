//! Tests of the replication core: groups of replicators exchanging frames
//! in memory, and the wire bytes of every frame body.

use std::net::SocketAddr;

use super::frame::*;
use super::*;
use hydra_base::codec::Reader;

use crate::auth::{self, Header};

fn key() -> GroupKey {
    GroupKey([3; 32])
}

fn conn(port: u16) -> ConnKey {
    ConnKey {
        local: SocketAddr::from(([198, 18, 100, 1], 80)),
        remote: SocketAddr::from(([198, 18, 0, 1], port)),
    }
}

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

struct Group {
    nodes: Vec<Replicator>,
    up: Vec<bool>,
    /// Every action each node produced, in order.
    actions: Vec<Vec<Action>>,
}

impl Group {
    fn new(n: u8) -> Group {
        let nodes: Vec<Replicator> = (1..=n)
            .map(|id| {
                Replicator::with_counter(
                    MemberId(id),
                    key(),
                    ReplicationConfig::default(),
                    Counter::starting_at(0),
                )
            })
            .collect();
        Group {
            up: vec![true; nodes.len()],
            actions: vec![Vec::new(); nodes.len()],
            nodes,
        }
    }

    fn view(&mut self, now: Instant, epoch: u64, members: &[u8]) {
        let v = ReplicationView {
            epoch,
            members: members.iter().map(|m| MemberId(*m)).collect(),
            joining: Vec::new(),
        };
        for (i, n) in self.nodes.iter_mut().enumerate() {
            if self.up[i] {
                n.install_view(now, v.clone());
            }
        }
    }

    /// Exchange frames until quiet; collect actions.
    fn pump(&mut self, now: Instant) {
        for _ in 0..100 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                if !self.up[i] {
                    continue;
                }
                self.nodes[i].flush(now);
                while let Some((to, frame)) = self.nodes[i].poll_transmit() {
                    moved = true;
                    let j = usize::from(to.0) - 1;
                    if self.up[j] {
                        let _ = self.nodes[j].handle_frame(now, &frame);
                    }
                }
            }
            for i in 0..self.nodes.len() {
                while let Some(a) = self.nodes[i].poll_action() {
                    self.actions[i].push(a);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("frames never stopped flowing");
    }

    fn progress(&mut self, now: Instant, node: usize, c: ConnKey, held: u32) {
        self.nodes[node].local_progress(
            now,
            c,
            Progress::in_order(Seq(held), Seq(held + 1000), false),
        );
    }

    fn delivered(&self, node: usize, c: ConnKey) -> Option<Seq> {
        self.actions[node]
            .iter()
            .filter_map(|a| match a {
                Action::Deliver(k, s) if *k == c => Some(*s),
                _ => None,
            })
            .next_back()
    }

    fn gate(&self, node: usize, c: ConnKey) -> Option<Gate> {
        self.actions[node]
            .iter()
            .filter_map(|a| match a {
                Action::Gate(k, g) if *k == c => Some(*g),
                _ => None,
            })
            .next_back()
    }
}

#[test]
fn primary_gates_at_the_minimum_and_delivers_only_committed_bytes() {
    let mut g = Group::new(3);
    g.view(ms(0), 1, &[1, 2, 3]);
    let c = conn(1000);
    g.progress(ms(1), 0, c, 500);
    g.pump(ms(1));
    assert_eq!(g.gate(0, c), None, "no gate before every backup confirmed");
    g.progress(ms(2), 1, c, 300);
    g.pump(ms(2));
    assert_eq!(g.gate(0, c), None, "backup 3 has not confirmed");
    assert_eq!(g.delivered(0, c), None);
    g.progress(ms(3), 2, c, 400);
    g.pump(ms(3));
    let gate = g.gate(0, c).unwrap();
    assert_eq!(gate.ack, Seq(300));
    assert_eq!(gate.right_edge, Seq(1300));
    for node in 0..3 {
        assert_eq!(g.delivered(node, c), Some(Seq(300)), "node {node}");
    }
    g.progress(ms(4), 1, c, 500);
    g.pump(ms(4));
    assert_eq!(g.gate(0, c).unwrap().ack, Seq(400));
    for node in 0..3 {
        assert_eq!(g.delivered(node, c), Some(Seq(400)));
    }
}

#[test]
fn an_entry_is_delivered_nowhere_until_every_backup_holds_it() {
    let mut g = Group::new(3);
    g.view(ms(0), 1, &[1, 2, 3]);
    let c = conn(1);
    for node in 0..3 {
        g.progress(ms(1), node, c, 100);
    }
    g.pump(ms(1));
    assert_eq!(g.delivered(0, c), Some(Seq(100)));
    // Backup 3 is cut off: the new entry cannot commit.
    g.up[2] = false;
    g.progress(ms(2), 0, c, 200);
    g.progress(ms(2), 1, c, 200);
    g.pump(ms(2));
    // The gate cannot rise either: backup 3's last confirmation was 100.
    assert_eq!(g.gate(0, c).unwrap().ack, Seq(100));
    assert_eq!(g.delivered(0, c), Some(Seq(100)));
    assert_eq!(g.delivered(1, c), Some(Seq(100)));
}

/// A connection opened on every node (`independent`: its application
/// shares no state); the primary logs the opening and every member holds
/// `held` bytes, all committed. Then every member holds `more` and only
/// the backups' confirmations reach the primary.
fn opened_then_confirmed(g: &mut Group, c: ConnKey, independent: bool, held: u32, more: u32) {
    g.view(ms(0), 1, &[1, 2, 3]);
    if independent {
        for node in 0..3 {
            g.nodes[node].deliver_at_gate(c);
        }
    }
    g.nodes[0].opened(ms(1), c, vec![7]);
    for node in 0..3 {
        g.progress(ms(1), node, c, held);
    }
    g.pump(ms(1));
    assert_eq!(g.delivered(0, c), Some(Seq(held)));
    for node in 0..3 {
        g.progress(ms(2), node, c, more);
    }
    confirmations_only(g, ms(2));
    assert_eq!(g.gate(0, c).unwrap().ack, Seq(more));
}

/// Backups' frames reach the primary; the primary's frames are held back
/// (its log entries reach no backup, so nothing new can commit).
fn confirmations_only(g: &mut Group, now: Instant) {
    for i in 1..g.nodes.len() {
        g.nodes[i].flush(now);
        while let Some((to, frame)) = g.nodes[i].poll_transmit() {
            assert_eq!(to, MemberId(1));
            let _ = g.nodes[0].handle_frame(now, &frame);
        }
    }
    while let Some(a) = g.nodes[0].poll_action() {
        g.actions[0].push(a);
    }
}

#[test]
fn an_independent_connection_is_delivered_at_the_gate_on_the_primary_only() {
    let mut g = Group::new(3);
    let c = conn(11);
    opened_then_confirmed(&mut g, c, true, 100, 300);
    assert_eq!(
        g.delivered(0, c),
        Some(Seq(300)),
        "the primary delivers what every member holds without the commit"
    );
    assert_eq!(g.nodes[0].uncommitted(), 1, "the entry is not committed");
    assert_eq!(g.nodes[0].stats().gate_deliveries, 2);
    for node in 1..3 {
        assert_eq!(
            g.delivered(node, c),
            Some(Seq(100)),
            "backups wait for the log"
        );
    }
    g.pump(ms(3));
    for node in 0..3 {
        assert_eq!(g.delivered(node, c), Some(Seq(300)), "node {node}");
        let count = g.actions[node]
            .iter()
            .filter(|a| matches!(a, Action::Deliver(k, s) if *k == c && *s == Seq(300)))
            .count();
        assert_eq!(count, 1, "node {node} delivers up to 300 once");
    }
}

#[test]
fn an_ordered_connection_waits_for_the_commit_even_at_the_gate() {
    let mut g = Group::new(3);
    let c = conn(12);
    opened_then_confirmed(&mut g, c, false, 100, 300);
    assert_eq!(
        g.delivered(0, c),
        Some(Seq(100)),
        "no delivery before the commit"
    );
    g.pump(ms(3));
    assert_eq!(g.delivered(0, c), Some(Seq(300)));
}

#[test]
fn an_independent_connection_waits_for_its_opening_to_commit() {
    let mut g = Group::new(3);
    g.view(ms(0), 1, &[1, 2, 3]);
    let c = conn(13);
    for node in 0..3 {
        g.nodes[node].deliver_at_gate(c);
        g.progress(ms(1), node, c, 100);
    }
    g.nodes[0].opened(ms(1), c, vec![7]);
    confirmations_only(&mut g, ms(1));
    assert_eq!(g.gate(0, c).unwrap().ack, Seq(100));
    assert_eq!(
        g.delivered(0, c),
        None,
        "the opening record is not held by the backups yet"
    );
    g.pump(ms(2));
    assert_eq!(g.delivered(0, c), Some(Seq(100)));
}

#[test]
fn a_new_connection_on_the_same_addresses_waits_for_its_own_opening() {
    let mut g = Group::new(3);
    let c = conn(16);
    opened_then_confirmed(&mut g, c, true, 100, 300);
    g.pump(ms(2));
    // The connection ends on the primary; one with the same addresses
    // opens before the closing entry has reached any backup.
    g.nodes[0].closed(ms(3), c);
    for node in 0..3 {
        g.nodes[node].deliver_at_gate(c);
        g.progress(ms(3), node, c, 5000);
    }
    g.nodes[0].opened(ms(3), c, vec![8]);
    confirmations_only(&mut g, ms(3));
    assert_eq!(g.gate(0, c).unwrap().ack, Seq(5000));
    assert_eq!(
        g.delivered(0, c),
        Some(Seq(300)),
        "the new connection's opening is not held by the backups yet"
    );
    g.pump(ms(4));
    assert_eq!(g.delivered(0, c), Some(Seq(5000)));
}

#[test]
fn bytes_delivered_at_the_gate_reach_the_new_primary_after_a_crash() {
    let mut g = Group::new(3);
    let c = conn(14);
    opened_then_confirmed(&mut g, c, true, 100, 300);
    assert_eq!(g.delivered(0, c), Some(Seq(300)));
    // The primary dies before any backup heard of the entry.
    g.up[0] = false;
    g.view(ms(3), 2, &[2, 3]);
    g.pump(ms(3));
    for node in 1..3 {
        assert_eq!(
            g.delivered(node, c),
            Some(Seq(300)),
            "node {node} delivers what the old primary delivered"
        );
    }
}

fn sack_allowed(g: &Group, node: usize, c: ConnKey) -> Option<HeldBeyond> {
    g.actions[node]
        .iter()
        .filter_map(|a| match a {
            Action::SackAllowed(k, r) if *k == c => Some(*r),
            _ => None,
        })
        .next_back()
}

#[test]
fn the_primary_may_sack_only_what_every_member_holds_out_of_order() {
    let mut g = Group::new(3);
    g.view(ms(0), 1, &[1, 2, 3]);
    let c = conn(15);
    let with = |beyond: &[(u32, u32)]| {
        let mut p = Progress::in_order(Seq(100), Seq(5000), false);
        for (slot, (a, b)) in p.beyond.iter_mut().zip(beyond) {
            *slot = Some((Seq(*a), Seq(*b)));
        }
        p
    };
    g.nodes[0].local_progress(ms(1), c, with(&[(200, 400), (600, 700)]));
    g.nodes[1].local_progress(ms(1), c, with(&[(250, 400)]));
    g.nodes[2].local_progress(ms(1), c, with(&[(200, 300), (600, 650)]));
    g.pump(ms(1));
    assert_eq!(
        sack_allowed(&g, 0, c),
        Some([Some((Seq(250), Seq(300))), None, None])
    );
    // Backup 2 gets the rest of its copy: more may be named.
    g.nodes[1].local_progress(ms(2), c, with(&[(200, 400), (600, 700)]));
    g.pump(ms(2));
    assert_eq!(
        sack_allowed(&g, 0, c),
        Some([Some((Seq(200), Seq(300))), Some((Seq(600), Seq(650))), None])
    );
    for node in 1..3 {
        assert_eq!(sack_allowed(&g, node, c), None, "backups send nothing");
    }
}

#[test]
fn deliveries_are_in_the_same_order_on_every_replica() {
    let mut g = Group::new(3);
    g.view(ms(0), 1, &[1, 2, 3]);
    let conns: Vec<ConnKey> = (0..20).map(conn).collect();
    for round in 1..=5u32 {
        for (i, c) in conns.iter().enumerate() {
            // Backups see segments in different orders; the log decides.
            let order = [
                (i + round as usize) % 3,
                (i + 1) % 3,
                (i + 2 + round as usize) % 3,
            ];
            for node in order {
                g.progress(ms(u64::from(round)), node, *c, round * 100);
            }
        }
        g.pump(ms(u64::from(round)));
    }
    let deliveries = |n: usize| -> Vec<Action> {
        g.actions[n]
            .iter()
            .filter(|a| matches!(a, Action::Deliver(..)))
            .cloned()
            .collect()
    };
    assert!(!deliveries(0).is_empty());
    assert_eq!(deliveries(0), deliveries(1));
    assert_eq!(deliveries(0), deliveries(2));
}

#[test]
fn new_primary_drops_the_uncommitted_tail_and_never_delivers_twice() {
    let mut g = Group::new(3);
    g.view(ms(0), 1, &[1, 2, 3]);
    let c = conn(7);
    for node in 0..3 {
        g.progress(ms(1), node, c, 100);
    }
    g.pump(ms(1));
    // Primary appends up to 200, reaches backup 2 only, then dies before commit.
    g.up[2] = false;
    for node in 0..3 {
        g.progress(ms(2), node, c, 200);
    }
    g.up[2] = true;
    g.pump(ms(2));
    g.up[0] = false;
    g.view(ms(3), 2, &[2, 3]);
    g.pump(ms(3));
    for node in 1..3 {
        assert_eq!(g.delivered(node, c), Some(Seq(200)), "node {node}");
        let count = g.actions[node]
            .iter()
            .filter(|a| matches!(a, Action::Deliver(k, s) if *k == c && *s == Seq(100)))
            .count();
        assert_eq!(count, 1, "bytes up to 100 delivered once on node {node}");
    }
    assert_eq!(g.gate(1, c).unwrap().ack, Seq(200));
}

#[test]
fn frames_of_an_old_epoch_forged_or_replayed_are_refused() {
    let mut g = Group::new(2);
    g.view(ms(0), 1, &[1, 2]);
    g.progress(ms(1), 1, conn(1), 100);
    g.nodes[1].flush(ms(1));
    let (_, old) = std::iter::from_fn(|| g.nodes[1].poll_transmit())
        .last()
        .unwrap();
    g.view(ms(2), 2, &[1, 2]);
    assert!(matches!(
        g.nodes[0].handle_frame(ms(2), &old),
        Err(FrameError::Epoch { got: 1, ours: 2 })
    ));
    g.progress(ms(3), 1, conn(2), 100);
    g.nodes[1].flush(ms(3));
    let (_, good) = std::iter::from_fn(|| g.nodes[1].poll_transmit())
        .last()
        .unwrap();
    let mut forged = good.clone();
    let at = forged.len() - 20;
    forged[at] ^= 0x40;
    assert!(matches!(
        g.nodes[0].handle_frame(ms(3), &forged),
        Err(FrameError::Auth(AuthError::BadTag))
    ));
    assert!(g.nodes[0].handle_frame(ms(3), &good).is_ok());
    assert!(matches!(
        g.nodes[0].handle_frame(ms(3), &good),
        Err(FrameError::Auth(AuthError::Replay { .. }))
    ));
    let outsider = Replicator::with_counter(
        MemberId(2),
        GroupKey([9; 32]),
        ReplicationConfig::default(),
        Counter::starting_at(1 << 40),
    );
    let mut outsider = outsider;
    outsider.install_view(
        ms(3),
        ReplicationView {
            epoch: 2,
            members: vec![MemberId(1), MemberId(2)],
            joining: Vec::new(),
        },
    );
    outsider.local_progress(ms(3), conn(3), Progress::in_order(Seq(1), Seq(2), false));
    outsider.flush(ms(3));
    let (_, wrong_key) = outsider.poll_transmit().unwrap();
    assert!(g.nodes[0].handle_frame(ms(3), &wrong_key).is_err());
    let s = g.nodes[0].stats();
    assert_eq!(s.refused_epoch, 1);
    assert_eq!(s.refused_auth, 3);
}

#[test]
fn a_silent_peer_is_suspected_after_the_timeout() {
    let mut g = Group::new(2);
    g.view(ms(0), 1, &[1, 2]);
    g.pump(ms(0));
    g.up[0] = false;
    let mut t = 0;
    let suspected = loop {
        t += 10;
        g.nodes[1].handle_timeout(ms(t));
        if let Some(a) = std::iter::from_fn(|| g.nodes[1].poll_action())
            .find(|a| matches!(a, Action::PeerSuspected(_)))
        {
            break a;
        }
        assert!(t < 1000);
    };
    assert_eq!(suspected, Action::PeerSuspected(MemberId(1)));
    assert!((100..=110).contains(&t), "suspected at {t} ms");
}

#[test]
fn truncated_or_garbage_bodies_never_panic() {
    let mut g = Group::new(2);
    g.view(ms(0), 1, &[1, 2]);
    for len in 0..64usize {
        for kind in [KIND_APPEND, KIND_CONFIRM, KIND_FILL, KIND_FILL_REQUEST, 99] {
            let body: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let header = Header {
                kind,
                epoch: 1,
                sender: 2,
                counter: 1 << 30 | (len as u64) << 4 | u64::from(kind),
            };
            let frame = auth::seal(&key(), DOMAIN, header, &body);
            let _ = g.nodes[0].handle_frame(ms(1), &frame);
        }
    }
    assert!(g.nodes[0].stats().refused_other > 0);
}

#[test]
fn a_closed_connection_sends_its_last_confirmation_then_is_forgotten() {
    let mut g = Group::new(2);
    g.view(ms(0), 1, &[1, 2]);
    let c = conn(5);
    g.nodes[0].local_progress(ms(1), c, Progress::in_order(Seq(101), Seq(2000), true));
    g.nodes[1].local_progress(ms(1), c, Progress::in_order(Seq(101), Seq(2000), true));
    g.nodes[1].closed(ms(1), c);
    g.pump(ms(1));
    assert_eq!(g.gate(0, c).unwrap().ack, Seq(101), "FIN confirmed");
    assert!(g.nodes[1].local.is_empty());
}

/// The repairs node `node` was asked to make on `c`: (to, from, len).
fn repairs_asked(g: &Group, node: usize, c: ConnKey) -> Vec<(MemberId, Seq, u32)> {
    g.actions[node]
        .iter()
        .filter_map(|a| match a {
            Action::Repair { to, key, from, len } if *key == c => Some((*to, *from, *len)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_backup_stuck_behind_gets_the_missing_bytes_from_the_primary() {
    let mut g = Group::new(2);
    g.view(ms(0), 1, &[1, 2]);
    let c = conn(9);
    g.progress(ms(1), 0, c, 5000);
    g.progress(ms(1), 1, c, 3000); // a copy was lost at the backup
    g.pump(ms(1));
    let repairs = |g: &Group| repairs_asked(g, 0, c);
    for t in [10, 20] {
        g.nodes[0].handle_timeout(ms(t));
        g.pump(ms(t));
    }
    assert!(repairs(&g).is_empty(), "not before repair_after");
    g.nodes[0].handle_timeout(ms(40));
    g.pump(ms(40));
    assert_eq!(repairs(&g), vec![(MemberId(2), Seq(3000), 2000)]);
    g.nodes[0].send_fill(ms(40), MemberId(2), c, Seq(3000), &[7u8; 2000]);
    g.pump(ms(40));
    assert!(g.actions[1].contains(&Action::Fill(c, Seq(3000), vec![7u8; 2000])));
    // Once it caught up, no more repairs.
    g.progress(ms(41), 1, c, 5000);
    g.pump(ms(41));
    let before = repairs(&g).len();
    for t in [60, 80, 100] {
        g.nodes[0].handle_timeout(ms(t));
        g.pump(ms(t));
    }
    assert_eq!(repairs(&g).len(), before);
    assert_eq!(g.gate(0, c).unwrap().ack, Seq(5000));
}

#[test]
fn a_primary_that_lost_a_copy_a_backup_holds_fetches_it() {
    let mut g = Group::new(3);
    g.view(ms(0), 1, &[1, 2, 3]);
    let c = conn(10);
    g.progress(ms(1), 0, c, 3000); // lost on the primary's link
    g.progress(ms(1), 1, c, 5000);
    g.progress(ms(1), 2, c, 2000); // and further back on another's
    g.pump(ms(1));
    let asked = |g: &Group, node: usize| repairs_asked(g, node, c);
    for t in [10, 20] {
        g.nodes[0].handle_timeout(ms(t));
        g.pump(ms(t));
    }
    assert!(asked(&g, 1).is_empty(), "not before repair_after");
    g.nodes[0].handle_timeout(ms(40));
    g.pump(ms(40));
    // The backup holding the most is asked, for what it holds beyond us.
    assert_eq!(asked(&g, 1), vec![(MemberId(1), Seq(3000), 2000)]);
    assert!(asked(&g, 2).is_empty());
    g.nodes[1].send_fill(ms(40), MemberId(1), c, Seq(3000), &[9u8; 2000]);
    g.pump(ms(40));
    assert!(g.actions[0].contains(&Action::Fill(c, Seq(3000), vec![9u8; 2000])));
    // A backup may answer only its primary.
    let sent = g.nodes[1].stats().frames_sent;
    g.nodes[1].send_fill(ms(41), MemberId(3), c, Seq(3000), &[9u8; 10]);
    assert_eq!(g.nodes[1].stats().frames_sent, sent);
}

#[test]
fn a_backup_that_saw_the_view_first_is_asked_again_for_its_state() {
    let mut g = Group::new(3);
    g.view(ms(0), 1, &[1, 2, 3]);
    let c = conn(11);
    for node in 0..3 {
        g.progress(ms(1), node, c, 100);
    }
    g.pump(ms(1));
    // Member 3 dies; member 2 learns the new view before the primary does.
    g.up[2] = false;
    let v2 = ReplicationView {
        epoch: 2,
        members: vec![MemberId(1), MemberId(2)],
        joining: Vec::new(),
    };
    g.nodes[1].install_view(ms(2), v2.clone());
    g.progress(ms(2), 1, c, 200);
    g.pump(ms(2)); // its confirmations are refused: the primary is in epoch 1
    assert!(g.nodes[0].stats().refused_epoch > 0);
    g.progress(ms(3), 0, c, 200);
    g.nodes[0].install_view(ms(3), v2);
    g.pump(ms(3));
    // The backup has nothing new to say, yet the primary gets its state at
    // once rather than from the periodic full confirmation a second later.
    assert_eq!(g.gate(0, c).unwrap().ack, Seq(200));
}

/// A one-way cut: the backup's confirmations reach the primary, the
/// primary's log never reaches the backup. It is not silent, but it holds
/// every commit back: the primary reports it after the peer timeout.
#[test]
fn a_backup_that_never_takes_the_log_is_suspected() {
    let mut g = Group::new(2);
    g.view(ms(0), 1, &[1, 2]);
    g.pump(ms(0));
    let c = conn(1000);
    let mut suspected_at = None;
    for t in (1..=300).step_by(5) {
        let now = ms(t);
        g.progress(now, 0, c, 100 + t as u32);
        g.progress(now, 1, c, 100 + t as u32);
        for i in 0..2 {
            g.nodes[i].handle_timeout(now);
            g.nodes[i].flush(now);
            while let Some((to, frame)) = g.nodes[i].poll_transmit() {
                if to == MemberId(1) {
                    let _ = g.nodes[0].handle_frame(now, &frame); // backup -> primary only
                }
            }
        }
        let primary_actions: Vec<Action> =
            std::iter::from_fn(|| g.nodes[0].poll_action()).collect();
        if primary_actions.contains(&Action::PeerSuspected(MemberId(2))) {
            suspected_at = Some(t);
            break;
        }
        // Backup-side suspicion of the primary is the authority's to weigh.
        while g.nodes[1].poll_action().is_some() {}
    }
    let t = suspected_at.expect("the primary never reported the backup");
    assert!((100..=130).contains(&t), "reported at {t} ms");
}

/// The key `1.2.3.4:258 -> 5.6.7.8:1` and its thirteen bytes on the wire
/// (the family byte, then each address and port).
fn wire_key() -> (ConnKey, [u8; 13]) {
    let key = ConnKey {
        local: "1.2.3.4:258".parse().unwrap(),
        remote: "5.6.7.8:1".parse().unwrap(),
    };
    (key, [4, 1, 2, 3, 4, 1, 2, 5, 6, 7, 8, 0, 1])
}

#[test]
fn log_entries_and_confirmations_keep_their_wire_bytes() {
    let (key, k) = wire_key();
    let entries = vec![
        (
            7,
            Entry::Opened {
                key,
                record: vec![0xaa, 0xbb],
            },
        ),
        (
            8,
            Entry::Data {
                key,
                upto: Seq(0x0102_0304),
            },
        ),
        (9, Entry::Closed { key }),
    ];
    let mut out = Vec::new();
    encode_entries(&mut out, &entries);
    let mut want = vec![0, 3];
    want.extend([0, 0, 0, 0, 0, 0, 0, 7, 1]);
    want.extend(k);
    want.extend([0, 2, 0xaa, 0xbb]);
    want.extend([0, 0, 0, 0, 0, 0, 0, 8, 2]);
    want.extend(k);
    want.extend([1, 2, 3, 4]);
    want.extend([0, 0, 0, 0, 0, 0, 0, 9, 3]);
    want.extend(k);
    assert_eq!(out, want);
    assert_eq!(decode_entries(&mut Reader::new(&out)).unwrap(), entries);

    let confirms = vec![
        (
            key,
            Progress::in_order(Seq(0x0a0b_0c0d), Seq(0x1000_0001), true),
        ),
        (
            key,
            Progress {
                held: Seq(5),
                edge: Seq(90),
                fin: false,
                beyond: [
                    Some((Seq(10), Seq(20))),
                    Some((Seq(30), Seq(0x0102_0304))),
                    None,
                ],
            },
        ),
    ];
    let mut out = Vec::new();
    encode_confirms(&mut out, &confirms);
    let mut want = vec![0, 2];
    want.extend(k);
    want.extend([0x0a, 0x0b, 0x0c, 0x0d, 0x10, 0, 0, 1, 1, 0]);
    want.extend(k);
    want.extend([0, 0, 0, 5, 0, 0, 0, 90, 0, 2]);
    want.extend([0, 0, 0, 10, 0, 0, 0, 20, 0, 0, 0, 30, 1, 2, 3, 4]);
    assert_eq!(out, want);
    assert_eq!(decode_confirms(&mut Reader::new(&out)).unwrap(), confirms);

    // More than three out-of-order ranges is not a confirmation we wrote.
    let mut four = vec![0, 1];
    four.extend(k);
    four.extend([0, 0, 0, 5, 0, 0, 0, 90, 0, 4]);
    four.extend([0; 32]);
    assert_eq!(
        decode_confirms(&mut Reader::new(&four)),
        Err(DecodeError::Invalid)
    );
}

#[test]
fn repair_frames_keep_their_wire_bytes() {
    let (c, k) = wire_key();
    let mut g = Group::new(2);
    g.view(ms(0), 1, &[1, 2]);
    while g.nodes[0].poll_transmit().is_some() {}
    g.nodes[0].send_fill(ms(1), MemberId(2), c, Seq(7), b"xyz");
    let (to, frame) = g.nodes[0].poll_transmit().unwrap();
    assert_eq!(to, MemberId(2));
    let (header, body) = auth::open(&key(), DOMAIN, &frame).unwrap();
    assert_eq!(header.kind, KIND_FILL);
    let mut want = k.to_vec();
    want.extend([0, 0, 0, 7, 0, 0, 0, 3]);
    want.extend(b"xyz");
    assert_eq!(body, want);
}

#[test]
fn frame_bodies_keep_their_wire_bytes() {
    let (key, k) = wire_key();
    let mut want = vec![0, 0, 0, 0, 0, 0, 0, 5, FLAG_SEND_ALL, 0, 1];
    want.extend([0, 0, 0, 0, 0, 0, 0, 6, ENTRY_CLOSED]);
    want.extend(k);
    let entries = [(6, Entry::Closed { key })];
    let body = append_body(5, FLAG_SEND_ALL, &entries);
    assert_eq!(body, want);
    let append = Append {
        commit: 5,
        flags: FLAG_SEND_ALL,
        entries: entries.to_vec(),
    };
    assert_eq!(read_append(&mut Reader::new(&body)), Ok(append));

    let body = confirm_body(4, &[]);
    assert_eq!(body, [0, 0, 0, 0, 0, 0, 0, 4, 0, 0]);
    assert_eq!(read_confirm(&mut Reader::new(&body)), Ok((4, Vec::new())));

    let body = fill_request_body(&key, Seq(9), 300);
    let mut want = k.to_vec();
    want.extend([0, 0, 0, 9, 0, 0, 1, 44]);
    assert_eq!(body, want);
    assert_eq!(
        read_fill_request(&mut Reader::new(&body)),
        Ok((key, Seq(9), 300))
    );

    let body = deliver_body(&[(key, Seq(0x0102_0304))]);
    let mut want = vec![0, 0, 0, 1];
    want.extend(k);
    want.extend([1, 2, 3, 4]);
    assert_eq!(body, want);
    assert_eq!(
        read_deliveries(&mut Reader::new(&body)),
        Ok(vec![(key, Seq(0x0102_0304))])
    );

    let mut body = fill_body(&key, Seq(1), b"ab");
    assert_eq!(
        read_fill(&mut Reader::new(&body)),
        Ok((key, Seq(1), b"ab".to_vec()))
    );
    body.push(0);
    assert!(read_fill(&mut Reader::new(&body)).is_err(), "trailing byte");
}

/// A backup that lost a client's SYN never confirms the connection: after
/// two repair periods the primary asks its stack for the half-open record,
/// sends it, and the backup gets it as an action (once per period, and
/// never for a connection the backup confirmed).
#[test]
fn a_backup_without_the_syn_gets_the_half_open_record() {
    let mut g = Group::new(3);
    g.view(ms(0), 1, &[1, 2, 3]);
    let c = conn(7000);
    g.progress(ms(1), 0, c, 1);
    g.progress(ms(1), 1, c, 1);
    g.pump(ms(1));
    let asked = |g: &Group| -> Vec<(MemberId, ConnKey)> {
        g.actions[0]
            .iter()
            .filter_map(|a| match a {
                Action::RepairHalfOpen { to, key } => Some((*to, *key)),
                _ => None,
            })
            .collect()
    };
    let mut t = 1;
    while asked(&g).is_empty() {
        t += 1;
        g.nodes[0].handle_timeout(ms(t));
        g.pump(ms(t));
        assert!(t < 200, "no repair asked for");
    }
    assert!(t >= 40, "asked after {t} ms, before two repair periods");
    assert_eq!(
        asked(&g),
        vec![(MemberId(3), c)],
        "only the backup without it"
    );
    g.nodes[0].send_half_open(ms(t), MemberId(3), c, b"record");
    g.pump(ms(t));
    let got: Vec<&Action> = g.actions[2]
        .iter()
        .filter(|a| matches!(a, Action::HalfOpen(..)))
        .collect();
    assert_eq!(got, vec![&Action::HalfOpen(c, b"record".to_vec())]);
    assert_eq!(g.nodes[0].stats().half_open_repairs, 1);
    assert_eq!(g.nodes[2].stats().half_open_repairs, 1);
    // Oversized records are not sent; a backup never sends one.
    g.nodes[0].send_half_open(ms(t), MemberId(3), c, &[0; 4096]);
    g.nodes[1].send_half_open(ms(t), MemberId(3), c, b"record");
    assert_eq!(g.nodes[0].stats().half_open_repairs, 1);
    assert_eq!(g.nodes[1].stats().half_open_repairs, 0);
    // Truncated or garbage bodies from the primary are refused.
    for len in 0..48usize {
        let body: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
        let header = Header {
            kind: KIND_HALF_OPEN,
            epoch: 1,
            sender: 1,
            counter: 1 << 40 | len as u64,
        };
        let frame = auth::seal(&key(), DOMAIN, header, &body);
        assert!(g.nodes[2].handle_frame(ms(t), &frame).is_err(), "{len}");
    }
}

/// A joining member that confirms nothing it was sent (a one-way cut: it
/// still sends, so it is not silent) holds back the gates of the
/// connections it was sent: after ten peer timeouts the primary reports
/// it. One that confirms its snapshots is never reported.
#[test]
fn a_joining_member_that_confirms_nothing_it_was_sent_is_reported() {
    for cut in [true, false] {
        let mut g = Group::new(3);
        let v = ReplicationView {
            epoch: 1,
            members: vec![MemberId(1), MemberId(2)],
            joining: vec![MemberId(3)],
        };
        for n in &mut g.nodes {
            n.install_view(ms(0), v.clone());
        }
        let c = conn(9000);
        g.progress(ms(0), 0, c, 100);
        g.progress(ms(0), 1, c, 100);
        let mut suspected = None;
        let mut ready = false;
        for t in (0..2000).step_by(10) {
            let now = ms(t);
            for i in 0..3 {
                g.nodes[i].handle_timeout(now);
                g.nodes[i].flush(now);
            }
            for _ in 0..10 {
                for i in 0..3 {
                    while let Some((to, frame)) = g.nodes[i].poll_transmit() {
                        if cut && to == MemberId(3) {
                            continue; // the primary's frames never reach it
                        }
                        let _ = g.nodes[usize::from(to.0) - 1].handle_frame(now, &frame);
                    }
                }
                while let Some(a) = g.nodes[0].poll_action() {
                    match a {
                        Action::SendSnapshot { to, .. } => {
                            g.nodes[0].send_snapshot(now, to, b"snapshot")
                        }
                        Action::PeerSuspected(MemberId(3)) => {
                            suspected.get_or_insert(t);
                        }
                        Action::JoinerReady(m) => ready |= m == MemberId(3),
                        _ => {}
                    }
                }
                while let Some(a) = g.nodes[2].poll_action() {
                    if let Action::Import(_) = a {
                        // The joiner imports the snapshot: it holds the bytes.
                        g.nodes[2].local_progress(
                            now,
                            c,
                            Progress::in_order(Seq(100), Seq(1100), false),
                        );
                    }
                }
                let _ = g.nodes[1].poll_action();
            }
        }
        match (cut, suspected) {
            (true, Some(t)) => assert!((1000..=1200).contains(&t), "reported at {t} ms"),
            (true, None) => panic!("a joiner cut off one way was never reported"),
            (false, None) => assert!(ready, "the joiner caught up"),
            (false, Some(t)) => panic!("a joiner that confirms was reported at {t} ms"),
        }
    }
}
