//! `hydra-redirector`: copies client packets for virtual IPs to replica groups
//! and runs each group's registration, supervision and views.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::Parser;
use hydra_ops::signals::Signals;
use redirector::config::RedirectorConfig;
use redirector::coordination::{Election, FloatingAddress};

#[derive(Parser)]
#[command(
    name = "hydra-redirector",
    version,
    about = "Owns virtual IPs: copies each client packet to every live replica of its group; registrar and view authority of the groups"
)]
struct Cli {
    /// Path of the TOML configuration (see README: "Running a group").
    #[arg(long)]
    config: PathBuf,
    /// Parse and check the configuration, then exit.
    #[arg(long)]
    check: bool,
    /// Clean up after this redirector's process ended, then exit: for
    /// `ExecStopPost=`. Removes the floating address (`[coordination]
    /// floating`) from its link, and if etcd still names this redirector
    /// the view authority, revokes that lease so the standby takes over at
    /// once rather than when the lease runs out.
    #[arg(long, alias = "release-floating")]
    release: bool,
}

fn main() {
    hydra_ops::logging::init();
    let cli = Cli::parse();
    let cfg = match RedirectorConfig::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hydra-redirector: {e:#}");
            std::process::exit(2);
        }
    };
    if cli.check {
        println!("{}: ok", cli.config.display());
        return;
    }
    if cli.release {
        match release(&cfg) {
            Ok(done) => println!("{done}"),
            Err(e) => {
                eprintln!("hydra-redirector: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    // Before any thread exists, so every thread inherits the blocked mask.
    let signals = match Signals::block() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hydra-redirector: cannot set up signal handling: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = redirector::run(cfg, signals) {
        eprintln!("hydra-redirector: {e:#}");
        std::process::exit(1);
    }
}

/// `--release`: what a supervisor runs once the process has ended.
fn release(cfg: &RedirectorConfig) -> Result<String, String> {
    let Some(coordination) = &cfg.coordination else {
        return Ok("no [coordination]: nothing to release".into());
    };
    let mut done = Vec::new();
    if let Some(f) = &coordination.floating {
        FloatingAddress::new(f).and_then(|a| a.release())?;
        done.push("floating address released");
    }
    let election = Election::new(
        coordination.client()?,
        &coordination.prefix,
        &coordination.name,
        coordination.lease_ttl(),
    );
    match election.release_dead_holder() {
        Ok(true) => done.push("view authority released"),
        Ok(false) => done.push("not the view authority"),
        Err(e) => return Err(format!("releasing the view authority: {e}")),
    }
    Ok(done.join("; "))
}
