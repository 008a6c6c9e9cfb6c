//! Link faults on real binaries, through the project's own relay
//! (`hydra-scenario relay`; the kernel here has no netem): lossy, slow,
//! reordering, duplicating links from the redirector to every replica,
//! with a primary crash on top; and a replica whose ack channel is cut.

mod common;

use std::time::Duration;

use common::{download_matches, echo_verdict, live_members, serial, wait_until};
use scenarios::clients;
use scenarios::cluster::{Cluster, ClusterSpec};
use testnet::netns::privileged;

fn relayed(tag: &str) -> Cluster {
    let spec = ClusterSpec {
        replicas: 3,
        relays: true,
        ..ClusterSpec::default()
    };
    common::start(tag, spec)
}

#[test]
fn lossy_redirector_links_and_a_primary_crash_lose_nothing() {
    if !privileged("lossy_redirector_links_and_a_primary_crash_lose_nothing") {
        return;
    }
    let _serial = serial();
    let mut c = relayed("lossy");
    for i in 0..3 {
        c.set_link(i, "loss=0.03 delay_ms=1 jitter_ms=2 duplicate=0.01")
            .unwrap();
    }
    let original = c.www.join("file.bin");
    clients::write_random_file(&original, 12 << 20).unwrap();
    let dest = c.log_dir().join("got.bin");
    let curl = clients::start_download(&c, "file.bin", &dest, "4M").unwrap();
    let echo = clients::start_echo(&c, 4, 200 * 1024, 2048, Duration::from_millis(5)).unwrap();

    std::thread::sleep(Duration::from_millis(1200));
    let before = live_members(&c);
    assert_eq!(
        before.len(),
        3,
        "a lossy link alone must not cost a member: {before:?}"
    );
    c.kill_member(before[0]).unwrap();
    wait_until("the takeover", Duration::from_secs(5), || {
        live_members(&c).first() == Some(&before[1])
    });

    download_matches(curl, &dest, &original);
    let echo = clients::finish_echo(echo).unwrap();
    echo_verdict(&echo, "echo over lossy links across a crash");
    let log = std::fs::read_to_string(c.log_dir().join("relay1.log")).unwrap();
    assert!(
        log.contains("loss: 0.03"),
        "the relay took the impairment: {log}"
    );
    eprintln!("longest echo gap: {} ms", echo["max_gap_ms"]);
}

#[test]
fn a_replica_cut_off_the_ack_channel_is_dropped_and_clients_carry_on() {
    if !privileged("a_replica_cut_off_the_ack_channel_is_dropped_and_clients_carry_on") {
        return;
    }
    let _serial = serial();
    let c = relayed("ackcut");
    let echo = clients::start_echo(&c, 4, 300 * 1024, 2048, Duration::from_millis(5)).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let before = live_members(&c);
    assert_eq!(before.len(), 3, "{before:?}");
    // Nobody can reach the last backup's ack channel any more.
    let cut = before[2];
    c.set_link(usize::from(cut) - 1, "cut_ack=1").unwrap();
    wait_until(
        "the group drops the cut member",
        Duration::from_secs(5),
        || !live_members(&c).contains(&cut),
    );
    let after = live_members(&c);
    assert!(!after.is_empty(), "the group lost every member: {after:?}");
    let echo = clients::finish_echo(echo).unwrap();
    echo_verdict(&echo, "echo while a backup is cut off the ack channel");
    eprintln!(
        "view after the cut: {after:?}; longest echo gap: {} ms",
        echo["max_gap_ms"]
    );
}
