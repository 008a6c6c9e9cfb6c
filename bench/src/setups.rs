//! The configurations measured, each built on its own namespaces:
//!
//! - `kernel`: kernel TCP over a veth pair (the reference ceiling);
//! - `hydra`: our stack standalone over TUN behind the same veth;
//! - `smoltcp`: smoltcp over the same TUN path;
//! - `redir+1`, `ft-2`, `ft-3`: the redirector with 1 (no fault tolerance),
//!   2 and 3 replicas (scenario cluster topology).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use scenarios::cluster::{Binaries, Cluster, ClusterSpec, VIP};
use testnet::netns::Topology;

use crate::topology::{SingleHost, SERVER_IP, TUN_IP};

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
}

/// A running configuration: where the client runs and what it talks to.
pub struct Target {
    pub kind: Kind,
    pub client_ns: String,
    pub server_ip: Ipv4Addr,
    /// Our own binaries serving it (CPU time and memory are read from these).
    pub pids: Vec<u32>,
    pub link_mtu: u32,
    topo: Option<Topology>,
    pub cluster: Option<Cluster>,
}

impl Target {
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

/// Start `kind`; a group's redirector-replica links get `link_mtu`.
pub fn start(kind: Kind, bins: &Binaries, link_mtu: u32) -> anyhow::Result<Target> {
    match kind {
        Kind::Replicated(n) => {
            let spec = ClusterSpec {
                replicas: n,
                link_mtu,
                ..ClusterSpec::default()
            };
            let cluster = Cluster::start(&format!("x{n}"), spec, bins.clone())?;
            let pids = cluster.topo.pids().into_iter().map(|(_, p)| p).collect();
            Ok(Target {
                kind,
                client_ns: cluster.client_ns.clone(),
                server_ip: VIP,
                pids,
                link_mtu,
                topo: None,
                cluster: Some(cluster),
            })
        }
        _ => single_host(kind, bins, link_mtu),
    }
}

fn single_host(kind: Kind, bins: &Binaries, link_mtu: u32) -> anyhow::Result<Target> {
    let mut host = SingleHost::new(&format!("x{}", &kind.name()[..1]))?;
    let (mut cmd, ip) = match kind {
        Kind::Kernel => {
            let mut c = host.server_command(&bench_exe()?);
            c.args(["kernel-server", "--address", &SERVER_IP.to_string()]);
            (c, SERVER_IP)
        }
        Kind::Hydra => {
            let mut c = host.tun_command(&bins.replica, "standalone");
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
            (c, TUN_IP)
        }
        Kind::Smoltcp => (host.tun_command(&bench_exe()?, "smoltcp-server"), TUN_IP),
        Kind::Replicated(_) => unreachable!("handled by start"),
    };
    cmd.stdout(std::process::Stdio::null());
    // The server's own diagnostics, for when a configuration fails.
    let log = std::env::temp_dir().join(format!("hydra-bench-{}.log", kind.name()));
    cmd.stderr(std::fs::File::create(&log)?);
    let pid = host.topo.spawn("server", cmd)?;
    if kind != Kind::Kernel {
        host.route_tun()?;
    }
    let target = Target {
        kind,
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
    anyhow::bail!("{} server never listened", t.kind.name())
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
