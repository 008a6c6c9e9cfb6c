//! `hydra-kv`: the key-value example, standalone on a TUN device or as a
//! member of a replicated group.

#![forbid(unsafe_code)]

use std::net::{Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use clap::{Parser, Subcommand};
use replica::member::cli::{self, MemberArgs, StandaloneArgs};

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
        #[command(flatten)]
        stack: StandaloneArgs,
        /// Port to serve on.
        #[arg(long, default_value_t = 6379)]
        port: u16,
    },
    /// A member of a replicated group (a member configuration file; an
    /// `apps` entry, as in `hydra-replica`'s files, is ignored).
    Member {
        #[command(flatten)]
        member: MemberArgs,
        /// Port to serve on.
        #[arg(long, default_value_t = 6379)]
        port: u16,
    },
}

fn main() {
    cli::main("hydra-kv", || run(Cli::parse()));
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let store = Arc::new(Mutex::new(kv::Store::default()));
    match cli.command {
        Command::Standalone { stack, port } => {
            let net = stack.spawn()?;
            kv::serve(
                &net,
                SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port),
                store,
            )?;
        }
        Command::Member { member, port } => {
            let member = member.join()?;
            let digest_store = store.clone();
            member.add_admin_page("/digest", move || {
                let s = digest_store.lock().unwrap_or_else(|p| p.into_inner());
                ("text/plain", format!("{}\n", s.digest()))
            });
            let net = member.net().clone();
            let addr = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port);
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
