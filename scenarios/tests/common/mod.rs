//! Helpers shared by the end-to-end test files.
#![allow(dead_code)] // each test file uses its own subset

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use scenarios::clients;
use scenarios::cluster::{Binaries, Cluster, ClusterSpec, MemberProgram};

/// One cluster at a time: five processes per cluster on a 2-core machine.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn bins() -> Binaries {
    Binaries::beside_current_exe().expect("build the binaries first: cargo build --bins")
}

/// A cluster as `spec` says, of this build's binaries.
pub fn start(tag: &str, spec: ClusterSpec) -> Cluster {
    Cluster::start(tag, spec, bins()).expect("cluster start")
}

/// A group of `replicas` `hydra-replica` members with the default apps.
pub fn cluster(tag: &str, replicas: usize) -> Cluster {
    start(
        tag,
        ClusterSpec {
            replicas,
            ..ClusterSpec::default()
        },
    )
}

/// An example's program (`hydra-kv`, `hydra-axum`) as a group of 3
/// serving `port`.
pub fn example_group(tag: &str, example: &str, port: u16) -> Cluster {
    let program = MemberProgram::example(&bins(), example, port);
    assert!(
        program.path.exists(),
        "{} missing: cargo build --workspace --bins",
        program.path.display()
    );
    start(
        tag,
        ClusterSpec {
            replicas: 3,
            program: Some(program),
            ..ClusterSpec::default()
        },
    )
}

/// Kill member `victim` and wait (5 s at most) for the group's new view:
/// a later epoch with one live member fewer.
pub fn kill_and_wait_view(c: &mut Cluster, victim: u8) {
    let (epoch, _, live) = c.view().expect("redirector status");
    c.kill_member(victim).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (e, _, n) = c.view().unwrap_or((epoch, None, live));
        if e > epoch && n == live - 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no view change after killing {victim}; logs in {}",
            c.log_dir().display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kill the current primary and wait for the new view; returns its id.
pub fn kill_primary(c: &mut Cluster) -> u8 {
    let (_, primary, _) = c.view().expect("redirector status");
    let victim = primary.expect("a primary");
    kill_and_wait_view(c, victim);
    victim
}

/// The current primary's count of deliveries at the gate (ahead of the
/// log's commit): only connections of plain listeners take them.
#[allow(dead_code)]
pub fn primary_gate_deliveries(c: &Cluster) -> u64 {
    let (_, primary, _) = c.view().expect("redirector status");
    let status = c
        .replica_status(primary.expect("a primary"))
        .expect("primary status");
    status["gate_deliveries"]
        .as_u64()
        .unwrap_or_else(|| panic!("no gate_deliveries in the primary's status: {status}"))
}

pub fn echo_verdict(v: &serde_json::Value, what: &str) {
    assert_eq!(v["ok"].as_bool(), Some(true), "{what}: {v}");
    assert_eq!(v["resets"], 0, "{what}: client saw a reset: {v}");
    assert_eq!(v["mismatches"], 0, "{what}: bytes differ: {v}");
}

/// Wait for a curl download and check it is byte-exact.
pub fn download_matches(curl: std::process::Child, dest: &Path, original: &Path) {
    let out = curl.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        clients::sha256(dest).unwrap(),
        clients::sha256(original).unwrap(),
        "download differs"
    );
}

/// Poll `cond` every 20 ms until it holds; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Live member ids in view order (primary first) from the redirector.
pub fn live_members(c: &Cluster) -> Vec<u8> {
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
