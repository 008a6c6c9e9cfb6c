//! Replicated mode: this replica is one member of a group behind a
//! redirector. Client packets arrive as UDP copies from the redirector; the
//! stack runs as primary or backup as the current view says; the ack channel
//! gates the primary's ACKs and orders delivery to the applications.

pub mod config;
pub mod device;
pub mod hooks;
pub mod logic;

use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ackchannel::auth::GroupKey;
use ackchannel::control::MemberAgent;
use ackchannel::replication::{MemberId, ReplicationConfig, Replicator};
use ackchannel::transport::Mesh;
use anyhow::Context;
use sha2::{Digest, Sha256};
use stack::phy::tun::Tun;
use stack::socket::NetStack;
use stack::{Config, Stack};

use crate::apps;
use crate::signals::Signals;
use config::ReplicaConfig;
use device::{CopyReceiver, DeviceDrops, ReplicaDevice};
use hooks::{Command, ReplicaStatus, ReplicationHooks};
use logic::ReplicaLogic;

/// The RFC 6528 key every member derives from the group key, so all
/// replicas choose the same ISN for a connection (DESIGN rule 1).
pub fn isn_key(group_key: &[u8; 32]) -> [u8; 16] {
    let digest = Sha256::new()
        .chain_update(b"hydra isn key v1")
        .chain_update(group_key)
        .finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

pub fn run(config_path: &Path, signals: Signals) -> anyhow::Result<()> {
    let cfg = ReplicaConfig::load(config_path)?;
    let key_bytes = cfg.key_bytes()?;
    let app_specs = cfg.app_specs()?;
    let tun = Tun::open_offload(&cfg.tun, cfg.mtu)
        .with_context(|| format!("opening TUN device {}", cfg.tun))?;
    let data = UdpSocket::bind(cfg.data_listen)
        .with_context(|| format!("binding data socket {}", cfg.data_listen))?;
    let copies = CopyReceiver::new(data, *cfg.redirector.ip())?;
    let copy_drops = copies.drops.clone();
    let device = ReplicaDevice::new(copies, tun);
    let control = UdpSocket::bind(std::net::SocketAddrV4::new(*cfg.data_listen.ip(), 0))
        .context("binding control socket")?;

    let heartbeat = stack::Duration::from_millis(cfg.heartbeat_ms);
    let group_key = GroupKey(key_bytes);
    let agent = MemberAgent::new(
        cfg.group.clone(),
        cfg.member,
        group_key.clone(),
        cfg.data_advertise.unwrap_or(cfg.data_listen),
        cfg.ack_advertise.unwrap_or(cfg.ack_listen),
        heartbeat,
    );
    let replicator = Replicator::new(
        MemberId(cfg.member),
        group_key.clone(),
        ReplicationConfig {
            heartbeat_interval: heartbeat,
            peer_timeout: stack::Duration::from_millis(cfg.peer_timeout_ms),
            ..ReplicationConfig::default()
        },
    );
    let mesh = Mesh::new(MemberId(cfg.member), cfg.ack_listen.into())
        .with_context(|| format!("ack channel listen on {}", cfg.ack_listen))?;

    let stack_cfg = Config {
        isn_key: isn_key(&key_bytes),
        mss: cfg.mss,
        ..Config::default()
    };
    let mut core = Stack::new(stack_cfg);
    // Silent until a view names this replica primary.
    ReplicaLogic::prepare_stack(&mut core);
    let status = Arc::new(Mutex::new(ReplicaStatus {
        member: cfg.member,
        ..Default::default()
    }));
    let logic = ReplicaLogic::new(cfg.member, agent, replicator);
    let (commands, command_rx) = mpsc::channel();
    let hooks = ReplicationHooks::new(
        logic,
        control,
        cfg.redirector,
        mesh,
        status.clone(),
        command_rx,
    )?;
    let net = NetStack::spawn_with_hooks(core, cfg.vips[0], device, hooks)
        .context("starting the stack")?;
    for app in &app_specs {
        apps::start(&net, Ipv4Addr::UNSPECIFIED, app).with_context(|| format!("starting {app}"))?;
    }
    let leaving = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(addr) = cfg.admin {
        serve_admin(
            addr,
            net.clone(),
            copy_drops,
            status.clone(),
            Mutex::new(commands.clone()),
            leaving.clone(),
        )?;
    }
    tracing::info!(member = cfg.member, group = %cfg.group, "replica running");
    let removed = loop {
        if let Some(sig) = signals.wait(Duration::from_millis(100)) {
            tracing::info!(signal = sig, "leaving the group, then shutting down");
            leave(&commands, &status);
            break false;
        }
        if status.lock().map(|s| s.removed).unwrap_or(false) {
            break !leaving.load(std::sync::atomic::Ordering::SeqCst);
        }
    };
    net.stop();
    if removed {
        // Its state is stale: stop. Started again (systemd does), the
        // process rejoins by state transfer.
        anyhow::bail!(
            "the group declared this replica dead and moved on without it; start it again to rejoin"
        );
    }
    Ok(())
}

/// Ask to resign; true when the request started (someone can take over).
fn request_resign(commands: &Sender<Command>, stay: bool) -> bool {
    let (started, answer) = mpsc::channel();
    commands.send(Command::Resign { stay, started }).is_ok()
        && answer.recv_timeout(Duration::from_secs(2)) == Ok(true)
}

/// Deliberate shutdown: hand the primary role over (or leave as a backup)
/// so the group goes on without a failure timeout, then return. Bounded:
/// if the group does not answer, the replica stops anyway.
fn leave(commands: &Sender<Command>, status: &Mutex<ReplicaStatus>) {
    if !request_resign(commands, false) {
        tracing::info!("no other live member: stopping without a handover");
        return;
    }
    let end = std::time::Instant::now() + Duration::from_secs(2);
    let mut seen_resigning = false;
    while std::time::Instant::now() < end {
        let (removed, resigning) = status
            .lock()
            .map(|s| (s.removed, s.resigning))
            .unwrap_or((false, false));
        if removed {
            tracing::info!("the group let this replica go");
            return;
        }
        // The status may not show the request yet; once it did, its end
        // without removal means the group gave up on it.
        if seen_resigning && !resigning {
            break;
        }
        seen_resigning |= resigning;
        std::thread::sleep(Duration::from_millis(5));
    }
    tracing::warn!("the group did not confirm the leave: stopping anyway");
}

fn serve_admin(
    addr: std::net::SocketAddr,
    net: NetStack,
    copy_drops: Arc<DeviceDrops>,
    status: Arc<Mutex<ReplicaStatus>>,
    commands: Mutex<Sender<Command>>,
    leaving: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    use ackchannel::admin::metric;
    let bound = ackchannel::admin::serve(
        addr,
        Arc::new(move |method: &str, path: &str| {
            let snapshot = status.lock().map(|s| s.clone()).unwrap_or_default();
            match (method, path) {
                ("POST", "/handover" | "/leave") => {
                    let stay = path == "/handover";
                    if !stay {
                        leaving.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    let started = commands
                        .lock()
                        .map(|c| request_resign(&c, stay))
                        .unwrap_or(false);
                    if !started {
                        leaving.store(false, std::sync::atomic::Ordering::SeqCst);
                    }
                    let body = if started {
                        format!("{path}: started\n")
                    } else {
                        format!("{path}: refused, no other live member to take over\n")
                    };
                    Some(("text/plain", body))
                }
                ("GET", "/metrics") => {
                    let (stats, conns, ooo) = net.with_stack(|s| {
                        (
                            s.stats().clone(),
                            s.connection_count(),
                            s.out_of_order_bytes(),
                        )
                    });
                    let mut out = String::new();
                    crate::metrics::render_stack(&mut out, &stats, conns, ooo);
                    for (reason, counter) in [
                        ("foreign_source", &copy_drops.foreign_source),
                        ("oversized", &copy_drops.oversized),
                    ] {
                        metric(
                            &mut out,
                            "hydra_copies_dropped_total",
                            "counter",
                            "Copies from the redirector refused: not from its address, or too long.",
                            &format!("reason=\"{reason}\""),
                            counter.load(std::sync::atomic::Ordering::Relaxed),
                        );
                    }
                    metric(
                        &mut out,
                        "hydra_view_epoch",
                        "gauge",
                        "Epoch of the installed view.",
                        "",
                        snapshot.epoch,
                    );
                    let primary = u8::from(snapshot.role == "Primary");
                    metric(
                        &mut out,
                        "hydra_is_primary",
                        "gauge",
                        "1 when this replica is the primary.",
                        "",
                        primary,
                    );
                    metric(
                        &mut out,
                        "hydra_failovers_total",
                        "counter",
                        "Takeovers by this replica.",
                        "",
                        snapshot.failovers,
                    );
                    Some(("text/plain; version=0.0.4", out))
                }
                ("GET", "/connections") => Some((
                    "text/plain",
                    net.with_stack(|s| crate::metrics::render_connections(s)),
                )),
                ("GET", "/status") => Some((
                    "application/json",
                    serde_json::to_string(&snapshot).unwrap_or_default(),
                )),
                _ => None,
            }
        }),
    )
    .with_context(|| format!("admin endpoint on {addr}"))?;
    tracing::info!(%bound, "admin endpoint up");
    Ok(())
}
