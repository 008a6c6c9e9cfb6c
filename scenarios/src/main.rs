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
    Demo(scenario::demo::DemoArgs),
}

fn main() {
    let cli = Cli::parse();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("hydra-scenario: needs root (network namespaces, TUN devices)");
        std::process::exit(2);
    }
    // Ctrl-C must not leave namespaces behind.
    let prefix = format!(
        "{}{}",
        hydra_tests::netns::prefix_for("demo"),
        std::process::id() % 100_000
    );
    if let Err(e) = hydra_tests::netns::cleanup_on_interrupt(prefix) {
        eprintln!("hydra-scenario: cannot install the interrupt handler: {e}");
        std::process::exit(1);
    }
    let result = match &cli.command {
        Command::Demo(args) => scenario::demo::run(args),
    };
    if let Err(e) = result {
        eprintln!("hydra-scenario: {e:#}");
        std::process::exit(1);
    }
}
