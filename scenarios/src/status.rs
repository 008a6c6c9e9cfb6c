//! `hydra-scenario status`: each group's view (epoch, primary, backups, dead
//! members) from the redirector, and role, connections and lag per replica
//! from the replicas' admin endpoints.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The redirector's admin address.
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub redirector: SocketAddr,
    /// Replica admin addresses (repeat).
    #[arg(long = "replica")]
    pub replicas: Vec<SocketAddr>,
}

/// GET `path` from an admin endpoint and parse the JSON body.
pub fn fetch(addr: SocketAddr, path: &str) -> anyhow::Result<serde_json::Value> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut body = String::new();
    s.take(1 << 20).read_to_string(&mut body)?;
    let json = body.split("\r\n\r\n").nth(1).context("no HTTP body")?;
    serde_json::from_str(json).with_context(|| format!("{addr}{path} is not JSON"))
}

pub fn render(
    redirector: &serde_json::Value,
    replicas: &[(SocketAddr, anyhow::Result<serde_json::Value>)],
) -> String {
    let mut out = String::new();
    for g in redirector["groups"].as_array().into_iter().flatten() {
        let members: Vec<&serde_json::Value> =
            g["members"].as_array().into_iter().flatten().collect();
        let live: Vec<String> = members
            .iter()
            .filter(|m| m["alive"] == true)
            .map(|m| m["id"].to_string())
            .collect();
        let dead: Vec<String> = members
            .iter()
            .filter(|m| m["alive"] != true)
            .map(|m| m["id"].to_string())
            .collect();
        out += &format!(
            "group {}  epoch {}  primary {}  backups [{}]  dead [{}]  view changes {}  refused {}\n",
            g["name"].as_str().unwrap_or("?"),
            g["epoch"],
            live.first().map_or("none", |s| s.as_str()),
            live.iter().skip(1).cloned().collect::<Vec<_>>().join(", "),
            dead.join(", "),
            g["view_changes"],
            g["refused_unauthenticated"].as_u64().unwrap_or(0) + g["refused_replayed"].as_u64().unwrap_or(0)
        );
    }
    for (addr, r) in replicas {
        match r {
            Ok(v) => {
                out += &format!(
                    "replica {} at {addr}: {} epoch {} connections {} uncommitted {} lag {} failovers {}\n",
                    v["member"], v["role"].as_str().unwrap_or("?"), v["epoch"], v["connections"], v["uncommitted"], v["lag"], v["failovers"]
                )
            }
            Err(e) => out += &format!("replica at {addr}: unreachable ({e:#})\n"),
        }
    }
    out
}

pub fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let r = fetch(args.redirector, "/status")?;
    let replicas: Vec<_> = args
        .replicas
        .iter()
        .map(|a| (*a, fetch(*a, "/status")))
        .collect();
    print!("{}", render(&r, &replicas));
    Ok(())
}
