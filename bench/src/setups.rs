//! The configurations measured, each built on its own namespaces:
//!
//! - `kernel`: kernel TCP over a veth pair (the reference ceiling);
//! - `hydra`: our stack standalone over TUN behind the same veth;
//! - `smoltcp`: smoltcp over the same TUN path;
//! - `redir+1`, `ft-2`, `ft-3`: the redirector with 1 (no fault tolerance),
//!   2 and 3 replicas (scenario cluster topology).
//!
//! Each but smoltcp can also be measured over IPv6: the same path with
//! IPv6 addresses (a group: dual-stack, clients on its IPv6 VIP, IPv6
//! between the redirector and the replicas), named with a `-v6` suffix.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use scenarios::cluster::{Binaries, Cluster, ClusterSpec};
use testnet::netns::Topology;

use crate::topology::{SingleHost, SERVER_IP, SERVER_IP6, TUN_IP, TUN_IP6};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Kernel,
    Hydra,
    Smoltcp,
    Replicated(usize),
}

impl Kind {
    pub fn name(self) -> String {
        match self {
            Kind::Kernel => "kernel".into(),
            Kind::Hydra => "hydra".into(),
            Kind::Smoltcp => "smoltcp".into(),
            Kind::Replicated(1) => "redir+1".into(),
            Kind::Replicated(n) => format!("ft-{n}"),
        }
    }

    /// The configuration's name in the report: [`Kind::name`], with
    /// [`V6_SUFFIX`] over IPv6.
    pub fn config(self, ipv6: bool) -> String {
        if ipv6 {
            format!("{}{V6_SUFFIX}", self.name())
        } else {
            self.name()
        }
    }
}

/// What a configuration measured over IPv6 has after its name.
pub const V6_SUFFIX: &str = "-v6";

/// The IPv4 configuration an IPv6 one (`<name>-v6`) is compared with, or
/// `None` for an IPv4 configuration.
pub fn ipv4_counterpart(config: &str) -> Option<&str> {
    config.strip_suffix(V6_SUFFIX)
}

/// A running configuration: where the client runs and what it talks to.
pub struct Target {
    pub kind: Kind,
    /// Measured over IPv6 (the client connects to an IPv6 address).
    pub ipv6: bool,
    pub client_ns: String,
    pub server_ip: IpAddr,
    /// Our own binaries serving it (CPU time and memory are read from these).
    pub pids: Vec<u32>,
    pub link_mtu: u32,
    topo: Option<Topology>,
    pub cluster: Option<Cluster>,
}

impl Target {
    /// The configuration's name in the report ([`Kind::config`]).
    pub fn name(&self) -> String {
        self.kind.config(self.ipv6)
    }

    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.server_ip, port))
    }

    pub fn command(&self, program: &str) -> std::process::Command {
        let topo = self
            .topo
            .as_ref()
            .or(self.cluster.as_ref().map(|c| &c.topo))
            .expect("a topology");
        topo.command(&self.client_ns, program)
    }
}

fn bench_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("locating hydra-bench")
}

/// Start `kind`, over IPv6 if `ipv6`; a group's redirector-replica links
/// get `link_mtu`.
pub fn start(kind: Kind, ipv6: bool, bins: &Binaries, link_mtu: u32) -> anyhow::Result<Target> {
    // Every tag starts with "x" (see run.rs); an IPv6 one ends in "6".
    let family = if ipv6 { "6" } else { "" };
    match kind {
        Kind::Replicated(n) => {
            let spec = ClusterSpec {
                replicas: n,
                link_mtu,
                ipv6,
                ..ClusterSpec::default()
            };
            let cluster = Cluster::start(&format!("x{n}{family}"), spec, bins.clone())?;
            let pids = cluster.topo.pids().into_iter().map(|(_, p)| p).collect();
            Ok(Target {
                kind,
                ipv6,
                client_ns: cluster.client_ns.clone(),
                server_ip: cluster.vip(),
                pids,
                link_mtu,
                topo: None,
                cluster: Some(cluster),
            })
        }
        _ => single_host(kind, ipv6, bins, link_mtu),
    }
}

fn single_host(kind: Kind, ipv6: bool, bins: &Binaries, link_mtu: u32) -> anyhow::Result<Target> {
    let (server_ip, tun_ip): (IpAddr, IpAddr) = if ipv6 {
        (SERVER_IP6.into(), TUN_IP6.into())
    } else {
        (SERVER_IP.into(), TUN_IP.into())
    };
    let initial = kind.name().chars().next().unwrap_or('s');
    let ipv6_tag = if ipv6 { "6" } else { "" };
    let mut host = SingleHost::new(&format!("x{initial}{ipv6_tag}"))?;
    let (mut cmd, ip) = match kind {
        Kind::Kernel => {
            let mut c = host.server_command(&bench_exe()?);
            c.args(["kernel-server", "--address", &server_ip.to_string()]);
            (c, server_ip)
        }
        Kind::Hydra => {
            let mut c = host.tun_command_at(&bins.replica, "standalone", tun_ip);
            c.args([
                "--mtu",
                "1500",
                "--app",
                "discard:9",
                "--app",
                "echo:7",
                "--app",
                "source:19",
            ]);
            (c, tun_ip)
        }
        Kind::Smoltcp => {
            anyhow::ensure!(!ipv6, "smoltcp is measured over IPv4 only");
            (host.tun_command(&bench_exe()?, "smoltcp-server"), tun_ip)
        }
        Kind::Replicated(_) => unreachable!("handled by start"),
    };
    cmd.stdout(std::process::Stdio::null());
    // The server's own diagnostics, for when a configuration fails.
    let log = std::env::temp_dir().join(format!("hydra-bench-{}.log", kind.config(ipv6)));
    cmd.stderr(std::fs::File::create(&log)?);
    let pid = host.topo.spawn("server", cmd)?;
    if kind != Kind::Kernel {
        host.route_tun()?;
    }
    let target = Target {
        kind,
        ipv6,
        client_ns: host.client,
        server_ip: ip,
        pids: vec![pid],
        link_mtu,
        topo: Some(host.topo),
        cluster: None,
    };
    wait_listening(&target)?;
    Ok(target)
}

/// Wait until the echo port answers (the server process may still be starting).
fn wait_listening(t: &Target) -> anyhow::Result<()> {
    for _ in 0..100 {
        let out = t
            .command("bash")
            .args(["-c", &format!("exec 3<>/dev/tcp/{}/7", t.server_ip)])
            .output()?;
        if out.status.success() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("{} server never listened", t.name())
}

/// CPU seconds (user + system) used so far by the processes.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the parenthesised command name; utime and stime are 14 and 15.
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        })
        .sum::<f64>()
        / ticks
}

/// Resident memory of the processes, in bytes.
pub fn rss_bytes(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum::<u64>()
        * 1024
}
