//! The scenario file format (TOML): topology, workload, fault schedule, checks.
//!
//! ```toml
//! name = "primary-crash-during-download"
//! about = "SIGKILL the primary while curl downloads"
//! [topology]
//! replicas = 3
//! [[workload]]
//! kind = "download"          # download | upload | nc | echo | short | wrk
//! # family = "ipv4"          # nc and echo: the VIP's family (ipv6 topologies)
//! size_mib = 48
//! rate = "16M"
//! [[fault]]
//! at_ms = 1200
//! action = "kill"            # kill | stop | cont | wait-view
//! target = "primary"         # primary | backup | old | member:N
//! [checks]
//! max_stall_ms = 2000
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub about: String,
    #[serde(default)]
    pub topology: Topology,
    pub workload: Vec<Workload>,
    #[serde(default)]
    pub fault: Vec<Fault>,
    #[serde(default)]
    pub checks: Checks,
    /// Part of the fast subset CI runs.
    #[serde(default)]
    pub ci: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    #[serde(default = "three")]
    pub replicas: usize,
    #[serde(default = "ten")]
    pub heartbeat_ms: u64,
    #[serde(default = "hundred")]
    pub failure_timeout_ms: u64,
    /// Relay every replica's data link and ack channel through
    /// `hydra-scenario relay`, so `link` faults can impair or cut them.
    #[serde(default)]
    pub relays: bool,
    /// Impairment of every relayed link from the start, e.g.
    /// `"loss=0.03 delay_ms=1 jitter_ms=2 duplicate=0.01"`.
    #[serde(default)]
    pub link: Option<String>,
    /// Dual stack: the group also serves the IPv6 VIP, clients use it
    /// unless a workload names `family = "ipv4"`, and the redirector and
    /// replicas talk over IPv6 (no relays).
    #[serde(default)]
    pub ipv6: bool,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            replicas: 3,
            heartbeat_ms: 10,
            failure_timeout_ms: 100,
            relays: false,
            link: None,
            ipv6: false,
        }
    }
}

fn three() -> usize {
    3
}
fn ten() -> u64 {
    10
}
fn hundred() -> u64 {
    100
}

/// A real client run in the client namespace.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "kebab-case")]
pub enum Workload {
    /// `curl` download from the HTTP app, SHA-256 checked.
    Download {
        size_mib: usize,
        /// curl --limit-rate (a slow reader also tests a closed window).
        #[serde(default = "default_rate")]
        rate: String,
    },
    /// `curl --data-binary` POST to the HTTP app, which answers with the
    /// SHA-256 and length of what it read: both are checked.
    Upload {
        size_mib: usize,
        #[serde(default = "default_rate")]
        rate: String,
    },
    /// `nc -N` streams a file through the echo app; what comes back must
    /// be the file (SHA-256).
    Nc {
        size_mib: usize,
        /// The address family to connect over (default: the topology's).
        #[serde(default)]
        family: Option<Family>,
    },
    /// `wrk`: many keep-alive connections fetching a small file for a
    /// while; any socket error (a reset is one) or non-2xx fails the run.
    Wrk {
        connections: usize,
        seconds: u64,
        #[serde(default = "default_object_kib")]
        size_kib: usize,
    },
    /// The Python echo client: paced stream(s), every byte checked.
    Echo {
        #[serde(default = "one")]
        connections: usize,
        size: usize,
        #[serde(default = "default_chunk")]
        chunk: usize,
        #[serde(default)]
        pace_ms: f64,
        /// The address family to connect over (default: the topology's).
        #[serde(default)]
        family: Option<Family>,
    },
    /// Short connections back to back (handshakes and closes across faults).
    Short {
        count: usize,
        #[serde(default = "default_short_size")]
        size: usize,
        #[serde(default = "default_gap_ms")]
        gap_ms: u64,
    },
}

/// An address family a client connects over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// The IPv4 VIP.
    Ipv4,
    /// The IPv6 VIP (a dual-stack topology: `ipv6 = true`).
    Ipv6,
}

fn default_rate() -> String {
    "16M".into()
}
fn default_object_kib() -> usize {
    16
}
fn one() -> usize {
    1
}
fn default_chunk() -> usize {
    8192
}
fn default_short_size() -> usize {
    512
}
fn default_gap_ms() -> u64 {
    20
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// SIGKILL.
    Kill,
    /// SIGSTOP (a pause).
    Stop,
    /// SIGCONT.
    Cont,
    /// Wait until the redirector's view no longer counts the target live.
    WaitView,
    /// SIGTERM: a primary hands its role over and leaves; a backup leaves.
    Term,
    /// The admin action: a primary hands its role over and stays a backup.
    Handover,
    /// Start the target's process again: it rejoins by state transfer.
    Restart,
    /// Wait until the redirector's view counts the target live again.
    WaitLive,
    /// Kill the redirector and start it again (the target is ignored).
    RestartRedirector,
    /// Set the target's relayed links to the fault's `link` line (an empty
    /// line heals; `cut_data=1`, `cut_ack=1` cut).
    Link,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Milliseconds after the workload started.
    pub at_ms: u64,
    pub action: Action,
    /// `primary`, `backup` (the last live one), `old` (the previous fault's
    /// target) or `member:N`.
    pub target: String,
    /// For `link`: the impairment line.
    #[serde(default)]
    pub link: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Checks {
    /// Every byte arrives exactly once and intact.
    #[serde(default = "yes")]
    pub byte_exact: bool,
    /// The client never sees a reset or a connection error.
    #[serde(default = "yes")]
    pub no_reset: bool,
    /// Longest client-observed gap in the echo streams.
    pub max_stall_ms: Option<f64>,
    /// Download throughput at least this (MiB/s), over the whole transfer.
    pub min_mib_s: Option<f64>,
    /// The last fault's target (a paused member the group dropped) must
    /// stop once it resumes: fenced, it never writes to clients again.
    #[serde(default)]
    pub paused_member_stops: bool,
    /// Kill only once the target holds received data out of order (its
    /// metrics are polled, for at most 2 s): the scenario's premise,
    /// checked rather than assumed.
    #[serde(default)]
    pub killed_holding_out_of_order: bool,
}

impl Default for Checks {
    fn default() -> Self {
        Checks {
            byte_exact: true,
            no_reset: true,
            max_stall_ms: None,
            min_mib_s: None,
            paused_member_stops: false,
            killed_holding_out_of_order: false,
        }
    }
}

fn yes() -> bool {
    true
}

impl Scenario {
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let s: Scenario =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        anyhow::ensure!(
            !s.workload.is_empty(),
            "{}: at least one [[workload]]",
            path.display()
        );
        anyhow::ensure!(
            (1..=8).contains(&s.topology.replicas),
            "{}: topology.replicas must be 1..=8",
            path.display()
        );
        let links = s
            .topology
            .link
            .iter()
            .chain(s.fault.iter().filter_map(|f| f.link.as_ref()));
        for line in links {
            line.parse::<crate::relay::Impairment>()
                .map_err(|e| anyhow::anyhow!("{}: link {line:?}: {e}", path.display()))?;
            anyhow::ensure!(
                s.topology.relays,
                "{}: link faults need topology.relays = true",
                path.display()
            );
        }
        for f in &s.fault {
            anyhow::ensure!(
                (f.action == Action::Link) == f.link.is_some(),
                "{}: `link = ...` goes with action = \"link\" (and only with it)",
                path.display()
            );
            anyhow::ensure!(
                matches!(f.target.as_str(), "primary" | "backup" | "old")
                    || f.target
                        .strip_prefix("member:")
                        .is_some_and(|n| n.parse::<u8>().is_ok()),
                "{}: fault target {:?} is not primary, backup, old or member:N",
                path.display(),
                f.target
            );
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_file_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("catalogue");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Scenario::load(&path).unwrap();
                n += 1;
            }
        }
        assert!(n >= 15, "the catalogue has {n} scenarios");
    }

    #[test]
    fn bad_targets_and_unknown_fields_are_refused() {
        let dir = std::env::temp_dir().join(format!("hydra-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.toml");
        std::fs::write(&p, "name='x'\n[[workload]]\nkind='echo'\nsize=1\n[[fault]]\nat_ms=1\naction='kill'\ntarget='everyone'\n").unwrap();
        assert!(Scenario::load(&p)
            .unwrap_err()
            .to_string()
            .contains("everyone"));
        std::fs::write(&p, "name='x'\nbogus=1\n[[workload]]\nkind='echo'\nsize=1\n").unwrap();
        assert!(Scenario::load(&p).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
