//! Helpers shared by the end-to-end test files.
#![allow(dead_code)] // each test file uses its own subset

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use scenarios::clients;
use scenarios::cluster::{Binaries, Cluster, ClusterSpec};

/// One cluster at a time: five processes per cluster on a 2-core machine.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn bins() -> Binaries {
    Binaries::beside_current_exe().expect("build the binaries first: cargo build --bins")
}

pub fn cluster(tag: &str, replicas: usize) -> Cluster {
    let spec = ClusterSpec {
        replicas,
        ..ClusterSpec::default()
    };
    Cluster::start(tag, spec, bins()).expect("cluster start")
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
