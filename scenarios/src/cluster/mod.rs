//! One replica group on one machine:
//!
//! ```text
//! client ns --veth 198.18.0.0/24-- redirector ns --bridge 198.18.1.0/24-- replica ns 1..N
//!                                   (TUN: VIP 198.18.100.1)               (TUN: VIP, UDP data, ack channel)
//! ```
//!
//! The client routes the VIP to the redirector; the redirector's kernel routes
//! it into the redirector's TUN; copies go to each replica over UDP; the
//! primary's replies leave its TUN and are forwarded by the kernels back to
//! the client. Everything is removed when the `Cluster` drops.
//!
//! With [`ClusterSpec::etcd`] the redirectors (one or more,
//! [`ClusterSpec::redirectors`]) keep the views in a real etcd and elect
//! the acting one, which holds the clients' next hop, the floating address
//! 198.18.0.254:
//!
//! ```text
//! client ns (bridge 198.18.0.0/24, the client LAN) --- redirector ns r, r1.. --- switch ns (bridge 198.18.1.0/24) --- replica ns 1..N
//!      \____ veth 198.18.2.0/24: the replicas' replies, routed by the switch ns ____/     (etcd on 198.18.1.250:2379)
//! ```
//!
//! With [`ClusterSpec::ipv6`] the cluster is dual-stack: the group serves
//! the IPv6 VIP `fd00:100::1` beside the IPv4 one, clients reach it over
//! `fd00::/64`, and the links between the redirector and the replicas
//! (copies, ack channel, control plane) are IPv6 (`fd00:1::/64`).

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use testnet::netns::{run, Topology};

mod coordination;
mod processes;

pub use coordination::{coordination_tools_missing, etcd_binary};
use coordination::{redirector_label, redirector_short};

pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 1);
/// The IPv6 VIP of a dual-stack cluster ([`ClusterSpec::ipv6`]).
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 1);
const REDIRECTOR_IP: &str = "198.18.1.1";
const REDIRECTOR_IP6: &str = "fd00:1::1";
/// With etcd: the clients' next hop, held by the acting redirector.
pub const FLOATING_IP: &str = "198.18.0.254";
/// With etcd in a dual-stack cluster: the clients' IPv6 next hop.
pub const FLOATING_IP6: &str = "fd00::fe";
/// With etcd: the switch namespace's address on the replicas' LAN (their
/// default route, and etcd's client address).
const SWITCH_IP: &str = "198.18.1.250";
/// With etcd in a dual-stack cluster: the replicas' IPv6 default route.
const SWITCH_IP6: &str = "fd00:1::fe";
const ETCD_PORT: u16 = 2379;
/// With etcd: the authority's lease (etcd is started with a 10 ms
/// heartbeat, so it grants 1 s leases).
const AUTHORITY_LEASE_MS: u64 = 1000;
/// The acting redirector's heartbeat in etcd: the etcd members run with a
/// 100 ms election timeout, so an etcd leader change stays well inside the
/// three heartbeats the authority may go without.
const AUTHORITY_HEARTBEAT_MS: u64 = 100;
const CONTROL_PORT: u16 = 7000;
const DATA_PORT: u16 = 7100;
const ACK_PORT: u16 = 7200;
const ADMIN_PORT: u16 = 9100;
/// Relays (when the spec asks for them) listen on the redirector's address:
/// replica `i`'s data link on `DATA_RELAY_PORT + i`, its ack channel on
/// `ACK_RELAY_PORT + i`.
const DATA_RELAY_PORT: u16 = 7300;
const ACK_RELAY_PORT: u16 = 7400;

/// What to build.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Replicas per group.
    pub replicas: usize,
    /// Groups: the first is named `demo`, the others `demo1`, `demo2`...
    pub groups: usize,
    /// `[[services]]` and `[[pools]]` TOML replacing the default service
    /// (every port of the VIP to group `demo`).
    pub services_toml: Option<String>,
    /// Apps every replica runs besides the default ones.
    pub extra_apps: Vec<String>,
    pub heartbeat_ms: u64,
    /// The redirector declares a replica dead after this much silence.
    pub failure_timeout_ms: u64,
    /// The primary may send this long after its last answered keepalive.
    pub lease_ms: u64,
    /// Put a relay (`hydra-scenario relay`) on each replica's data link
    /// and ack channel, so links can be impaired or cut ([`Cluster::set_link`]).
    pub relays: bool,
    /// MTU of the links between the redirector and the replicas. Copies of
    /// coalesced client segments are datagrams of up to 64 KiB; on this one
    /// machine the links carry them whole, as loopback would. A smaller MTU
    /// (9,000 for jumbo frames between hosts) makes the kernel send them in
    /// IP fragments: correct, and dearer.
    pub link_mtu: u32,
    /// A program of one's own to run as each member instead of
    /// `hydra-replica` (see [`MemberProgram`]).
    pub program: Option<MemberProgram>,
    /// The groups' preferred primary (`preferred_primary` in the
    /// redirector's configuration).
    pub preferred_primary: Option<u8>,
    /// Dual stack: the group also serves [`VIP6`], clients use it
    /// ([`Cluster::vip`]), and the redirector and replicas talk over IPv6.
    pub ipv6: bool,
    /// Redirectors (more than one needs [`etcd`](Self::etcd)): one acts,
    /// the others stand by; the replicas talk to all of them.
    pub redirectors: usize,
    /// Start a real etcd (Debian's `etcd-server`) and give the redirectors
    /// `[coordination]` with the floating client-facing address
    /// [`FLOATING_IP`] instead of a state file.
    pub etcd: bool,
    /// Members of that etcd cluster (1 to 5).
    pub etcd_members: usize,
}

/// A member program built on the member library: started as `<path> member
/// --config <file> <args...>`, with the file `hydra-replica` would get
/// (its `apps` entry is for `hydra-replica` only).
#[derive(Debug, Clone)]
pub struct MemberProgram {
    pub path: PathBuf,
    pub args: Vec<String>,
}

impl MemberProgram {
    /// An example's binary of the same build (`hydra-kv`, `hydra-axum`)
    /// serving `--port port`.
    pub fn example(bins: &Binaries, name: &str, port: u16) -> MemberProgram {
        MemberProgram {
            path: bins.sibling(name),
            args: vec!["--port".into(), port.to_string()],
        }
    }
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            replicas: 3,
            groups: 1,
            services_toml: None,
            extra_apps: Vec::new(),
            heartbeat_ms: 10,
            failure_timeout_ms: 100,
            lease_ms: 60,
            relays: false,
            link_mtu: 65_535,
            program: None,
            preferred_primary: None,
            ipv6: false,
            redirectors: 1,
            etcd: false,
            etcd_members: 1,
        }
    }
}

/// Where the binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub redirector: PathBuf,
    pub replica: PathBuf,
    /// `hydra-scenario` itself (its `relay` command), for relayed links.
    pub scenario: PathBuf,
}

impl Binaries {
    /// Another binary of the same build (an example's program).
    pub fn sibling(&self, name: &str) -> PathBuf {
        self.replica.with_file_name(name)
    }

    /// Next to the running executable (cargo puts all binaries of a profile there).
    pub fn beside_current_exe() -> anyhow::Result<Binaries> {
        let exe = std::env::current_exe()?;
        let mut dir = exe
            .parent()
            .context("executable has no directory")?
            .to_path_buf();
        // Integration tests run from target/<profile>/deps.
        if dir.ends_with("deps") {
            dir.pop();
        }
        let b = Binaries {
            redirector: dir.join("hydra-redirector"),
            replica: dir.join("hydra-replica"),
            scenario: dir.join("hydra-scenario"),
        };
        for p in [&b.redirector, &b.replica, &b.scenario] {
            if !p.exists() {
                bail!(
                    "{} not found: build with `cargo build --bins` first",
                    p.display()
                );
            }
        }
        Ok(b)
    }
}

pub struct Cluster {
    pub topo: Topology,
    pub client_ns: String,
    /// The client's link to the redirector, and the redirector's end of it.
    pub client_link: String,
    pub redirector_client_link: String,
    pub redirector_ns: String,
    /// Every redirector's namespace (the first is `redirector_ns`).
    pub redirector_nss: Vec<String>,
    /// With etcd: the switch namespace (replicas' LAN, etcd).
    pub switch_ns: Option<String>,
    /// Each redirector's link to the clients.
    redirector_links: Vec<String>,
    /// With etcd: each redirector's link to the replicas' LAN.
    redirector_replica_links: Vec<String>,
    pub replica_ns: Vec<String>,
    pub dir: PathBuf,
    pub www: PathBuf,
    bins: Binaries,
    spec: ClusterSpec,
    /// One key per group.
    keys: Vec<String>,
}

/// Replica `i` counts across groups: group `i / replicas`, member `i % replicas + 1`.
fn replica_ip(i: usize) -> String {
    format!("198.18.1.{}", 11 + i)
}

/// Replica `i`'s IPv6 address on the links of a dual-stack cluster.
fn replica_ip6(i: usize) -> String {
    format!("fd00:1::{:x}", 0x11 + i)
}

/// `ip` and `port` as a socket address's text (IPv6 in brackets).
fn socket_text(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// Name of group `g`.
pub fn group_name(g: usize) -> String {
    if g == 0 {
        "demo".into()
    } else {
        format!("demo{g}")
    }
}

impl Cluster {
    /// Build the namespaces and links, write configs, start the redirector
    /// and every replica, and wait until the first view is formed.
    pub fn start(tag: &str, spec: ClusterSpec, bins: Binaries) -> anyhow::Result<Cluster> {
        anyhow::ensure!(
            spec.redirectors >= 1 && (spec.redirectors == 1 || spec.etcd),
            "more than one redirector needs etcd"
        );
        if spec.etcd {
            return Self::start_with_etcd(tag, spec, bins);
        }
        let mut topo = Topology::new(tag);
        let client_ns = topo.namespace("c")?;
        let redirector_ns = topo.namespace("r")?;
        let (client_link, redirector_client_link) = topo.veth(
            (&client_ns, "198.18.0.1/24"),
            (&redirector_ns, "198.18.0.2/24"),
            1500,
        )?;
        topo.ip(
            &client_ns,
            &["route", "add", "198.18.100.0/24", "via", "198.18.0.2"],
        )?;
        if spec.ipv6 {
            anyhow::ensure!(!spec.relays, "the link relays are IPv4 only");
            topo.add_ipv6(&client_ns, &client_link, "fd00::1/64")?;
            topo.add_ipv6(&redirector_ns, &redirector_client_link, "fd00::2/64")?;
            topo.ip(
                &client_ns,
                &["-6", "route", "add", "fd00:100::/64", "via", "fd00::2"],
            )?;
        }
        topo.router(&redirector_ns)?;
        let bridge = topo.name("br");
        topo.ip(
            &redirector_ns,
            &[
                "link",
                "add",
                &bridge,
                "mtu",
                &spec.link_mtu.to_string(),
                "type",
                "bridge",
            ],
        )?;
        topo.ip(
            &redirector_ns,
            &[
                "addr",
                "add",
                &format!("{REDIRECTOR_IP}/24"),
                "dev",
                &bridge,
            ],
        )?;
        if spec.ipv6 {
            topo.add_ipv6(&redirector_ns, &bridge, &format!("{REDIRECTOR_IP6}/64"))?;
        }
        topo.ip(&redirector_ns, &["link", "set", &bridge, "up"])?;
        let mut replica_ns = Vec::new();
        for i in 0..spec.replicas * spec.groups {
            let ns = topo.namespace(&format!("p{i}"))?;
            let (inner, outer) = topo.veth(
                (&ns, &format!("{}/24", replica_ip(i))),
                (&redirector_ns, ""),
                spec.link_mtu,
            )?;
            topo.ip(&redirector_ns, &["link", "set", &outer, "master", &bridge])?;
            topo.ip(&ns, &["route", "add", "default", "via", REDIRECTOR_IP])?;
            if spec.ipv6 {
                topo.add_ipv6(&ns, &inner, &format!("{}/64", replica_ip6(i)))?;
                topo.ip(
                    &ns,
                    &["-6", "route", "add", "default", "via", REDIRECTOR_IP6],
                )?;
            }
            topo.router(&ns)?;
            replica_ns.push(ns);
        }
        let mut cluster = Cluster::assemble(
            topo,
            [client_ns, client_link, redirector_client_link],
            vec![redirector_ns],
            None,
            replica_ns,
            bins,
            spec,
        )?;
        cluster.start_redirector()?;
        cluster.start_replicas()?;
        Ok(cluster)
    }

    /// The cluster's directory and keys around namespaces already built.
    pub(super) fn assemble(
        topo: Topology,
        [client_ns, client_link, redirector_client_link]: [String; 3],
        redirector_nss: Vec<String>,
        switch_ns: Option<String>,
        replica_ns: Vec<String>,
        bins: Binaries,
        spec: ClusterSpec,
    ) -> anyhow::Result<Cluster> {
        // One directory per cluster, also when one process starts several.
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("{}-{n}-cluster", topo.prefix()));
        let www = dir.join("www");
        std::fs::create_dir_all(&www)?;
        let keys = (0..spec.groups)
            .map(|_| random_key())
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Cluster {
            topo,
            client_ns,
            client_link,
            redirector_links: vec![redirector_client_link.clone()],
            redirector_replica_links: Vec::new(),
            redirector_client_link,
            redirector_ns: redirector_nss[0].clone(),
            redirector_nss,
            switch_ns,
            replica_ns,
            dir,
            www,
            bins,
            spec,
            keys,
        })
    }

    /// Start every replica (and its relay) and wait for each group's first view.
    pub(super) fn start_replicas(&mut self) -> anyhow::Result<()> {
        let cluster = self;
        for i in 0..cluster.spec.replicas * cluster.spec.groups {
            if cluster.spec.relays {
                cluster.start_relay(i)?;
            }
            cluster.start_replica(i)?;
        }
        for g in 0..cluster.spec.groups {
            cluster.wait_group_view(g, cluster.spec.replicas, Duration::from_secs(20))?;
        }
        Ok(())
    }

    pub(super) fn write(&self, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::File::create(&path)?.write_all(text.as_bytes())?;
        Ok(path)
    }

    /// The redirector's address on the links to the replicas.
    pub(super) fn redirector_link_ip(&self) -> &'static str {
        if self.spec.ipv6 {
            REDIRECTOR_IP6
        } else {
            REDIRECTOR_IP
        }
    }

    /// Replica `i`'s address on the links to the redirector.
    pub(super) fn replica_link_ip(&self, i: usize) -> String {
        if self.spec.ipv6 {
            replica_ip6(i)
        } else {
            replica_ip(i)
        }
    }

    /// The address clients use: [`VIP6`] in a dual-stack cluster, [`VIP`]
    /// otherwise.
    pub fn vip(&self) -> std::net::IpAddr {
        if self.spec.ipv6 {
            VIP6.into()
        } else {
            VIP.into()
        }
    }

    /// [`vip`](Self::vip) as the host part of a URL (IPv6 in brackets).
    pub fn vip_host(&self) -> String {
        match self.vip() {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        }
    }

    pub(super) fn log_file(&self, name: &str) -> anyhow::Result<std::fs::File> {
        Ok(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))?)
    }

    /// The redirector's `/status` JSON (with etcd: the acting one's, or
    /// the first one's while none acts).
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        self.redirector_status(self.acting_redirector().unwrap_or(0))
    }

    /// `GET` `path` from the admin endpoint in namespace `ns`; the body.
    pub(super) fn admin_get(&self, ns: &str, path: &str) -> anyhow::Result<Vec<u8>> {
        let mut cmd = self.topo.command(ns, "curl");
        cmd.args([
            "-s",
            "--max-time",
            "2",
            &format!("http://127.0.0.1:{ADMIN_PORT}{path}"),
        ]);
        Ok(run(&mut cmd)?.stdout)
    }

    /// Current (epoch, primary member id, live member count) from the redirector.
    pub fn view(&self) -> anyhow::Result<(u64, Option<u8>, usize)> {
        self.group_view(0)
    }

    /// [`view`](Self::view) of group `g`.
    pub fn group_view(&self, g: usize) -> anyhow::Result<(u64, Option<u8>, usize)> {
        let s = self.status()?;
        let g = &s["groups"][g];
        let epoch = g["epoch"].as_u64().unwrap_or(0);
        let members = g["members"].as_array().cloned().unwrap_or_default();
        let live: Vec<&serde_json::Value> = members
            .iter()
            .filter(|m| m["alive"].as_bool() == Some(true))
            .collect();
        let primary = live
            .first()
            .and_then(|m| m["id"].as_u64())
            .map(|id| id as u8);
        Ok((epoch, primary, live.len()))
    }

    /// Wait until a view with `live` members exists.
    pub fn wait_view(&self, live: usize, timeout: Duration) -> anyhow::Result<(u64, u8)> {
        self.wait_group_view(0, live, timeout)
    }

    /// [`wait_view`](Self::wait_view) for group `g`.
    pub fn wait_group_view(
        &self,
        g: usize,
        live: usize,
        timeout: Duration,
    ) -> anyhow::Result<(u64, u8)> {
        let end = Instant::now() + timeout;
        loop {
            if let Ok((epoch, Some(primary), n)) = self.group_view(g) {
                if n == live && epoch > 0 {
                    return Ok((epoch, primary));
                }
            }
            if Instant::now() > end {
                bail!(
                    "no view with {live} live members in group {g} after {timeout:?}; logs in {}",
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL the replica with member id `member` (group 0).
    pub fn kill_member(&mut self, member: u8) -> anyhow::Result<()> {
        self.kill_replica(usize::from(member) - 1)
    }

    /// SIGKILL replica `i` (counted across groups).
    pub fn kill_replica(&mut self, i: usize) -> anyhow::Result<()> {
        let label = format!("replica{i}");
        self.topo
            .kill(&label)
            .with_context(|| format!("killing {label}"))
    }

    /// A counter from replica `i`'s `/metrics` (counted across groups).
    pub fn replica_metric(&self, i: usize, name: &str) -> anyhow::Result<u64> {
        let out = self.admin_get(&self.replica_ns[i], "/metrics")?;
        let text = String::from_utf8_lossy(&out);
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .with_context(|| format!("no {name} in replica {i}'s metrics"))
    }

    /// `POST` to the redirector's admin endpoint; returns the answer's text.
    pub fn redirector_action(&self, path: &str) -> anyhow::Result<String> {
        let url = format!("http://127.0.0.1:{ADMIN_PORT}{path}");
        let mut cmd = self.topo.command(&self.redirector_ns, "curl");
        cmd.args(["-s", "--max-time", "5", "-X", "POST", &url]);
        Ok(String::from_utf8_lossy(&run(&mut cmd)?.stdout).into_owned())
    }

    /// Send `signal` (SIGSTOP, SIGCONT, SIGTERM...) to member `member`.
    pub fn signal_member(&self, member: u8, signal: i32) -> anyhow::Result<()> {
        let label = format!("replica{}", member - 1);
        self.topo
            .signal(&label, signal)
            .with_context(|| format!("signalling {label}"))
    }

    /// Member `member`'s host lost, as far as the others can tell: its
    /// process stopped (SIGSTOP: no FIN, no answer) and every link of its
    /// namespace down, so nothing reaches it or comes from it. It stays so
    /// until the cluster is dropped.
    pub fn lose_member_host(&self, member: u8) -> anyhow::Result<()> {
        self.signal_member(member, libc::SIGSTOP)?;
        let ns = &self.replica_ns[usize::from(member) - 1];
        let mut cmd = self.topo.command(ns, "ip");
        cmd.args(["-o", "link", "show"]);
        let out = run(&mut cmd)?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        for line in text.lines() {
            // "2: name@if5: <...> ...": the name, without its peer suffix.
            let Some(name) = line.split(": ").nth(1) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            if name != "lo" {
                self.topo.ip(ns, &["link", "set", name, "down"])?;
            }
        }
        Ok(())
    }

    /// Whether member `member`'s process is still running.
    pub fn member_running(&mut self, member: u8) -> bool {
        self.topo.alive(&format!("replica{}", member - 1))
    }

    /// A replica's own `/status` JSON (from inside its namespace).
    pub fn replica_status(&self, member: u8) -> anyhow::Result<serde_json::Value> {
        let out = self.admin_get(&self.replica_ns[usize::from(member) - 1], "/status")?;
        serde_json::from_slice(&out).context("replica /status is not JSON")
    }

    /// `POST` to an admin action of member `member` (`/handover`, `/leave`);
    /// returns the answer's text.
    pub fn replica_action(&self, member: u8, action: &str) -> anyhow::Result<String> {
        let url = format!("http://127.0.0.1:{ADMIN_PORT}{action}");
        let out = self.in_replica(
            member,
            "curl",
            &["-s", "--max-time", "5", "-X", "POST", &url],
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Run `program args` in member `member`'s namespace; returns its output.
    pub fn in_replica(
        &self,
        member: u8,
        program: &str,
        args: &[&str],
    ) -> anyhow::Result<std::process::Output> {
        let ns = &self.replica_ns[usize::from(member) - 1];
        let mut cmd = self.topo.command(ns, program);
        cmd.args(args);
        Ok(run(&mut cmd)?)
    }

    /// The redirector's control address and a replica's ack-channel address.
    pub fn control_addr(&self) -> String {
        socket_text(self.redirector_link_ip(), CONTROL_PORT)
    }

    pub fn ack_addr(&self, member: u8) -> String {
        socket_text(&self.replica_link_ip(usize::from(member) - 1), ACK_PORT)
    }

    /// Command run inside the client namespace.
    pub fn client(&self, program: &str) -> Command {
        self.topo.command(&self.client_ns, program)
    }

    pub fn log_dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // etcd (killed when the topology drops, after this) keeps what it
        // has open; the names go now.
        for j in 0..self.spec.etcd_members {
            let data = self.etcd_data_dir(j);
            if !data.starts_with(&self.dir) {
                let _ = std::fs::remove_dir_all(data);
            }
        }
        if std::env::var_os("HYDRA_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn random_key() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
