//! Tests of the control protocol: agents and an authority exchanging
//! datagrams in memory, and the wire bytes of every message.

use std::net::SocketAddr;

use hydra_base::{ConnKey, Duration, Instant};

use super::messages::*;
use super::*;
use crate::auth::{self, Counter, GroupKey, Header};

fn key() -> GroupKey {
    GroupKey([7; 32])
}

fn addr(id: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([198, 18, 1, 10 + id], port))
}

fn policy() -> GroupPolicy {
    GroupPolicy {
        name: "g".into(),
        key: key(),
        members: vec![1, 2, 3],
        min_members: 3,
        keepalive_timeout: Duration::from_millis(100),
        lease: Duration::from_millis(60),
        heartbeat: Duration::from_millis(10),
        preferred_primary: None,
    }
}

fn agent(id: u8) -> MemberAgent {
    MemberAgent::with_counter(
        "g".into(),
        id,
        key(),
        addr(id, 7100),
        addr(id, 7200),
        Duration::from_millis(10),
        Counter::starting_at(1000),
    )
}

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

/// One heartbeat round: each agent in `up` sends, the authority answers.
fn round(now: Instant, auth: &mut ViewAuthority, agents: &mut [MemberAgent], up: &[u8]) {
    auth.handle_timeout(now);
    for a in agents.iter_mut().filter(|a| up.contains(&a.id)) {
        a.handle_timeout(now);
        while let Some(d) = a.poll_transmit() {
            if let Ok(Some(reply)) = auth.handle_datagram(now, &d) {
                a.handle_datagram(now, &reply).unwrap();
            }
        }
    }
    auth.handle_timeout(now);
}

fn group() -> (ViewAuthority, Vec<MemberAgent>) {
    let mut auth = ViewAuthority::with_counter(policy(), Counter::starting_at(1));
    let mut agents: Vec<MemberAgent> = (1..=3).map(agent).collect();
    round(ms(0), &mut auth, &mut agents, &[1, 2, 3]);
    round(ms(10), &mut auth, &mut agents, &[1, 2, 3]);
    (auth, agents)
}

#[test]
fn first_view_forms_at_min_members_ordered_by_id() {
    let mut auth = ViewAuthority::with_counter(policy(), Counter::starting_at(1));
    let mut agents: Vec<MemberAgent> = vec![agent(3), agent(1)];
    round(ms(0), &mut auth, &mut agents, &[1, 3]);
    assert_eq!(auth.view().epoch, 0, "no view before min_members");
    agents.push(agent(2));
    round(ms(10), &mut auth, &mut agents, &[1, 2, 3]);
    round(ms(20), &mut auth, &mut agents, &[1, 2, 3]);
    let v = auth.view();
    assert_eq!(v.epoch, 1);
    assert_eq!(
        v.members.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    for a in &agents {
        assert_eq!(a.view().unwrap().epoch, 1);
    }
    let one = agents.iter().find(|a| a.id == 1).unwrap();
    assert!(one.lease_valid(ms(25)));
    assert!(
        !agents
            .iter()
            .find(|a| a.id == 2)
            .unwrap()
            .lease_valid(ms(25)),
        "backups hold no lease"
    );
}

#[test]
fn forged_replayed_and_unknown_registrations_are_refused_and_counted() {
    let (mut auth, _) = group();
    let forged = encode(
        &GroupKey([8; 32]),
        1,
        0,
        u64::MAX,
        &Message::Register {
            group: "g".into(),
            data_addr: addr(9, 1),
            ack_addr: addr(9, 2),
            incarnation: 1,
        },
    );
    assert!(matches!(
        auth.handle_datagram(ms(20), &forged),
        Err(ControlError::Auth(AuthError::BadTag))
    ));
    let mut tampered = encode(&key(), 2, 1, u64::MAX - 5, &Message::Keepalive);
    tampered[12] ^= 1;
    assert!(auth.handle_datagram(ms(20), &tampered).is_err());
    let stranger = encode(&key(), 9, 1, u64::MAX - 4, &Message::Keepalive);
    assert_eq!(
        auth.handle_datagram(ms(20), &stranger),
        Err(ControlError::UnknownMember(9))
    );
    let once = encode(&key(), 2, 1, 5000, &Message::Keepalive);
    assert!(auth.handle_datagram(ms(20), &once).is_ok());
    assert!(matches!(
        auth.handle_datagram(ms(20), &once),
        Err(ControlError::Auth(AuthError::Replay { .. }))
    ));
    let s = auth.stats();
    assert_eq!(s.refused_unauthenticated, 2);
    assert_eq!(s.refused_unknown_member, 1);
    assert_eq!(s.refused_replayed, 1);
    assert_eq!(auth.view().epoch, 1, "nothing refused changed the view");
}

#[test]
fn silent_primary_is_replaced_only_after_its_lease_ran_out() {
    let (mut auth, mut agents) = group();
    let mut t = 20;
    while auth.view().epoch == 1 {
        round(ms(t), &mut auth, &mut agents, &[2, 3]);
        assert!(t < 1000, "no view change");
        // Fencing: a new primary exists only once the old lease is over.
        if auth.view().epoch > 1 {
            assert!(
                !agents[0].lease_valid(ms(t)),
                "old primary still leased at {t} ms"
            );
        }
        t += 10;
    }
    let v = auth.view().clone();
    assert_eq!(v.epoch, 2);
    assert_eq!(v.primary(), Some(2));
    assert_eq!(
        v.members.last().map(|m| (m.id, m.alive)),
        Some((1, false)),
        "dead last"
    );
    round(ms(t), &mut auth, &mut agents, &[1, 2, 3]);
    assert!(agents[0].removed(), "the old primary learns it is out");
    assert!(!agents[0].lease_valid(ms(t)));
    assert!(agents[1].lease_valid(ms(t)));
    // Restarted, it comes back as a joining member: copies and state
    // transfer, no lease, not live until the primary says it caught up.
    let mut returning = agent(1);
    returning.counter = Counter::starting_at(1 << 40);
    returning.incarnation = returning.counter.next_value();
    returning.handle_timeout(ms(t));
    exchange(ms(t), &mut auth, &mut returning);
    let v = auth.view().clone();
    assert_eq!(v.epoch, 3);
    assert!(v.is_joining(1) && !v.is_alive(1));
    assert_eq!(v.to_replication_view().joining, vec![MemberId(1)]);
    assert_eq!(auth.live_data_addrs().len(), 3, "copies go to it too");
    assert!(!returning.lease_valid(ms(t)) && !returning.removed());
}

/// A group whose member 3 left, then registered again from a new process.
fn member_3_left_and_back() -> (ViewAuthority, Vec<MemberAgent>, MemberAgent) {
    let (mut auth, mut agents) = group();
    agents[2].resign(ms(15), false);
    exchange(ms(15), &mut auth, &mut agents[2]);
    let mut back = agent(3);
    back.counter = Counter::starting_at(1 << 40);
    back.incarnation = back.counter.next_value();
    back.handle_timeout(ms(20));
    exchange(ms(20), &mut auth, &mut back);
    (auth, agents, back)
}

#[test]
fn a_joining_member_is_admitted_by_the_primary_or_dropped_when_silent_or_stalled() {
    let (mut auth, mut agents, mut back) = member_3_left_and_back();
    assert!(auth.view().is_joining(3));
    // Only the primary's word admits it; a backup's is ignored.
    round(ms(30), &mut auth, &mut agents, &[1, 2]);
    agents[1].report_ready(3);
    exchange(ms(30), &mut auth, &mut agents[1]);
    assert!(auth.view().is_joining(3));
    agents[0].report_ready(3);
    exchange(ms(30), &mut auth, &mut agents[0]);
    let v = auth.view().clone();
    assert_eq!(
        v.members
            .iter()
            .map(|m| (m.id, m.alive))
            .collect::<Vec<_>>(),
        vec![(1, true), (2, true), (3, true)]
    );
    assert_eq!(auth.stats().rejoins, 1);
    back.handle_timeout(ms(40));
    exchange(ms(40), &mut auth, &mut back);
    assert!(back.view().unwrap().is_alive(3));
    // A joining member that falls silent is dropped without a lease wait.
    let (mut auth, mut agents, _back) = member_3_left_and_back();
    let epoch = auth.view().epoch;
    let mut t = 30;
    while auth.view().is_joining(3) {
        round(ms(t), &mut auth, &mut agents, &[1, 2]);
        t += 10;
        assert!(t < 300);
    }
    assert_eq!(auth.view().epoch, epoch + 1);
    assert!(!auth.view().is_alive(3));
    // One that still sends but confirms nothing (a one-way cut) is dropped
    // on the primary's report; a backup's report about it changes nothing.
    let (mut auth, mut agents, mut back) = member_3_left_and_back();
    let epoch = auth.view().epoch;
    back.handle_timeout(ms(30));
    exchange(ms(30), &mut auth, &mut back);
    agents[1].report_failure(ms(30), 3);
    exchange(ms(30), &mut auth, &mut agents[1]);
    assert!(auth.view().is_joining(3), "a backup's word about a joiner");
    agents[0].report_failure(ms(30), 3);
    exchange(ms(30), &mut auth, &mut agents[0]);
    assert_eq!(auth.view().epoch, epoch + 1);
    assert!(!auth.view().is_joining(3) && !auth.view().is_alive(3));
    back.handle_timeout(ms(40));
    exchange(ms(40), &mut auth, &mut back);
    assert!(
        back.removed(),
        "the dropped joiner learns the group moved on"
    );
}

#[test]
fn a_backups_report_deposes_the_primary_only_when_it_is_late_here_too() {
    let (mut auth, mut agents) = group();
    agents[1].report_failure(ms(15), 1);
    let report = agents[1].poll_transmit().unwrap();
    assert_eq!(auth.handle_datagram(ms(15), &report), Ok(None));
    for t in [20, 30, 40] {
        round(ms(t), &mut auth, &mut agents, &[1, 2, 3]);
    }
    assert_eq!(auth.view().epoch, 1, "primary alive here: report ignored");

    // Primary falls silent: after 3 heartbeats a report is believed.
    round(ms(50), &mut auth, &mut agents, &[2, 3]);
    round(ms(80), &mut auth, &mut agents, &[2, 3]);
    agents[2].report_failure(ms(80), 1);
    let report = agents[2].poll_transmit().unwrap();
    auth.handle_datagram(ms(80), &report).unwrap();
    let mut t = 80;
    while auth.view().epoch == 1 {
        t += 5;
        round(ms(t), &mut auth, &mut agents, &[2, 3]);
    }
    // Last answered at 40 ms, lease 60 ms: the view changes at 100 ms, well
    // before the 100 ms keepalive timeout after the 40 ms keepalive plus slack.
    assert!(t <= 105, "report did not speed up failover: {t} ms");
    assert_eq!(auth.view().primary(), Some(2));
}

#[test]
fn an_early_report_deposes_the_primary_once_it_is_late_here_unless_heard_again() {
    // Heard at 10 ms, then silent (a crashed process): a backup reports it at
    // once (its ack-channel connection closed), before it is late here.
    let (mut auth, mut agents) = group();
    agents[1].report_failure(ms(12), 1);
    let report = agents[1].poll_transmit().unwrap();
    assert_eq!(auth.handle_datagram(ms(12), &report), Ok(None));
    assert_eq!(auth.view().epoch, 1, "not late here yet: no view change");
    // Declared at three heartbeats of silence (40 ms), the view changes when
    // its lease (answered at 10 ms, 60 ms) has run out: 70 ms, where the
    // keepalive timeout alone would wait until 110 ms.
    assert_eq!(auth.poll_timeout(), Some(ms(40)));
    let mut t = 12;
    while auth.view().epoch == 1 && t < 200 {
        t += 1;
        round(ms(t), &mut auth, &mut agents, &[2, 3]);
    }
    assert_eq!(t, 70, "the view changed at {t} ms");
    assert_eq!(auth.view().primary(), Some(2));

    // The same report about a primary that is heard again is dropped: a
    // later silence waits for the full keepalive timeout.
    let (mut auth, mut agents) = group();
    agents[1].report_failure(ms(12), 1);
    let report = agents[1].poll_transmit().unwrap();
    auth.handle_datagram(ms(12), &report).unwrap();
    round(ms(20), &mut auth, &mut agents, &[1, 2, 3]);
    let mut t = 20;
    while auth.view().epoch == 1 && t < 300 {
        t += 1;
        round(ms(t), &mut auth, &mut agents, &[2, 3]);
    }
    assert!(
        t >= 120,
        "a withdrawn report still deposed the primary at {t} ms"
    );
}

#[test]
fn the_primarys_report_removes_a_backup() {
    let (mut auth, mut agents) = group();
    agents[0].report_failure(ms(15), 3);
    let report = agents[0].poll_transmit().unwrap();
    auth.handle_datagram(ms(15), &report).unwrap();
    let mut t = 20;
    while auth.view().epoch == 1 {
        round(ms(t), &mut auth, &mut agents, &[1, 2]);
        t += 10;
        assert!(t < 200);
    }
    let v = auth.view();
    assert_eq!(v.primary(), Some(1));
    assert!(!v.is_alive(3));
}

#[test]
fn malformed_bodies_are_refused_without_panic() {
    let (mut auth, mut agents) = group();
    for len in 0..40 {
        let body = vec![0xAB; len];
        for kind in 0..6 {
            let frame = auth::seal(
                &key(),
                DOMAIN,
                Header {
                    kind,
                    epoch: 1,
                    sender: 2,
                    counter: 1 << 50 | (len as u64) << 8 | u64::from(kind),
                },
                &body,
            );
            let _ = auth.handle_datagram(ms(20), &frame);
            let _ = agents[0].handle_datagram(ms(20), &frame);
        }
    }
    assert!(auth.stats().refused_malformed > 0);
}

#[test]
fn the_last_live_member_is_never_declared_dead() {
    let (mut auth, mut agents) = group();
    let mut t = 20;
    // Members 2 and 3 fall silent: they go, member 1 stays.
    while auth.view().live().count() > 1 {
        round(ms(t), &mut auth, &mut agents, &[1]);
        t += 10;
        assert!(t < 2000);
    }
    // Now member 1 falls silent too: it stays in the view.
    for _ in 0..50 {
        round(ms(t), &mut auth, &mut agents, &[]);
        t += 10;
    }
    assert_eq!(auth.view().primary(), Some(1));
    round(ms(t), &mut auth, &mut agents, &[1]);
    assert!(
        agents[0].lease_valid(ms(t)),
        "it serves again when it comes back"
    );
}

/// Deliver what `agent` queued to the authority and the answers back.
fn exchange(now: Instant, auth: &mut ViewAuthority, agent: &mut MemberAgent) {
    while let Some(d) = agent.poll_transmit() {
        if let Ok(Some(reply)) = auth.handle_datagram(now, &d) {
            agent.handle_datagram(now, &reply).unwrap();
        }
    }
}

fn order(auth: &ViewAuthority) -> Vec<(u8, bool)> {
    auth.view()
        .members
        .iter()
        .map(|m| (m.id, m.alive))
        .collect()
}

/// With a preferred primary the views name it; a handover goes to it when
/// it is live (not to the next in order), and `handback_due` tells a
/// primary that is not the preferred one to hand over.
#[test]
fn a_handover_goes_to_the_preferred_primary() {
    let mut auth = ViewAuthority::with_counter(
        GroupPolicy {
            preferred_primary: Some(3),
            ..policy()
        },
        Counter::starting_at(1),
    );
    let mut agents: Vec<MemberAgent> = (1..=3).map(agent).collect();
    round(ms(0), &mut auth, &mut agents, &[1, 2, 3]);
    round(ms(10), &mut auth, &mut agents, &[1, 2, 3]);
    let view = agents[0].view().expect("a view").clone();
    assert_eq!(view.preferred, Some(3));
    assert_eq!(view.primary(), Some(1));
    assert_eq!(view.handback_due(), Some(3), "3 is live, 1 is primary");
    agents[0].resign(ms(15), true);
    exchange(ms(15), &mut auth, &mut agents[0]);
    assert_eq!(order(&auth), vec![(3, true), (2, true), (1, true)]);
    assert_eq!(
        auth.view().handback_due(),
        None,
        "the preferred one is primary"
    );
}

#[test]
fn a_primary_hands_over_at_once_and_stays_as_the_last_backup() {
    let (mut auth, mut agents) = group();
    assert!(agents[0].lease_valid(ms(15)));
    agents[0].resign(ms(15), true);
    assert!(
        !agents[0].lease_valid(ms(15)),
        "silent from the moment it resigns"
    );
    exchange(ms(15), &mut auth, &mut agents[0]);
    assert_eq!(auth.view().epoch, 2, "no wait for the lease");
    assert_eq!(order(&auth), vec![(2, true), (3, true), (1, true)]);
    assert!(!agents[0].resigning(), "the answer shows it done");
    assert!(!agents[0].lease_valid(ms(16)));
    // The new primary's next keepalive brings view and lease together.
    round(ms(20), &mut auth, &mut agents, &[1, 2, 3]);
    assert!(agents[1].lease_valid(ms(21)));
    assert!(!agents[0].lease_valid(ms(21)));
    assert_eq!(auth.stats().resignations, 1);
}

#[test]
fn a_leaving_primary_or_backup_is_marked_dead_without_a_timeout() {
    let (mut auth, mut agents) = group();
    agents[2].resign(ms(15), false);
    exchange(ms(15), &mut auth, &mut agents[2]);
    assert_eq!(order(&auth), vec![(1, true), (2, true), (3, false)]);
    assert!(agents[2].removed());
    agents[0].resign(ms(16), false);
    exchange(ms(16), &mut auth, &mut agents[0]);
    // It had not seen epoch 2: the answer shows it, and it asks again at once.
    agents[0].handle_timeout(ms(16));
    exchange(ms(16), &mut auth, &mut agents[0]);
    assert_eq!(order(&auth), vec![(2, true), (3, false), (1, false)]);
    assert!(agents[0].removed());
    round(ms(20), &mut auth, &mut agents, &[2]);
    assert!(agents[1].lease_valid(ms(21)));
}

#[test]
fn the_last_member_cannot_resign_and_stale_resignations_are_ignored() {
    let (mut auth, mut agents) = group();
    // Member 2 resigns under epoch 1, but the message is held back.
    agents[1].resign(ms(15), false);
    let stale = agents[1].poll_transmit().unwrap();
    agents[1].cancel_resign();
    agents[2].resign(ms(15), false);
    exchange(ms(15), &mut auth, &mut agents[2]);
    assert_eq!(auth.view().epoch, 2);
    auth.handle_datagram(ms(16), &stale).unwrap();
    assert_eq!(auth.view().epoch, 2, "a resignation from epoch 1 is stale");
    agents[1].resign(ms(17), false);
    exchange(ms(17), &mut auth, &mut agents[1]);
    agents[1].handle_timeout(ms(17));
    exchange(ms(17), &mut auth, &mut agents[1]);
    assert_eq!(order(&auth), vec![(1, true), (3, false), (2, false)]);
    // The lone survivor may not hand its role to nobody.
    round(ms(18), &mut auth, &mut agents, &[1]);
    agents[0].resign(ms(19), true);
    exchange(ms(19), &mut auth, &mut agents[0]);
    assert_eq!(auth.view().epoch, 3);
    assert!(agents[0].resigning(), "still waiting: the caller cancels");
    agents[0].cancel_resign();
    round(ms(30), &mut auth, &mut agents, &[1]);
    assert!(agents[0].lease_valid(ms(31)), "it serves on");
}

#[test]
fn a_member_restarted_before_its_death_was_noticed_rejoins_rather_than_resumes() {
    let (mut auth, mut agents) = group();
    // Member 3's process dies and a new one registers at once.
    let mut back = agent(3);
    back.counter = Counter::starting_at(1 << 40);
    back.incarnation = back.counter.next_value();
    back.handle_timeout(ms(15));
    exchange(ms(15), &mut auth, &mut back);
    assert!(auth.view().is_alive(3), "not yet: the old lease may run");
    let mut t = 20;
    while auth.view().is_alive(3) {
        round(ms(t), &mut auth, &mut agents[..2], &[1, 2]);
        back.handle_timeout(ms(t));
        exchange(ms(t), &mut auth, &mut back);
        t += 10;
        assert!(t < 500);
    }
    // Declared dead; its next registration makes it a joining member.
    back.handle_timeout(ms(t));
    exchange(ms(t), &mut auth, &mut back);
    assert!(auth.view().is_joining(3), "{:?}", auth.view());
}

/// A backup paused long enough to be declared dead resumes as the same
/// process: what it holds is stale (the group acknowledged bytes without
/// it), so it is not taken back as a joining member; the answer shows it
/// dead and it stops, even if it never saw a view that admitted it
/// (simulator seeds 30787 and passive request/response 323).
#[test]
fn a_paused_member_declared_dead_stops_rather_than_rejoins() {
    let (mut auth, mut agents) = group();
    let mut t = 20;
    while auth.view().is_alive(3) {
        round(ms(t), &mut auth, &mut agents[..2], &[1, 2]);
        t += 10;
        assert!(t < 500);
    }
    let epoch = auth.view().epoch;
    for _ in 0..5 {
        round(ms(t), &mut auth, &mut agents, &[1, 2, 3]);
        t += 10;
    }
    assert!(!auth.view().is_joining(3) && !auth.view().is_alive(3));
    assert_eq!(auth.view().epoch, epoch, "no view takes it back");
    assert!(agents[2].removed(), "it learns it must stop");
    assert!(!agents[2].lease_valid(ms(t)));

    // The same while catching up: a joiner that went silent and resumes.
    let (mut auth, mut agents, mut back) = member_3_left_and_back();
    back.handle_timeout(ms(25));
    exchange(ms(25), &mut auth, &mut back);
    assert!(back.view().unwrap().is_joining(3));
    let mut t = 30;
    while auth.view().is_joining(3) {
        round(ms(t), &mut auth, &mut agents, &[1, 2]);
        t += 10;
        assert!(t < 500);
    }
    back.handle_timeout(ms(t));
    exchange(ms(t), &mut auth, &mut back);
    assert!(!auth.view().is_joining(3));
    assert!(back.removed());
}

/// The last live member's process restarts before anyone noticed: it
/// cannot be condemned (a group is never left with no member), and the
/// view still names it primary, but the new process holds none of the old
/// one's state: it must get no lease, or it would answer every client of
/// the group with resets (simulator seed 4115).
#[test]
fn a_restarted_last_member_gets_no_lease_as_the_old_one() {
    let (mut auth, mut agents) = group();
    let mut t = 20;
    while auth.view().live().count() > 1 {
        round(ms(t), &mut auth, &mut agents[..1], &[1]);
        t += 10;
        assert!(t < 1000);
    }
    assert_eq!(auth.view().primary(), Some(1));
    let mut back = agent(1);
    back.counter = Counter::starting_at(1 << 40);
    back.incarnation = back.counter.next_value();
    for _ in 0..10 {
        back.handle_timeout(ms(t));
        exchange(ms(t), &mut auth, &mut back);
        t += 10;
    }
    assert_eq!(auth.view().primary(), Some(1), "the view is unchanged");
    assert!(
        !back.lease_valid(ms(t)),
        "the new process must not act as the primary it replaced"
    );
}

#[test]
fn a_restarted_authority_carries_on_the_saved_view() {
    let (auth, mut agents) = group();
    let (epoch, saved) = auth.saved();
    let mut fresh = ViewAuthority::with_counter(policy(), Counter::starting_at(1 << 50));
    fresh.restore(ms(100), epoch, &saved);
    assert_eq!(fresh.view(), auth.view(), "same epoch, same members");
    // The members see no change: keepalives are answered, leases renewed.
    round(ms(110), &mut fresh, &mut agents, &[1, 2, 3]);
    assert!(agents[0].lease_valid(ms(111)));
    assert_eq!(agents[0].view().unwrap().epoch, epoch);
    // A member that did not come back is declared dead as usual.
    let mut t = 120;
    while fresh.view().is_alive(3) {
        round(ms(t), &mut fresh, &mut agents, &[1, 2]);
        t += 10;
        assert!(t < 600);
    }
    assert_eq!(fresh.view().epoch, epoch + 1);
}

/// An authority that read nothing for longer than the keepalive timeout
/// (its redirector did not act) must not hold that silence against the
/// members: after `resume` they get a timeout from then to show up, and
/// one that does not is declared dead as usual.
#[test]
fn a_resumed_authority_does_not_count_the_pause_as_silence() {
    let (mut unresumed, mut agents) = group();
    let epoch = unresumed.view().epoch;
    // What the pause would do unresumed: every member declared dead but
    // the one read first.
    round(ms(300), &mut unresumed, &mut agents, &[1]);
    round(ms(400), &mut unresumed, &mut agents, &[1]);
    assert!(
        unresumed.view().epoch > epoch && !unresumed.view().is_alive(2),
        "the unresumed authority condemns the members it did not read"
    );

    let (mut auth, mut agents) = group();
    auth.resume(ms(300));
    let mut t = 300;
    while t < 600 {
        round(ms(t), &mut auth, &mut agents, &[1, 2, 3]);
        t += 10;
    }
    assert_eq!(auth.view().epoch, epoch, "no view change after the pause");
    auth.resume(ms(t));
    while auth.view().is_alive(3) {
        round(ms(t), &mut auth, &mut agents, &[1, 2]);
        t += 10;
        assert!(t < 1200, "a member silent after the pause is declared dead");
    }
    assert!(
        t >= 700,
        "member 3 had its full keepalive timeout after resume"
    );
    assert_eq!(auth.view().epoch, epoch + 1);
}

/// An authority past its acting margin keeps the members' leases going
/// and changes nothing: a keepalive gets the view and a lease, a report is
/// dropped unread.
#[test]
fn keepalives_only_renews_leases_and_changes_nothing() {
    let (mut auth, mut agents) = group();
    let epoch = auth.view().epoch;
    // Past the lease the last full round gave (60 ms from 10 ms).
    agents[0].handle_timeout(ms(100));
    assert!(!agents[0].lease_valid(ms(100)));
    let mut replies = 0;
    while let Some(d) = agents[0].poll_transmit() {
        if let Some(reply) = auth.handle_keepalive(ms(100), &d).unwrap() {
            agents[0].handle_datagram(ms(100), &reply).unwrap();
            replies += 1;
        }
    }
    assert_eq!(replies, 1, "one keepalive, one reply");
    assert!(
        agents[0].lease_valid(ms(101)),
        "the primary's lease renewed"
    );
    // The primary silent for long: a report would depose it, if handled.
    agents[1].report_failure(ms(500), 1);
    let report = agents[1].poll_transmit().unwrap();
    assert_eq!(auth.handle_keepalive(ms(500), &report), Ok(None));
    assert_eq!(auth.view().epoch, epoch, "nothing changed");
    assert_eq!(auth.stats().failure_reports, 0, "the report was not read");
    // Handled in full, the same report from another backup counts.
    agents[2].report_failure(ms(500), 1);
    let report = agents[2].poll_transmit().unwrap();
    auth.handle_datagram(ms(500), &report).unwrap();
    assert_eq!(auth.stats().failure_reports, 1);
}

#[test]
fn every_message_keeps_its_wire_bytes() {
    let a = SocketAddr::from(([1, 2, 3, 4], 258));
    let b = SocketAddr::from(([5, 6, 7, 8], 1));
    let view = View {
        epoch: 9,
        members: vec![
            ViewMember {
                id: 1,
                alive: true,
                joining: false,
                data_addr: a,
                ack_addr: b,
            },
            ViewMember {
                id: 2,
                alive: false,
                joining: true,
                data_addr: b,
                ack_addr: a,
            },
        ],
        preferred: Some(2),
    };
    // Each address: its family byte, then address and port.
    let a_bytes = [4, 1, 2, 3, 4, 1, 2];
    let b_bytes = [4, 5, 6, 7, 8, 0, 1];
    let mut register = vec![2, b'g', b'1'];
    register.extend(a_bytes);
    register.extend(b_bytes);
    register.extend([0, 0, 0, 0, 0, 0, 1, 2]);
    let mut reply = vec![0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0x01, 0xf4];
    reply.extend([0, 0, 0, 0, 0, 0, 0, 9, 2, 1, 1]);
    reply.extend(a_bytes);
    reply.extend(b_bytes);
    reply.extend([2, 2]);
    reply.extend(b_bytes);
    reply.extend(a_bytes);
    reply.push(2); // the preferred primary (0: none)
                   // A connection key: one family byte, then local and remote.
    let conn = ConnKey {
        local: a,
        remote: b,
    };
    let conn_bytes = [4, 1, 2, 3, 4, 1, 2, 5, 6, 7, 8, 0, 1];
    reply.push(1); // one question
    reply.extend(conn_bytes);
    let mut holds = vec![2];
    holds.extend(conn_bytes);
    holds.extend(conn_bytes);
    let cases = [
        (
            Message::Register {
                group: "g1".into(),
                data_addr: a,
                ack_addr: b,
                incarnation: 0x0102,
            },
            KIND_REGISTER,
            register,
        ),
        (Message::Keepalive, KIND_KEEPALIVE, vec![]),
        (
            Message::FailureReport { suspect: 3 },
            KIND_FAILURE_REPORT,
            vec![3],
        ),
        (Message::Resign { stay: true }, KIND_RESIGN, vec![1]),
        (Message::Ready { member: 4 }, KIND_READY, vec![4]),
        (
            Message::Reply {
                echo: 5,
                lease: Duration::from_millis(500),
                view,
                questions: vec![conn],
            },
            KIND_REPLY,
            reply,
        ),
        (
            Message::Holds {
                connections: vec![conn, conn],
            },
            KIND_HOLDS,
            holds,
        ),
    ];
    for (msg, kind, want) in cases {
        let datagram = encode(&key(), 1, 2, 3, &msg);
        let (header, body) = auth::open(&key(), DOMAIN, &datagram).unwrap();
        assert_eq!(header.kind, kind);
        assert_eq!(body, want, "{msg:?}");
        assert_eq!(decode(&key(), &datagram).unwrap().1, msg);
    }
}

#[test]
fn members_that_hold_a_connection_answer_the_authoritys_question() {
    let (mut auth, mut agents) = group();
    let conn = |port| ConnKey {
        local: addr(100, 7),
        remote: addr(200, port),
    };
    let asked: Vec<ConnKey> = (0..20).map(conn).collect();
    auth.ask(asked.clone());
    // Two rounds of replies carry all 20 questions to every member.
    round(ms(20), &mut auth, &mut agents, &[1, 2, 3]);
    round(ms(30), &mut auth, &mut agents, &[1, 2, 3]);
    let mut seen = std::collections::HashSet::new();
    for a in &mut agents {
        let q = a.take_questions();
        assert!(q.len() <= 4 * MAX_KEYS_PER_MESSAGE);
        seen.extend(q);
    }
    assert_eq!(seen.len(), 20, "every question reached a member");
    // Member 2 holds ports 3 and 17; member 3 holds 3.
    agents[1].report_holds(&[conn(3), conn(17)]);
    agents[2].report_holds(&[conn(3)]);
    for a in &mut agents {
        while let Some(d) = a.poll_transmit() {
            assert_eq!(auth.handle_datagram(ms(35), &d).unwrap(), None);
        }
    }
    let mut holds = auth.take_holds();
    holds.sort();
    assert_eq!(holds, vec![conn(3), conn(17)]);
    assert!(auth.take_holds().is_empty());
    // A member outside the view is not believed.
    let mut stranger = agent(9);
    stranger.report_holds(&[conn(5)]);
    let d = stranger.poll_transmit().unwrap();
    assert!(auth.handle_datagram(ms(36), &d).is_err());
    assert!(auth.take_holds().is_empty());
    // Many held connections go in several datagrams.
    agents[0].report_holds(&asked);
    let mut datagrams = 0;
    while let Some(d) = agents[0].poll_transmit() {
        auth.handle_datagram(ms(40), &d).unwrap();
        datagrams += 1;
    }
    assert_eq!(datagrams, 2);
    assert_eq!(auth.take_holds().len(), 20);
}
