//! `redirector.toml`: the virtual IPs, the services on them and the groups
//! that serve them.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use ackchannel::auth::GroupKey;
use ackchannel::control::GroupPolicy;
use serde::Deserialize;
use stack::Duration;

use crate::coordination::CoordinationConfig;
use crate::pool::{Policy, Pool, PoolLimits};
use crate::services::Target;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectorConfig {
    /// TUN device the virtual IPs are routed to.
    #[serde(default = "default_tun")]
    pub tun: String,
    /// MTU of the TUN device: the client-side path MTU. Replica links must
    /// carry this plus 28 bytes of UDP encapsulation without fragmenting.
    #[serde(default = "default_mtu")]
    pub mtu: usize,
    /// Read client segments the kernel coalesced (up to 64 KiB) and copy
    /// each whole: far fewer packets for the replicas to take in. The
    /// copies are datagrams of up to 64 KiB; replica links with a smaller
    /// MTU carry them in IP fragments (correct, and dearer). Off: the
    /// kernel cuts them into `mtu`-sized packets first.
    #[serde(default = "default_receive_offload")]
    pub receive_offload: bool,
    /// UDP address for registrations and keepalives.
    pub control_listen: SocketAddr,
    /// Local address the packet copies are sent from (replicas accept copies
    /// only from this IP).
    pub data_bind: SocketAddr,
    /// Admin endpoint for /metrics and /status.
    pub admin: Option<SocketAddr>,
    /// Where the groups' views are kept across a restart of the redirector
    /// (strongly advised: without it, a restart stops every group).
    pub state_file: Option<std::path::PathBuf>,
    pub services: Vec<ServiceConfig>,
    pub groups: Vec<GroupConfig>,
    /// Load sharing: several groups behind one service.
    #[serde(default)]
    pub pools: Vec<PoolConfig>,
    /// Keep the views in etcd (absent: this redirector alone is the
    /// authority, with its state file).
    pub coordination: Option<CoordinationConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub vip: IpAddr,
    /// TCP ports; empty means every port of the VIP.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// The group that serves it, or:
    pub group: Option<String>,
    /// the pool whose groups share it.
    pub pool: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub name: String,
    /// round-robin, weighted-round-robin, least-connections, random, client-hash.
    pub policy: Policy,
    /// Group names, in order.
    pub groups: Vec<String>,
    /// Weights for weighted-round-robin (default 1 each).
    #[serde(default)]
    pub weights: Vec<u32>,
    /// Connections the pool remembers at most.
    #[serde(default = "default_max_flows")]
    pub max_flows: usize,
    /// An idle connection is forgotten after this long (its next packet is
    /// then dropped): keep it above the clients' keepalive interval.
    #[serde(default = "default_flow_idle_timeout_s")]
    pub flow_idle_timeout_s: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub name: String,
    /// 64 hex characters, shared with the group's replicas.
    pub key: String,
    /// Member ids allowed to register.
    pub members: Vec<u8>,
    /// The first view waits for this many registrations.
    #[serde(default = "default_min_members")]
    pub min_members: usize,
    #[serde(default = "default_keepalive_timeout_ms")]
    pub keepalive_timeout_ms: u64,
    /// How long a primary may keep sending after its last answered keepalive.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// The members' keepalive period.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// The member that should be primary whenever it is live and caught up:
    /// after it rejoins, the primary hands the role back to it.
    #[serde(default)]
    pub preferred_primary: Option<u8>,
}

fn default_max_flows() -> usize {
    PoolLimits::default().max_flows
}
fn default_flow_idle_timeout_s() -> u64 {
    PoolLimits::default().idle_timeout.total_millis() / 1000
}
fn default_tun() -> String {
    "hydra-vip".into()
}
fn default_receive_offload() -> bool {
    true
}
fn default_mtu() -> usize {
    1500
}
fn default_min_members() -> usize {
    1
}
fn default_keepalive_timeout_ms() -> u64 {
    100
}
fn default_lease_ms() -> u64 {
    60
}
fn default_heartbeat_ms() -> u64 {
    10
}

impl RedirectorConfig {
    pub fn load(path: &Path) -> anyhow::Result<RedirectorConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<RedirectorConfig> {
        let cfg: RedirectorConfig = toml::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (576..=65535).contains(&self.mtu),
            "mtu must be within 576..=65535"
        );
        anyhow::ensure!(!self.groups.is_empty(), "at least one [[groups]] is needed");
        if let Some(c) = &self.coordination {
            c.validate().map_err(anyhow::Error::msg)?;
            anyhow::ensure!(
                self.state_file.is_none(),
                "state_file and [coordination] exclude each other: with coordination the views live in etcd"
            );
        }
        for g in &self.groups {
            GroupKey::from_hex(&g.key).map_err(|e| anyhow::anyhow!("group {}: {e}", g.name))?;
            anyhow::ensure!(
                !g.members.is_empty() && !g.members.contains(&0),
                "group {}: members must be non-empty ids from 1 to 255",
                g.name
            );
            anyhow::ensure!(
                g.min_members >= 1 && g.min_members <= g.members.len(),
                "group {}: min_members must be between 1 and the number of members",
                g.name
            );
            if let Some(p) = g.preferred_primary {
                anyhow::ensure!(
                    g.members.contains(&p),
                    "group {}: preferred_primary {p} is not one of its members {:?}",
                    g.name,
                    g.members
                );
            }
            // Fencing: a member is declared dead only after its lease ran out.
            anyhow::ensure!(
                g.lease_ms < g.keepalive_timeout_ms && g.heartbeat_ms < g.lease_ms,
                "group {}: need heartbeat_ms < lease_ms < keepalive_timeout_ms",
                g.name
            );
        }
        let group_named = |name: &str| self.groups.iter().any(|g| g.name == name);
        for p in &self.pools {
            anyhow::ensure!(!p.groups.is_empty(), "pool {}: no groups", p.name);
            for g in &p.groups {
                anyhow::ensure!(group_named(g), "pool {}: no group named {g:?}", p.name);
            }
            anyhow::ensure!(
                p.weights.is_empty() || p.weights.len() == p.groups.len(),
                "pool {}: one weight per group, or none",
                p.name
            );
            anyhow::ensure!(
                !p.weights.contains(&0),
                "pool {}: weights must be at least 1",
                p.name
            );
            anyhow::ensure!(
                p.max_flows > 0,
                "pool {}: max_flows must be positive",
                p.name
            );
        }
        for s in &self.services {
            match (&s.group, &s.pool) {
                (Some(g), None) => {
                    anyhow::ensure!(group_named(g), "service {}: no group named {g:?}", s.vip)
                }
                (None, Some(p)) => anyhow::ensure!(
                    self.pools.iter().any(|x| &x.name == p),
                    "service {}: no pool named {p:?}",
                    s.vip
                ),
                _ => anyhow::bail!("service {}: give either group or pool", s.vip),
            }
        }
        Ok(())
    }

    /// The target of each service, by index into groups and pools.
    pub fn targets(&self) -> Vec<Target> {
        self.services
            .iter()
            .map(|s| match (&s.group, &s.pool) {
                (Some(g), _) => Target::Group(self.group_index(g)),
                (_, Some(p)) => Target::Pool(
                    self.pools
                        .iter()
                        .position(|x| &x.name == p)
                        .expect("validated"),
                ),
                (None, None) => unreachable!("validated"),
            })
            .collect()
    }

    fn group_index(&self, name: &str) -> usize {
        self.groups
            .iter()
            .position(|g| g.name == name)
            .expect("validated")
    }

    /// The configured pools, ready to route (`seed` feeds the random policy).
    pub fn build_pools(&self, seed: u64) -> Vec<Pool> {
        self.pools
            .iter()
            .map(|p| {
                let groups = p
                    .groups
                    .iter()
                    .enumerate()
                    .map(|(i, g)| {
                        let weight = p.weights.get(i).copied().unwrap_or(1);
                        (self.group_index(g), g.clone(), weight)
                    })
                    .collect();
                let limits = PoolLimits {
                    max_flows: p.max_flows,
                    idle_timeout: Duration::from_secs(p.flow_idle_timeout_s),
                    ..PoolLimits::default()
                };
                Pool::new(p.name.clone(), p.policy, groups, limits, seed)
            })
            .collect()
    }

    pub fn policies(&self) -> Vec<GroupPolicy> {
        self.groups
            .iter()
            .map(|g| GroupPolicy {
                name: g.name.clone(),
                key: GroupKey::from_hex(&g.key).expect("validated"),
                members: g.members.clone(),
                min_members: g.min_members,
                keepalive_timeout: Duration::from_millis(g.keepalive_timeout_ms),
                lease: Duration::from_millis(g.lease_ms),
                heartbeat: Duration::from_millis(g.heartbeat_ms),
                preferred_primary: g.preferred_primary,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
control_listen = "198.18.1.1:7000"
data_bind = "198.18.1.1:0"

[[services]]
vip = "198.18.100.1"
ports = [80]
group = "web"

[[groups]]
name = "web"
key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
members = [1, 2, 3]
"#;

    #[test]
    fn parses_with_defaults() {
        let c = RedirectorConfig::parse(GOOD).unwrap();
        assert_eq!(c.mtu, 1500);
        assert_eq!(c.groups[0].lease_ms, 60);
        assert_eq!(c.policies()[0].members, vec![1, 2, 3]);
    }

    #[test]
    fn unsafe_or_inconsistent_settings_are_explained() {
        let e = RedirectorConfig::parse(&format!("{GOOD}lease_ms = 500\n")).unwrap_err();
        assert!(
            format!("{e:#}").contains("lease_ms < keepalive_timeout_ms"),
            "{e:#}"
        );
        let e = RedirectorConfig::parse(&GOOD.replace("group = \"web\"", "group = \"db\""))
            .unwrap_err();
        assert!(format!("{e:#}").contains("no group named"), "{e:#}");
        let e = RedirectorConfig::parse(&GOOD.replace("group = \"web\"", "")).unwrap_err();
        assert!(format!("{e:#}").contains("either group or pool"), "{e:#}");
        let e = RedirectorConfig::parse(&GOOD.replace("0001", "xx01")).unwrap_err();
        assert!(format!("{e:#}").contains("hex"), "{e:#}");
        assert!(RedirectorConfig::parse(&format!("{GOOD}bogus = 1\n")).is_err());
        let e = RedirectorConfig::parse(&format!("{GOOD}preferred_primary = 9\n")).unwrap_err();
        assert!(format!("{e:#}").contains("preferred_primary 9"), "{e:#}");
        let ok = RedirectorConfig::parse(&format!("{GOOD}preferred_primary = 2\n")).unwrap();
        assert_eq!(ok.policies()[0].preferred_primary, Some(2));
    }

    #[test]
    fn coordination_is_optional_and_checked() {
        assert!(RedirectorConfig::parse(GOOD)
            .unwrap()
            .coordination
            .is_none());
        let with =
            format!("{GOOD}\n[coordination]\netcd = [\"http://198.18.0.1:2379\"]\nname = \"r1\"\n");
        let c = RedirectorConfig::parse(&with).unwrap();
        assert_eq!(c.coordination.unwrap().prefix, "/hydra");
        let e = RedirectorConfig::parse(&with.replace("r1", "")).unwrap_err();
        assert!(format!("{e:#}").contains("coordination.name"), "{e:#}");
        let both = format!("state_file = \"/tmp/s\"\n{with}");
        let e = RedirectorConfig::parse(&both).unwrap_err();
        assert!(format!("{e:#}").contains("exclude each other"), "{e:#}");
    }

    #[test]
    fn pools_name_their_groups_and_policy() {
        let text = GOOD.replace("group = \"web\"", "pool = \"both\"")
            + r#"
[[groups]]
name = "web2"
key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
members = [1, 2]

[[pools]]
name = "both"
policy = "weighted-round-robin"
groups = ["web", "web2"]
weights = [3, 1]
"#;
        let c = RedirectorConfig::parse(&text).unwrap();
        assert_eq!(c.targets(), vec![Target::Pool(0)]);
        let pools = c.build_pools(1);
        let s = pools[0].status();
        assert_eq!(s.policy, "weighted-round-robin");
        assert_eq!(s.members[1].weight, 1);
        let e = RedirectorConfig::parse(&text.replace("weights = [3, 1]", "weights = [3]"))
            .unwrap_err();
        assert!(format!("{e:#}").contains("one weight per group"), "{e:#}");
        let e = RedirectorConfig::parse(&text.replace("\"web\", \"web2\"", "\"web\", \"db\""))
            .unwrap_err();
        assert!(format!("{e:#}").contains("no group named"), "{e:#}");
        let e =
            RedirectorConfig::parse(&text.replace("weighted-round-robin", "fastest")).unwrap_err();
        assert!(format!("{e:#}").contains("unknown variant"), "{e:#}");
    }
}
