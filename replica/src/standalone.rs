//! Standalone mode: the stack on one TUN device serving built-in apps, with
//! no replication. The operator routes the service address to the TUN.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use stack::phy::tun::Tun;
use stack::socket::NetStack;
use stack::{Config, CongestionKind, FragmentPolicy};

use crate::apps::{self, AppSpec};
use crate::signals::Signals;

#[derive(Debug, clap::Args)]
pub struct StandaloneArgs {
    /// TUN device to create (or attach to).
    #[arg(long, default_value = "hydra0")]
    pub tun: String,
    /// Address the stack answers for (route it to the TUN device): IPv4 or
    /// IPv6; give it twice, one of each family, for a dual-stack host.
    #[arg(long = "address", required = true)]
    pub addresses: Vec<IpAddr>,
    /// MTU of the TUN device; the MSS is MTU - 40 over IPv4, MTU - 60 over IPv6.
    #[arg(long, default_value_t = 1500)]
    pub mtu: usize,
    /// Applications to serve: echo:PORT, discard:PORT, source:PORT, http:PORT=DIR.
    #[arg(long = "app", required = true)]
    pub apps: Vec<AppSpec>,
    /// Congestion control for new connections.
    #[arg(long, value_parser = ["cubic", "newreno"], default_value = "cubic")]
    pub congestion: String,
    /// Serve /metrics and /status on this address.
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Reassemble IPv4 fragments (at most 4 MiB held, 30 s each) instead
    /// of dropping them (see docs/security.md).
    #[arg(long)]
    pub reassemble_fragments: bool,
}

pub fn run(args: StandaloneArgs, signals: Signals) -> anyhow::Result<()> {
    anyhow::ensure!(
        (576..=65535).contains(&args.mtu),
        "--mtu must be within 576..=65535"
    );
    // Receive offload: coalesced TCP segments, one read per up to 64 KiB.
    let tun = Tun::open_offload(&args.tun, args.mtu)
        .with_context(|| format!("opening TUN device {}", args.tun))?;
    let congestion = if args.congestion == "newreno" {
        CongestionKind::NewReno
    } else {
        CongestionKind::Cubic
    };
    let cfg = Config {
        mss: (args.mtu - 40) as u16,
        congestion,
        fragments: if args.reassemble_fragments {
            FragmentPolicy::LINUX_REASSEMBLY
        } else {
            FragmentPolicy::Drop
        },
        ..Config::default()
    };
    let net = NetStack::spawn(cfg, &args.addresses, tun).context("starting the stack")?;
    // One address: listen on it. Both families: on `[::]`, which takes
    // IPv4 and IPv6 connections alike.
    let listen_on = match args.addresses.as_slice() {
        [one] => *one,
        _ => Ipv6Addr::UNSPECIFIED.into(),
    };
    for app in &args.apps {
        apps::start(&net, listen_on, app).with_context(|| format!("starting {app}"))?;
    }
    if let Some(addr) = args.admin {
        let status_net = net.clone();
        let bound = hydra_ops::admin::serve(
            addr,
            Arc::new(move |method: &str, path: &str| {
                let (stats, conns, ooo) = status_net.with_stack(|s| {
                    (
                        s.stats().clone(),
                        s.connection_count(),
                        s.out_of_order_bytes(),
                    )
                });
                match (method, path) {
                    ("GET", "/metrics") => {
                        let mut out = String::new();
                        crate::metrics::render_stack(&mut out, &stats, conns, ooo);
                        Some(("text/plain; version=0.0.4", out))
                    }
                    ("GET", "/connections") => Some((
                        "text/plain",
                        status_net.with_stack(|s| crate::metrics::render_connections(s)),
                    )),
                    ("GET", "/status") => {
                        let body =
                            serde_json::json!({ "mode": "standalone", "connections": conns });
                        Some(("application/json", body.to_string()))
                    }
                    _ => None,
                }
            }),
        )
        .with_context(|| format!("admin endpoint on {addr}"))?;
        tracing::info!(%bound, "admin endpoint up");
    }
    tracing::info!(tun = %args.tun, addresses = ?args.addresses, apps = ?args.apps.iter().map(|a| a.to_string()).collect::<Vec<_>>(), "standalone replica ready");
    loop {
        if let Some(sig) = signals.wait(Duration::from_secs(1)) {
            tracing::info!(signal = sig, "shutting down");
            break;
        }
    }
    net.stop();
    Ok(())
}
