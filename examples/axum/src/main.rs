//! `hydra-axum`: an axum service on Hydra. Its handlers are deterministic
//! (active replication runs them on every member: no clock, no randomness,
//! no shared state), so any member can carry its connections on:
//!
//! - `GET /` → a fixed greeting;
//! - `GET /echo/{word}` → the word;
//! - `POST /sum` with whitespace-separated integers → their sum.
//!
//! hyper adds a `Date` header from each member's clock: the one part of a
//! response that differs between members (same length, so a takeover in
//! the middle of a response keeps it well-formed).

#![forbid(unsafe_code)]

use std::net::{Ipv6Addr, SocketAddr};

use axum::routing::{get, post};
use axum::Router;
use clap::{Parser, Subcommand};
use replica::member::cli::{self, MemberArgs, StandaloneArgs};
use stack::socket::NetStack;

#[derive(Parser)]
#[command(name = "hydra-axum", version, about = "An axum HTTP service on Hydra")]
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
        #[arg(long, default_value_t = 80)]
        port: u16,
    },
    /// The same service on the kernel's TCP (tokio's listener), for
    /// comparison.
    Kernel {
        /// Address and port to listen on.
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
    /// A member of a replicated group (a member configuration file; an
    /// `apps` entry, as in `hydra-replica`'s files, is ignored).
    Member {
        #[command(flatten)]
        member: MemberArgs,
        /// Port to serve on.
        #[arg(long, default_value_t = 80)]
        port: u16,
    },
}

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello from hydra\n" }))
        .route(
            "/echo/{word}",
            get(|axum::extract::Path(word): axum::extract::Path<String>| async move { word }),
        )
        .route(
            "/sum",
            post(|body: String| async move {
                let sum: i128 = body
                    .split_whitespace()
                    .filter_map(|w| w.parse::<i64>().ok())
                    .map(i128::from)
                    .sum();
                format!("{sum}\n")
            }),
        )
}

/// Serve the app on `port` of `net` until the stack stops.
async fn serve(net: NetStack, port: u16) -> std::io::Result<()> {
    let listener =
        hydra_tokio::TcpListener::bind(&net, SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port))?;
    axum::serve(listener, app()).await
}

fn main() {
    cli::main("hydra-axum", || run(Cli::parse()));
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Standalone { stack, port } => {
            let net = stack.spawn()?;
            tokio::runtime::Runtime::new()?.block_on(serve(net, port))?;
        }
        Command::Kernel { listen } => {
            tokio::runtime::Runtime::new()?.block_on(async move {
                let listener = tokio::net::TcpListener::bind(listen).await?;
                axum::serve(listener, app()).await
            })?;
        }
        Command::Member { member, port } => {
            // Before the runtime's threads exist: they inherit the signal mask.
            let member = member.join()?;
            let runtime = tokio::runtime::Runtime::new()?;
            let net = member.net().clone();
            runtime.spawn(async move {
                if let Err(e) = serve(net, port).await {
                    tracing::warn!("http service stopped: {e}");
                }
            });
            member.run_until_signal()?;
        }
    }
    Ok(())
}
