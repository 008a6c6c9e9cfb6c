//! `hydra-kv`: the key-value example, standalone on a TUN device or as a
//! member of a replicated group.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::{Parser, Subcommand};
use replica::member::{Member, MemberConfig};
use stack::phy::tun::Tun;
use stack::socket::NetStack;

#[derive(Parser)]
#[command(
    name = "hydra-kv",
    version,
    about = "A Redis-protocol key-value store on Hydra"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One stack on one TUN device, no replication.
    Standalone {
        /// TUN device to create (or attach to).
        #[arg(long, default_value = "hydra0")]
        tun: String,
        /// IPv4 address the stack answers for (route it to the TUN device).
        #[arg(long)]
        address: Ipv4Addr,
        /// Port to serve on.
        #[arg(long, default_value_t = 6379)]
        port: u16,
    },
    /// A member of a replicated group (a member configuration file; an
    /// `apps` entry, as in `hydra-replica`'s files, is ignored).
    Member {
        /// The member's TOML configuration.
        #[arg(long)]
        config: PathBuf,
        /// Port to serve on.
        #[arg(long, default_value_t = 6379)]
        port: u16,
    },
}

fn main() {
    hydra_ops::logging::init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("hydra-kv: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let store = Arc::new(Mutex::new(kv::Store::default()));
    match cli.command {
        Command::Standalone { tun, address, port } => {
            let device = Tun::open_offload(&tun, 1500)
                .with_context(|| format!("opening TUN device {tun} (needs root)"))?;
            let net = NetStack::spawn(stack::Config::default(), address, device)?;
            kv::serve(&net, SocketAddrV4::new(address, port), store)?;
        }
        Command::Member { config, port } => {
            let cfg = MemberConfig::from_replica_file(&config)?;
            let member = Member::join(&cfg)?;
            let digest_store = store.clone();
            member.add_admin_page("/digest", move || {
                let s = digest_store.lock().unwrap_or_else(|p| p.into_inner());
                ("text/plain", format!("{}\n", s.digest()))
            });
            let net = member.net().clone();
            let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
            std::thread::Builder::new()
                .name("kv".into())
                .spawn(move || {
                    if let Err(e) = kv::serve(&net, addr, store) {
                        tracing::warn!("kv stopped: {e}");
                    }
                })?;
            if let Some(a) = member.admin_addr() {
                tracing::info!(admin = %a, "digest at /digest");
            }
            member.run_until_signal()?;
        }
    }
    Ok(())
}
