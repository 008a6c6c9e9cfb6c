//! `hydra-bench kv`: the key-value example (`hydra-kv`) against the real
//! `redis-server` over kernel TCP, measured with `redis-benchmark` in the
//! same run: the real server, `hydra-kv` standalone over TUN behind the same
//! veth, and `hydra-kv` as a group of 3 behind the redirector. Prints
//! requests/s and p50/p99 latency for SET, GET and INCR, without and with
//! pipelining, and the ratios.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::Context;
use scenarios::cluster::{Binaries, VIP};
use serde::Serialize;
use testnet::netns::{self, Topology};

use crate::report::{self, ratio};
use crate::topology::{self, SingleHost, SERVER_IP, TUN_IP};

#[derive(Debug, Clone, clap::Args)]
pub struct KvArgs {
    /// Requests per test.
    #[arg(long, default_value_t = 200_000)]
    pub requests: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 50)]
    pub clients: u32,
    /// Pipelined requests per client in the pipelined runs.
    #[arg(long, default_value_t = 16)]
    pub pipeline: u32,
    /// Directory for the JSON report (default: bench/results).
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

/// One `redis-benchmark` test result.
#[derive(Debug, Clone, Serialize)]
pub struct KvResult {
    pub server: String,
    pub test: String,
    pub pipeline: u32,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Serialize)]
struct KvReport {
    date: String,
    commit: String,
    requests: u64,
    clients: u32,
    results: Vec<KvResult>,
}

/// `redis-benchmark --csv` lines: "test","rps","avg","min","p50","p95","p99","max".
fn parse_csv(server: &str, pipeline: u32, text: &str) -> Vec<KvResult> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<String> = line
                .split(',')
                .map(|s| s.trim_matches('"').to_string())
                .collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
            Some(KvResult {
                server: server.into(),
                test: f.first()?.clone(),
                pipeline,
                rps: num(1)?,
                p50_ms: num(4)?,
                p99_ms: num(6)?,
            })
        })
        .collect()
}

fn benchmark(
    topo: &Topology,
    client_ns: &str,
    server: &str,
    host: Ipv4Addr,
    args: &KvArgs,
) -> anyhow::Result<Vec<KvResult>> {
    let mut out = Vec::new();
    for pipeline in [1, args.pipeline] {
        let mut cmd = topo.command(client_ns, "redis-benchmark");
        cmd.args(["-h", &host.to_string(), "-p", "6379", "--csv"])
            .args(["-c", &args.clients.to_string()])
            .args(["-n", &args.requests.to_string()])
            .args(["-P", &pipeline.to_string(), "-t", "set,get,incr"]);
        let o =
            netns::run(&mut cmd).with_context(|| format!("redis-benchmark against {server}"))?;
        let text = String::from_utf8_lossy(&o.stdout);
        let results = parse_csv(server, pipeline, &text);
        anyhow::ensure!(results.len() == 3, "{server}: unreadable output: {text}");
        out.extend(results);
    }
    Ok(out)
}

/// The real server and `hydra-kv` standalone, one topology.
fn single_host(bins: &Binaries, args: &KvArgs) -> anyhow::Result<Vec<KvResult>> {
    let mut host = SingleHost::new("kvs")?;
    let mut redis = host.topo.command(&host.server, "redis-server");
    redis.args(["--port", "6379", "--bind", &SERVER_IP.to_string()]);
    redis.args(["--save", "", "--appendonly", "no", "--protected-mode", "no"]);
    redis.stdout(std::process::Stdio::null());
    host.topo
        .spawn("redis-server", redis)
        .context("redis-server (apt install redis-server)")?;
    let kv = host.tun_command(&bins.sibling("hydra-kv"), "standalone");
    host.topo.spawn("hydra-kv", kv)?;
    host.route_tun()?;
    std::thread::sleep(Duration::from_millis(500));
    let mut all = benchmark(&host.topo, &host.client, "redis-server", SERVER_IP, args)?;
    all.extend(benchmark(
        &host.topo,
        &host.client,
        "hydra-kv",
        TUN_IP,
        args,
    )?);
    Ok(all)
}

fn group(bins: &Binaries, args: &KvArgs) -> anyhow::Result<Vec<KvResult>> {
    let c = topology::example_group("kvg", bins, "hydra-kv", 6379)?;
    benchmark(&c.topo, &c.client_ns, "hydra-kv ft-3", VIP, args)
}

pub fn run(args: &KvArgs) -> anyhow::Result<()> {
    let bins = Binaries::beside_current_exe()?;
    let mut results = single_host(&bins, args)?;
    results.extend(group(&bins, args)?);
    let find = |server: &str, test: &str, p: u32| {
        results
            .iter()
            .find(|r| r.server == server && r.test == test && r.pipeline == p)
            .map(|r| r.rps)
    };
    println!(
        "\nredis-benchmark, {} clients, {} requests per test, same run:",
        args.clients, args.requests
    );
    println!(
        "{:<15} {:<5} {:>3} {:>11} {:>8} {:>8} {:>11} {:>11}",
        "server", "test", "P", "requests/s", "p50 ms", "p99 ms", "x redis", "x kv alone"
    );
    for r in &results {
        println!(
            "{:<15} {:<5} {:>3} {:>11.0} {:>8.3} {:>8.3} {:>11} {:>11}",
            r.server,
            r.test,
            r.pipeline,
            r.rps,
            r.p50_ms,
            r.p99_ms,
            ratio(r.rps, find("redis-server", &r.test, r.pipeline)),
            ratio(r.rps, find("hydra-kv", &r.test, r.pipeline)),
        );
    }
    let report = KvReport {
        date: report::today(),
        commit: report::commit(),
        requests: args.requests,
        clients: args.clients,
        results,
    };
    let out = args.out.clone().unwrap_or_else(crate::default_out);
    let stem = format!("{}-{}-kv", report.date, report.commit);
    let path = report::write_json(&out, &stem, &report)?;
    println!("report: {}", path.display());
    Ok(())
}
