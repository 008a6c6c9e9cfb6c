//! `hydra-bench http`: the axum example (`hydra-axum`) under `wrk`, in one
//! run: on the kernel's TCP (tokio's listener), on Hydra standalone over
//! TUN behind the same veth, and as a group of 3 behind the redirector.
//! Prints requests/s, p50/p99 and the ratios.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::Context;
use scenarios::clients::parse_wrk;
use scenarios::cluster::{Binaries, Cluster, ClusterSpec, MemberProgram, VIP};
use serde::Serialize;
use testnet::netns::{self, Topology};

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const TUN_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 1);

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

fn single_host(bins: &Binaries, args: &HttpArgs) -> anyhow::Result<Vec<HttpResult>> {
    let mut topo = Topology::new("hts");
    let client = topo.namespace("c")?;
    let server = topo.namespace("s")?;
    topo.veth((&client, "198.18.0.1/24"), (&server, "198.18.0.2/24"), 1500)?;
    topo.router(&server)?;
    topo.ip(
        &client,
        &["route", "add", "198.18.200.0/24", "via", "198.18.0.2"],
    )?;
    let exe = bins.sibling("hydra-axum");
    let mut kernel = topo.command(&server, &exe.to_string_lossy());
    kernel.args(["kernel", "--listen", &format!("{SERVER_IP}:80")]);
    topo.spawn("axum-kernel", kernel)?;
    let tun = topo.name("t");
    let mut hydra = topo.command(&server, &exe.to_string_lossy());
    hydra.args([
        "standalone",
        "--tun",
        &tun,
        "--address",
        &TUN_IP.to_string(),
    ]);
    topo.spawn("axum-hydra", hydra)?;
    topo.wait_link(&server, &tun, Duration::from_secs(10))?;
    topo.ip(
        &server,
        &["route", "add", &format!("{TUN_IP}/32"), "dev", &tun],
    )?;
    std::thread::sleep(Duration::from_millis(500));
    Ok(vec![
        wrk(&topo, &client, "axum on kernel TCP", SERVER_IP, args)?,
        wrk(&topo, &client, "axum on hydra", TUN_IP, args)?,
    ])
}

pub fn run(args: &HttpArgs) -> anyhow::Result<()> {
    let bins = Binaries::beside_current_exe()?;
    let mut results = single_host(&bins, args)?;
    let spec = ClusterSpec {
        replicas: 3,
        program: Some(MemberProgram {
            path: bins.sibling("hydra-axum"),
            args: vec!["--port".into(), "80".into()],
        }),
        ..ClusterSpec::default()
    };
    let c = Cluster::start("htg", spec, bins.clone())?;
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
        let ratio =
            |base: Option<f64>| base.map_or("-".into(), |b| format!("{:.2}", r.requests_per_s / b));
        println!(
            "{:<20} {:>11.0} {:>8} {:>8} {:>9} {:>9} {:>7}",
            r.server,
            r.requests_per_s,
            r.p50_ms.map_or("-".into(), |v| format!("{v:.3}")),
            r.p99_ms.map_or("-".into(), |v| format!("{v:.3}")),
            ratio(rate("axum on kernel TCP")),
            ratio(rate("axum on hydra")),
            r.socket_errors + r.non_2xx,
        );
    }
    let report = HttpReport {
        date: crate::run::today(),
        commit: crate::run::commit(),
        seconds: args.seconds,
        connections: args.connections,
        results,
    };
    let out = args.out.clone().unwrap_or_else(crate::default_out);
    std::fs::create_dir_all(&out)?;
    let path = out.join(format!("{}-{}-http.json", report.date, report.commit));
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    println!("report: {}", path.display());
    Ok(())
}
