//! What a bench run measured: the report written as JSON and drawn as
//! plots. Plain data, so the runner and the plotter both depend on it and
//! not on each other; and what every subcommand's report carries and how
//! it is written (date, commit, machine, ratios, the JSON file).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Throughput {
    pub config: String,
    pub direction: String,
    pub msg: usize,
    pub gbit_s: f64,
    /// CPU seconds of our processes per GiB moved (kernel: the server
    /// process only; kernel TCP's softirq work is not in it).
    pub cpu_s_per_gib: f64,
    pub error: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Latency {
    pub config: String,
    pub msg: usize,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub cdf: Vec<(u64, f64)>,
    pub error: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Failover {
    pub crashes: usize,
    /// Client-observed gap at each crash (ms).
    pub gaps_ms: Vec<f64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Round trips per second until 100 ms before the first crash, and from
    /// 500 ms after the last one to the end of the run.
    pub rate_before: f64,
    pub rate_after: f64,
    /// The groups' lease and heartbeat period (ms).
    pub lease_ms: u64,
    pub heartbeat_ms: u64,
    pub errors: Vec<String>,
}

/// A backup restarted while the group holds many connections: time from
/// its process start to live member, and the stall a request/response
/// stream sees meanwhile.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Rejoin {
    pub connections: usize,
    pub rejoin_ms: Vec<f64>,
    pub stall_ms: Vec<f64>,
    pub errors: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Scale {
    pub config: String,
    pub connections: usize,
    pub setup_per_s: f64,
    pub bytes_per_connection: f64,
    pub error: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    pub date: String,
    /// The commit measured (see [`commit`]).
    pub commit: String,
    pub mode: String,
    pub machine: serde_json::Value,
    /// Client and servers share the machine's cores.
    pub shared_cores: bool,
    /// MTU of the links between the redirector and the replicas.
    pub link_mtu: u32,
    pub throughput: Vec<Throughput>,
    pub latency: Vec<Latency>,
    pub failover: Failover,
    /// The same measurement with deliberate handovers instead of crashes.
    pub handover: Failover,
    /// The same measurement with the primary's host lost (process stopped,
    /// links down) instead of crashed.
    #[serde(default)]
    pub lost_host: Failover,
    pub rejoin: Rejoin,
    pub scale: Vec<Scale>,
}

pub fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(str::to_string))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    serde_json::json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "memory": mem,
        "kernel": kernel.trim(),
    })
}

/// The source tree's commit (short hash, `-dirty` with uncommitted
/// changes): results are named by date and commit.
pub fn commit() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(hash) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{hash}-dirty")
            } else {
                hash
            }
        }
        None => "unknown".into(),
    }
}

pub fn today() -> String {
    let out = std::process::Command::new("date").arg("+%Y-%m-%d").output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Write `report` as `<out>/<stem>.json`; returns its path.
pub fn write_json(out: &Path, stem: &str, report: &impl Serialize) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(out)?;
    let path = out.join(format!("{stem}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(report)?)?;
    Ok(path)
}

/// `value / base` to two places, or `-` without a (positive) base.
pub fn ratio(value: f64, base: Option<f64>) -> String {
    base.filter(|b| *b > 0.0)
        .map_or("-".into(), |b| format!("{:.2}", value / b))
}
