//! The `[coordination]` table of `redirector.toml`: where etcd is and who
//! this redirector is among the contenders for the view authority.

use std::time::Duration;

use serde::Deserialize;

use super::etcd::EtcdClient;
use super::floating::FloatingConfig;
use super::http::Endpoint;

/// `[coordination]`: keep the groups' views in etcd.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinationConfig {
    /// The etcd cluster's client URLs, `http://host:port`, tried in turn.
    pub etcd: Vec<String>,
    /// Every key Hydra writes starts with this.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// The authority's lease in milliseconds, whole seconds (etcd leases
    /// count seconds and grant at least its minimum, 2 s by default): how
    /// long a dead authority keeps the role from the others.
    #[serde(default = "default_lease_ttl_ms")]
    pub lease_ttl_ms: u64,
    /// How often the acting redirector writes its heartbeat to etcd, in
    /// milliseconds (0, the default: never). A standby takes over four
    /// heartbeats after the last one, instead of when the lease runs out;
    /// the acting redirector stops acting three heartbeats after the last
    /// one etcd took, so an etcd outage (a leader election too) longer
    /// than that stalls the groups.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// This redirector's name, unique among the redirectors.
    pub name: String,
    /// Longest wait for one etcd endpoint's answer, in milliseconds.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// The client-facing address the acting redirector holds (absent: the
    /// clients' next hop does not move with the authority).
    #[serde(default)]
    pub floating: Option<FloatingConfig>,
}

fn default_prefix() -> String {
    "/hydra".into()
}
fn default_lease_ttl_ms() -> u64 {
    3000
}
fn default_heartbeat_ms() -> u64 {
    0
}
fn default_request_timeout_ms() -> u64 {
    200
}

impl CoordinationConfig {
    /// Check every field; the error names the field and what is expected.
    pub fn validate(&self) -> Result<(), String> {
        if self.etcd.is_empty() {
            return Err(
                "coordination.etcd: give at least one endpoint, e.g. [\"http://198.18.0.1:2379\"]"
                    .into(),
            );
        }
        for url in &self.etcd {
            Endpoint::parse(url).map_err(|e| format!("coordination.etcd: {e}"))?;
        }
        let p = &self.prefix;
        if !p.starts_with('/') || p.len() < 2 || p.ends_with('/') || p.contains(char::is_whitespace)
        {
            return Err(format!(
                "coordination.prefix {p:?}: expected a key prefix like \"/hydra\" (leading /, no trailing /, no spaces)"
            ));
        }
        let name_ok = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if self.name.is_empty() || self.name.len() > 64 || !self.name.chars().all(name_ok) {
            return Err(format!(
                "coordination.name {:?}: 1 to 64 letters, digits, '-', '_' or '.'",
                self.name
            ));
        }
        if self.lease_ttl_ms < 1000
            || self.lease_ttl_ms > 600_000
            || !self.lease_ttl_ms.is_multiple_of(1000)
        {
            return Err(format!(
                "coordination.lease_ttl_ms {}: whole seconds from 1000 to 600000 (etcd leases count seconds)",
                self.lease_ttl_ms
            ));
        }
        if !(10..=10_000).contains(&self.request_timeout_ms) {
            return Err(format!(
                "coordination.request_timeout_ms {}: from 10 to 10000",
                self.request_timeout_ms
            ));
        }
        if let Some(f) = &self.floating {
            f.validate()?;
        }
        if self.heartbeat_ms != 0 {
            let beats = u64::from(super::heartbeat::ACTING_BEATS);
            if !(20..=self.lease_ttl_ms / 4).contains(&self.heartbeat_ms) {
                return Err(format!(
                    "coordination.heartbeat_ms {}: 0 (off) or from 20 to a quarter of lease_ttl_ms ({})",
                    self.heartbeat_ms,
                    self.lease_ttl_ms / 4
                ));
            }
            // One slow answer must not cost the authority its role.
            if self.heartbeat_ms * (beats - 1) < self.request_timeout_ms {
                return Err(format!(
                    "coordination.heartbeat_ms {}: the acting redirector stops {} heartbeats after the last answered one, so {} heartbeats must cover request_timeout_ms ({}): raise heartbeat_ms to at least {} or lower request_timeout_ms",
                    self.heartbeat_ms,
                    beats,
                    beats - 1,
                    self.request_timeout_ms,
                    self.request_timeout_ms.div_ceil(beats - 1)
                ));
            }
        }
        // A renewal that tries every endpoint must end well inside the lease.
        let worst = self.request_timeout_ms * 2 * self.etcd.len() as u64;
        if worst * 2 > self.lease_ttl_ms {
            return Err(format!(
                "coordination: a lease renewal may take {worst} ms ({} endpoints, two requests of up to request_timeout_ms each): lower request_timeout_ms or raise lease_ttl_ms to at least {}",
                self.etcd.len(),
                (worst * 2).div_ceil(1000) * 1000
            ));
        }
        Ok(())
    }

    /// A client for the configured cluster.
    pub fn client(&self) -> Result<EtcdClient, String> {
        EtcdClient::new(&self.etcd, Duration::from_millis(self.request_timeout_ms))
    }

    /// The acting redirector's heartbeat interval (None: off).
    pub fn heartbeat(&self) -> Option<Duration> {
        (self.heartbeat_ms > 0).then(|| Duration::from_millis(self.heartbeat_ms))
    }

    /// The authority's lease.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CoordinationConfig, String> {
        let c: CoordinationConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn defaults_apply_and_bad_values_are_explained() {
        let good =
            "etcd = [\"http://198.18.0.1:2379\", \"http://198.18.0.2:2379\"]\nname = \"r1\"\n";
        let c = parse(good).unwrap();
        assert_eq!(
            (c.prefix.as_str(), c.lease_ttl_ms, c.request_timeout_ms),
            ("/hydra", 3000, 200)
        );
        let with = format!("{good}floating = {{ address = \"198.18.0.254/24\", link = \"eth0\" }}");
        assert_eq!(parse(&with).unwrap().floating.unwrap().link, "eth0");
        assert_eq!(c.heartbeat(), None, "off unless asked for");
        let on = parse(&format!("{good}heartbeat_ms = 100")).unwrap();
        assert_eq!(on.heartbeat(), Some(Duration::from_millis(100)));
        let cases = [
            ("etcd = []\nname = \"r1\"", "at least one endpoint"),
            ("etcd = [\"https://a:1\"]\nname = \"r1\"", "no TLS"),
            ("etcd = [\"http://a\"]\nname = \"r1\"", "give the port"),
            (&format!("{good}prefix = \"hydra\""), "leading /"),
            (&format!("{good}prefix = \"/hydra/\""), "no trailing /"),
            (
                "etcd = [\"http://a:1\"]\nname = \"r 1\"",
                "coordination.name",
            ),
            (&format!("{good}lease_ttl_ms = 1500"), "whole seconds"),
            (&format!("{good}request_timeout_ms = 5"), "from 10 to 10000"),
            (
                &format!("{good}request_timeout_ms = 1000"),
                "lower request_timeout_ms",
            ),
            (
                &format!("{good}heartbeat_ms = 10"),
                "coordination.heartbeat_ms 10",
            ),
            (
                &format!("{good}heartbeat_ms = 900"),
                "a quarter of lease_ttl_ms",
            ),
            (
                &format!("{good}heartbeat_ms = 50"),
                "raise heartbeat_ms to at least 100",
            ),
            ("etcd = [\"http://a:1\"]", "missing field `name`"),
            (&format!("{good}password = \"x\""), "unknown field"),
            (
                &format!("{good}floating = {{ address = \"198.18.0.254\", link = \"eth0\" }}"),
                "coordination.floating.address",
            ),
            (
                &format!("{good}floating = {{ address = \"198.18.0.254/24\" }}"),
                "missing field `link`",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
