//! What a group of 3 does when a member goes: the stall a request/response
//! stream sees at each primary crash or handover, and a backup restarted
//! and rejoining while the group holds many connections.

use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::ProgressBar;
use scenarios::cluster::{Binaries, Cluster, ClusterSpec};

use crate::client::{self, ClientResult};
use crate::report::{Failover, Rejoin};
use crate::servers::ECHO;

/// Restart a backup `reps` times while a client holds `connections` echo
/// connections and a request/response stream runs; every held connection
/// must still echo at the end.
pub fn rejoin(bins: &Binaries, reps: usize, connections: usize, bar: &ProgressBar) -> Rejoin {
    let mut r = Rejoin {
        connections,
        ..Rejoin::default()
    };
    if reps == 0 {
        return r;
    }
    if let Err(e) = rejoin_runs(bins, reps, &mut r, bar) {
        r.errors.push(format!("{e:#}"));
    }
    r
}

fn rejoin_runs(
    bins: &Binaries,
    reps: usize,
    r: &mut Rejoin,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let spec = ClusterSpec {
        replicas: 3,
        ..ClusterSpec::default()
    };
    let mut c = Cluster::start("xr", spec, bins.clone())?;
    let exe = std::env::current_exe()?;
    let addr = format!("{}:{ECHO}", scenarios::cluster::VIP);
    let hold_secs = 6.0 + 2.5 * reps as f64;
    let mut hold = c.client("bash");
    hold.args([
        "-c",
        &format!(
            "ulimit -n {} && exec {} client --mode hold --addr {addr} --connections {} --secs {hold_secs}",
            r.connections + 1024,
            exe.display(),
            r.connections
        ),
    ]);
    let hold = hold
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.replica_status(1)?["connections"].as_u64().unwrap_or(0) < r.connections as u64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the held connections did not open"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let rr_secs = 1.0 + 2.5 * reps as f64;
    let rr = rr_stream(&c, rr_secs)?;
    let t0 = Instant::now();
    let mut windows = Vec::new();
    for _ in 0..reps {
        std::thread::sleep(Duration::from_millis(500));
        c.kill_member(3)?;
        let wait_live = |c: &Cluster, n: usize| -> anyhow::Result<()> {
            let end = Instant::now() + Duration::from_secs(20);
            while c.view()?.2 != n {
                anyhow::ensure!(Instant::now() < end, "no view with {n} live members");
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(())
        };
        wait_live(&c, 2)?;
        let started = Instant::now();
        let from = t0.elapsed().as_secs_f64() * 1e3;
        c.start_replica(2)?;
        wait_live(&c, 3)?;
        r.rejoin_ms.push(started.elapsed().as_secs_f64() * 1e3);
        windows.push((from, t0.elapsed().as_secs_f64() * 1e3 + 200.0));
        bar.inc(1);
    }
    let rr: ClientResult =
        serde_json::from_slice(&rr.wait_with_output()?.stdout).context("rr client result")?;
    if let Some(e) = rr.error {
        anyhow::bail!("request/response stream: {e}");
    }
    // The slowest round trip begun during each rejoin (not the stall of the
    // kill before it, which ends as the restart begins). The client's clock
    // started a little after t0: its times are a little early, so this
    // errs towards counting more.
    for (from, to) in windows {
        let stall = rr
            .slow
            .iter()
            .filter(|(start, _)| *start >= from - 5.0 && *start <= to)
            .map(|(_, rtt)| *rtt)
            .fold(0.0, f64::max);
        r.stall_ms.push(stall);
    }
    let held: ClientResult =
        serde_json::from_slice(&hold.wait_with_output()?.stdout).context("hold client result")?;
    if let Some(e) = held.error {
        anyhow::bail!("held connections: {e}");
    }
    anyhow::ensure!(
        held.held == r.connections,
        "only {} connections held",
        held.held
    );
    Ok(())
}

/// What happens to the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disruption {
    /// SIGKILL: the group notices by missed keepalives.
    Crash,
    /// SIGTERM: the primary hands its role over and leaves.
    Handover,
    /// The primary's host lost: its process stopped and its links down, so
    /// no connection closes and nothing answers (heartbeats alone tell).
    LostHost,
}

/// Lease, heartbeat and keepalive timeout of the groups the failover
/// measurements start.
pub struct Timing {
    pub lease_ms: u64,
    pub heartbeat_ms: u64,
    pub timeout_ms: u64,
    /// The group's processes' scheduling priority (0: as started).
    pub nice: i32,
}

/// Repeated loss of the primary (crash or handover) under a steady
/// request/response stream (64-byte round trips); the gap is the slowest
/// round trip around each one.
pub fn failover(
    bins: &Binaries,
    crashes: usize,
    how: Disruption,
    timing: &Timing,
    bar: &ProgressBar,
) -> Failover {
    let mut f = Failover {
        crashes: 0,
        lease_ms: timing.lease_ms,
        heartbeat_ms: timing.heartbeat_ms,
        ..Failover::default()
    };
    let mut before = Vec::new();
    let mut after = Vec::new();
    while f.crashes < crashes {
        let spec = ClusterSpec {
            replicas: 3,
            lease_ms: timing.lease_ms,
            heartbeat_ms: timing.heartbeat_ms,
            failure_timeout_ms: timing.timeout_ms,
            ..ClusterSpec::default()
        };
        let mut c = match Cluster::start("xf", spec, bins.clone()) {
            Ok(c) => c,
            Err(e) => {
                f.errors.push(format!("cluster: {e:#}"));
                break;
            }
        };
        if timing.nice != 0 {
            if let Err(e) = c.set_group_priority(timing.nice) {
                f.errors.push(format!("priority: {e:#}"));
                break;
            }
        }
        match crash_twice(&mut c, crashes - f.crashes, how) {
            Ok((gaps, b, a)) => {
                f.crashes += gaps.len();
                bar.inc(gaps.len() as u64);
                f.gaps_ms.extend(gaps);
                before.push(b);
                after.push(a);
            }
            Err(e) => {
                f.errors.push(format!("{e:#}"));
                break;
            }
        }
    }
    let mut sorted = f.gaps_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let q = |p: f64| {
        sorted
            .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    f.p50_ms = q(0.5);
    f.p99_ms = q(0.99);
    f.max_ms = sorted.last().copied().unwrap_or(0.0);
    f.rate_before = before.iter().sum::<f64>() / before.len().max(1) as f64;
    f.rate_after = after.iter().sum::<f64>() / after.len().max(1) as f64;
    f
}

/// Kill the primary up to twice (3 replicas survive two crashes) under a
/// steady stream; returns the gaps and the round-trip rates before the first
/// crash and after the last.
fn crash_twice(
    c: &mut Cluster,
    want: usize,
    how: Disruption,
) -> anyhow::Result<(Vec<f64>, f64, f64)> {
    let kills = want.min(2);
    let run_secs = 1.0 + 1.5 * kills as f64 + 1.0;
    let child = rr_stream(c, run_secs)?;
    let t0 = Instant::now();
    let mut kill_at = Vec::new();
    for k in 0..kills {
        std::thread::sleep(
            Duration::from_secs_f64(1.0 + 1.5 * k as f64).saturating_sub(t0.elapsed()),
        );
        let (_, primary, _) = c.view()?;
        let primary = primary.context("no primary")?;
        kill_at.push(t0.elapsed().as_secs_f64() * 1e3);
        match how {
            Disruption::Crash => c.kill_member(primary)?,
            Disruption::Handover => c.signal_member(primary, libc::SIGTERM)?,
            Disruption::LostHost => c.lose_member_host(primary)?,
        }
    }
    let out = child.wait_with_output()?;
    let r: ClientResult = serde_json::from_slice(&out.stdout).context("client result")?;
    if let Some(e) = r.error {
        anyhow::bail!("stream broke across the failover: {e}");
    }
    // The client's clock started a little after ours: match each kill to the
    // slowest round trip that began within 300 ms before it or after it.
    let gaps = kill_at
        .iter()
        .map(|k| {
            r.slow
                .iter()
                .filter(|(start, rtt)| *start + rtt >= *k - 50.0 && *start <= *k + 300.0)
                .map(|(_, rtt)| *rtt)
                .fold(0.0, f64::max)
        })
        .collect();
    // Round trips per second from the start to 100 ms before the first
    // kill, and from 500 ms after the last kill (the stall and its
    // recovery excluded) to the end.
    let first = kill_at.first().copied().unwrap_or(r.secs * 1e3);
    let last = kill_at.last().copied().unwrap_or(0.0);
    let rate_between = |from_ms: f64, to_ms: f64| {
        let from = (from_ms / 100.0).ceil().max(0.0) as usize;
        let to = ((to_ms / 100.0).floor().max(0.0) as usize).min(r.per_100ms.len());
        if to <= from {
            return 0.0;
        }
        let n: u64 = r.per_100ms[from..to].iter().map(|&c| u64::from(c)).sum();
        n as f64 / ((to - from) as f64 * 0.1)
    };
    let before = rate_between(0.0, first - 100.0);
    // The last 100 ms are cut short by the end of the run: left out.
    let after = rate_between(
        last + 500.0,
        r.per_100ms.len().saturating_sub(1) as f64 * 100.0,
    );
    Ok((gaps, before, after))
}

/// A stream of 64-byte round trips to the group's echo port for `secs`.
fn rr_stream(c: &Cluster, secs: f64) -> anyhow::Result<std::process::Child> {
    client::spawn_in(c, "rr", ECHO, &["--msg", "64", "--secs", &secs.to_string()])
}
