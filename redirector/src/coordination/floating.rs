//! The floating client-facing addresses: the next hops the clients route
//! the virtual IPs through (one per address family, usually). The acting
//! redirector holds them on its client link and announces them, IPv4 ones
//! with gratuitous ARP and IPv6 ones with unsolicited neighbour
//! advertisements, so the clients' neighbour caches move to it at once; a
//! redirector that stops acting removes them first.
//!
//! The addresses are set with `ip` (iproute2); IPv4 ones are announced
//! with `arping` (iputils-arping) as a child process, IPv6 ones from a raw
//! ICMPv6 socket ([`hydra_ops::neighbour_advert`]).

use std::net::IpAddr;
use std::process::{Command, Stdio};

use serde::Deserialize;

use hydra_ops::neighbour_advert;

/// `[coordination] floating = { address = "198.18.0.254/24", link = "eth0" }`,
/// or with both families: `address = ["198.18.0.254/24", "fd00::fe/64"]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FloatingConfig {
    /// The address with its prefix length, e.g. `"198.18.0.254/24"` or
    /// `"fd00::fe/64"`, or a list of them (at most 4): the next hops the
    /// clients route the virtual IPs through.
    pub address: Addresses,
    /// The client-facing link they are put on, e.g. `"eth0"`.
    pub link: String,
    /// Announcements sent for each address on claiming it, the first at
    /// once, the others a second apart (1 to 10).
    #[serde(default = "default_announcements")]
    pub announcements: u32,
}

/// One floating address or several, as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Addresses {
    /// `address = "198.18.0.254/24"`.
    One(String),
    /// `address = ["198.18.0.254/24", "fd00::fe/64"]`.
    Many(Vec<String>),
}

impl Addresses {
    /// The addresses as written, in order.
    pub fn texts(&self) -> &[String] {
        match self {
            Addresses::One(a) => std::slice::from_ref(a),
            Addresses::Many(list) => list,
        }
    }
}

impl From<&str> for Addresses {
    fn from(a: &str) -> Addresses {
        Addresses::One(a.to_string())
    }
}

fn default_announcements() -> u32 {
    3
}

/// Most floating addresses one redirector holds.
const MAX_ADDRESSES: usize = 4;

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

    /// Each address with its prefix length.
    pub fn parsed(&self) -> Result<Vec<(IpAddr, u8)>, String> {
        let texts = self.address.texts();
        if texts.is_empty() || texts.len() > MAX_ADDRESSES {
            return Err(format!(
                "coordination.floating.address: 1 to {MAX_ADDRESSES} addresses, not {}",
                texts.len()
            ));
        }
        let parsed = texts
            .iter()
            .map(|a| parse(a))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, (ip, _)) in parsed.iter().enumerate() {
            if parsed[..i].iter().any(|(other, _)| other == ip) {
                return Err(format!(
                    "coordination.floating.address: {ip} is listed twice"
                ));
            }
        }
        Ok(parsed)
    }
}

/// One address with its prefix length, e.g. `"198.18.0.254/24"`.
fn parse(a: &str) -> Result<(IpAddr, u8), String> {
    let explain = |why: &str| {
        format!(
            "coordination.floating.address {a:?}: {why}; expected an address with its prefix length, e.g. \"198.18.0.254/24\" or \"fd00::fe/64\""
        )
    };
    let (ip, len) = a
        .split_once('/')
        .ok_or_else(|| explain("no prefix length"))?;
    let ip: IpAddr = ip.parse().map_err(|_| explain("not an IP address"))?;
    let most = if ip.is_ipv4() { 32 } else { 128 };
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| (1..=most).contains(l))
        .ok_or_else(|| explain(&format!("the prefix length must be 1 to {most}")))?;
    let unicast = match ip {
        IpAddr::V4(v4) => !(v4.is_broadcast() || v4.is_multicast()),
        IpAddr::V6(v6) => !v6.is_multicast(),
    };
    if !unicast || ip.is_unspecified() || ip.is_loopback() {
        return Err(explain("not a unicast address"));
    }
    Ok((ip, len))
}

/// Puts the floating addresses on and takes them off.
#[derive(Debug, Clone)]
pub struct FloatingAddress {
    cfg: FloatingConfig,
    ips: Vec<IpAddr>,
    text: String,
}

impl FloatingAddress {
    /// For a validated configuration.
    pub fn new(cfg: &FloatingConfig) -> Result<FloatingAddress, String> {
        let ips = cfg.parsed()?.into_iter().map(|(ip, _)| ip).collect();
        Ok(FloatingAddress {
            cfg: cfg.clone(),
            ips,
            text: cfg.address.texts().join(" "),
        })
    }

    /// The addresses as configured (with their prefix lengths), separated
    /// by spaces.
    pub fn address(&self) -> &str {
        &self.text
    }

    /// Put every address on the link (idempotent) and announce it; later
    /// announcements go out in the background.
    pub fn claim(&self) -> Result<(), String> {
        for (text, ip) in self.cfg.address.texts().iter().zip(&self.ips) {
            match ip {
                IpAddr::V4(_) => {
                    ip_command(&["-4", "addr", "replace", text, "dev", &self.cfg.link])?;
                    self.arping(text, *ip)?;
                }
                IpAddr::V6(v6) => {
                    // No duplicate address detection: usable (and announced)
                    // at once, and a cut-off holder still having it must
                    // not make the claim fail.
                    ip_command(&[
                        "-6",
                        "addr",
                        "replace",
                        text,
                        "dev",
                        &self.cfg.link,
                        "nodad",
                    ])?;
                    neighbour_advert::announce(&self.cfg.link, *v6, self.cfg.announcements)
                        .map_err(|e| {
                            format!(
                                "the floating address {text} is set but cannot be announced: {e}"
                            )
                        })?;
                }
            }
        }
        Ok(())
    }

    /// Gratuitous ARP for an IPv4 address, from a child process.
    fn arping(&self, text: &str, ip: IpAddr) -> Result<(), String> {
        let mut arping = Command::new("arping");
        // Killed with us: a dead redirector's announcements must not pull
        // the clients back from the standby that took the address over.
        hydra_ops::child::die_with_parent(&mut arping)
            .args(["-U", "-q", "-c"])
            .arg(self.cfg.announcements.to_string())
            .args(["-I", &self.cfg.link])
            .arg(ip.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = arping.spawn().map_err(|e| {
            format!(
                "the floating address {text} is set but cannot be announced: arping: {e} (install iputils-arping)"
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

    /// Take every address off the link; absent already is no error.
    pub fn release(&self) -> Result<(), String> {
        let mut first_error = None;
        for (text, ip) in self.cfg.address.texts().iter().zip(&self.ips) {
            let family = if ip.is_ipv4() { "-4" } else { "-6" };
            match ip_command(&[family, "addr", "del", text, "dev", &self.cfg.link]) {
                Ok(()) => {}
                // IPv4 and IPv6 word "not there" differently.
                Err(e)
                    if e.contains("Cannot assign requested address")
                        || e.to_lowercase().contains("address not found") => {}
                // The others still come off.
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Run `ip args`; the error carries its message.
fn ip_command(args: &[&str]) -> Result<(), String> {
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
        assert_eq!(
            good.parsed().unwrap(),
            vec![(IpAddr::from([198, 18, 0, 254]), 24)]
        );
        let both = FloatingConfig {
            address: Addresses::Many(vec!["198.18.0.254/24".into(), "fd00::fe/64".into()]),
            ..good.clone()
        };
        both.validate().unwrap();
        assert_eq!(
            both.parsed().unwrap()[1],
            ("fd00::fe".parse::<IpAddr>().unwrap(), 64)
        );
        let cases = [
            (cfg("198.18.0.254", "eth0"), "no prefix length"),
            (cfg("198.18.0.x/24", "eth0"), "not an IP address"),
            (cfg("198.18.0.254/33", "eth0"), "prefix length"),
            (cfg("fd00::1/129", "eth0"), "1 to 128"),
            (cfg("ff02::1/64", "eth0"), "not a unicast address"),
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
        for (list, want) in [
            (vec![], "1 to 4 addresses"),
            (vec!["fd00::fe/64".to_string(); 2], "listed twice"),
            (vec!["fd00::1/64".to_string(); 5], "1 to 4 addresses"),
        ] {
            let e = FloatingConfig {
                address: Addresses::Many(list),
                ..cfg("198.18.0.254/24", "eth0")
            }
            .validate()
            .unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn one_address_or_a_list_is_read_from_toml() {
        let one: FloatingConfig = toml::from_str(
            r#"address = "198.18.0.254/24"
link = "eth0""#,
        )
        .unwrap();
        assert_eq!(one.address.texts(), ["198.18.0.254/24"]);
        let both: FloatingConfig = toml::from_str(
            r#"address = ["198.18.0.254/24", "fd00::fe/64"]
link = "eth0""#,
        )
        .unwrap();
        assert_eq!(both.address.texts(), ["198.18.0.254/24", "fd00::fe/64"]);
    }
}
