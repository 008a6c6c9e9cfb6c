//! Starting the processes: each redirector and replica with the
//! configuration file it is given, and the relays of impaired links.

use std::time::Duration;

use anyhow::Context;

use super::*;

impl Cluster {
    pub(super) fn start_redirector(&mut self) -> anyhow::Result<()> {
        self.start_redirector_at(0)
    }

    pub(super) fn start_redirector_at(&mut self, k: usize) -> anyhow::Result<()> {
        let ns = self.redirector_nss[k].clone();
        let tun = self.topo.name(&format!("rt{}", &redirector_short(k)[1..]));
        let members: Vec<String> = (1..=self.spec.replicas).map(|m| m.to_string()).collect();
        let services = self.spec.services_toml.clone().unwrap_or_else(|| {
            let mut services = format!(
                r#"[[services]]
vip = "{VIP}"
ports = []
group = "demo"
"#
            );
            if self.spec.ipv6 {
                services.push_str(&format!(
                    r#"
[[services]]
vip = "{VIP6}"
ports = []
group = "demo"
"#
                ));
            }
            services
        });
        let link_ip = if self.spec.etcd {
            self.redirector_ip_at(k)
        } else {
            self.redirector_link_ip().to_string()
        };
        let state = if self.spec.etcd {
            String::new()
        } else {
            format!(
                "state_file = \"{}\"\n",
                self.dir.join("redirector.state").display()
            )
        };
        let mut text = format!(
            r#"tun = "{tun}"
mtu = 1500
control_listen = "{control}"
data_bind = "{data}"
admin = "127.0.0.1:{ADMIN_PORT}"
{state}
{services}
"#,
            control = socket_text(&link_ip, CONTROL_PORT),
            data = socket_text(&link_ip, 0),
        );
        for (g, key) in self.keys.iter().enumerate() {
            text.push_str(&format!(
                r#"
[[groups]]
name = "{name}"
key = "{key}"
members = [{members}]
min_members = {n}
keepalive_timeout_ms = {timeout}
lease_ms = {lease}
heartbeat_ms = {hb}
"#,
                name = group_name(g),
                hb = self.spec.heartbeat_ms,
                members = members.join(", "),
                n = self.spec.replicas,
                timeout = self.spec.failure_timeout_ms,
                lease = self.spec.lease_ms,
            ));
            if let Some(p) = self.spec.preferred_primary {
                text.push_str(&format!("preferred_primary = {p}\n"));
            }
        }
        if self.spec.etcd {
            text.push_str(&format!(
                r#"
[coordination]
etcd = [{etcd}]
name = "{name}"
lease_ttl_ms = {AUTHORITY_LEASE_MS}
request_timeout_ms = {timeout}
heartbeat_ms = {AUTHORITY_HEARTBEAT_MS}
floating = {{ address = [{floating}], link = "{link}" }}
"#,
                name = redirector_label(k),
                etcd = self
                    .etcd_urls()
                    .iter()
                    .map(|u| format!("{u:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                // A renewal may try every member twice within half the lease.
                timeout = (AUTHORITY_LEASE_MS / 4 / self.spec.etcd_members as u64).min(200),
                link = self.redirector_links[k],
                floating = if self.spec.ipv6 {
                    format!("\"{FLOATING_IP}/24\", \"{FLOATING_IP6}/64\"")
                } else {
                    format!("\"{FLOATING_IP}/24\"")
                },
            ));
        }
        let label = redirector_label(k);
        let path = self.write(&format!("{label}.toml"), &text)?;
        let mut cmd = self
            .topo
            .command(&ns, &self.bins.redirector.to_string_lossy());
        cmd.arg("--config").arg(&path);
        cmd.stderr(self.log_file(&label)?);
        self.topo.spawn(&label, cmd)?;
        self.topo.wait_link(&ns, &tun, Duration::from_secs(10))?;
        self.route_vips(&ns, &tun)?;
        Ok(())
    }

    /// Set the scheduling priority (`nice`, -20 to 19) of every thread of
    /// the redirectors and replicas running now, as a systemd unit's
    /// `Nice=` would: under a saturated machine their keepalives then
    /// keep time. Returns how many threads were set.
    pub fn set_group_priority(&self, nice: i32) -> anyhow::Result<usize> {
        let mut threads = 0;
        for (label, pid) in self.topo.pids() {
            if !(label.starts_with("replica") || label.starts_with("redirector")) {
                continue;
            }
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue; // the process has ended
            };
            for task in tasks.flatten() {
                let Some(tid) = task
                    .file_name()
                    .to_str()
                    .and_then(|t| t.parse::<u32>().ok())
                else {
                    continue;
                };
                // SAFETY: setpriority takes plain integers; on Linux a
                // thread id names that one thread.
                let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) };
                anyhow::ensure!(
                    r == 0,
                    "setting the priority of {label}'s thread {tid}: {}",
                    std::io::Error::last_os_error()
                );
                threads += 1;
            }
        }
        Ok(threads)
    }

    /// Kill the redirector and start it again (its views come back from
    /// its state file).
    pub fn restart_redirector(&mut self) -> anyhow::Result<()> {
        self.topo
            .kill("redirector")
            .context("killing the redirector")?;
        self.start_redirector()
    }

    /// The relays of replica `i`'s data link and ack channel, in the
    /// redirector's namespace, reading `link<i>.ctl`.
    pub(super) fn start_relay(&mut self, i: usize) -> anyhow::Result<()> {
        let ip = replica_ip(i);
        let control = self.dir.join(format!("link{i}.ctl"));
        std::fs::write(&control, "")?;
        let mut cmd = self
            .topo
            .command(&self.redirector_ns, &self.bins.scenario.to_string_lossy());
        cmd.arg("relay")
            .arg("--udp")
            .arg(format!(
                "{REDIRECTOR_IP}:{}={ip}:{DATA_PORT}",
                DATA_RELAY_PORT + i as u16
            ))
            .arg("--tcp")
            .arg(format!(
                "{REDIRECTOR_IP}:{}={ip}:{ACK_PORT}",
                ACK_RELAY_PORT + i as u16
            ))
            .arg("--control")
            .arg(&control)
            .arg("--seed")
            .arg((i + 1).to_string());
        cmd.stderr(self.log_file(&format!("relay{i}"))?);
        self.topo.spawn(&format!("relay{i}"), cmd)?;
        Ok(())
    }

    /// Impair replica `i`'s links (relayed clusters): a line such as
    /// `loss=0.05 delay_ms=2 jitter_ms=3 duplicate=0.01`, `cut_data=1`
    /// or `cut_ack=1`; an empty line heals. Checked before it is written.
    pub fn set_link(&self, i: usize, line: &str) -> anyhow::Result<()> {
        anyhow::ensure!(self.spec.relays, "this cluster has no relays");
        line.parse::<crate::relay::Impairment>()
            .map_err(|e| anyhow::anyhow!("link {i}: {e}"))?;
        let path = self.dir.join(format!("link{i}.ctl"));
        // Temp file and rename: the relay never reads half a line.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, line)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// Start (or restart) replica `i` (counted across groups; in group 0
    /// it is member i + 1).
    pub fn start_replica(&mut self, i: usize) -> anyhow::Result<()> {
        let ns = self.replica_ns[i].clone();
        let tun = self.topo.name(&format!("t{i}"));
        let ip = self.replica_link_ip(i);
        let redirector = if self.spec.etcd {
            let all: Vec<String> = (0..self.spec.redirectors)
                .map(|k| {
                    format!(
                        "\"{}\"",
                        socket_text(&self.redirector_ip_at(k), CONTROL_PORT)
                    )
                })
                .collect();
            format!("[{}]", all.join(", "))
        } else {
            format!(
                "\"{}\"",
                socket_text(self.redirector_link_ip(), CONTROL_PORT)
            )
        };
        let vips = if self.spec.ipv6 {
            format!("\"{VIP}\", \"{VIP6}\"")
        } else {
            format!("\"{VIP}\"")
        };
        let group = i / self.spec.replicas;
        let mut apps: Vec<String> = ["echo:7", "discard:9", "source:19"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        apps.push(format!("http:80={}", self.www.display()));
        apps.extend(self.spec.extra_apps.iter().cloned());
        let apps: Vec<String> = apps.iter().map(|a| format!("{a:?}")).collect();
        let text = format!(
            r#"member = {member}
group = "{group}"
key = "{key}"
vips = [{vips}]
tun = "{tun}"
mtu = 9000
mss = 1460
data_listen = "{data_listen}"
ack_listen = "{ack_listen}"
redirector = {redirector}
heartbeat_ms = {hb}
peer_timeout_ms = {timeout}
apps = [{apps}]
admin = "127.0.0.1:{ADMIN_PORT}"
{advertise}"#,
            member = i % self.spec.replicas + 1,
            group = group_name(group),
            key = self.keys[group],
            data_listen = socket_text(&ip, DATA_PORT),
            ack_listen = socket_text(&ip, ACK_PORT),
            hb = self.spec.heartbeat_ms,
            timeout = self.spec.failure_timeout_ms,
            apps = apps.join(", "),
            advertise = if self.spec.relays {
                format!(
                    "data_advertise = \"{REDIRECTOR_IP}:{}\"\nack_advertise = \"{REDIRECTOR_IP}:{}\"\n",
                    DATA_RELAY_PORT + i as u16,
                    ACK_RELAY_PORT + i as u16
                )
            } else {
                String::new()
            },
        );
        let path = self.write(&format!("replica{}.toml", i + 1), &text)?;
        let mut cmd = match &self.spec.program {
            Some(p) => {
                let mut cmd = self.topo.command(&ns, &p.path.to_string_lossy());
                cmd.arg("member").arg("--config").arg(&path).args(&p.args);
                cmd
            }
            None => {
                let mut cmd = self.topo.command(&ns, &self.bins.replica.to_string_lossy());
                cmd.arg("run").arg("--config").arg(&path);
                cmd
            }
        };
        cmd.stderr(self.log_file(&format!("replica{}", i + 1))?);
        self.topo.spawn(&format!("replica{i}"), cmd)?;
        self.topo.wait_link(&ns, &tun, Duration::from_secs(10))?;
        self.route_vips(&ns, &tun)?;
        Ok(())
    }

    /// Route the VIPs (both families in a dual-stack cluster) into `tun`
    /// in `ns`. Replace, not add: a restarted process recreates its TUN,
    /// and the routes with it.
    fn route_vips(&self, ns: &str, tun: &str) -> anyhow::Result<()> {
        self.topo
            .ip(ns, &["route", "replace", &format!("{VIP}/32"), "dev", tun])?;
        if self.spec.ipv6 {
            self.topo.ip(
                ns,
                &["-6", "route", "replace", &format!("{VIP6}/128"), "dev", tun],
            )?;
        }
        Ok(())
    }
}
