//! `hydra-bench soak`: a group of 3 under sustained bulk load in both
//! directions while busy threads take every core, for a fixed time, and
//! no crash at all: every view change it sees is a spurious failover (a
//! live member declared dead because it answered late). An operator runs
//! it with the lease and heartbeat they mean to deploy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use scenarios::cluster::{Binaries, Cluster, ClusterSpec};
use serde::Serialize;

use crate::client::{self, ClientResult};
use crate::servers::{DISCARD, SOURCE};

#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// How long the load runs.
    #[arg(long, default_value_t = 600)]
    pub seconds: u64,
    /// Lease of the group (ms).
    #[arg(long, default_value_t = 60)]
    pub lease_ms: u64,
    /// Keepalive and heartbeat period of the group (ms).
    #[arg(long, default_value_t = 10)]
    pub heartbeat_ms: u64,
    /// Keepalive timeout: a member silent this long is declared dead (ms).
    #[arg(long, default_value_t = 100)]
    pub timeout_ms: u64,
    /// Busy threads competing for the cores (default: one per core).
    #[arg(long)]
    pub hogs: Option<usize>,
    /// Scheduling priority of the group's processes (every thread), as a
    /// unit's `Nice=` sets it; the load stays at 0. Negative is more.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub nice: i32,
    /// Where to write the JSON result (default: print only).
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

/// A group's failure-detection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Settings {
    /// A primary may send this long after its last answered keepalive (ms).
    pub lease_ms: u64,
    /// Keepalive and heartbeat period (ms).
    pub heartbeat_ms: u64,
    /// A member silent this long is declared dead (ms).
    pub timeout_ms: u64,
}

impl Settings {
    /// Heartbeat below the lease, lease below the timeout.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.heartbeat_ms < self.lease_ms && self.lease_ms < self.timeout_ms,
            "need heartbeat < lease < timeout (got {}/{}/{} ms)",
            self.heartbeat_ms,
            self.lease_ms,
            self.timeout_ms
        );
        Ok(())
    }
}

/// What a soak saw.
#[derive(Debug, Default, Serialize)]
pub struct SoakReport {
    pub seconds: f64,
    pub lease_ms: u64,
    pub heartbeat_ms: u64,
    pub timeout_ms: u64,
    /// The commit measured.
    pub commit: String,
    pub hogs: usize,
    /// The group's processes' scheduling priority (the load's is 0).
    pub nice: i32,
    /// View changes during the run: each one a spurious failover.
    pub view_changes: u64,
    /// (seconds into the run, new epoch) of each.
    pub changes: Vec<(f64, u64)>,
    /// Bytes moved by the bulk clients, and their rounds.
    pub upload_bytes: u64,
    pub download_bytes: u64,
    pub client_rounds: u64,
    pub client_errors: Vec<String>,
}

/// One bulk client round of `secs` against `port`.
fn bulk(c: &Cluster, mode: &str, port: u16, secs: u64) -> anyhow::Result<std::process::Child> {
    client::spawn_in(c, mode, port, &["--secs", &secs.to_string()])
}

fn result_of(child: std::process::Child) -> ClientResult {
    ClientResult::from_output(child.wait_with_output())
}

/// A group with `settings` under bulk load both ways and `hogs` busy
/// threads (default: one per core) for `seconds`: what it saw.
pub fn soak(
    bins: &Binaries,
    settings: &Settings,
    seconds: u64,
    hogs: Option<usize>,
    nice: i32,
) -> anyhow::Result<SoakReport> {
    settings.check()?;
    anyhow::ensure!((-20..=19).contains(&nice), "nice {nice}: from -20 to 19");
    let spec = ClusterSpec {
        replicas: 3,
        lease_ms: settings.lease_ms,
        heartbeat_ms: settings.heartbeat_ms,
        failure_timeout_ms: settings.timeout_ms,
        ..ClusterSpec::default()
    };
    let c = Cluster::start("sk", spec, bins.clone()).context("starting the group")?;
    if nice != 0 {
        let threads = c.set_group_priority(nice)?;
        eprintln!("soak: the group's {threads} threads at nice {nice}");
    }
    let hogs = hogs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let hog_threads: Vec<_> = (0..hogs)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..100_000 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    }
                    std::hint::black_box(x);
                }
            })
        })
        .collect();
    let (first_epoch, _, _) = c.view()?;
    let mut report = SoakReport {
        lease_ms: settings.lease_ms,
        heartbeat_ms: settings.heartbeat_ms,
        timeout_ms: settings.timeout_ms,
        commit: crate::report::commit(),
        hogs,
        nice,
        ..SoakReport::default()
    };
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut epoch = first_epoch;
    // Rounds of 20 s keep each client's result small and bound the run.
    while Instant::now() < end {
        let secs = end
            .saturating_duration_since(Instant::now())
            .as_secs()
            .clamp(1, 20);
        let mut up = bulk(&c, "upload", DISCARD, secs)?;
        let mut down = bulk(&c, "download", SOURCE, secs)?;
        // A client that overruns its round by 10 s is stuck: stop it.
        let give_up = Instant::now() + Duration::from_secs(secs + 10);
        loop {
            if let Ok((e, _, _)) = c.view() {
                if e != epoch {
                    report.view_changes += 1;
                    report.changes.push((start.elapsed().as_secs_f64(), e));
                    eprintln!(
                        "soak: view change to epoch {e} at {:.1}s (spurious: nothing crashed)",
                        start.elapsed().as_secs_f64()
                    );
                    epoch = e;
                }
            }
            let finished =
                |child: &mut std::process::Child| matches!(child.try_wait(), Ok(Some(_)));
            if (finished(&mut up) && finished(&mut down)) || Instant::now() >= give_up {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = up.kill();
        let _ = down.kill();
        for (r, up) in [(result_of(up), true), (result_of(down), false)] {
            if let Some(e) = r.error {
                report.client_errors.push(e);
            } else if up {
                report.upload_bytes += r.bytes;
            } else {
                report.download_bytes += r.bytes;
            }
        }
        report.client_rounds += 1;
    }
    report.seconds = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for h in hog_threads {
        let _ = h.join();
    }
    Ok(report)
}

pub fn run(args: &SoakArgs) -> anyhow::Result<()> {
    let bins = Binaries::beside_current_exe()?;
    let settings = Settings {
        lease_ms: args.lease_ms,
        heartbeat_ms: args.heartbeat_ms,
        timeout_ms: args.timeout_ms,
    };
    let report = soak(&bins, &settings, args.seconds, args.hogs, args.nice)?;
    let json = serde_json::to_string_pretty(&report)?;
    println!("{json}");
    if let Some(out) = &args.out {
        std::fs::write(out, &json).with_context(|| format!("writing {}", out.display()))?;
    }
    println!(
        "soak: {:.0} s, lease {} ms, heartbeat {} ms, timeout {} ms, {} hogs, group at nice {}: {} spurious view changes, {:.2} GiB up, {:.2} GiB down, {} client errors",
        report.seconds,
        report.lease_ms,
        report.heartbeat_ms,
        report.timeout_ms,
        report.hogs,
        report.nice,
        report.view_changes,
        report.upload_bytes as f64 / (1u64 << 30) as f64,
        report.download_bytes as f64 / (1u64 << 30) as f64,
        report.client_errors.len()
    );
    Ok(())
}
