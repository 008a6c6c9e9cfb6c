//! The command line a program of one's own on Hydra shares with the
//! examples: a `standalone` mode (one stack on one TUN device, no
//! replication) and a `member` mode (a group member from a configuration
//! file), each an argument group to flatten into the program's own
//! subcommands beside its own arguments.
//!
//! ```no_run
//! use clap::{Parser, Subcommand};
//! use replica::member::cli::{MemberArgs, StandaloneArgs};
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(subcommand)]
//!     command: Command,
//! }
//!
//! #[derive(Subcommand)]
//! enum Command {
//!     Standalone {
//!         #[command(flatten)]
//!         stack: StandaloneArgs,
//!     },
//!     Member {
//!         #[command(flatten)]
//!         member: MemberArgs,
//!     },
//! }
//!
//! fn run(cli: Cli) -> anyhow::Result<()> {
//!     match cli.command {
//!         Command::Standalone { stack } => {
//!             let net = stack.spawn()?;
//!             // bind listeners on `net`, then serve...
//!             # drop(net);
//!         }
//!         Command::Member { member } => {
//!             let member = member.join()?;
//!             // bind listeners on `member.net()`, then:
//!             member.run_until_signal()?;
//!         }
//!     }
//!     Ok(())
//! }
//!
//! fn main() {
//!     replica::member::cli::main("my-service", || run(Cli::parse()));
//! }
//! ```

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use stack::phy::tun::Tun;
use stack::socket::NetStack;

use super::{Member, MemberConfig};

/// `standalone`: one stack on one TUN device, no replication.
#[derive(Debug, Clone, clap::Args)]
pub struct StandaloneArgs {
    /// TUN device to create (or attach to).
    #[arg(long, default_value = "hydra0")]
    pub tun: String,
    /// Address the stack answers for (route it to the TUN device): IPv4 or
    /// IPv6; give it twice, one of each family, for a dual-stack host.
    #[arg(long = "address", required = true)]
    pub addresses: Vec<IpAddr>,
}

impl StandaloneArgs {
    /// Open the TUN device (MTU 1500, receive offload) and start a stack
    /// with the default configuration on it.
    pub fn spawn(&self) -> anyhow::Result<NetStack> {
        let device = Tun::open_offload(&self.tun, 1500)
            .with_context(|| format!("opening TUN device {} (needs root)", self.tun))?;
        Ok(NetStack::spawn(
            stack::Config::default(),
            &self.addresses,
            device,
        )?)
    }
}

/// `member`: a member of a replicated group.
#[derive(Debug, Clone, clap::Args)]
pub struct MemberArgs {
    /// The member's TOML configuration.
    #[arg(long)]
    pub config: PathBuf,
}

impl MemberArgs {
    /// Read the configuration (a `hydra-replica` member file: its `apps`
    /// entry is ignored) and join the group. Call it before starting any
    /// thread that must inherit the member's signal mask (an async
    /// runtime's workers).
    pub fn join(&self) -> anyhow::Result<Member> {
        let config = MemberConfig::from_replica_file(&self.config)?;
        Ok(Member::join(&config)?)
    }
}

/// A program's `main`: logging set up, then `run`; its error is printed
/// as `name: error` and the process exits with status 1.
pub fn main(name: &str, run: impl FnOnce() -> anyhow::Result<()>) {
    hydra_ops::logging::init();
    if let Err(e) = run() {
        eprintln!("{name}: {e:#}");
        std::process::exit(1);
    }
}
