//! The scenario file format (TOML): topology, workload, fault schedule, checks.
//!
//! ```toml
//! name = "primary-crash-during-download"
//! about = "SIGKILL the primary while curl downloads"
//! [topology]
//! replicas = 3
//! [[workload]]
//! kind = "download"          # download | upload | nc | echo | short | wrk | cpu-hog
//! # family = "ipv4"          # nc and echo: the VIP's family (ipv6 topologies)
//! size_mib = 48
//! rate = "16M"
//! [[fault]]
//! at_ms = 1200
//! action = "kill"            # kill | stop | cont | wait-view | ... (see Action)
//! target = "primary"         # primary | backup | old | member:N
//! [checks]
//! max_stall_ms = 2000
//! ```
//!
//! With `[topology] redirectors = 2` (or more) the redirectors share a real
//! etcd and the faults may also strike them: `kill-acting-redirector`
//! (`release = true`, `restart = true`), `partition-acting-redirector`
//! (`heal_ms = N`) and `kill-etcd-member` (`target = "etcd:N"`).

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
    /// Redirectors. More than one share a real etcd (`etcd_members`): one
    /// acts as the view authority and holds the clients' next hop, the
    /// others stand by (IPv4 only, no relays).
    #[serde(default = "one")]
    pub redirectors: usize,
    /// Members of that etcd cluster (with `redirectors` > 1).
    #[serde(default = "one")]
    pub etcd_members: usize,
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
            redirectors: 1,
            etcd_members: 1,
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
    /// Busy threads in the runner's process, one per `threads`, for
    /// `seconds`: the machine's cores saturated, as under a neighbour's
    /// load (a soak checks that no failover happens then).
    CpuHog { threads: usize, seconds: u64 },
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
    /// The target's host lost: its process stopped and its links down (no
    /// connection closes, nothing answers), for the rest of the run.
    LoseHost,
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
    /// Kill the redirector and start it again (the target is ignored; a
    /// topology of one redirector).
    RestartRedirector,
    /// Set the target's relayed links to the fault's `link` line (an empty
    /// line heals; `cut_data=1`, `cut_ack=1` cut).
    Link,
    /// SIGKILL the redirector acting as the view authority (redundant
    /// redirectors, no target): another must act and hold the floating
    /// address. `release = true` then does what its systemd unit would:
    /// kills what the process left, runs `hydra-redirector --release`; `restart = true` starts
    /// the killed one again once another acts (it must stand by).
    KillActingRedirector,
    /// Cut the acting redirector's links, its process alive (redundant
    /// redirectors, no target): it must stop acting and give the floating
    /// address up, another must act. `heal_ms = N` brings the links back
    /// N ms after the cut (not before the takeover); without it they stay
    /// cut.
    PartitionActingRedirector,
    /// SIGKILL etcd member N (`target = "etcd:N"`, from 0): the quorum
    /// holds, so the acting redirector must still act at the end.
    KillEtcdMember,
}

impl Action {
    /// Whether the fault strikes a group member (its `target` names one);
    /// the others strike the redirectors or etcd.
    pub fn strikes_a_member(self) -> bool {
        !matches!(
            self,
            Action::RestartRedirector
                | Action::KillActingRedirector
                | Action::PartitionActingRedirector
                | Action::KillEtcdMember
        )
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Milliseconds after the workload started.
    pub at_ms: u64,
    pub action: Action,
    /// `primary`, `backup` (the last live one), `old` (the previous member
    /// fault's target) or `member:N`; `etcd:N` for `kill-etcd-member`;
    /// none for the acting redirector's faults.
    #[serde(default)]
    pub target: Option<String>,
    /// For `link`: the impairment line.
    #[serde(default)]
    pub link: Option<String>,
    /// For `kill-acting-redirector`: release its authority and address as
    /// its supervisor would.
    #[serde(default)]
    pub release: bool,
    /// For `kill-acting-redirector`: start it again once another acts.
    #[serde(default)]
    pub restart: bool,
    /// For `partition-acting-redirector`: heal the links this long after
    /// the cut.
    #[serde(default)]
    pub heal_ms: Option<u64>,
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
    /// Longest time from a redirector fault (the kill or the cut) until
    /// another redirector acts.
    pub max_takeover_ms: Option<f64>,
    /// Views the group may go through during the run at most (0: a soak
    /// with no fault must see no failover, spurious or other).
    pub max_view_changes: Option<u64>,
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
            max_takeover_ms: None,
            max_view_changes: None,
        }
    }
}

fn yes() -> bool {
    true
}

impl Scenario {
    /// Read and check a scenario file; errors name the file.
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        Scenario::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Parse and check a scenario's TOML text.
    pub fn parse(text: &str) -> anyhow::Result<Scenario> {
        let s: Scenario = toml::from_str(text)?;
        s.check().map_err(anyhow::Error::msg)?;
        Ok(s)
    }

    /// Every rule the types cannot say; the error names the key.
    fn check(&self) -> Result<(), String> {
        let s = self;
        if s.workload.is_empty() {
            return Err("at least one [[workload]]".into());
        }
        if !(1..=8).contains(&s.topology.replicas) {
            return Err("topology.replicas must be 1..=8".into());
        }
        check_redirectors(&s.topology)?;
        let links = s
            .topology
            .link
            .iter()
            .chain(s.fault.iter().filter_map(|f| f.link.as_ref()));
        for line in links {
            line.parse::<crate::relay::Impairment>()
                .map_err(|e| format!("link {line:?}: {e}"))?;
            if !s.topology.relays {
                return Err("link faults need topology.relays = true".into());
            }
        }
        let mut redirectors = RedirectorFaults::new(&s.topology);
        for (n, f) in s.fault.iter().enumerate() {
            let at = |why: String| format!("fault {} ({:?}): {why}", n + 1, f.action);
            if (f.action == Action::Link) != f.link.is_some() {
                return Err(at(
                    "`link = ...` goes with action = \"link\" (and only with it)".into(),
                ));
            }
            if (f.release || f.restart) && f.action != Action::KillActingRedirector {
                return Err(at(
                    "`release` and `restart` go with action = \"kill-acting-redirector\"".into(),
                ));
            }
            if f.heal_ms.is_some() && f.action != Action::PartitionActingRedirector {
                return Err(at(
                    "`heal_ms` goes with action = \"partition-acting-redirector\"".into(),
                ));
            }
            if f.action.strikes_a_member() {
                check_member_target(f.target.as_deref()).map_err(at)?;
            } else {
                redirectors.check(f).map_err(at)?;
            }
        }
        if s.checks.max_takeover_ms.is_some() && !redirectors.takeovers {
            return Err("checks.max_takeover_ms needs a kill-acting-redirector or partition-acting-redirector fault".into());
        }
        Ok(())
    }
}

/// `redirectors` and `etcd_members` against what the cluster can build.
fn check_redirectors(t: &Topology) -> Result<(), String> {
    if !(1..=8).contains(&t.redirectors) {
        return Err("topology.redirectors must be 1..=8".into());
    }
    if !(1..=5).contains(&t.etcd_members) {
        return Err("topology.etcd_members must be 1..=5".into());
    }
    if t.redirectors == 1 && t.etcd_members != 1 {
        return Err(
            "topology.etcd_members needs topology.redirectors > 1 (a single redirector keeps its views in a state file)"
                .into(),
        );
    }
    if t.redirectors > 1 && (t.ipv6 || t.relays) {
        return Err(
            "topology.redirectors > 1 (etcd coordination) is IPv4 only, without relays: not with ipv6 or relays"
                .into(),
        );
    }
    Ok(())
}

fn check_member_target(target: Option<&str>) -> Result<(), String> {
    let target = target.ok_or("`target` is required: primary, backup, old or member:N")?;
    let member = target
        .strip_prefix("member:")
        .is_some_and(|n| n.parse::<u8>().is_ok());
    if matches!(target, "primary" | "backup" | "old") || member {
        Ok(())
    } else {
        Err(format!(
            "fault target {target:?} is not primary, backup, old or member:N"
        ))
    }
}

/// The redirector and etcd faults in order: each must find a standby to
/// take over, and etcd must keep its quorum.
struct RedirectorFaults {
    redirectors: usize,
    etcd_members: usize,
    /// Redirectors killed and not restarted, or cut and not healed.
    down: usize,
    etcd_killed: Vec<usize>,
    /// A fault after which another redirector must act.
    takeovers: bool,
}

impl RedirectorFaults {
    fn new(t: &Topology) -> RedirectorFaults {
        RedirectorFaults {
            redirectors: t.redirectors,
            etcd_members: t.etcd_members,
            down: 0,
            etcd_killed: Vec::new(),
            takeovers: false,
        }
    }

    fn check(&mut self, f: &Fault) -> Result<(), String> {
        let redundant = self.redirectors > 1;
        match f.action {
            // Their target is checked by check_member_target.
            a if a.strikes_a_member() => Ok(()),
            Action::RestartRedirector if redundant => Err(
                "restarts the single redirector; with topology.redirectors > 1 use kill-acting-redirector with restart = true".into(),
            ),
            Action::RestartRedirector => Ok(()),
            _ if !redundant => Err("needs topology.redirectors > 1".into()),
            Action::KillActingRedirector | Action::PartitionActingRedirector => {
                if let Some(t) = &f.target {
                    return Err(format!(
                        "strikes the acting redirector: no target ({t:?} given)"
                    ));
                }
                if self.redirectors - self.down < 2 {
                    return Err(format!(
                        "no standby redirector left to take over (topology.redirectors = {}, {} already down: restart = true or heal_ms bring one back)",
                        self.redirectors, self.down
                    ));
                }
                let back = match f.action {
                    Action::KillActingRedirector => f.restart,
                    _ => f.heal_ms.is_some(),
                };
                if !back {
                    self.down += 1;
                }
                self.takeovers = true;
                Ok(())
            }
            // kill-etcd-member, the one left.
            _ => {
                let j = f
                    .target
                    .as_deref()
                    .and_then(|t| t.strip_prefix("etcd:")?.parse::<usize>().ok())
                    .filter(|&j| j < self.etcd_members)
                    .ok_or_else(|| {
                        format!(
                            "target must be etcd:N with N from 0 to {} (topology.etcd_members = {})",
                            self.etcd_members - 1,
                            self.etcd_members
                        )
                    })?;
                if self.etcd_killed.contains(&j) {
                    return Err(format!("etcd member {j} is already killed"));
                }
                self.etcd_killed.push(j);
                if self.etcd_killed.len() > (self.etcd_members - 1) / 2 {
                    return Err(format!(
                        "{} of {} etcd members killed loses the quorum, and with it every acting redirector (topology.etcd_members = 3 survives one)",
                        self.etcd_killed.len(),
                        self.etcd_members
                    ));
                }
                Ok(())
            }
        }
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

    /// A scenario of redundant redirectors: `topology` lines, then faults.
    fn redundant(topology: &str, faults: &str) -> anyhow::Result<Scenario> {
        Scenario::parse(&format!(
            "name='x'\n[topology]\n{topology}\n[[workload]]\nkind='echo'\nsize=1\n{faults}"
        ))
    }

    fn refused(r: anyhow::Result<Scenario>, says: &str) {
        let e = r.expect_err("refused").to_string();
        assert!(e.contains(says), "{e:?} does not say {says:?}");
    }

    #[test]
    fn redirector_faults_parse_with_their_options() {
        let s = redundant(
            "redirectors = 2\netcd_members = 3",
            "[[fault]]\nat_ms=1\naction='kill-acting-redirector'\nrelease=true\nrestart=true\n\
             [[fault]]\nat_ms=2\naction='partition-acting-redirector'\nheal_ms=3000\n\
             [[fault]]\nat_ms=3\naction='kill-etcd-member'\ntarget='etcd:2'\n\
             [checks]\nmax_takeover_ms=2000\n",
        )
        .unwrap();
        assert_eq!(s.topology.redirectors, 2);
        assert_eq!(s.topology.etcd_members, 3);
        assert!(s.fault[0].release && s.fault[0].restart);
        assert_eq!(s.fault[1].heal_ms, Some(3000));
        assert_eq!(s.fault[2].target.as_deref(), Some("etcd:2"));
        let one = Scenario::parse("name='x'\n[[workload]]\nkind='echo'\nsize=1\n").unwrap();
        assert_eq!(
            (one.topology.redirectors, one.topology.etcd_members),
            (1, 1)
        );
    }

    #[test]
    fn redundant_topologies_the_cluster_cannot_build_are_refused() {
        refused(
            redundant("redirectors = 2\nipv6 = true", ""),
            "not with ipv6",
        );
        refused(redundant("redirectors = 2\nrelays = true", ""), "relays");
        refused(redundant("redirectors = 9", ""), "1..=8");
        refused(redundant("redirectors = 2\netcd_members = 6", ""), "1..=5");
        refused(redundant("etcd_members = 3", ""), "redirectors > 1");
    }

    #[test]
    fn redirector_faults_are_checked() {
        let kill = "[[fault]]\nat_ms=1\naction='kill-acting-redirector'\n";
        refused(redundant("", kill), "needs topology.redirectors > 1");
        refused(
            redundant("redirectors = 2", &format!("{kill}target='primary'\n")),
            "no target",
        );
        // Two redirectors: the second kill finds no standby, unless the
        // first one came back.
        refused(
            redundant("redirectors = 2", &format!("{kill}{kill}")),
            "no standby redirector left",
        );
        redundant("redirectors = 2", &format!("{kill}restart=true\n{kill}")).unwrap();
        redundant("redirectors = 3", &format!("{kill}{kill}")).unwrap();
        let cut = "[[fault]]\nat_ms=1\naction='partition-acting-redirector'\n";
        refused(
            redundant("redirectors = 2", &format!("{cut}{kill}")),
            "no standby redirector left",
        );
        redundant("redirectors = 2", &format!("{cut}heal_ms=2000\n{kill}")).unwrap();
        refused(
            redundant("redirectors = 2", &format!("{cut}release=true\n")),
            "`release` and `restart`",
        );
        refused(
            redundant("redirectors = 2", &format!("{kill}heal_ms=5\n")),
            "`heal_ms`",
        );
        refused(
            redundant(
                "redirectors = 2",
                "[[fault]]\nat_ms=1\naction='restart-redirector'\n",
            ),
            "restart = true",
        );
        refused(
            redundant("", "[[fault]]\nat_ms=1\naction='kill'\n"),
            "`target` is required",
        );
        refused(
            redundant("redirectors = 2", "[checks]\nmax_takeover_ms=5\n"),
            "max_takeover_ms needs",
        );
    }

    #[test]
    fn etcd_member_kills_keep_the_quorum() {
        let kill = |j: usize| {
            format!("[[fault]]\nat_ms=1\naction='kill-etcd-member'\ntarget='etcd:{j}'\n")
        };
        redundant("redirectors = 2\netcd_members = 3", &kill(0)).unwrap();
        refused(
            redundant("redirectors = 2\netcd_members = 3", &kill(3)),
            "etcd:N with N from 0 to 2",
        );
        refused(redundant("redirectors = 2", &kill(0)), "loses the quorum");
        refused(
            redundant(
                "redirectors = 2\netcd_members = 3",
                &format!("{}{}", kill(0), kill(1)),
            ),
            "loses the quorum",
        );
        redundant(
            "redirectors = 2\netcd_members = 5",
            &format!("{}{}", kill(0), kill(1)),
        )
        .unwrap();
        refused(
            redundant(
                "redirectors = 2\netcd_members = 5",
                &format!("{}{}", kill(1), kill(1)),
            ),
            "already killed",
        );
        refused(
            redundant(
                "redirectors = 2\netcd_members = 3",
                "[[fault]]\nat_ms=1\naction='kill-etcd-member'\ntarget='member:1'\n",
            ),
            "etcd:N",
        );
    }
}
