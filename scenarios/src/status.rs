//! `hydra-scenario status`: each redirector's role (with `[coordination]`:
//! acting or standing by, etcd's health, the floating address), each
//! group's view (epoch, primary, backups, dead members) from the acting
//! redirector, and role, connections and lag per replica from the
//! replicas' admin endpoints.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The redirectors' admin addresses (repeat for redundant redirectors).
    #[arg(long = "redirector", default_value = "127.0.0.1:9100")]
    pub redirectors: Vec<SocketAddr>,
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

/// One line per redirector: reachable or not, and with `[coordination]`
/// whether it acts, who holds the authority, etcd's last error and the
/// floating address.
pub fn render_redirectors(
    redirectors: &[(SocketAddr, anyhow::Result<serde_json::Value>)],
) -> String {
    let mut out = String::new();
    for (addr, r) in redirectors {
        let v = match r {
            Ok(v) => v,
            Err(e) => {
                out += &format!("redirector at {addr}: unreachable ({e:#})\n");
                continue;
            }
        };
        let c = &v["coordination"];
        if c.is_null() {
            out += &format!("redirector at {addr}: acting (no coordination)\n");
            continue;
        }
        let floating = match &c["floating"] {
            serde_json::Value::Null => String::new(),
            f => format!(
                "  floating {} {}{}",
                f["address"].as_str().unwrap_or("?"),
                if f["held"] == true {
                    "held"
                } else {
                    "not held"
                },
                f["error"]
                    .as_str()
                    .map_or(String::new(), |e| format!(" ({e})"))
            ),
        };
        out += &format!(
            "redirector {} at {addr}: {}  authority {}  etcd {}{floating}\n",
            c["name"].as_str().unwrap_or("?"),
            if c["acting"] == true {
                "acting"
            } else {
                "standby"
            },
            c["authority"].as_str().unwrap_or("unknown"),
            c["etcd_error"].as_str().unwrap_or("ok"),
        );
    }
    out
}

pub fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let all: Vec<_> = args
        .redirectors
        .iter()
        .map(|a| (*a, fetch(*a, "/status")))
        .collect();
    if all.len() > 1 {
        print!("{}", render_redirectors(&all));
    }
    // The groups as the acting redirector sees them (else the first that answers).
    let acting = all
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .find(|v| v["coordination"].is_null() || v["coordination"]["acting"] == true);
    let r = match acting.or_else(|| all.iter().find_map(|(_, r)| r.as_ref().ok())) {
        Some(r) => r.clone(),
        None => {
            let (addr, _) = all.first().context("no redirector given")?;
            fetch(*addr, "/status")?
        }
    };
    let replicas: Vec<_> = args
        .replicas
        .iter()
        .map(|a| (*a, fetch(*a, "/status")))
        .collect();
    print!("{}", render(&r, &replicas));
    Ok(())
}
