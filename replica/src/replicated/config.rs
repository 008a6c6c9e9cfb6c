//! `replica.toml`: one replica of one group.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;

use serde::Deserialize;

use crate::apps::AppSpec;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaConfig {
    /// This replica's member id in its group (as listed in the redirector's config).
    pub member: u8,
    /// Group name, as in the redirector's config.
    pub group: String,
    /// Group key: 64 hex characters (32 bytes). Authenticates control and
    /// ack-channel messages and derives the shared ISN key.
    pub key: String,
    /// Virtual IPs this group serves (routed to the TUN device).
    pub vips: Vec<Ipv4Addr>,
    /// TUN device carrying the primary's output to the kernel.
    #[serde(default = "default_tun")]
    pub tun: String,
    #[serde(default = "default_mtu")]
    pub mtu: usize,
    /// MSS we announce: the client's path MTU minus 40, not the replica link's.
    #[serde(default = "default_mss")]
    pub mss: u16,
    /// UDP address where the redirector's copies of client packets arrive.
    pub data_listen: SocketAddrV4,
    /// TCP address of this replica's ack-channel endpoint.
    pub ack_listen: SocketAddrV4,
    /// Where the redirector should send the copies, if not `data_listen`
    /// (a NAT or a relay in between).
    pub data_advertise: Option<SocketAddrV4>,
    /// Where the other replicas should reach our ack channel, if not
    /// `ack_listen`.
    pub ack_advertise: Option<SocketAddrV4>,
    /// The redirector's control (UDP) address.
    pub redirector: SocketAddrV4,
    /// Keepalive period to the redirector and heartbeat period among replicas.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// A peer silent this long is reported to the redirector as suspect.
    #[serde(default = "default_peer_timeout_ms")]
    pub peer_timeout_ms: u64,
    /// Applications, as on the command line: `echo:7`, `http:80=/srv/www`...
    pub apps: Vec<String>,
    /// Admin endpoint for /metrics and /status.
    pub admin: Option<SocketAddr>,
}

fn default_tun() -> String {
    "hydra0".into()
}
fn default_mtu() -> usize {
    9000
}
fn default_mss() -> u16 {
    1460
}
fn default_heartbeat_ms() -> u64 {
    10
}
fn default_peer_timeout_ms() -> u64 {
    100
}

impl ReplicaConfig {
    pub fn load(path: &Path) -> anyhow::Result<ReplicaConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let cfg: ReplicaConfig =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.vips.is_empty(),
            "vips: at least one virtual IP is needed"
        );
        anyhow::ensure!(
            (576..=65535).contains(&self.mtu),
            "mtu must be within 576..=65535"
        );
        anyhow::ensure!(
            self.heartbeat_ms > 0 && self.peer_timeout_ms > self.heartbeat_ms,
            "peer_timeout_ms must exceed heartbeat_ms > 0"
        );
        self.key_bytes()?;
        self.app_specs()?;
        Ok(())
    }

    pub fn key_bytes(&self) -> anyhow::Result<[u8; 32]> {
        Ok(ackchannel::auth::GroupKey::from_hex(&self.key)?.0)
    }

    pub fn app_specs(&self) -> anyhow::Result<Vec<AppSpec>> {
        self.apps
            .iter()
            .map(|a| a.parse::<AppSpec>().map_err(anyhow::Error::msg))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
member = 1
group = "web"
key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
vips = ["198.18.100.1"]
data_listen = "198.18.1.11:7100"
ack_listen = "198.18.1.11:7200"
redirector = "198.18.1.1:7000"
apps = ["echo:7"]
"#;

    #[test]
    fn parses_with_defaults() {
        let c: ReplicaConfig = toml::from_str(GOOD).unwrap();
        c.validate().unwrap();
        assert_eq!(c.heartbeat_ms, 10);
        assert_eq!(c.key_bytes().unwrap()[31], 0x1f);
    }

    #[test]
    fn bad_values_are_explained() {
        let c: ReplicaConfig = toml::from_str(&GOOD.replace("0001", "zz01")).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("hex"));
        let c: ReplicaConfig = toml::from_str(&GOOD.replace("echo:7", "echo")).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("NAME:PORT"));
        assert!(toml::from_str::<ReplicaConfig>(&format!("{GOOD}\nbogus = 1")).is_err());
    }
}
