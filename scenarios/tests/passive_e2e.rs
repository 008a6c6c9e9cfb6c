//! Passive replication end to end: the `session` demo app, whose
//! replies depend on randomness and the clock, runs only on the primary;
//! its sessions must survive a primary crash and a deliberate handover
//! with every reply consistent (no skipped or repeated step, totals equal
//! to the rolls the client saw) and no reset.

mod common;

use std::time::Duration;

use common::{echo_verdict, live_members, primary_gate_deliveries, serial, wait_until};
use scenarios::clients;
use scenarios::cluster::ClusterSpec;
use testnet::netns::privileged;

const SESSION_PORT: u16 = 7000;
const ROUNDS: usize = 1000;

#[test]
fn passive_sessions_survive_a_primary_crash_and_a_handover() {
    if !privileged("passive_sessions_survive_a_primary_crash_and_a_handover") {
        return;
    }
    let _serial = serial();
    let spec = ClusterSpec {
        replicas: 3,
        extra_apps: vec![format!("session:{SESSION_PORT}")],
        ..ClusterSpec::default()
    };
    let mut c = common::start("pas", spec);
    // 8 sessions of 1000 rounds 5 ms apart: about 6 s each.
    let mut sessions =
        clients::start_sessions(&c, SESSION_PORT, 8, ROUNDS, Duration::from_millis(5)).unwrap();

    std::thread::sleep(Duration::from_millis(1200));
    let before = live_members(&c);
    assert_eq!(before.len(), 3, "view before: {before:?}");
    let primary = before[0];
    let backup = before[1];
    // The backups hold the sessions' steps without running the app.
    let applied = c.replica_status(backup).unwrap()["checkpoints_applied"].clone();
    assert!(
        applied.as_u64().is_some_and(|n| n > 0),
        "backup {backup} applied no checkpoint: {applied}"
    );

    // 1. Crash of the primary.
    c.kill_member(primary).unwrap();
    wait_until("the takeover", Duration::from_secs(5), || {
        live_members(&c) == before[1..].to_vec()
    });

    // 2. A handover that keeps the old primary: its application's handles
    //    go stale, the sessions move to the other replica's application.
    std::thread::sleep(Duration::from_millis(800));
    let answer = c.replica_action(backup, "/handover").unwrap();
    assert!(answer.contains("started"), "{answer}");
    wait_until("the handover view", Duration::from_secs(5), || {
        live_members(&c) == vec![before[2], backup]
    });
    assert!(
        sessions.try_wait().unwrap().is_none(),
        "the sessions ended before the handover: it was not under load"
    );

    let verdict = clients::finish_echo(sessions).unwrap();
    assert_eq!(verdict["ok"].as_bool(), Some(true), "sessions: {verdict}");
    assert_eq!(verdict["bad"], 0, "inconsistent replies: {verdict}");
    assert_eq!(verdict["resets"], 0, "a session was reset: {verdict}");
    assert_eq!(verdict["replies"], 8 * ROUNDS, "{verdict}");
    eprintln!(
        "longest wait for a reply: {} ms; waits over 20 ms: {}",
        verdict["max_wait_ms"], verdict["waits_over_20ms"]
    );
    let refused = c.replica_status(before[2]).unwrap()["checkpoints_refused"].clone();
    eprintln!("checkpoints refused on the final primary: {refused}");

    assert_eq!(
        primary_gate_deliveries(&c),
        0,
        "a passive listener's bytes are released by checkpoints, not at the gate"
    );

    // The deterministic apps keep working beside the passive one, and
    // their connections (a plain listener's) take bytes at the gate.
    let echo = clients::start_echo(&c, 2, 64 << 10, 4096, Duration::from_millis(2)).unwrap();
    echo_verdict(&clients::finish_echo(echo).unwrap(), "echo beside sessions");
    assert!(primary_gate_deliveries(&c) > 0);
}
