//! `hydra-replica`: one replica host of a Hydra group.

use clap::{Parser, Subcommand};
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
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
        Command::Run { config } => replica::replicated::run(&config, signals),
    };
    if let Err(e) = result {
        eprintln!("hydra-replica: {e:#}");
        std::process::exit(1);
    }
}
