//! The etcd layout: redirectors that coordinate through etcd, the etcd
//! members, and what a test does to them (kill, cut, release).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use testnet::netns::run;

use super::*;

impl Cluster {
    /// The etcd layout (see the module's documentation): the client LAN is
    /// a bridge in the client's namespace, the replicas' LAN a bridge in
    /// the switch namespace, which also routes the replicas' replies to
    /// the client and runs etcd.
    pub(super) fn start_with_etcd(
        tag: &str,
        spec: ClusterSpec,
        bins: Binaries,
    ) -> anyhow::Result<Cluster> {
        anyhow::ensure!(!spec.relays, "a cluster with etcd has no relays");
        anyhow::ensure!(
            spec.redirectors <= 8,
            "at most 8 redirectors (the replicas list them all)"
        );
        anyhow::ensure!((1..=5).contains(&spec.etcd_members), "1 to 5 etcd members");
        let etcd = etcd_binary().context("etcd is not installed (apt-get install etcd-server)")?;
        let mut topo = Topology::new(tag);
        let client_ns = topo.namespace("c")?;
        let switch_ns = topo.namespace("s")?;
        let client_bridge = topo.name("bc");
        let replica_bridge = topo.name("br");
        for (ns, bridge, addr, mtu) in [
            (&client_ns, &client_bridge, "198.18.0.1/24", 1500),
            (
                &switch_ns,
                &replica_bridge,
                &*format!("{SWITCH_IP}/24"),
                spec.link_mtu,
            ),
        ] {
            let mtu = mtu.to_string();
            topo.ip(ns, &["link", "add", bridge, "mtu", &mtu, "type", "bridge"])?;
            topo.ip(ns, &["addr", "add", addr, "dev", bridge])?;
            topo.ip(ns, &["link", "set", bridge, "up"])?;
        }
        // The replicas' replies reach the client through the switch.
        let (client_to_switch, switch_to_client) = topo.veth(
            (&client_ns, "198.18.2.1/24"),
            (&switch_ns, "198.18.2.2/24"),
            1500,
        )?;
        topo.ip(
            &switch_ns,
            &["route", "add", "198.18.0.0/24", "via", "198.18.2.1"],
        )?;
        topo.router(&switch_ns)?;
        topo.router(&client_ns)?;
        topo.ip(
            &client_ns,
            &["route", "add", "198.18.100.0/24", "via", FLOATING_IP],
        )?;
        if spec.ipv6 {
            // The same layout in IPv6: clients on fd00::/64 reach the VIP
            // via the floating fd00::fe, the replicas' replies go through
            // the switch (fd00:1::fe) and fd00:2::/64 back to them.
            topo.add_ipv6(&client_ns, &client_bridge, "fd00::1/64")?;
            topo.add_ipv6(&switch_ns, &replica_bridge, &format!("{SWITCH_IP6}/64"))?;
            topo.add_ipv6(&client_ns, &client_to_switch, "fd00:2::1/64")?;
            topo.add_ipv6(&switch_ns, &switch_to_client, "fd00:2::2/64")?;
            topo.ip(
                &switch_ns,
                &["-6", "route", "add", "fd00::/64", "via", "fd00:2::1"],
            )?;
            topo.ip(
                &client_ns,
                &["-6", "route", "add", "fd00:100::/64", "via", FLOATING_IP6],
            )?;
        }
        let mut redirector_nss = Vec::new();
        let mut redirector_links = Vec::new();
        let mut replica_links = Vec::new();
        for k in 0..spec.redirectors {
            let ns = topo.namespace(&redirector_short(k))?;
            let (inner, outer) = topo.veth(
                (&ns, &format!("198.18.0.{}/24", 2 + k)),
                (&client_ns, ""),
                1500,
            )?;
            if spec.ipv6 {
                topo.add_ipv6(&ns, &inner, &format!("fd00::{:x}/64", 2 + k))?;
            }
            topo.ip(
                &client_ns,
                &["link", "set", &outer, "master", &client_bridge],
            )?;
            redirector_links.push(inner);
            let (inner, outer) = topo.veth(
                (&ns, &format!("{}/24", redirector_ip(k))),
                (&switch_ns, ""),
                spec.link_mtu,
            )?;
            topo.ip(
                &switch_ns,
                &["link", "set", &outer, "master", &replica_bridge],
            )?;
            if spec.ipv6 {
                topo.add_ipv6(&ns, &inner, &format!("{}/64", redirector_ip6(k)))?;
            }
            topo.router(&ns)?;
            replica_links.push(inner);
            redirector_nss.push(ns);
        }
        let mut replica_ns = Vec::new();
        for i in 0..spec.replicas * spec.groups {
            let ns = topo.namespace(&format!("p{i}"))?;
            let (inner, outer) = topo.veth(
                (&ns, &format!("{}/24", replica_ip(i))),
                (&switch_ns, ""),
                spec.link_mtu,
            )?;
            topo.ip(
                &switch_ns,
                &["link", "set", &outer, "master", &replica_bridge],
            )?;
            topo.ip(&ns, &["route", "add", "default", "via", SWITCH_IP])?;
            if spec.ipv6 {
                topo.add_ipv6(&ns, &inner, &format!("{}/64", replica_ip6(i)))?;
                topo.ip(&ns, &["-6", "route", "add", "default", "via", SWITCH_IP6])?;
            }
            topo.router(&ns)?;
            replica_ns.push(ns);
        }
        let mut cluster = Cluster::assemble(
            topo,
            [client_ns, client_bridge, redirector_links[0].clone()],
            redirector_nss,
            Some(switch_ns),
            replica_ns,
            bins,
            spec,
        )?;
        cluster.redirector_links = redirector_links;
        cluster.redirector_replica_links = replica_links;
        cluster.start_etcd(&etcd)?;
        for k in 0..cluster.spec.redirectors {
            cluster.start_redirector_at(k)?;
            if k == 0 {
                // The first one acts: the others find the authority taken.
                cluster.wait_acting(Duration::from_secs(20))?;
            }
        }
        cluster.start_replicas()?;
        Ok(cluster)
    }

    /// Where etcd member `j` keeps its data: in memory (`/dev/shm`) where
    /// there is one. On disk, a write waits for its fsync, and a VM's disk
    /// under a build can hold one for longer than the authority's two
    /// heartbeats; the tests are about Hydra, not about that disk.
    pub(super) fn etcd_data_dir(&self, j: usize) -> PathBuf {
        let shm = Path::new("/dev/shm");
        match self.dir.file_name() {
            Some(name) if shm.is_dir() => shm.join(format!("{}-etcd{j}", name.to_string_lossy())),
            _ => self.dir.join(format!("etcd{j}")),
        }
    }

    /// The etcd members in the switch namespace, on [`SWITCH_IP`]; returns
    /// once each answers healthy (a leader is elected).
    pub(super) fn start_etcd(&mut self, binary: &Path) -> anyhow::Result<()> {
        let ns = self.switch_ns.clone().context("no switch namespace")?;
        let n = self.spec.etcd_members;
        let peer = |j: usize| format!("http://127.0.0.1:{}", ETCD_PORT + 1 + 2 * j as u16);
        let cluster: Vec<String> = (0..n).map(|j| format!("e{j}={}", peer(j))).collect();
        for (j, url) in self.etcd_urls().into_iter().enumerate() {
            let mut cmd = self.topo.command(&ns, &binary.to_string_lossy());
            cmd.args(["--name", &format!("e{j}"), "--data-dir"])
                .arg(self.etcd_data_dir(j))
                .args([
                    "--listen-client-urls",
                    &url,
                    "--advertise-client-urls",
                    &url,
                ])
                .args([
                    "--listen-peer-urls",
                    &peer(j),
                    "--initial-advertise-peer-urls",
                    &peer(j),
                ])
                .args(["--initial-cluster", &cluster.join(",")])
                .args(["--initial-cluster-state", "new"])
                // Short ticks: etcd then grants leases of 1 s.
                .args(["--heartbeat-interval", "10", "--election-timeout", "100"]);
            let label = etcd_label(j);
            cmd.stdout(self.log_file(&label)?);
            cmd.stderr(self.log_file(&label)?);
            self.topo.spawn(&label, cmd)?;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for url in self.etcd_urls() {
            loop {
                let mut curl = self.topo.command(&ns, "curl");
                curl.args(["-s", "--max-time", "1", &format!("{url}/health")]);
                let out = run(&mut curl);
                if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("true")) {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "etcd at {url} did not answer within 20 s; its log is in {}",
                        self.dir.display()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// The etcd members' client URLs.
    pub(super) fn etcd_urls(&self) -> Vec<String> {
        (0..self.spec.etcd_members)
            .map(|j| format!("http://{SWITCH_IP}:{}", ETCD_PORT + 10 * j as u16))
            .collect()
    }

    /// SIGKILL etcd member `j` (counted from 0; the redirectors try the
    /// members in this order).
    pub fn kill_etcd(&mut self, j: usize) -> anyhow::Result<()> {
        let label = etcd_label(j);
        self.topo
            .kill(&label)
            .with_context(|| format!("killing {label}"))
    }

    /// Wait until a redirector acts; its index.
    pub fn wait_acting(&self, timeout: Duration) -> anyhow::Result<usize> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(k) = self.acting_redirector() {
                return Ok(k);
            }
            if Instant::now() > end {
                bail!(
                    "no redirector acts after {timeout:?}; logs in {}",
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until a redirector other than `old` acts (a takeover); its
    /// index. Polled every 5 ms, so the caller can time the takeover.
    pub fn wait_acting_other_than(&self, old: usize, timeout: Duration) -> anyhow::Result<usize> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(k) = self.acting_redirector().filter(|&k| k != old) {
                return Ok(k);
            }
            if Instant::now() > end {
                bail!(
                    "no redirector but {old} acts after {timeout:?}; logs in {}",
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The redirector that acts as the view authority now (with etcd), by
    /// index; without etcd the only one.
    pub fn acting_redirector(&self) -> Option<usize> {
        if !self.spec.etcd {
            return Some(0);
        }
        (0..self.redirector_nss.len()).find(|&k| {
            self.redirector_status(k)
                .is_ok_and(|s| s["coordination"]["acting"].as_bool() == Some(true))
        })
    }

    /// Redirector `k`'s `/status` JSON.
    pub fn redirector_status(&self, k: usize) -> anyhow::Result<serde_json::Value> {
        let ns = self.redirector_nss.get(k).context("no such redirector")?;
        let out = self.admin_get(ns, "/status")?;
        serde_json::from_slice(&out).context("redirector /status is not JSON")
    }

    /// `POST` to redirector `k`'s admin endpoint; returns the answer's text.
    pub fn redirector_action_at(&self, k: usize, path: &str) -> anyhow::Result<String> {
        let ns = self.redirector_nss.get(k).context("no such redirector")?;
        let url = format!("http://127.0.0.1:{ADMIN_PORT}{path}");
        let mut cmd = self.topo.command(ns, "curl");
        cmd.args(["-s", "--max-time", "5", "-X", "POST", &url]);
        Ok(String::from_utf8_lossy(&run(&mut cmd)?.stdout).into_owned())
    }

    /// SIGKILL redirector `k` (its process only: its namespace, and the
    /// floating address if it held it, stay).
    pub fn kill_redirector(&mut self, k: usize) -> anyhow::Result<()> {
        let label = redirector_label(k);
        self.topo
            .kill(&label)
            .with_context(|| format!("killing {label}"))
    }

    /// Cut (`up == false`) or heal redirector `k`'s links (etcd layout):
    /// its process lives on, cut off from the clients, the replicas and
    /// etcd, as in a network partition.
    pub fn set_redirector_links(&self, k: usize, up: bool) -> anyhow::Result<()> {
        anyhow::ensure!(self.spec.etcd, "only a cluster with etcd has these links");
        let ns = self.redirector_nss.get(k).context("no such redirector")?;
        let state = if up { "up" } else { "down" };
        for link in [&self.redirector_links[k], &self.redirector_replica_links[k]] {
            self.topo.ip(ns, &["link", "set", link, state])?;
        }
        Ok(())
    }

    /// Whether redirector `k`'s client link carries the floating address
    /// (both of them in a dual-stack cluster).
    pub fn holds_floating(&self, k: usize) -> anyhow::Result<bool> {
        let ns = self.redirector_nss.get(k).context("no such redirector")?;
        let link = &self.redirector_links[k];
        let mut cmd = self.topo.command(ns, "ip");
        cmd.args(["-br", "addr", "show", "dev", link]);
        let out = run(&mut cmd)?;
        let text = String::from_utf8_lossy(&out.stdout);
        let v4 = text.contains(&format!("{FLOATING_IP}/"));
        Ok(if self.spec.ipv6 {
            v4 && text.contains(&format!("{FLOATING_IP6}/"))
        } else {
            v4
        })
    }

    /// What a supervisor does once redirector `k`'s process has ended
    /// (the systemd unit's `ExecStopPost`): `hydra-redirector --release`
    /// with its configuration, in its namespace. Returns what it printed.
    pub fn release_redirector(&self, k: usize) -> anyhow::Result<String> {
        let ns = self.redirector_nss.get(k).context("no such redirector")?;
        let path = self.dir.join(format!("{}.toml", redirector_label(k)));
        let mut cmd = self
            .topo
            .command(ns, &self.bins.redirector.to_string_lossy());
        cmd.arg("--config").arg(&path).arg("--release");
        let out = run(&mut cmd)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// What systemd does once a unit's main process has died, before its
    /// `ExecStopPost` (`KillMode=control-group`, the default): SIGKILL
    /// every process left in redirector `k`'s namespace, such as an
    /// `arping` still announcing the floating address with the dead one's
    /// link address. Returns how many it killed.
    pub fn kill_redirector_leftovers(&self, k: usize) -> anyhow::Result<usize> {
        let ns = self.redirector_nss.get(k).context("no such redirector")?;
        let out = run(std::process::Command::new("ip").args(["netns", "pids", ns]))?;
        let mut killed = 0;
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let pid: i32 = pid.parse().context("`ip netns pids` printed no pid")?;
            // SAFETY: kill(2) has no memory preconditions; the pid is a
            // process in this cluster's own namespace.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
        Ok(killed)
    }

    /// Redirector `k`'s address on the replicas' LAN: the replicas reach
    /// its control port there, and its copies come from it.
    pub(super) fn redirector_ip_at(&self, k: usize) -> String {
        if self.spec.ipv6 {
            redirector_ip6(k)
        } else {
            redirector_ip(k)
        }
    }

    /// Start redirector `k` again after [`kill_redirector`](Self::kill_redirector).
    pub fn restart_redirector_at(&mut self, k: usize) -> anyhow::Result<()> {
        self.start_redirector_at(k)
    }
}

/// Redirector `k`'s address on the replicas' LAN (etcd layout).
pub(super) fn redirector_ip(k: usize) -> String {
    format!("198.18.1.{}", 1 + k)
}

/// Redirector `k`'s IPv6 address on the replicas' LAN (etcd layout,
/// dual-stack).
pub(super) fn redirector_ip6(k: usize) -> String {
    format!("fd00:1::{:x}", 1 + k)
}

/// Redirector `k`'s namespace short name: `r`, `r1`, `r2`...
pub(super) fn redirector_short(k: usize) -> String {
    if k == 0 {
        "r".into()
    } else {
        format!("r{k}")
    }
}

/// etcd member `j`'s process label and log name.
pub(super) fn etcd_label(j: usize) -> String {
    if j == 0 {
        "etcd".into()
    } else {
        format!("etcd{j}")
    }
}

/// Redirector `k`'s process label, log and config name.
pub(super) fn redirector_label(k: usize) -> String {
    if k == 0 {
        "redirector".into()
    } else {
        format!("redirector{k}")
    }
}

/// The etcd binary (PATH, then `/usr/bin`), if installed.
pub fn etcd_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
}

/// What a cluster with etcd needs and this machine lacks (etcd, and
/// `arping`, which announces the floating address), as a sentence naming
/// the package; `None` when both are installed.
pub fn coordination_tools_missing() -> Option<&'static str> {
    let arping = ["/usr/bin/arping", "/usr/sbin/arping", "/bin/arping"]
        .iter()
        .any(|p| Path::new(p).is_file());
    match (etcd_binary().is_some(), arping) {
        (true, true) => None,
        (false, _) => Some("etcd is not installed (apt-get install etcd-server)"),
        (true, false) => Some("arping is not installed (apt-get install iputils-arping)"),
    }
}
