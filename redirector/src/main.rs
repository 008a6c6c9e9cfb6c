//! `hydra-redirector`: copies client packets for virtual IPs to replica groups
//! and runs each group's registration, supervision and views.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::Parser;
use hydra_ops::signals::Signals;
use redirector::config::RedirectorConfig;
use redirector::coordination::FloatingAddress;

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
    /// Remove the floating address (`[coordination] floating`) from its
    /// link, then exit: for `ExecStopPost=`, so a redirector that died
    /// holding it does not keep it.
    #[arg(long)]
    release_floating: bool,
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
    if cli.release_floating {
        let floating = cfg.coordination.as_ref().and_then(|c| c.floating.as_ref());
        let released = floating.map(|f| FloatingAddress::new(f).and_then(|a| a.release()));
        match released {
            Some(Ok(())) => println!("floating address released"),
            Some(Err(e)) => {
                eprintln!("hydra-redirector: {e}");
                std::process::exit(1);
            }
            None => println!("no floating address configured"),
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
