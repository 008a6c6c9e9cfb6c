//! The key-value example (`hydra-kv`, state shared by all connections, on
//! the ordered event loop) as a group of 3 under real Redis clients: the
//! answers are Redis's, `redis-benchmark` with 50 clients runs through two
//! primary crashes without an error, and INCRs from many connections
//! through a crash are neither lost nor repeated, with the surviving
//! members' stores equal.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{example_group, kill_primary, serial};
use scenarios::cluster::{Cluster, VIP};
use testnet::netns::{privileged, run};

fn redis_cli(c: &Cluster, args: &[&str]) -> String {
    let mut cmd = c.client("redis-cli");
    cmd.args(["-h", &VIP.to_string(), "-p", "6379"]).args(args);
    let out = run(&mut cmd).expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The store digest a member's admin endpoint shows.
fn digest(c: &Cluster, member: u8) -> String {
    let out = c
        .in_replica(
            member,
            "curl",
            &["-s", "--max-time", "5", "http://127.0.0.1:9100/digest"],
        )
        .expect("digest");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn redis_clients_get_redis_answers_and_benchmark_through_two_primary_crashes() {
    if !privileged("redis_clients_get_redis_answers_and_benchmark_through_two_primary_crashes") {
        return;
    }
    let _serial = serial();
    let mut c = example_group("kvb", "hydra-kv", 6379);
    assert_eq!(redis_cli(&c, &["PING"]), "PONG");
    assert_eq!(redis_cli(&c, &["SET", "greeting", "hello world"]), "OK");
    assert_eq!(redis_cli(&c, &["GET", "greeting"]), "hello world");
    assert_eq!(redis_cli(&c, &["INCRBY", "n", "41"]), "41");
    assert_eq!(redis_cli(&c, &["INCR", "n"]), "42");
    assert_eq!(redis_cli(&c, &["MSET", "a", "1", "b", "2"]), "OK");
    assert_eq!(redis_cli(&c, &["MGET", "a", "nope", "b"]), "1\n\n2");
    assert_eq!(redis_cli(&c, &["EXISTS", "a", "b", "c"]), "2");
    assert_eq!(redis_cli(&c, &["DEL", "a"]), "1");
    assert_eq!(redis_cli(&c, &["DBSIZE"]), "3");
    assert!(redis_cli(&c, &["NOSUCH"]).contains("unknown command"));

    // 50 clients, pipelining 4, long enough for two crashes.
    let mut bench = c.client("redis-benchmark");
    bench
        .args(["-h", &VIP.to_string(), "-p", "6379", "-c", "50", "-P", "4"])
        .args(["-n", "300000", "-t", "set,get,incr", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = bench
        .spawn()
        .expect("redis-benchmark (apt install redis-tools)");
    std::thread::sleep(Duration::from_millis(1500));
    kill_primary(&mut c);
    std::thread::sleep(Duration::from_millis(1500));
    kill_primary(&mut c);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "redis-benchmark failed: {text}");
    assert!(
        !text.to_lowercase().contains("error"),
        "redis-benchmark saw errors: {text}"
    );
    eprintln!("redis-benchmark through two crashes:\n{text}");
    for t in ["SET", "GET", "INCR"] {
        assert!(text.contains(&format!("{t}: ")), "no {t} result in: {text}");
    }
    // The last member standing still has what was written before.
    assert_eq!(redis_cli(&c, &["GET", "greeting"]), "hello world");
    assert_eq!(
        common::primary_gate_deliveries(&c),
        0,
        "an ordered listener's bytes wait for the log's commit"
    );
}

#[test]
fn incrs_from_many_connections_survive_a_primary_crash_exactly_once() {
    if !privileged("incrs_from_many_connections_survive_a_primary_crash_exactly_once") {
        return;
    }
    let _serial = serial();
    let mut c = example_group("kvi", "hydra-kv", 6379);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testnet/clients/incr_checker.py");
    let mut checker: Command = c.client("python3");
    checker
        .arg(&script)
        .args([
            "--host",
            &VIP.to_string(),
            "--connections",
            "8",
            "--keys",
            "4",
        ])
        .args(["--seconds", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = checker.spawn().unwrap();
    // A crash at an instant that varies from run to run.
    let jitter = u64::from(std::process::id() % 1000);
    std::thread::sleep(Duration::from_millis(1500 + jitter));
    let victim = kill_primary(&mut c);
    let out = child.wait_with_output().unwrap();
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "checker output ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    eprintln!("INCR checker: {verdict}");
    assert_eq!(verdict["ok"], true, "INCR checker: {verdict}");
    let acked: u64 = verdict["acked"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|v| v.as_u64())
        .sum();
    assert!(acked > 100, "too few INCRs to mean anything: {verdict}");
    // Every surviving member executed the same requests in the same order.
    // (An application may be a few requests behind its stack: wait a little.)
    let survivors: Vec<u8> = (1..=3).filter(|m| *m != victim).collect();
    let end = Instant::now() + Duration::from_secs(3);
    let mut digests: Vec<String> = survivors.iter().map(|m| digest(&c, *m)).collect();
    while digests[0] != digests[1] && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        digests = survivors.iter().map(|m| digest(&c, *m)).collect();
    }
    assert!(
        !digests[0].is_empty(),
        "no digest from member {}",
        survivors[0]
    );
    eprintln!("digests of members {survivors:?}: {digests:?}");
    assert_eq!(
        digests[0], digests[1],
        "members {survivors:?} hold different stores"
    );
}
