//! `hydra-replica`: one replica host of a Hydra group.

#![forbid(unsafe_code)]

use std::net::Ipv6Addr;
use std::path::Path;

use anyhow::Context;
use clap::{Parser, Subcommand};
use replica::apps::{self, AppSpec};
use replica::member::{Member, MemberConfig};
use replica::signals::Signals;
use replica::standalone::{self, StandaloneArgs};

#[derive(Parser)]
#[command(
    name = "hydra-replica",
    version,
    about = "A Hydra replica: userspace TCP over TUN serving built-in apps"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve apps on one TUN device with no replication.
    Standalone(StandaloneArgs),
    /// Run as a member of a replicated group (see `replica.toml` in the README).
    Run {
        /// Path of the replica's TOML configuration.
        #[arg(long)]
        config: std::path::PathBuf,
    },
}

fn main() {
    hydra_ops::logging::init();
    let cli = Cli::parse();
    // Before any thread exists, so every thread inherits the blocked mask.
    let signals = match Signals::block() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hydra-replica: cannot set up signal handling: {e}");
            std::process::exit(1);
        }
    };
    let result = match cli.command {
        Command::Standalone(args) => standalone::run(args, signals),
        Command::Run { config } => run_member(&config),
    };
    if let Err(e) = result {
        eprintln!("hydra-replica: {e:#}");
        std::process::exit(1);
    }
}

/// `replica.toml` is a member's configuration plus `apps`, the built-in
/// applications to serve.
fn load(path: &Path) -> anyhow::Result<(MemberConfig, Vec<AppSpec>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let apps = match table.remove("apps") {
        Some(v) => v
            .try_into::<Vec<String>>()
            .with_context(|| format!("{}: apps must be a list of strings", path.display()))?,
        None => anyhow::bail!(
            "{}: apps: at least one application is needed",
            path.display()
        ),
    };
    let apps = apps
        .iter()
        .map(|a| a.parse::<AppSpec>().map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()
        .with_context(|| format!("{}", path.display()))?;
    let member: MemberConfig = table
        .try_into()
        .with_context(|| format!("{}", path.display()))?;
    member
        .check()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok((member, apps))
}

/// A group member serving the built-in applications, through the member
/// library as any program would.
fn run_member(path: &Path) -> anyhow::Result<()> {
    let (config, app_specs) = load(path)?;
    let member = Member::join(&config)?;
    for app in &app_specs {
        apps::start(member.net(), Ipv6Addr::UNSPECIFIED.into(), app)
            .with_context(|| format!("starting {app}"))?;
    }
    member.run_until_signal()?;
    Ok(())
}
