//! The replication side of the driver loop: the control agent (registration,
//! keepalives, views, lease) and the ack channel (confirmations, gates, the
//! delivery log), applied to the stack between device input and output.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use ackchannel::control::MemberAgent;
use ackchannel::replication::{Action, MemberId, Replicator};
use ackchannel::transport::Mesh;
use stack::iface::Event;
use stack::socket::Hooks;
use stack::tcp::snapshot::OpenRecord;
use stack::{Instant, Role, Stack};

/// Datagrams read from the control socket per loop turn at most.
const CONTROL_BATCH: usize = 64;

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
    /// The group declared this replica dead: it must stop.
    pub removed: bool,
    /// Log entries not yet committed.
    pub uncommitted: usize,
    /// Per backup: log entries it lacks (primary only).
    pub lag: Vec<(u8, u64)>,
    pub frames_refused: u64,
    pub gate_updates: u64,
}

pub struct ReplicationHooks {
    me: MemberId,
    control: UdpSocket,
    redirector: SocketAddrV4,
    agent: MemberAgent,
    replicator: Replicator,
    mesh: Mesh,
    role: Role,
    epoch: u64,
    status: Arc<Mutex<ReplicaStatus>>,
    lease_valid: bool,
    /// Last time the driver called us; deadlines for backlog are relative to it.
    last_now: Instant,
    next_status: Instant,
}

impl ReplicationHooks {
    pub fn new(
        me: u8,
        control: UdpSocket,
        redirector: SocketAddrV4,
        agent: MemberAgent,
        replicator: Replicator,
        mesh: Mesh,
        status: Arc<Mutex<ReplicaStatus>>,
    ) -> std::io::Result<ReplicationHooks> {
        control.set_nonblocking(true)?;
        Ok(ReplicationHooks {
            me: MemberId(me),
            control,
            redirector,
            agent,
            replicator,
            mesh,
            role: Role::Backup,
            epoch: 0,
            status,
            lease_valid: false,
            last_now: Instant::ZERO,
            next_status: Instant::ZERO,
        })
    }

    fn read_control(&mut self, now: Instant) {
        let mut buf = [0u8; 2048];
        for _ in 0..CONTROL_BATCH {
            match self.control.recv_from(&mut buf) {
                Ok((n, SocketAddr::V4(from))) if from == self.redirector => {
                    if let Err(e) = self.agent.handle_datagram(now, &buf[..n]) {
                        tracing::debug!("control datagram refused: {e}");
                    }
                }
                Ok(_) => tracing::debug!("control datagram from a stranger dropped"),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    }

    /// Adopt a newer view from the redirector: peers, role, takeover.
    fn follow_view(&mut self, now: Instant, stack: &mut Stack) {
        let Some(view) = self.agent.view() else {
            return;
        };
        if view.epoch <= self.epoch {
            return;
        }
        self.epoch = view.epoch;
        let peers: Vec<(MemberId, SocketAddr)> = view
            .members
            .iter()
            .filter(|m| m.alive && m.id != self.me.0)
            .map(|m| (MemberId(m.id), SocketAddr::V4(m.ack_addr)))
            .collect();
        self.mesh.set_peers(peers);
        self.replicator
            .install_view(now, view.to_replication_view());
        let role = if self.replicator.is_primary() {
            Role::Primary
        } else {
            Role::Backup
        };
        if role != self.role {
            // The first view's primary starts the group; later it is a takeover.
            if role == Role::Primary && self.role == Role::Backup && view.epoch > 1 {
                tracing::warn!(epoch = view.epoch, "taking over as primary");
                if let Ok(mut s) = self.status.lock() {
                    s.failovers += 1;
                }
            }
            stack.set_role(now, role);
            self.role = role;
        }
        tracing::info!(epoch = view.epoch, ?role, "view installed");
    }

    fn apply_actions(&mut self, now: Instant, stack: &mut Stack) {
        while let Some(action) = self.replicator.poll_action() {
            match action {
                Action::Gate(key, gate) => stack.set_gate(key, Some(gate)),
                Action::Deliver(key, upto) => stack.set_delivery_limit(key, Some(upto)),
                Action::Open(key, record) => {
                    if stack.conn_info(key).is_none() {
                        match OpenRecord::decode(&record) {
                            Ok(r) => match stack.import_open(now, &r) {
                                Ok(_) => {
                                    if let Ok(mut s) = self.status.lock() {
                                        s.imported_connections += 1;
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(%key.remote, "cannot open logged connection: {e}")
                                }
                            },
                            Err(e) => tracing::warn!("bad opened record in the log: {e:?}"),
                        }
                    }
                }
                Action::Close(_) => {}
                Action::Repair { to, key, from, len } => {
                    if let Some(bytes) = stack.held_bytes(key, from, len as usize) {
                        self.replicator.send_fill(now, to, key, from, &bytes);
                    }
                }
                Action::Fill(key, seq, data) => stack.fill_received(key, seq, &data),
                Action::PeerSuspected(member) => self.agent.report_failure(now, member.0),
            }
        }
    }

    fn transmit(&mut self) {
        while let Some((to, frame)) = self.replicator.poll_transmit() {
            self.mesh.send(to, frame);
        }
        self.mesh.flush();
        while let Some(datagram) = self.agent.poll_transmit() {
            if let Err(e) = self.control.send_to(&datagram, self.redirector) {
                tracing::debug!("control send failed: {e}");
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
        s.member = self.me.0;
        s.epoch = self.epoch;
        s.role = format!("{:?}", self.role);
        s.lease_valid = self.lease_valid;
        s.connections = stack.connection_count();
        s.removed = self.agent.removed();
        s.uncommitted = self.replicator.uncommitted();
        s.lag = self
            .replicator
            .lag()
            .into_iter()
            .map(|(m, l)| (m.0, l))
            .collect();
        let r = self.replicator.stats();
        s.frames_refused = r.refused_auth + r.refused_epoch + r.refused_other;
        s.gate_updates = r.gate_updates;
        if let Some(v) = self.agent.view() {
            s.primary = v.members.iter().find(|m| m.alive).map(|m| m.id);
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
        self.read_control(now);
        self.agent.handle_timeout(now);
        self.follow_view(now, stack);
        for frame in self.mesh.poll() {
            if let Err(e) = self.replicator.handle_frame(now, &frame) {
                tracing::debug!("ack-channel frame refused: {e}");
            }
        }
        self.replicator.handle_timeout(now);
        self.apply_actions(now, stack);
        self.lease_valid = self.role == Role::Primary && self.agent.lease_valid(now);
        self.last_now = now;
    }

    fn next_deadline(&self) -> Option<Instant> {
        let backlog = self
            .mesh
            .has_backlog()
            .then_some(self.last_now + stack::Duration::from_millis(1));
        [
            self.agent.poll_timeout(),
            self.replicator.poll_timeout(),
            backlog,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn on_event(&mut self, now: Instant, stack: &mut Stack, event: Event) {
        match event {
            Event::Progress(key) => {
                if let Some((held, edge, fin)) = stack.receive_progress(key) {
                    self.replicator.local_progress(now, key, held, edge, fin);
                }
            }
            Event::Established(key) if self.role == Role::Primary => {
                if let Some(record) = stack.open_record(key) {
                    self.replicator.opened(now, key, record.encode());
                }
            }
            Event::Closed(key) => self.replicator.closed(now, key),
            _ => {}
        }
    }

    fn after_events(&mut self, now: Instant, stack: &mut Stack) {
        self.apply_actions(now, stack);
        self.replicator.flush(now);
        // Actions from the flush (commits of a one-member group) apply now too.
        self.apply_actions(now, stack);
        self.transmit();
        self.publish_status(now, stack);
    }

    fn may_transmit(&self, now: Instant) -> bool {
        //= DESIGN.md rule 5
        //# Only the primary of the newest view sends to clients; a replica that loses its lease
        //# (no confirmation from the group within the timeout) stops sending.
        self.role == Role::Primary && self.agent.lease_valid(now)
    }
}
