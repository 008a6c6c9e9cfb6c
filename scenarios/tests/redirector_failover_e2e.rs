//! Redundant redirectors end to end: two `hydra-redirector` processes share
//! a real etcd; the acting one holds the clients' next hop (the floating
//! address) and is SIGKILLed during a download and a paced echo stream.
//! The standby takes the authority and the address over; the client must
//! see every byte exactly once and no reset.

mod common;

use std::time::{Duration, Instant};

use common::{download_matches, echo_verdict, serial, start};
use scenarios::clients;
use scenarios::cluster::{etcd_binary, ClusterSpec, FLOATING_IP};
use testnet::netns::privileged;

/// True when etcd and arping are installed; otherwise says why the test is
/// skipped (and fails under `CI=true`).
fn coordination_tools(test: &str) -> bool {
    let arping = ["/usr/bin/arping", "/usr/sbin/arping", "/bin/arping"]
        .iter()
        .any(|p| std::path::Path::new(p).is_file());
    let why = match (etcd_binary().is_some(), arping) {
        (true, true) => return true,
        (false, _) => "etcd is not installed (apt-get install etcd-server)",
        (true, false) => "arping is not installed (apt-get install iputils-arping)",
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}; CI=true forbids skipping");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

#[test]
fn connections_survive_the_acting_redirector_killed() {
    let test = "connections_survive_the_acting_redirector_killed";
    if !privileged(test) || !coordination_tools(test) {
        return;
    }
    let _serial = serial();
    let mut c = start(
        "rf2",
        ClusterSpec {
            replicas: 3,
            redirectors: 2,
            etcd: true,
            ..ClusterSpec::default()
        },
    );
    let acting = c.wait_acting(Duration::from_secs(10)).unwrap();
    let (epoch, primary, live) = c.view().unwrap();
    assert_eq!(live, 3, "a full group before the kill");

    let original = c.www.join("file.bin");
    clients::write_random_file(&original, 48 << 20).unwrap();
    let dest = c.log_dir().join("got.bin");
    // About 6 s of transfer and 10 s of echo: the kill lands mid-stream.
    let curl = clients::start_download(&c, "file.bin", &dest, "8M").unwrap();
    let echo = clients::start_echo(&c, 1, 4 << 20, 4096, Duration::from_millis(10)).unwrap();
    std::thread::sleep(Duration::from_millis(1500));

    c.kill_redirector(acting).unwrap();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(10);
    let survivor = loop {
        if let Some(k) = c.acting_redirector().filter(|&k| k != acting) {
            break k;
        }
        assert!(
            Instant::now() < deadline,
            "the standby did not take over; logs in {}",
            c.log_dir().display()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let takeover = killed.elapsed();

    download_matches(curl, &dest, &original);
    let v = clients::finish_echo(echo).unwrap();
    echo_verdict(&v, "echo stream");
    let status = c.redirector_status(survivor).unwrap();
    assert_eq!(
        status["coordination"]["floating"]["held"].as_bool(),
        Some(true),
        "the survivor holds the floating address {FLOATING_IP}: {status}"
    );
    // The views came from etcd: the same group, no failover of a replica.
    let (after, new_primary, after_live) = c.view().unwrap();
    assert_eq!(
        (after, new_primary, after_live),
        (epoch, primary, live),
        "the replicas saw no view change"
    );
    println!(
        "redirector failover: standby acting {:.0} ms after the SIGKILL; echo stream max gap {:.0} ms, stalls over 20 ms {}",
        takeover.as_secs_f64() * 1000.0,
        v["max_gap_ms"].as_f64().unwrap_or(-1.0),
        v["stalls_ms"]
    );
}
