//! The demo: a three-replica group serving a curl download and a paced echo
//! stream; the primary is SIGKILLed mid-transfer, then the new primary too
//! (with `--redirectors 2`, the acting redirector in between).
//! Prints what the client saw and fails if any connection did not survive
//! intact.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::clients;
use crate::cluster::{Binaries, Cluster, ClusterSpec};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Replicas in the group (two crashes need at least 3).
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// Size of the downloaded file in MiB.
    #[arg(long, default_value_t = 128)]
    pub file_mib: usize,
    /// Heartbeat / keepalive interval, ms.
    #[arg(long, default_value_t = 10)]
    pub heartbeat_ms: u64,
    /// Silence after which the redirector declares a replica dead, ms.
    #[arg(long, default_value_t = 100)]
    pub failure_timeout_ms: u64,
    /// The client talks IPv6 to the group's IPv6 VIP, and the redirector
    /// and replicas talk IPv6 among themselves.
    #[arg(long)]
    pub ipv6: bool,
    /// Redirectors sharing a real etcd (2 or more: the acting one is also
    /// SIGKILLed, between the two primary crashes). Needs etcd-server and
    /// iputils-arping.
    #[arg(long, default_value_t = 1)]
    pub redirectors: usize,
}

/// What the demo does at a given time.
#[derive(Debug, Clone, Copy)]
enum Fault {
    KillPrimary,
    KillActingRedirector,
}

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    if args.replicas < 3 {
        bail!("--replicas must be at least 3 to survive two primary crashes");
    }
    if args.redirectors == 0 {
        bail!("--redirectors must be at least 1");
    }
    let redundant = args.redirectors > 1;
    let bins = Binaries::beside_current_exe()?;
    let spec = ClusterSpec {
        replicas: args.replicas,
        heartbeat_ms: args.heartbeat_ms,
        failure_timeout_ms: args.failure_timeout_ms,
        lease_ms: args.failure_timeout_ms * 6 / 10,
        ipv6: args.ipv6,
        redirectors: args.redirectors,
        etcd: redundant,
        ..ClusterSpec::default()
    };
    println!(
        "building: client, {} and {} replicas in network namespaces{}",
        if redundant {
            format!("{} redirectors with etcd", args.redirectors)
        } else {
            "redirector".to_string()
        },
        args.replicas,
        if args.ipv6 { ", over IPv6" } else { "" }
    );
    let mut cluster = Cluster::start("demo", spec, bins)?;
    println!("service address: {}", cluster.vip());
    let (epoch, primary) = cluster.wait_view(args.replicas, Duration::from_secs(10))?;
    println!("view {epoch}: primary is replica {primary}");

    let original = cluster.www.join("big.bin");
    clients::write_random_file(&original, args.file_mib << 20)?;
    let fetched = cluster.log_dir().join("fetched.bin");
    // ~10 s of transfer so both crashes land mid-stream.
    let rate = format!("{}k", (args.file_mib * 1024 / 10).max(64));
    let download = clients::start_download(&cluster, "big.bin", &fetched, &rate)?;
    let echo = clients::start_echo(&cluster, 1, 8 << 20, 8192, Duration::from_millis(8))?;
    let started = Instant::now();

    let mut faults = vec![
        (Duration::from_secs(3), Fault::KillPrimary),
        (Duration::from_secs(6), Fault::KillPrimary),
    ];
    if redundant {
        faults.insert(
            1,
            (Duration::from_millis(4500), Fault::KillActingRedirector),
        );
    }
    let mut killed = Vec::new();
    for (at, fault) in faults {
        std::thread::sleep(at.saturating_sub(started.elapsed()));
        if let Fault::KillActingRedirector = fault {
            kill_acting_redirector(&mut cluster, started)?;
            continue;
        }
        let (epoch, primary) =
            cluster.wait_view(args.replicas - killed.len(), Duration::from_secs(5))?;
        println!(
            "t={:.1}s  SIGKILL primary replica {primary} (view {epoch})",
            started.elapsed().as_secs_f64()
        );
        cluster.kill_member(primary)?;
        killed.push(primary);
        let (epoch, next) = cluster
            .wait_view(args.replicas - killed.len(), Duration::from_secs(5))
            .context("no new view after the crash")?;
        println!(
            "t={:.1}s  view {epoch}: replica {next} took over",
            started.elapsed().as_secs_f64()
        );
    }

    let out = download.wait_with_output()?;
    let echo = clients::finish_echo(echo)?;
    let curl_ok = out.status.success();
    let digest_ok = curl_ok && clients::sha256(&fetched)? == clients::sha256(&original)?;
    let fetched_len = std::fs::metadata(&fetched).map(|m| m.len()).unwrap_or(0);
    println!();
    println!(
        "download: {fetched_len} of {} bytes, curl {}, sha256 {}",
        args.file_mib << 20,
        if curl_ok {
            "ok".to_string()
        } else {
            format!("failed: {}", String::from_utf8_lossy(&out.stderr).trim())
        },
        if digest_ok { "matches" } else { "DIFFERS" }
    );
    let errors: Vec<String> = echo["errors"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
                .collect()
        })
        .unwrap_or_default();
    println!(
        "echo stream: {} bytes back, resets {}, mismatches {}, errors: {}",
        echo["bytes"],
        echo["resets"],
        echo["mismatches"],
        if errors.is_empty() {
            "none".to_string()
        } else {
            errors.join("; ")
        }
    );
    println!(
        "client-observed stalls over 20 ms (echo stream): {} ms",
        echo["stalls_ms"]
    );
    println!(
        "longest gap: {:.1} ms",
        echo["max_gap_ms"].as_f64().unwrap_or(0.0)
    );
    let survived = digest_ok && echo["ok"].as_bool() == Some(true);
    if !survived {
        bail!(
            "a connection did not survive intact; logs: {}",
            cluster.log_dir().display()
        );
    }
    println!(
        "\nboth connections survived two primary crashes{} byte-exact, with no reset.",
        if redundant {
            " and the acting redirector's"
        } else {
            ""
        }
    );
    Ok(())
}

/// SIGKILL the redirector acting as the view authority and wait for
/// another to take the authority and the floating address over.
fn kill_acting_redirector(cluster: &mut Cluster, started: Instant) -> anyhow::Result<()> {
    let acting = cluster.wait_acting(Duration::from_secs(5))?;
    println!(
        "t={:.1}s  SIGKILL the acting redirector {}",
        started.elapsed().as_secs_f64(),
        acting + 1
    );
    cluster.kill_redirector(acting)?;
    let killed = Instant::now();
    // Bounded: the lease of the killed one runs out within seconds.
    for _ in 0..500 {
        if let Some(k) = cluster.acting_redirector().filter(|&k| k != acting) {
            println!(
                "t={:.1}s  redirector {} acts and holds the clients' next hop ({} ms after the kill)",
                started.elapsed().as_secs_f64(),
                k + 1,
                killed.elapsed().as_millis()
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!(
        "no redirector took over; logs: {}",
        cluster.log_dir().display()
    )
}
