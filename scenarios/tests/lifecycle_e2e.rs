//! Issue 6's end-to-end checks with the real binaries on namespaces:
//! deliberate handover (SIGTERM on the primary, and the admin action that
//! keeps the old primary as a backup) under load, with byte-exact streams.

mod common;

use std::time::Duration;

use common::{cluster, download_matches, echo_verdict, serial, wait_until};
use hydra_tests::netns::privileged;
use scenario::clients;

/// Live member ids in view order (primary first) from the redirector.
fn live_members(c: &scenario::cluster::Cluster) -> Vec<u8> {
    let s = c.status().unwrap_or_default();
    s["groups"][0]["members"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|m| m["alive"].as_bool() == Some(true))
        .filter_map(|m| m["id"].as_u64())
        .map(|id| id as u8)
        .collect()
}

#[test]
fn handovers_under_load_keep_every_stream_exact() {
    if !privileged("handovers_under_load_keep_every_stream_exact") {
        return;
    }
    let _serial = serial();
    let mut c = cluster("ho3", 3);
    let original = c.www.join("file.bin");
    clients::write_random_file(&original, 40 << 20).unwrap();
    let dest = c.log_dir().join("got.bin");
    let curl = clients::start_download(&c, "file.bin", &dest, "12M").unwrap();
    let bulk = clients::start_echo(&c, 1, 12 << 20, 65536, Duration::from_millis(5)).unwrap();
    let chat = clients::start_echo(&c, 4, 250 * 512, 512, Duration::from_millis(10)).unwrap();

    // 1. SIGTERM on the primary: it hands its role over and leaves.
    std::thread::sleep(Duration::from_millis(1000));
    let before = live_members(&c);
    assert_eq!(before.len(), 3, "view before: {before:?}");
    let first = before[0];
    c.signal_member(first, libc::SIGTERM).unwrap();
    wait_until("the old primary exits", Duration::from_secs(5), || {
        !c.member_running(first)
    });
    assert_eq!(
        live_members(&c),
        before[1..].to_vec(),
        "the next in line took over"
    );
    let log = std::fs::read_to_string(c.log_dir().join(format!("replica{first}.log"))).unwrap();
    assert!(log.contains("the group let this replica go"), "{log}");

    // 2. The admin action on the new primary: it hands over and stays.
    std::thread::sleep(Duration::from_millis(700));
    let second = before[1];
    let answer = c.replica_action(second, "/handover").unwrap();
    assert!(answer.contains("started"), "{answer}");
    wait_until("the handover view", Duration::from_secs(5), || {
        live_members(&c) == vec![before[2], second]
    });
    wait_until(
        "the old primary serves on as a backup",
        Duration::from_secs(5),
        || {
            c.replica_status(second)
                .is_ok_and(|s| s["role"] == "Backup")
        },
    );

    download_matches(curl, &dest, &original);
    let bulk = clients::finish_echo(bulk).unwrap();
    let chat = clients::finish_echo(chat).unwrap();
    echo_verdict(&bulk, "bulk echo across two handovers");
    echo_verdict(&chat, "interactive echo across two handovers");
    // Figures for the note, not assertions (benchmarks claim speed).
    eprintln!(
        "longest client-observed gap: bulk {} ms, interactive {} ms",
        bulk["max_gap_ms"], chat["max_gap_ms"]
    );
    let failures = c.status().unwrap()["groups"][0]["failure_reports"].clone();
    assert_eq!(failures, 0, "a handover is not a failure");
}
