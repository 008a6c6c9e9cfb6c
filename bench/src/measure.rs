//! The measurements on one running configuration: throughput, latency
//! and how many connections it holds, each by the load generator
//! (`hydra-bench client`) in the configuration's client namespace.

use std::time::{Duration, Instant};

use crate::client::ClientResult;
use crate::report::{Latency, Scale, Throughput};
use crate::servers::ECHO;
use crate::setups::{self, Target};

/// Run the client in the target's client namespace.
fn client(
    t: &Target,
    mode: &str,
    port: u16,
    msg: usize,
    secs: f64,
    extra: &[&str],
) -> ClientResult {
    let exe = std::env::current_exe().expect("own path");
    let mut cmd = t.command(&exe.to_string_lossy());
    cmd.args([
        "client",
        "--mode",
        mode,
        "--addr",
        &t.addr(port).to_string(),
    ]);
    cmd.args(["--msg", &msg.to_string(), "--secs", &secs.to_string()]);
    cmd.args(extra);
    ClientResult::from_output(cmd.output())
}

pub fn throughput(t: &Target, direction: &str, port: u16, msg: usize, secs: f64) -> Throughput {
    let cpu0 = setups::cpu_seconds(&t.pids);
    let r = client(t, direction, port, msg, secs, &[]);
    let cpu = setups::cpu_seconds(&t.pids) - cpu0;
    let gib = r.bytes as f64 / (1u64 << 30) as f64;
    Throughput {
        config: t.name(),
        direction: direction.into(),
        msg,
        gbit_s: if r.secs > 0.0 {
            r.bytes as f64 * 8.0 / r.secs / 1e9
        } else {
            0.0
        },
        cpu_s_per_gib: if gib > 0.0 { cpu / gib } else { 0.0 },
        error: r.error,
    }
}

pub fn latency(t: &Target, msg: usize, secs: f64) -> Latency {
    let r = client(t, "rr", ECHO, msg, secs, &[]);
    let [p50, p99, p999, max] = r.rtt_us.unwrap_or_default();
    Latency {
        config: t.name(),
        msg,
        p50_us: p50,
        p99_us: p99,
        p999_us: p999,
        max_us: max,
        cdf: r.cdf,
        error: r.error,
    }
}

pub fn scale(t: &Target, connections: usize) -> Scale {
    let before = setups::rss_bytes(&t.pids);
    let exe = std::env::current_exe().expect("own path");
    let mut cmd = t.command("bash");
    // The client needs a descriptor per connection.
    cmd.args([
        "-c",
        &format!(
            "ulimit -n {} && exec {} client --mode hold --addr {} --connections {connections} --secs 2",
            connections + 1024,
            exe.display(),
            t.addr(ECHO)
        ),
    ]);
    let child = cmd.stdout(std::process::Stdio::piped()).spawn();
    let Ok(child) = child else {
        return Scale {
            config: t.name(),
            error: Some("client did not start".into()),
            ..Scale::default()
        };
    };
    // Sample memory while the connections are held (the client holds 2 s).
    let mut peak = before;
    let start = Instant::now();
    let mut out = None;
    let mut child = child;
    while start.elapsed() < Duration::from_secs(300) {
        peak = peak.max(setups::rss_bytes(&t.pids));
        if let Ok(Some(_)) = child.try_wait() {
            out = child.wait_with_output().ok();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let r: ClientResult = out
        .and_then(|o| serde_json::from_slice(&o.stdout).ok())
        .unwrap_or_else(|| ClientResult {
            error: Some("hold client gave no result".into()),
            ..ClientResult::default()
        });
    Scale {
        config: t.name(),
        connections: r.held,
        setup_per_s: if r.setup_secs > 0.0 {
            r.held as f64 / r.setup_secs
        } else {
            0.0
        },
        bytes_per_connection: if r.held > 0 {
            peak.saturating_sub(before) as f64 / r.held as f64
        } else {
            0.0
        },
        error: r.error,
    }
}
