//! A member's configuration (`member.toml`, or the member part of
//! `hydra-replica`'s `replica.toml`): one member of one group.

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

/// One member of one group: who it is, the group's key and virtual IPs,
/// its device, its addresses and the redirector's, its timing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// This replica's member id in its group (as listed in the redirector's config).
    pub member: u8,
    /// Group name, as in the redirector's config.
    pub group: String,
    /// Group key: 64 hex characters (32 bytes). Authenticates control and
    /// ack-channel messages and derives the shared ISN key.
    pub key: String,
    /// Virtual IPs this group serves (routed to the TUN device).
    pub vips: Vec<IpAddr>,
    /// TUN device carrying the primary's output to the kernel.
    #[serde(default = "default_tun")]
    pub tun: String,
    #[serde(default = "default_mtu")]
    pub mtu: usize,
    /// MSS we announce: the client's path MTU minus 40, not the replica link's.
    #[serde(default = "default_mss")]
    pub mss: u16,
    /// UDP address where the redirector's copies of client packets arrive.
    pub data_listen: SocketAddr,
    /// TCP address of this replica's ack-channel endpoint.
    pub ack_listen: SocketAddr,
    /// Where the redirector should send the copies, if not `data_listen`
    /// (a NAT or a relay in between).
    pub data_advertise: Option<SocketAddr>,
    /// Where the other replicas should reach our ack channel, if not
    /// `ack_listen`.
    pub ack_advertise: Option<SocketAddr>,
    /// The redirector's control (UDP) address, or a list of them for
    /// redundant redirectors: control datagrams go to every one (only the
    /// acting one answers) and copies are accepted from any.
    pub redirector: Redirectors,
    /// Keepalive period to the redirector and heartbeat period among replicas.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// A peer silent this long is reported to the redirector as suspect.
    #[serde(default = "default_peer_timeout_ms")]
    pub peer_timeout_ms: u64,
    /// Admin endpoint for /metrics and /status.
    pub admin: Option<SocketAddr>,
}

/// `redirector = "198.18.1.1:7000"`, or a list:
/// `redirector = ["198.18.1.1:7000", "198.18.1.2:7000"]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Redirectors {
    /// One redirector.
    One(SocketAddr),
    /// Redundant redirectors, one of them acting at a time.
    Many(Vec<SocketAddr>),
}

impl Redirectors {
    /// Every configured control address.
    pub fn addrs(&self) -> &[SocketAddr] {
        match self {
            Redirectors::One(a) => std::slice::from_ref(a),
            Redirectors::Many(v) => v,
        }
    }
}

/// Redundant redirectors a member talks to at most.
pub const MAX_REDIRECTORS: usize = 8;

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

impl MemberConfig {
    /// Check the values that parsing cannot: an error says which and why.
    pub fn check(&self) -> Result<(), String> {
        if self.vips.is_empty() {
            return Err("vips: at least one virtual IP is needed".into());
        }
        if !(576..=65535).contains(&self.mtu) {
            return Err("mtu must be within 576..=65535".into());
        }
        if self.heartbeat_ms == 0 || self.peer_timeout_ms <= self.heartbeat_ms {
            return Err("peer_timeout_ms must exceed heartbeat_ms > 0".into());
        }
        if !(1..=255).contains(&self.member) {
            return Err("member must be an id from 1 to 255".into());
        }
        let redirectors = self.redirector.addrs();
        if redirectors.is_empty() || redirectors.len() > MAX_REDIRECTORS {
            return Err(format!(
                "redirector: one control address, or a list of 1 to {MAX_REDIRECTORS}"
            ));
        }
        if (1..redirectors.len()).any(|i| redirectors[..i].contains(&redirectors[i])) {
            return Err("redirector: an address is listed twice".into());
        }
        self.key_bytes()?;
        Ok(())
    }

    /// The group key's 32 bytes.
    pub fn key_bytes(&self) -> Result<[u8; 32], String> {
        ackchannel::auth::GroupKey::from_hex(&self.key)
            .map(|k| k.0)
            .map_err(|e| format!("key: {e}"))
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
"#;

    #[test]
    fn parses_with_defaults() {
        let c: MemberConfig = toml::from_str(GOOD).unwrap();
        c.check().unwrap();
        assert_eq!(c.heartbeat_ms, 10);
        assert_eq!(c.key_bytes().unwrap()[31], 0x1f);
    }

    #[test]
    fn bad_values_are_explained() {
        let c: MemberConfig = toml::from_str(&GOOD.replace("0001", "zz01")).unwrap();
        assert!(c.check().unwrap_err().contains("hex"));
        let c: MemberConfig = toml::from_str(&GOOD.replace("member = 1", "member = 0")).unwrap();
        assert!(c.check().unwrap_err().contains("member"));
        assert!(toml::from_str::<MemberConfig>(&format!("{GOOD}\nbogus = 1")).is_err());
        for list in ["[]", "[\"198.18.1.1:7000\", \"198.18.1.1:7000\"]"] {
            let text = GOOD.replace("\"198.18.1.1:7000\"", list);
            let c: MemberConfig = toml::from_str(&text).unwrap();
            assert!(c.check().unwrap_err().contains("redirector"), "{list}");
        }
    }

    #[test]
    fn one_redirector_or_several() {
        let c: MemberConfig = toml::from_str(GOOD).unwrap();
        assert_eq!(c.redirector.addrs(), ["198.18.1.1:7000".parse().unwrap()]);
        let text = GOOD.replace(
            "\"198.18.1.1:7000\"",
            "[\"198.18.1.1:7000\", \"[fd00:1::2]:7000\"]",
        );
        let c: MemberConfig = toml::from_str(&text).unwrap();
        c.check().unwrap();
        assert_eq!(c.redirector.addrs().len(), 2);
    }
}
