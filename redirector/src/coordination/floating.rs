//! The floating client-facing address: the next hop the clients route the
//! virtual IPs through. The acting redirector holds it on its client link
//! and announces it with gratuitous ARP, so the clients' neighbour caches
//! move to it at once; a redirector that stops acting removes it first.
//!
//! The address is set with `ip` (iproute2) and announced with `arping`
//! (iputils-arping), both run as child processes: the redirector already
//! needs `CAP_NET_ADMIN` for its TUN device, and this keeps raw sockets out
//! of it.

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};

use serde::Deserialize;

/// `[coordination] floating = { address = "198.18.0.254/24", link = "eth0" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FloatingConfig {
    /// The address with its prefix length, e.g. `"198.18.0.254/24"`: the
    /// next hop the clients route the virtual IPs through (IPv4).
    pub address: String,
    /// The client-facing link it is put on, e.g. `"eth0"`.
    pub link: String,
    /// Gratuitous ARP requests sent on claiming it, the first at once, the
    /// others a second apart (1 to 10).
    #[serde(default = "default_announcements")]
    pub announcements: u32,
}

fn default_announcements() -> u32 {
    3
}

impl FloatingConfig {
    /// Check every field; the error names the field and what is expected.
    pub fn validate(&self) -> Result<(), String> {
        self.parsed()?;
        let l = &self.link;
        let bad = |c: char| c == '/' || c == ':' || c.is_whitespace() || c.is_control();
        if l.is_empty() || l.len() > 15 || l.chars().any(bad) || l == "." || l == ".." {
            return Err(format!(
                "coordination.floating.link {l:?}: a network interface name, 1 to 15 characters without '/', ':' or spaces"
            ));
        }
        if !(1..=10).contains(&self.announcements) {
            return Err(format!(
                "coordination.floating.announcements {}: from 1 to 10",
                self.announcements
            ));
        }
        Ok(())
    }

    /// The address and its prefix length.
    pub fn parsed(&self) -> Result<(Ipv4Addr, u8), String> {
        let a = &self.address;
        let explain = |why: &str| {
            format!(
                "coordination.floating.address {a:?}: {why}; expected an IPv4 address with its prefix length, e.g. \"198.18.0.254/24\""
            )
        };
        let (ip, len) = a
            .split_once('/')
            .ok_or_else(|| explain("no prefix length"))?;
        let ip: IpAddr = ip.parse().map_err(|_| explain("not an IP address"))?;
        let IpAddr::V4(ip) = ip else {
            return Err(explain(
                "IPv6 is not supported (no unsolicited neighbour advertisement is sent)",
            ));
        };
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| (1..=32).contains(l))
            .ok_or_else(|| explain("the prefix length must be 1 to 32"))?;
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
            return Err(explain("not a unicast address"));
        }
        Ok((ip, len))
    }
}

/// Puts the floating address on and takes it off.
#[derive(Debug, Clone)]
pub struct FloatingAddress {
    cfg: FloatingConfig,
    ip: Ipv4Addr,
}

impl FloatingAddress {
    /// For a validated configuration.
    pub fn new(cfg: &FloatingConfig) -> Result<FloatingAddress, String> {
        let (ip, _) = cfg.parsed()?;
        Ok(FloatingAddress {
            cfg: cfg.clone(),
            ip,
        })
    }

    /// The address as configured (with its prefix length).
    pub fn address(&self) -> &str {
        &self.cfg.address
    }

    /// Put the address on the link (idempotent) and announce it; the
    /// announcements go out from a child process not waited for here.
    pub fn claim(&self) -> Result<(), String> {
        ip(&[
            "-4",
            "addr",
            "replace",
            &self.cfg.address,
            "dev",
            &self.cfg.link,
        ])?;
        let mut arping = Command::new("arping");
        // Killed with us: a dead redirector's announcements must not pull
        // the clients back from the standby that took the address over.
        hydra_ops::child::die_with_parent(&mut arping)
            .args(["-U", "-q", "-c"])
            .arg(self.cfg.announcements.to_string())
            .args(["-I", &self.cfg.link])
            .arg(self.ip.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = arping.spawn().map_err(|e| {
            format!(
                "the floating address {} is set but cannot be announced: arping: {e} (install iputils-arping)",
                self.cfg.address
            )
        })?;
        // Reaped on a thread of its own: the announcements take a while.
        let reaper = std::thread::Builder::new()
            .name("arping".into())
            .spawn(move || child.wait());
        if let Err(e) = reaper {
            tracing::warn!("cannot wait for arping: {e}");
        }
        Ok(())
    }

    /// Take the address off the link; absent already is no error.
    pub fn release(&self) -> Result<(), String> {
        match ip(&[
            "-4",
            "addr",
            "del",
            &self.cfg.address,
            "dev",
            &self.cfg.link,
        ]) {
            Ok(()) => Ok(()),
            Err(e)
                if e.contains("Cannot assign requested address")
                    || e.contains("Address not found") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Run `ip args`; the error carries its message.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e} (install iproute2)", args.join(" ")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(address: &str, link: &str) -> FloatingConfig {
        FloatingConfig {
            address: address.into(),
            link: link.into(),
            announcements: 3,
        }
    }

    #[test]
    fn good_values_parse_and_bad_ones_are_explained() {
        let good = cfg("198.18.0.254/24", "eth0");
        good.validate().unwrap();
        assert_eq!(good.parsed().unwrap(), (Ipv4Addr::new(198, 18, 0, 254), 24));
        let cases = [
            (cfg("198.18.0.254", "eth0"), "no prefix length"),
            (cfg("198.18.0.x/24", "eth0"), "not an IP address"),
            (cfg("198.18.0.254/33", "eth0"), "prefix length"),
            (cfg("fd00::1/64", "eth0"), "IPv6 is not supported"),
            (cfg("224.0.0.1/24", "eth0"), "not a unicast address"),
            (cfg("198.18.0.254/24", ""), "floating.link"),
            (cfg("198.18.0.254/24", "a/b"), "floating.link"),
            (
                cfg("198.18.0.254/24", "averyveryverylongname"),
                "floating.link",
            ),
        ];
        for (c, want) in cases {
            let e = c.validate().unwrap_err();
            assert!(e.contains(want), "{c:?}: {e}");
        }
        let e = FloatingConfig {
            announcements: 0,
            ..good
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("announcements"), "{e}");
    }
}
