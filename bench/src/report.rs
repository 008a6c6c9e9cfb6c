//! What a bench run measured: the report written as JSON and drawn as
//! plots. Plain data, so the runner and the plotter both depend on it and
//! not on each other.

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
    /// The commit measured (see `run::commit`).
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
    pub rejoin: Rejoin,
    pub scale: Vec<Scale>,
}
