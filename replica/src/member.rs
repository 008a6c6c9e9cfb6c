//! The member library: any Rust program becomes a member of a Hydra group.
//!
//! [`Member::join`] opens the TUN device and the sockets, joins the group
//! through its redirector and starts the stack; the program then binds its
//! own listeners on [`Member::net`] with the `std::net`-like API of
//! [`stack::socket`], actively replicated (`TcpListener::bind`: every
//! member runs the application on the same bytes, so it must be
//! deterministic) or passively (`TcpListener::bind_passive`: only the
//! primary runs it, its steps checkpointed). Its connections survive the
//! crash of whichever member is primary.
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use std::net::{Ipv6Addr, SocketAddr};
//! use replica::member::{Member, MemberConfig};
//! use stack::socket::TcpListener;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = MemberConfig::from_file("member.toml".as_ref())?;
//!     let member = Member::join(&config)?;
//!     let listener = TcpListener::bind(member.net(), SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 7))?;
//!     std::thread::spawn(move || {
//!         for stream in listener.incoming() {
//!             let Ok(mut s) = stream else { break }; // the stack stopped
//!             std::thread::spawn(move || {
//!                 let mut buf = [0u8; 4096];
//!                 while let Ok(n @ 1..) = s.read(&mut buf) {
//!                     if s.write_all(&buf[..n]).is_err() { break; }
//!                 }
//!             });
//!         }
//!     });
//!     member.run_until_signal()?;
//!     Ok(())
//! }
//! ```

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ackchannel::auth::GroupKey;
use ackchannel::control::MemberAgent;
use ackchannel::replication::{MemberId, ReplicationConfig, Replicator};
use ackchannel::transport::Mesh;
use stack::phy::tun::Tun;
use stack::socket::NetStack;
use stack::{Config, Stack};

use crate::replicated::device::{CopyReceiver, ReplicaDevice};
use crate::replicated::hooks::{request_resign, Command, ReplicaStatus, ReplicationHooks, Routes};
use crate::replicated::logic::ReplicaLogic;
use crate::signals::Signals;

pub use crate::replicated::config::{MemberConfig, Redirectors};

pub mod cli;

/// Why a member could not start or had to stop. Each message names what
/// failed and, where there is one, what the operator can do about it.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// The configuration file could not be read or is not valid.
    #[error("configuration {path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The configuration holds a value that cannot work.
    #[error("configuration: {0}")]
    Invalid(String),
    /// The TUN device could not be opened.
    #[error("opening TUN device {name}: {source} (a member needs root and /dev/net/tun)")]
    Tun {
        /// The device's name.
        name: String,
        /// The system's error.
        source: io::Error,
    },
    /// A socket could not be bound.
    #[error("binding the {what} on {addr}: {source}")]
    Bind {
        /// Which socket (data, control, ack channel, admin endpoint).
        what: &'static str,
        /// The address from the configuration.
        addr: SocketAddr,
        /// The system's error.
        source: io::Error,
    },
    /// Signal handling or the driver thread could not be set up.
    #[error("starting the member: {0}")]
    Start(io::Error),
    /// The group declared this member dead and went on without it.
    #[error(
        "the group declared this member dead and moved on without it; start it again to rejoin"
    )]
    Removed,
}

impl From<MemberError> for io::Error {
    fn from(e: MemberError) -> io::Error {
        let kind = match &e {
            MemberError::Config { .. } | MemberError::Invalid(_) => io::ErrorKind::InvalidInput,
            MemberError::Tun { source, .. } | MemberError::Bind { source, .. } => source.kind(),
            MemberError::Start(source) => source.kind(),
            MemberError::Removed => io::ErrorKind::ConnectionAborted,
        };
        io::Error::new(kind, e)
    }
}

/// This member's place in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Role {
    /// Not in a view yet (starting, or catching up after a rejoin).
    Waiting,
    /// Serves clients; its output leaves for them.
    Primary,
    /// Holds every connection; silent.
    Backup,
    /// Declared dead by the group.
    Removed,
}

/// A snapshot of the member's state, as the admin endpoint's `/status`
/// shows it in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// This member's id.
    pub member: u8,
    /// Its role now.
    pub role: Role,
    /// Epoch of the installed view.
    pub epoch: u64,
    /// The primary of that view.
    pub primary: Option<u8>,
    /// Connections the stack holds.
    pub connections: usize,
    /// Takeovers by this member.
    pub failovers: u64,
}

/// A running group member. Dropping it stops the stack without a
/// handover; [`Member::leave`] hands over first.
pub struct Member {
    net: NetStack,
    status: Arc<Mutex<ReplicaStatus>>,
    commands: Sender<Command>,
    leaving: Arc<AtomicBool>,
    routes: Arc<Mutex<Routes>>,
    admin: Option<SocketAddr>,
    signals: Option<Signals>,
}

impl MemberConfig {
    /// Read and check a TOML configuration file (see `docs/operations.md`
    /// for the fields).
    pub fn from_file(path: &Path) -> Result<MemberConfig, MemberError> {
        let text = std::fs::read_to_string(path).map_err(|e| MemberError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            MemberError::Invalid(message) => MemberError::Config {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Read the member part of a `hydra-replica` configuration file: every
    /// field but `apps`, which names `hydra-replica`'s built-in
    /// applications (a program of one's own serves its own).
    pub fn from_replica_file(path: &Path) -> Result<MemberConfig, MemberError> {
        let bad = |message: String| MemberError::Config {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        table.remove("apps");
        let cfg: MemberConfig = table
            .try_into()
            .map_err(|e: toml::de::Error| bad(e.to_string()))?;
        cfg.check().map_err(bad)?;
        Ok(cfg)
    }

    /// Parse and check a configuration from TOML text.
    pub fn from_toml(text: &str) -> Result<MemberConfig, MemberError> {
        let cfg: MemberConfig =
            toml::from_str(text).map_err(|e| MemberError::Invalid(e.to_string()))?;
        cfg.check().map_err(MemberError::Invalid)?;
        Ok(cfg)
    }
}

impl Member {
    /// Join the group `config` describes: open the TUN device and sockets,
    /// register with the redirector, start the stack (silent until a view
    /// names this member primary) and, if configured, the admin endpoint.
    ///
    /// Blocks SIGTERM and SIGINT in the calling thread first, so
    /// call it before starting other threads: [`Member::run_until_signal`]
    /// then waits for them.
    pub fn join(config: &MemberConfig) -> Result<Member, MemberError> {
        config.check().map_err(MemberError::Invalid)?;
        // Before any thread exists, so every thread inherits the blocked mask.
        let signals = Signals::block().map_err(MemberError::Start)?;
        let key_bytes = config.key_bytes().map_err(MemberError::Invalid)?;
        let tun =
            Tun::open_offload(&config.tun, config.mtu).map_err(|source| MemberError::Tun {
                name: config.tun.clone(),
                source,
            })?;
        let bind = |what: &'static str, addr: std::net::SocketAddr| {
            UdpSocket::bind(addr).map_err(|source| MemberError::Bind { what, addr, source })
        };
        let data = bind("data socket", config.data_listen)?;
        let redirectors = config.redirector.addrs().to_vec();
        let copies = CopyReceiver::new(data, redirectors.iter().map(|a| a.ip()).collect())
            .map_err(MemberError::Start)?;
        let copy_drops = copies.drops.clone();
        let device = ReplicaDevice::new(copies, tun);
        let control = bind(
            "control socket",
            std::net::SocketAddr::new(config.data_listen.ip(), 0),
        )?;
        let heartbeat = stack::Duration::from_millis(config.heartbeat_ms);
        let group_key = GroupKey(key_bytes);
        let agent = MemberAgent::new(
            config.group.clone(),
            config.member,
            group_key.clone(),
            config.data_advertise.unwrap_or(config.data_listen),
            config.ack_advertise.unwrap_or(config.ack_listen),
            heartbeat,
        );
        let replicator = Replicator::new(
            MemberId(config.member),
            group_key,
            ReplicationConfig {
                heartbeat_interval: heartbeat,
                peer_timeout: stack::Duration::from_millis(config.peer_timeout_ms),
                ..ReplicationConfig::default()
            },
        );
        let mesh = Mesh::new(MemberId(config.member), config.ack_listen).map_err(|source| {
            MemberError::Bind {
                what: "ack channel",
                addr: config.ack_listen,
                source,
            }
        })?;
        let stack_cfg = Config {
            isn_key: isn_key(&key_bytes),
            mss: config.mss,
            ..Config::default()
        };
        let mut core = Stack::new(stack_cfg);
        ReplicaLogic::prepare_stack(&mut core);
        let status = Arc::new(Mutex::new(ReplicaStatus {
            member: config.member,
            ..Default::default()
        }));
        let logic = ReplicaLogic::new(config.member, agent, replicator);
        let (commands, command_rx) = mpsc::channel();
        let hooks = ReplicationHooks::new(
            logic,
            control,
            redirectors,
            mesh,
            status.clone(),
            command_rx,
        )
        .map_err(|e| MemberError::Start(io::Error::other(format!("{e:#}"))))?;
        let net = NetStack::spawn_with_hooks(core, &config.vips, device, hooks)
            .map_err(MemberError::Start)?;
        let member = Member {
            net,
            status,
            commands,
            leaving: Arc::new(AtomicBool::new(false)),
            routes: Arc::new(Mutex::new(HashMap::new())),
            admin: None,
            signals: Some(signals),
        };
        let admin = match config.admin {
            Some(addr) => Some(
                crate::replicated::admin::serve(
                    addr,
                    member.net.clone(),
                    copy_drops,
                    member.status.clone(),
                    Mutex::new(member.commands.clone()),
                    member.leaving.clone(),
                    member.routes.clone(),
                )
                .map_err(|source| MemberError::Bind {
                    what: "admin endpoint",
                    addr,
                    source,
                })?,
            ),
            None => None,
        };
        tracing::info!(member = config.member, group = %config.group, "member running");
        Ok(Member { admin, ..member })
    }

    /// The stack: bind listeners and open connections on it.
    pub fn net(&self) -> &NetStack {
        &self.net
    }

    /// Where the admin endpoint listens, if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// Serve `path` on the admin endpoint (GET) with what `page` returns:
    /// (content type, body). An application shows its own state this way,
    /// for example a digest that must be equal on every member.
    pub fn add_admin_page(
        &self,
        path: &str,
        page: impl Fn() -> (&'static str, String) + Send + Sync + 'static,
    ) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(path.to_string(), Arc::new(page));
        }
    }

    /// The member's state now.
    pub fn status(&self) -> MemberStatus {
        let s = self.status.lock().map(|s| s.clone()).unwrap_or_default();
        MemberStatus {
            member: s.member,
            role: role_of(&s),
            epoch: s.epoch,
            primary: s.primary,
            connections: s.connections,
            failovers: s.failovers,
        }
    }

    /// Hand the primary role to another live member and stay as a backup
    /// (no crash-sized stall). False when nobody else can take it; a
    /// backup's handover changes nothing and returns true.
    pub fn handover(&self) -> bool {
        request_resign(&self.commands, true)
    }

    /// Leave the group cleanly: hand over (or leave as a backup) so the
    /// group goes on without a failure timeout, then stop. Bounded: if the
    /// group does not answer within 2 s, the member stops anyway.
    pub fn leave(self) {
        self.leaving.store(true, Ordering::SeqCst);
        leave(&self.commands, &self.status);
        self.net.stop();
    }

    /// Serve until SIGTERM or SIGINT (then leave cleanly and return
    /// `Ok`) or until the group declares this member dead (then stop and
    /// return [`MemberError::Removed`]: its state is stale; started again,
    /// the process rejoins by state transfer).
    pub fn run_until_signal(mut self) -> Result<(), MemberError> {
        let signals = self.signals.take();
        loop {
            if let Some(sig) = signals
                .as_ref()
                .and_then(|s| s.wait(Duration::from_millis(100)))
            {
                tracing::info!(signal = sig, "leaving the group, then shutting down");
                self.leave();
                return Ok(());
            }
            if signals.is_none() {
                std::thread::sleep(Duration::from_millis(100));
            }
            let removed = self.status.lock().map(|s| s.removed).unwrap_or(false);
            if removed {
                let left = self.leaving.load(Ordering::SeqCst);
                self.net.stop();
                return if left {
                    Ok(())
                } else {
                    Err(MemberError::Removed)
                };
            }
        }
    }
}

fn role_of(s: &ReplicaStatus) -> Role {
    if s.removed {
        Role::Removed
    } else if s.epoch == 0 || s.joining {
        Role::Waiting
    } else if s.primary == Some(s.member) {
        Role::Primary
    } else {
        Role::Backup
    }
}

/// The RFC 6528 key every member derives from the group key, so all
/// replicas choose the same ISN for a connection (DESIGN rule 1). The member
/// runtime and the group simulator both give it to the stack
/// (`stack::Config::isn_key`).
pub fn isn_key(group_key: &[u8; 32]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"hydra isn key v1")
        .chain_update(group_key)
        .finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// Deliberate shutdown: hand the primary role over (or leave as a backup)
/// so the group goes on without a failure timeout, then return. Bounded:
/// if the group does not answer, the member stops anyway.
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
            tracing::info!("the group let this member go");
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
