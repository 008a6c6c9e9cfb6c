//! `hydra-bench http`: the axum example (`hydra-axum`) under `wrk`, in one
//! run: on the kernel's TCP (tokio's listener), on Hydra standalone over
//! TUN behind the same veth, and as a group of 3 behind the redirector.
//! Prints requests/s, p50/p99 and the ratios.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::Context;
use scenarios::clients::parse_wrk;
use scenarios::cluster::{Binaries, VIP};
use serde::Serialize;
use testnet::netns::{self, Topology};

use crate::report::{self, ratio};
use crate::topology::{self, SingleHost, SERVER_IP, TUN_IP};

#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Seconds of load per configuration.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 50)]
    pub connections: u32,
    /// Directory for the JSON report (default: bench/results).
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

/// One configuration's result.
#[derive(Debug, Clone, Serialize)]
pub struct HttpResult {
    pub server: String,
    pub requests_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub socket_errors: u64,
    pub non_2xx: u64,
}

#[derive(Debug, Serialize)]
struct HttpReport {
    date: String,
    commit: String,
    seconds: u64,
    connections: u32,
    results: Vec<HttpResult>,
}

fn wrk(
    topo: &Topology,
    client_ns: &str,
    server: &str,
    host: Ipv4Addr,
    args: &HttpArgs,
) -> anyhow::Result<HttpResult> {
    let mut cmd = topo.command(client_ns, "wrk");
    cmd.args(["-t2", &format!("-c{}", args.connections)])
        .args([&format!("-d{}s", args.seconds), "--latency"])
        .arg(format!("http://{host}/"));
    let out = netns::run(&mut cmd).with_context(|| format!("wrk against {server}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let r = parse_wrk(&text).with_context(|| format!("{server}: unreadable wrk output: {text}"))?;
    Ok(HttpResult {
        server: server.into(),
        requests_per_s: r.requests_per_s,
        p50_ms: r.p50_ms,
        p99_ms: r.p99_ms,
        socket_errors: r.socket_errors,
        non_2xx: r.non_2xx,
    })
}

/// `hydra-axum` on kernel TCP and standalone on Hydra, one topology.
fn single_host(bins: &Binaries, args: &HttpArgs) -> anyhow::Result<Vec<HttpResult>> {
    let mut host = SingleHost::new("hts")?;
    let exe = bins.sibling("hydra-axum");
    let mut kernel = host.server_command(&exe);
    kernel.args(["kernel", "--listen", &format!("{SERVER_IP}:80")]);
    host.topo.spawn("axum-kernel", kernel)?;
    let hydra = host.tun_command(&exe, "standalone");
    host.topo.spawn("axum-hydra", hydra)?;
    host.route_tun()?;
    std::thread::sleep(Duration::from_millis(500));
    Ok(vec![
        wrk(
            &host.topo,
            &host.client,
            "axum on kernel TCP",
            SERVER_IP,
            args,
        )?,
        wrk(&host.topo, &host.client, "axum on hydra", TUN_IP, args)?,
    ])
}

pub fn run(args: &HttpArgs) -> anyhow::Result<()> {
    let bins = Binaries::beside_current_exe()?;
    let mut results = single_host(&bins, args)?;
    let c = topology::example_group("htg", &bins, "hydra-axum", 80)?;
    results.push(wrk(&c.topo, &c.client_ns, "axum on hydra ft-3", VIP, args)?);
    drop(c);
    let rate = |name: &str| {
        results
            .iter()
            .find(|r| r.server == name)
            .map(|r| r.requests_per_s)
            .filter(|r| *r > 0.0)
    };
    println!(
        "\nwrk, {} connections, {} s each, same run:",
        args.connections, args.seconds
    );
    println!(
        "{:<20} {:>11} {:>8} {:>8} {:>9} {:>9} {:>7}",
        "server", "requests/s", "p50 ms", "p99 ms", "x kernel", "x hydra", "errors"
    );
    for r in &results {
        println!(
            "{:<20} {:>11.0} {:>8} {:>8} {:>9} {:>9} {:>7}",
            r.server,
            r.requests_per_s,
            r.p50_ms.map_or("-".into(), |v| format!("{v:.3}")),
            r.p99_ms.map_or("-".into(), |v| format!("{v:.3}")),
            ratio(r.requests_per_s, rate("axum on kernel TCP")),
            ratio(r.requests_per_s, rate("axum on hydra")),
            r.socket_errors + r.non_2xx,
        );
    }
    let report = HttpReport {
        date: report::today(),
        commit: report::commit(),
        seconds: args.seconds,
        connections: args.connections,
        results,
    };
    let out = args.out.clone().unwrap_or_else(crate::default_out);
    let stem = format!("{}-{}-http", report.date, report.commit);
    let path = report::write_json(&out, &stem, &report)?;
    println!("report: {}", path.display());
    Ok(())
}
