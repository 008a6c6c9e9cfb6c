//! The measurement plan and its report.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use scenarios::cluster::{Binaries, Cluster, ClusterSpec};

use crate::client::ClientResult;
use crate::report::{self, Failover, Latency, Rejoin, Report, Scale, Throughput};
use crate::servers::{DISCARD, ECHO, SOURCE};
use crate::setups::{self, Kind, Target};

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// A shorter run (about a minute): fewer sizes, shorter runs, 2 crashes.
    #[arg(long)]
    pub quick: bool,
    /// Directory for the JSON report and the plots.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Primary crashes to measure the failover stall over (default 20, quick 2).
    #[arg(long)]
    pub crashes: Option<usize>,
    /// Deliberate handovers (SIGTERM on the primary) to measure the stall
    /// over, for comparison with crashes (default 20, quick 2).
    #[arg(long)]
    pub handovers: Option<usize>,
    /// Times a backup is restarted and rejoins a group holding
    /// `--rejoin-connections` connections (default 5, quick 1).
    #[arg(long)]
    pub rejoins: Option<usize>,
    /// Connections held during the rejoin measurement (default 1000).
    #[arg(long, default_value_t = 1000)]
    pub rejoin_connections: usize,
    /// Connections for the scale test (default 10000, quick 1000).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Seconds each throughput measurement runs (default 4, quick 1).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// MTU of the links between the redirector and the replicas (copies of
    /// 64 KiB segments travel whole at 65,535, in IP fragments below).
    #[arg(long, default_value_t = 65_535)]
    pub link_mtu: u32,
    /// Only these configurations (kernel, hydra, smoltcp, redir+1, ft-2, ft-3).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Lease of the groups whose crashes and handovers are measured (ms):
    /// a crashed primary is replaced no sooner than this after its last
    /// answered keepalive.
    #[arg(long, default_value_t = 60)]
    pub lease_ms: u64,
    /// Keepalive and heartbeat period of those groups (ms); a backup's
    /// report of a closed connection is believed after three of them.
    #[arg(long, default_value_t = 10)]
    pub heartbeat_ms: u64,
}

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

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        unsafe { libc::geteuid() } == 0,
        "hydra-bench needs root (namespaces, TUN)"
    );
    let exe = std::env::current_exe()?;
    let bins = Binaries::beside_current_exe().context("hydra-replica and hydra-redirector must be built beside hydra-bench (cargo build --release --bins)")?;
    // Every bench topology's tag starts with "x" (see setups.rs).
    testnet::netns::cleanup_on_interrupt(testnet::netns::prefix_for("x"))?;
    let quick = args.quick;
    let secs = args
        .seconds
        .filter(|s| *s > 0.0)
        .unwrap_or(if quick { 1.0 } else { 4.0 });
    let sizes: Vec<usize> = if quick {
        vec![16 << 10, 256 << 10, 1 << 20]
    } else {
        vec![
            16 << 10,
            32 << 10,
            64 << 10,
            128 << 10,
            256 << 10,
            512 << 10,
            1 << 20,
        ]
    };
    let crashes = args.crashes.unwrap_or(if quick { 2 } else { 20 });
    let handovers = args.handovers.unwrap_or(if quick { 2 } else { 20 });
    let rejoins = args.rejoins.unwrap_or(if quick { 1 } else { 5 });
    let connections = args
        .connections
        .unwrap_or(if quick { 1000 } else { 10_000 });
    let kinds: Vec<Kind> = [
        Kind::Kernel,
        Kind::Hydra,
        Kind::Smoltcp,
        Kind::Replicated(1),
        Kind::Replicated(2),
        Kind::Replicated(3),
    ]
    .into_iter()
    .filter(|k| args.only.is_empty() || args.only.contains(&k.name()))
    .collect();

    let steps = kinds.len() * (sizes.len() + 3) + crashes + handovers + rejoins + 2;
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new(steps as u64);
        b.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let mut report = Report {
        date: report::today(),
        commit: report::commit(),
        mode: if quick { "quick" } else { "full" }.into(),
        machine: report::machine(),
        shared_cores: true,
        link_mtu: args.link_mtu,
        ..Report::default()
    };
    let _ = exe;

    for kind in &kinds {
        bar.set_message(kind.name());
        let target = match setups::start(*kind, &bins, args.link_mtu) {
            Ok(t) => t,
            Err(e) => {
                report.throughput.push(Throughput {
                    config: kind.name(),
                    error: Some(format!("setup failed: {e:#}")),
                    ..Throughput::default()
                });
                bar.inc((sizes.len() + 3) as u64);
                continue;
            }
        };
        let mut target = target;
        for &msg in &sizes {
            let mut t = throughput(&target, "upload", DISCARD, msg, secs);
            t.error = t.error.or_else(|| group_lost_members(&mut target, &bins));
            report.throughput.push(t);
            bar.inc(1);
        }
        let mut t = throughput(&target, "download", SOURCE, 64 << 10, secs);
        t.error = t.error.or_else(|| group_lost_members(&mut target, &bins));
        report.throughput.push(t);
        bar.inc(1);
        for msg in [64, 16 << 10] {
            let mut l = latency(&target, msg, secs);
            l.error = l.error.or_else(|| group_lost_members(&mut target, &bins));
            report.latency.push(l);
            bar.inc(1);
        }
        if matches!(kind, Kind::Hydra | Kind::Replicated(3)) {
            report.scale.push(scale(&target, connections));
        }
        bar.inc(1);
    }
    if kinds.contains(&Kind::Replicated(3)) {
        let timing = Timing {
            lease_ms: args.lease_ms,
            heartbeat_ms: args.heartbeat_ms,
        };
        bar.set_message("failover");
        report.failover = failover(&bins, crashes, Disruption::Crash, &timing, &bar);
        bar.set_message("handover");
        report.handover = failover(&bins, handovers, Disruption::Handover, &timing, &bar);
        bar.set_message("rejoin");
        report.rejoin = rejoin(&bins, rejoins, args.rejoin_connections, &bar);
    }
    bar.finish_and_clear();
    print_table(&report);
    let out = args.out.clone().unwrap_or_else(crate::default_out);
    let stem = format!("{}-{}-{}", report.date, report.commit, report.mode);
    let json = report::write_json(&out, &stem, &report)?;
    println!("\nreport: {}", json.display());
    match crate::plots::draw(&report, &out, &stem) {
        Ok(files) => {
            for f in files {
                println!("plot:   {}", f.display());
            }
        }
        Err(e) => println!("plots skipped: {e:#}"),
    }
    Ok(())
}

/// A replicated configuration's figure counts only if every member stayed
/// in the group through it (a group that dropped its backups under load
/// would otherwise pass off as a smaller one). On loss, says so and starts
/// the configuration again for the next measurement.
fn group_lost_members(target: &mut Target, bins: &Binaries) -> Option<String> {
    let Kind::Replicated(members) = target.kind else {
        return None;
    };
    let live = match target.cluster.as_ref()?.view() {
        Ok((_, _, live)) => live,
        Err(e) => return Some(format!("cannot read the group's view: {e:#}")),
    };
    if live == members {
        return None;
    }
    let why = format!("the group fell to {live} of {members} live members during the run");
    if let Ok(fresh) = setups::start(target.kind, bins, target.link_mtu) {
        *target = fresh;
    }
    Some(why)
}

fn throughput(t: &Target, direction: &str, port: u16, msg: usize, secs: f64) -> Throughput {
    let cpu0 = setups::cpu_seconds(&t.pids);
    let r = client(t, direction, port, msg, secs, &[]);
    let cpu = setups::cpu_seconds(&t.pids) - cpu0;
    let gib = r.bytes as f64 / (1u64 << 30) as f64;
    Throughput {
        config: t.kind.name(),
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

fn latency(t: &Target, msg: usize, secs: f64) -> Latency {
    let r = client(t, "rr", ECHO, msg, secs, &[]);
    let [p50, p99, p999, max] = r.rtt_us.unwrap_or_default();
    Latency {
        config: t.kind.name(),
        msg,
        p50_us: p50,
        p99_us: p99,
        p999_us: p999,
        max_us: max,
        cdf: r.cdf,
        error: r.error,
    }
}

fn scale(t: &Target, connections: usize) -> Scale {
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
            config: t.kind.name(),
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
        config: t.kind.name(),
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

/// Restart a backup `reps` times while a client holds `connections` echo
/// connections and a request/response stream runs; every held connection
/// must still echo at the end.
fn rejoin(bins: &Binaries, reps: usize, connections: usize, bar: &ProgressBar) -> Rejoin {
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
    let mut rr = c.client(&exe.to_string_lossy());
    rr.args(["client", "--mode", "rr", "--addr", &addr]);
    rr.args(["--msg", "64", "--secs", &rr_secs.to_string()]);
    let rr = rr
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
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
enum Disruption {
    /// SIGKILL: the group notices by missed keepalives.
    Crash,
    /// SIGTERM: the primary hands its role over and leaves.
    Handover,
}

/// Lease and heartbeat of the groups the failover measurements start.
struct Timing {
    lease_ms: u64,
    heartbeat_ms: u64,
}

/// Repeated loss of the primary (crash or handover) under a steady
/// request/response stream (64-byte round trips); the gap is the slowest
/// round trip around each one.
fn failover(
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
            ..ClusterSpec::default()
        };
        let mut c = match Cluster::start("xf", spec, bins.clone()) {
            Ok(c) => c,
            Err(e) => {
                f.errors.push(format!("cluster: {e:#}"));
                break;
            }
        };
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
    let exe = std::env::current_exe()?;
    let kills = want.min(2);
    let run_secs = 1.0 + 1.5 * kills as f64 + 1.0;
    let mut cmd = c.client(&exe.to_string_lossy());
    cmd.args([
        "client",
        "--mode",
        "rr",
        "--addr",
        &format!("{}:{ECHO}", scenarios::cluster::VIP),
    ]);
    cmd.args(["--msg", "64", "--secs", &run_secs.to_string()]);
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
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

fn print_table(r: &Report) {
    let find = |config: &str, dir: &str, msg: usize| {
        r.throughput
            .iter()
            .find(|t| t.config == config && t.direction == dir && t.msg == msg && t.error.is_none())
            .map(|t| t.gbit_s)
    };
    println!("\nThroughput (Gbit/s), ratios to kernel TCP and to our standalone stack, same run:");
    println!(
        "{:<9} {:<9} {:>8} {:>9} {:>9} {:>9} {:>11}",
        "config", "dir", "msg", "Gbit/s", "x kernel", "x hydra", "CPU s/GiB"
    );
    for t in &r.throughput {
        if let Some(e) = &t.error {
            println!("{:<9} {:<9} {:>8} error: {e}", t.config, t.direction, t.msg);
            continue;
        }
        println!(
            "{:<9} {:<9} {:>8} {:>9.2} {:>9} {:>9} {:>11.2}",
            t.config,
            t.direction,
            t.msg,
            t.gbit_s,
            report::ratio(t.gbit_s, find("kernel", &t.direction, t.msg)),
            report::ratio(t.gbit_s, find("hydra", &t.direction, t.msg)),
            t.cpu_s_per_gib
        );
    }
    println!("\nLatency (request/response round trip, us; client and servers share the cores):");
    println!(
        "{:<9} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "config", "msg", "p50", "p99", "p99.9", "max"
    );
    for l in &r.latency {
        match &l.error {
            Some(e) => println!("{:<9} {:>8} error: {e}", l.config, l.msg),
            None => println!(
                "{:<9} {:>8} {:>8} {:>8} {:>8} {:>8}",
                l.config, l.msg, l.p50_us, l.p99_us, l.p999_us, l.max_us
            ),
        }
    }
    for (f, what) in [
        (&r.failover, "primary crashes"),
        (&r.handover, "handovers (SIGTERM)"),
    ] {
        if f.crashes == 0 && f.errors.is_empty() {
            continue;
        }
        println!(
            "\nStall over {} {what} (ms): p50 {:.1}  p99 {:.1}  max {:.1}",
            f.crashes, f.p50_ms, f.p99_ms, f.max_ms
        );
        for e in &f.errors {
            println!("  error: {e}");
        }
    }
    if !r.rejoin.rejoin_ms.is_empty() || !r.rejoin.errors.is_empty() {
        let j = &r.rejoin;
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "\nRejoin with {} connections held: process start to live member (ms): {}; slowest 64 B round trip meanwhile (ms): {}",
            j.connections,
            fmt(&j.rejoin_ms),
            fmt(&j.stall_ms)
        );
        for e in &j.errors {
            println!("  error: {e}");
        }
    }
    if r.failover.crashes > 0 && r.handover.crashes > 0 && r.failover.p50_ms > 0.0 {
        println!(
            "Handover vs crash stall: p50 {:.2}x, max {:.2}x",
            r.handover.p50_ms / r.failover.p50_ms,
            r.handover.max_ms / r.failover.max_ms.max(1e-9)
        );
    }
    for s in &r.scale {
        match &s.error {
            Some(e) => println!("\nScale {}: error: {e}", s.config),
            None => println!(
                "\nScale {}: {} connections held, {:.0} setups/s, {:.0} bytes per connection",
                s.config, s.connections, s.setup_per_s, s.bytes_per_connection
            ),
        }
    }
}
