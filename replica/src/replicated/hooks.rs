//! The replica binary's driver hooks: the sockets (control UDP, the
//! ack-channel mesh) around [`ReplicaLogic`], and the admin status.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};

use ackchannel::transport::Mesh;
use stack::iface::Event;
use stack::socket::Hooks;
use stack::{Instant, Stack};

use super::logic::ReplicaLogic;

/// Datagrams read from the control socket per loop turn at most.
const CONTROL_BATCH: usize = 64;

/// Operator requests, carried out on the stack's thread.
#[derive(Debug)]
pub enum Command {
    /// Hand the primary role over (`stay`: remain as a backup) or leave.
    /// The answer says whether it started (false: nobody to hand over to).
    Resign { stay: bool, started: Sender<bool> },
}

/// What the admin endpoint shows; updated by the driver every turn.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReplicaStatus {
    pub member: u8,
    pub epoch: u64,
    pub role: String,
    pub primary: Option<u8>,
    pub members: Vec<(u8, bool)>,
    pub lease_valid: bool,
    pub connections: usize,
    pub failovers: u64,
    pub imported_connections: u64,
    /// Connections received by state transfer while rejoining.
    pub imported_snapshots: u64,
    /// The view lists this replica as catching up.
    pub joining: bool,
    /// The group declared this replica dead: it must stop.
    pub removed: bool,
    /// Log entries not yet committed.
    pub uncommitted: usize,
    /// Per backup: log entries it lacks (primary only).
    pub lag: Vec<(u8, u64)>,
    pub frames_refused: u64,
    pub frames_sent: u64,
    pub frames_received: u64,
    pub gate_updates: u64,
    /// Deliveries at the gate, ahead of the log's commit (primary).
    pub gate_deliveries: u64,
    /// Fills sent: client bytes a member lacked, sent by a member holding them.
    pub repairs: u64,
    /// Fills this primary asked a backup for (bytes only it lost).
    pub fill_requests: u64,
    /// A handover or leave is under way.
    pub resigning: bool,
    /// Handovers or leaves the group did not act on in time.
    pub resignations_cancelled: u64,
    /// Handbacks of the primary role to the group's preferred primary.
    pub handbacks: u64,
    /// Passive mode: checkpoints applied (backup) or released (primary).
    pub checkpoints_applied: u64,
    /// Passive mode: checkpoints that did not apply (connection gone).
    pub checkpoints_refused: u64,
    /// Passive mode: checkpoint bytes not yet held by every backup.
    pub checkpoint_backlog: usize,
}

pub struct ReplicationHooks {
    logic: ReplicaLogic,
    control: UdpSocket,
    /// Every configured redirector's control address: datagrams go to all
    /// (only the acting one answers), replies are taken from any.
    redirectors: Vec<SocketAddr>,
    mesh: Mesh,
    status: Arc<Mutex<ReplicaStatus>>,
    commands: Receiver<Command>,
    /// Last time the driver called us; deadlines for backlog are relative to it.
    last_now: Instant,
    next_status: Instant,
}

impl ReplicationHooks {
    pub fn new(
        logic: ReplicaLogic,
        control: UdpSocket,
        redirectors: Vec<SocketAddr>,
        mesh: Mesh,
        status: Arc<Mutex<ReplicaStatus>>,
        commands: Receiver<Command>,
    ) -> std::io::Result<ReplicationHooks> {
        control.set_nonblocking(true)?;
        Ok(ReplicationHooks {
            logic,
            control,
            redirectors,
            mesh,
            status,
            commands,
            last_now: Instant::ZERO,
            next_status: Instant::ZERO,
        })
    }

    fn read_control(&mut self, now: Instant) {
        let mut buf = [0u8; 2048];
        for _ in 0..CONTROL_BATCH {
            match self.control.recv_from(&mut buf) {
                Ok((n, from)) if self.redirectors.contains(&from) => {
                    if let Err(e) = self.logic.on_control(now, &buf[..n]) {
                        tracing::debug!("control datagram refused: {e}");
                    }
                }
                Ok(_) => tracing::debug!("control datagram from a stranger dropped"),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    }

    fn transmit(&mut self) {
        while let Some((to, frame)) = self.logic.poll_frame() {
            self.mesh.send(to, frame);
        }
        self.mesh.flush();
        while let Some(datagram) = self.logic.poll_control() {
            for to in &self.redirectors {
                if let Err(e) = self.control.send_to(&datagram, to) {
                    tracing::debug!(%to, "control send failed: {e}");
                }
            }
        }
    }

    fn publish_status(&mut self, now: Instant, stack: &Stack) {
        // Operators poll at human speed: 20 updates a second is plenty.
        if now < self.next_status {
            return;
        }
        self.next_status = now + stack::Duration::from_millis(50);
        let Ok(mut s) = self.status.lock() else {
            return;
        };
        let logic = &self.logic;
        s.member = logic.member();
        s.epoch = logic.epoch();
        s.role = format!("{:?}", logic.role());
        s.lease_valid = logic.may_transmit(now);
        s.connections = stack.connection_count();
        s.removed = logic.agent().removed();
        s.failovers = logic.failovers;
        s.imported_connections = logic.imported_connections;
        s.imported_snapshots = logic.imported_snapshots;
        let r = logic.replicator();
        s.uncommitted = r.uncommitted();
        s.lag = r.lag().into_iter().map(|(m, l)| (m.0, l)).collect();
        s.frames_refused =
            r.stats().refused_auth + r.stats().refused_epoch + r.stats().refused_other;
        s.frames_sent = r.stats().frames_sent;
        s.frames_received = r.stats().frames_received;
        s.gate_updates = r.stats().gate_updates;
        s.gate_deliveries = r.stats().gate_deliveries;
        s.repairs = r.stats().repairs;
        s.fill_requests = r.stats().fill_requests;
        s.checkpoint_backlog = r.checkpoint_backlog();
        s.resigning = logic.resigning();
        s.resignations_cancelled = logic.resignations_cancelled;
        s.handbacks = logic.handbacks;
        s.checkpoints_applied = logic.checkpoints_applied;
        s.checkpoints_refused = logic.checkpoints_refused;
        if let Some(v) = logic.agent().view() {
            s.joining = v.is_joining(s.member);
            s.primary = v.primary();
            s.members = v.members.iter().map(|m| (m.id, m.alive)).collect();
        }
    }
}

impl Hooks for ReplicationHooks {
    fn fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.control.as_raw_fd()];
        fds.extend(self.mesh.fds());
        fds
    }

    fn run(&mut self, now: Instant, stack: &mut Stack) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Resign { stay, started } => {
                    let ok = self.logic.resign(now, stay);
                    if !ok {
                        tracing::warn!(stay, "cannot resign: no other live member in the view");
                    }
                    let _ = started.send(ok);
                    // Status now, not at the next tick: the caller waits on it.
                    self.next_status = now;
                }
            }
        }
        self.read_control(now);
        if let Some(peers) = self.logic.follow(now, stack) {
            self.mesh.set_peers(peers);
        }
        for frame in self.mesh.poll() {
            if let Err(e) = self.logic.on_frame(now, &frame) {
                tracing::debug!("ack-channel frame refused: {e}");
            }
        }
        for peer in self.mesh.take_closed() {
            self.logic.on_peer_closed(now, peer);
        }
        self.logic.settle(now, stack);
        self.last_now = now;
    }

    fn next_deadline(&self) -> Option<Instant> {
        let backlog = self
            .mesh
            .has_backlog()
            .then_some(self.last_now + stack::Duration::from_millis(1));
        [self.logic.next_deadline(), backlog]
            .into_iter()
            .flatten()
            .min()
    }

    fn on_event(&mut self, now: Instant, stack: &mut Stack, event: Event) {
        self.logic.on_event(now, stack, event);
    }

    fn after_events(&mut self, now: Instant, stack: &mut Stack) {
        self.logic.after_events(now, stack);
        self.transmit();
        self.publish_status(now, stack);
    }

    fn may_transmit(&self, now: Instant) -> bool {
        self.logic.may_transmit(now)
    }
}

/// Extra pages on the admin endpoint: path to a function giving the
/// content type and body.
pub(crate) type Routes =
    std::collections::HashMap<String, Arc<dyn Fn() -> (&'static str, String) + Send + Sync>>;

/// Asks the driver to resign the primary role (`stay`: remain a backup,
/// else leave the group); true once the driver started it, within 2 s.
pub(crate) fn request_resign(commands: &Sender<Command>, stay: bool) -> bool {
    let (started, answer) = std::sync::mpsc::channel();
    commands.send(Command::Resign { stay, started }).is_ok()
        && answer.recv_timeout(std::time::Duration::from_secs(2)) == Ok(true)
}
