//! `redirector.toml`: the virtual IPs, the services on them and the groups
//! that serve them.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;

use ackchannel::auth::GroupKey;
use ackchannel::control::GroupPolicy;
use serde::Deserialize;
use stack::Duration;

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
    /// UDP address for registrations and keepalives.
    pub control_listen: SocketAddrV4,
    /// Local address the packet copies are sent from (replicas accept copies
    /// only from this IP).
    pub data_bind: SocketAddrV4,
    /// Admin endpoint for /metrics and /status.
    pub admin: Option<SocketAddr>,
    pub services: Vec<ServiceConfig>,
    pub groups: Vec<GroupConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub vip: Ipv4Addr,
    /// TCP ports; empty means every port of the VIP.
    #[serde(default)]
    pub ports: Vec<u16>,
    pub group: String,
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
}

fn default_tun() -> String {
    "hydra-vip".into()
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
            // Fencing: a member is declared dead only after its lease ran out.
            anyhow::ensure!(
                g.lease_ms < g.keepalive_timeout_ms && g.heartbeat_ms < g.lease_ms,
                "group {}: need heartbeat_ms < lease_ms < keepalive_timeout_ms",
                g.name
            );
        }
        for s in &self.services {
            anyhow::ensure!(
                self.groups.iter().any(|g| g.name == s.group),
                "service {}: no group named {:?}",
                s.vip,
                s.group
            );
        }
        Ok(())
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
        let e = RedirectorConfig::parse(&GOOD.replace("0001", "xx01")).unwrap_err();
        assert!(format!("{e:#}").contains("hex"), "{e:#}");
        assert!(RedirectorConfig::parse(&format!("{GOOD}bogus = 1\n")).is_err());
    }
}
