//! `hydra-scenario`: the demo and failure scenarios on network namespaces.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hydra-scenario",
    version,
    about = "Hydra's demo and failure scenarios, played with the real binaries"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A replicated service keeps its connections through two primary crashes.
    Demo(scenarios::demo::DemoArgs),
    /// Play scenario files (scenarios/catalogue/*.toml) and judge them.
    Run(RunArgs),
    /// Show each group's view and the replicas' state from the admin endpoints.
    Status(scenarios::status::StatusArgs),
    /// Relay a link with loss, delay, duplication and cuts (used by scenarios).
    Relay(scenarios::relay::RelayArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Scenario files.
    #[arg(required = true)]
    files: Vec<std::path::PathBuf>,
    /// Only the scenarios marked `ci = true` (the fast subset).
    #[arg(long)]
    ci: bool,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

fn run_files(args: &RunArgs) -> anyhow::Result<()> {
    let bins = scenarios::cluster::Binaries::beside_current_exe()?;
    let mut scenarios = Vec::new();
    for f in &args.files {
        let s = scenarios::spec::Scenario::load(f)?;
        if !args.ci || s.ci {
            scenarios.push(s);
        }
    }
    anyhow::ensure!(!scenarios.is_empty(), "no scenario to run");
    let mut outcomes = Vec::new();
    for (i, s) in scenarios.iter().enumerate() {
        eprintln!("[{}/{}] {}: {}", i + 1, scenarios.len(), s.name, s.about);
        let o = scenarios::runner::play(s, &bins, i);
        eprintln!("    {}", if o.passed { "pass" } else { "FAIL" });
        outcomes.push(o);
    }
    print!("{}", scenarios::runner::table(&outcomes));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&outcomes)?)?;
        println!("report: {}", path.display());
    }
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} scenarios failed",
        outcomes.len()
    );
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let unprivileged = match &cli.command {
        Command::Status(args) => Some(scenarios::status::run(args)),
        Command::Relay(args) => Some(scenarios::relay::run(args)),
        _ => None,
    };
    if let Some(result) = unprivileged {
        if let Err(e) = result {
            eprintln!("hydra-scenario: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("hydra-scenario: needs root (network namespaces, TUN devices)");
        std::process::exit(2);
    }
    // Ctrl-C must not leave namespaces behind (tags: "demo", and "sc" for
    // every scenario, played one after the other).
    let tag = if matches!(cli.command, Command::Demo(_)) {
        "demo"
    } else {
        "sc"
    };
    let prefix = testnet::netns::topology_prefix(tag);
    if let Err(e) = testnet::netns::cleanup_on_interrupt(prefix) {
        eprintln!("hydra-scenario: cannot install the interrupt handler: {e}");
        std::process::exit(1);
    }
    let result = match &cli.command {
        Command::Demo(args) => scenarios::demo::run(args),
        Command::Run(args) => run_files(args),
        Command::Status(_) | Command::Relay(_) => unreachable!("handled above"),
    };
    if let Err(e) = result {
        eprintln!("hydra-scenario: {e:#}");
        std::process::exit(1);
    }
}
