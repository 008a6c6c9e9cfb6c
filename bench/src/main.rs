//! `hydra-bench`: measures throughput, latency, failover stall, scale and
//! cost of Hydra next to kernel TCP and smoltcp, in one run on the same
//! namespaces, and prints ratios. See `hydra-bench --help`.

mod client;
mod failover;
mod http;
mod kv;
mod measure;
mod plots;
mod report;
mod run;
mod servers;
mod setups;
mod soak;
mod sweep;
mod table;
mod topology;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hydra-bench",
    version,
    about = "Throughput, latency, failover stall, scale and cost of Hydra against kernel TCP and smoltcp (run as root)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: run::RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// A group of 3 under bulk load with every core busy and nothing
    /// crashing: counts spurious failovers for a lease and heartbeat.
    Soak(soak::SoakArgs),
    /// For several heartbeat/lease/timeout settings: the crash stall
    /// (p50/p99) and the spurious failovers under saturated load, with a
    /// plot of one against the other.
    Sweep(sweep::SweepArgs),
    /// The key-value example against the real redis-server with
    /// redis-benchmark: standalone, group of 3, ratios.
    Kv(kv::KvArgs),
    /// The axum example under wrk: kernel TCP, Hydra standalone, a group
    /// of 3; ratios.
    Http(http::HttpArgs),
    /// Draw the plots of a saved report again (PNG files next to it).
    Plot {
        /// The report's JSON file (`bench/results/<date>-<commit>-<name>.json`).
        report: PathBuf,
    },
    /// (internal) the load generator, run inside the client namespace.
    #[command(hide = true)]
    Client(client::ClientArgs),
    /// (internal) kernel-TCP discard/echo/source server.
    #[command(hide = true)]
    KernelServer {
        #[arg(long)]
        address: IpAddr,
    },
    /// (internal) smoltcp discard/echo/source server over a TUN device.
    #[command(hide = true)]
    SmoltcpServer {
        #[arg(long)]
        tun: String,
        #[arg(long)]
        address: Ipv4Addr,
        #[arg(long, default_value_t = 1500)]
        mtu: usize,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Client(args)) => {
            let r = client::run(&args);
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
            Ok(())
        }
        Some(Command::KernelServer { address }) => servers::kernel(address),
        Some(Command::SmoltcpServer { tun, address, mtu }) => servers::smoltcp(&tun, address, mtu),
        Some(Command::Soak(args)) => soak::run(&args),
        Some(Command::Sweep(args)) => sweep::run(&args),
        Some(Command::Kv(args)) => kv::run(&args),
        Some(Command::Http(args)) => http::run(&args),
        Some(Command::Plot { report }) if report.to_string_lossy().ends_with("-sweep.json") => {
            sweep::redraw(&report)
        }
        Some(Command::Plot { report }) => plots::redraw(&report),
        None => run::run(&cli.run),
    };
    if let Err(e) = result {
        eprintln!("hydra-bench: {e:#}");
        std::process::exit(1);
    }
}

/// Where results go by default: `bench/results` of the source tree.
pub fn default_out() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results")
}
