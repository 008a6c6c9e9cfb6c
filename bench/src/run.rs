//! The measurement plan (`hydra-bench` without a subcommand): every
//! configuration measured in turn, then the group's failovers; the report
//! written as JSON, tables and plots.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use scenarios::cluster::{Binaries, ClusterSpec};

use crate::failover::{failover, rejoin, Disruption, Timing};
use crate::measure::{latency, scale, throughput};
use crate::report::{self, Report, Throughput};
use crate::servers::{DISCARD, SOURCE};
use crate::setups::{self, Kind, Target};
use crate::table::print_table;

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
    /// Primary hosts lost (process stopped, links down: no connection
    /// closes) to measure the stall over (default 20, quick 2).
    #[arg(long)]
    pub lost_hosts: Option<usize>,
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
    /// Also measure kernel TCP, the standalone stack and the group of 3
    /// over IPv6 (those of them `--only` keeps), and print each IPv6
    /// figure against the IPv4 one of the same run.
    #[arg(long)]
    pub ipv6: bool,
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
    let lost_hosts = args.lost_hosts.unwrap_or(if quick { 2 } else { 20 });
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
    // Each configuration with its address family (true: IPv6). With
    // --ipv6 a kind's IPv6 run follows its IPv4 one at once: the two runs
    // a ratio compares see the machine in about the same state.
    let plan: Vec<(Kind, bool)> = kinds
        .iter()
        .flat_map(|&k| {
            let ipv6 = args.ipv6 && matches!(k, Kind::Kernel | Kind::Hydra | Kind::Replicated(3));
            std::iter::once((k, false)).chain(ipv6.then_some((k, true)))
        })
        .collect();

    let steps = plan.len() * (sizes.len() + 3) + crashes + handovers + lost_hosts + rejoins + 2;
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

    for &(kind, ipv6) in &plan {
        bar.set_message(kind.config(ipv6));
        let target = match setups::start(kind, ipv6, &bins, args.link_mtu) {
            Ok(t) => t,
            Err(e) => {
                report.throughput.push(Throughput {
                    config: kind.config(ipv6),
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
        // Connection scale over IPv4 only: what it measures (memory per
        // connection) does not depend on the family.
        if !ipv6 && matches!(kind, Kind::Hydra | Kind::Replicated(3)) {
            report.scale.push(scale(&target, connections));
        }
        bar.inc(1);
    }
    if kinds.contains(&Kind::Replicated(3)) {
        let timing = Timing {
            lease_ms: args.lease_ms,
            heartbeat_ms: args.heartbeat_ms,
            timeout_ms: ClusterSpec::default().failure_timeout_ms,
            nice: 0,
        };
        bar.set_message("failover");
        report.failover = failover(&bins, crashes, Disruption::Crash, &timing, &bar);
        bar.set_message("handover");
        report.handover = failover(&bins, handovers, Disruption::Handover, &timing, &bar);
        bar.set_message("lost host");
        report.lost_host = failover(&bins, lost_hosts, Disruption::LostHost, &timing, &bar);
        bar.set_message("rejoin");
        report.rejoin = rejoin(&bins, rejoins, args.rejoin_connections, &bar);
    }
    bar.finish_and_clear();
    print_table(&report);
    let out = args.out.clone().unwrap_or_else(crate::default_out);
    let family = if args.ipv6 { "-ipv6" } else { "" };
    let stem = format!("{}-{}-{}{family}", report.date, report.commit, report.mode);
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
    if let Ok(fresh) = setups::start(target.kind, target.ipv6, bins, target.link_mtu) {
        *target = fresh;
    }
    Some(why)
}
