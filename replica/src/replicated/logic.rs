//! A replica's protocol glue, sans-IO: the control agent (registration,
//! keepalives, views, lease) and the ack channel (confirmations, gates, the
//! delivery log) applied to the stack.
//!
//! Two drivers run this same logic, so what the simulator checks is what
//! members run: the member runtime ([`crate::member`], through
//! [`super::hooks`]) with sockets and a clock, and the deterministic group
//! simulator (the `hydra-sim` crate) with simulated links and a virtual
//! clock. [`ReplicaLogic`] reads no clock and opens no socket: every input
//! takes `now`, and every output is pulled.
//!
//! A driver's turn, in order:
//!
//! 1. Inputs: [`ReplicaLogic::on_control`] for each datagram from the
//!    redirector, then [`ReplicaLogic::follow`] (adopt a newer view), then
//!    [`ReplicaLogic::on_frame`] for each ack-channel frame from a peer and
//!    [`ReplicaLogic::on_peer_closed`] for each peer connection that ended,
//!    then [`ReplicaLogic::settle`].
//! 2. The stack's events: [`ReplicaLogic::on_event`] for each, then
//!    [`ReplicaLogic::after_events`] once.
//! 3. Outputs: [`ReplicaLogic::poll_frame`] (to peers) and
//!    [`ReplicaLogic::poll_control`] (to the redirector) until empty; the
//!    stack's packets go to the client only while
//!    [`ReplicaLogic::may_transmit`].
//! 4. Sleep until [`ReplicaLogic::next_deadline`] (or the stack's own
//!    timeout) or the next input.

#![warn(missing_docs)]

use std::collections::HashMap;
use std::net::SocketAddr;

use ackchannel::control::{ControlError, MemberAgent};
use ackchannel::replication::{Action, FrameError, MemberId, Progress, Replicator};
use stack::iface::Event;
use stack::Checkpoint;
use stack::Seq;
use stack::State;
use stack::{ConnKey, Instant, Role, Stack};
use stack::{ConnSnapshot, OpenRecord};

/// Bytes of client packets a joining replica holds for connections whose
/// state has not arrived yet.
const PARKING_LIMIT: usize = 64 << 20;
/// Bytes of passive checkpoints not yet held by every backup at most; the
/// stack keeps later changes (compactly) until there is room.
const CHECKPOINT_BACKLOG: usize = 32 << 20;

/// One replica's membership and replication state, applied to its
/// [`Stack`]: which role the stack plays, what it may acknowledge and
/// deliver, and what the group must hear from it.
pub struct ReplicaLogic {
    me: MemberId,
    agent: MemberAgent,
    replicator: Replicator,
    role: Role,
    /// The view names us primary but our lease for it is not confirmed yet:
    /// the stack stays silent until it is, so the takeover's ACKs and
    /// retransmissions are not thrown away by the lease check.
    pending_promotion: bool,
    epoch: u64,
    /// A resignation under way: when it was asked for.
    resign_started: Option<Instant>,
    /// Resignations the authority did not act on in time.
    pub resignations_cancelled: u64,
    /// The epoch of the view in which this primary last handed its role
    /// back to the preferred primary: one attempt per view.
    handback_epoch: u64,
    /// Handbacks to the preferred primary this replica started.
    pub handbacks: u64,
    /// Takeovers by this replica (the first view's primary does not count).
    pub failovers: u64,
    /// Connections created from the log's "opened" entries.
    pub imported_connections: u64,
    /// Connections received by state transfer while joining.
    pub imported_snapshots: u64,
    /// The view lists us as joining: packets of connections we lack wait.
    parking: bool,
    /// When the current view was installed.
    view_installed_at: Instant,
    /// Passive checkpoints applied (backup) or released (primary).
    pub checkpoints_applied: u64,
    /// Passive checkpoints that did not apply (their connection had gone).
    pub checkpoints_refused: u64,
    /// The incarnation (initial receive sequence) of each connection the
    /// log says is open: its "closed" entry drops our copy only if it is
    /// that one, not a newer connection on the same addresses.
    logged_open: HashMap<ConnKey, Seq>,
}

impl ReplicaLogic {
    /// Member `me` of its group, speaking to the redirector through `agent`
    /// and to its peers through `replicator`. It starts as a backup with no
    /// view; prepare its stack with [`ReplicaLogic::prepare_stack`].
    pub fn new(me: u8, agent: MemberAgent, replicator: Replicator) -> ReplicaLogic {
        ReplicaLogic {
            me: MemberId(me),
            agent,
            replicator,
            role: Role::Backup,
            pending_promotion: false,
            resign_started: None,
            resignations_cancelled: 0,
            handback_epoch: 0,
            handbacks: 0,
            epoch: 0,
            failovers: 0,
            imported_connections: 0,
            imported_snapshots: 0,
            // Until the first view says otherwise (see `prepare_stack`).
            parking: true,
            view_installed_at: Instant::ZERO,
            checkpoints_applied: 0,
            checkpoints_refused: 0,
            logged_open: HashMap::new(),
        }
    }

    /// A new replica's stack: silent (a backup) and taking no connection
    /// of its own until the first view. A packet still in flight from
    /// before a restart (a client's SYN, duplicated or late) would
    /// otherwise open a copy that never follows the stream, and a joiner
    /// holding it is never sent its snapshot (seed 23102).
    pub fn prepare_stack(stack: &mut Stack) {
        stack.set_role(Instant::ZERO, Role::Backup);
        stack.set_parking(Some(PARKING_LIMIT));
    }

    /// This replica's member id in the group.
    pub fn member(&self) -> u8 {
        self.me.0
    }

    /// The role the stack plays now: primary only once the view names us
    /// and the authority has confirmed our lease in it.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The epoch of the newest view adopted (0 before the first).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The control agent: the view as this member knows it, the lease,
    /// whether the group removed us.
    pub fn agent(&self) -> &MemberAgent {
        &self.agent
    }

    /// The ack channel's state: peers, gates, the delivery log, counters.
    pub fn replicator(&self) -> &Replicator {
        &self.replicator
    }

    /// A datagram from the redirector.
    pub fn on_control(&mut self, now: Instant, datagram: &[u8]) -> Result<(), ControlError> {
        self.agent.handle_datagram(now, datagram)
    }

    /// A frame from a peer replica.
    pub fn on_frame(&mut self, now: Instant, frame: &[u8]) -> Result<(), FrameError> {
        self.replicator.handle_frame(now, frame)
    }

    /// The ack channel saw `peer`'s side close its connection (its process
    /// most likely ended): report it now rather than after a silence.
    pub fn on_peer_closed(&mut self, now: Instant, peer: MemberId) {
        self.replicator.peer_closed(now, peer);
    }

    /// Keepalive timers and views: adopt a newer view (peers, role,
    /// takeover). Returns the new peers' ack-channel addresses when the view
    /// changed, for the transport.
    pub fn follow(
        &mut self,
        now: Instant,
        stack: &mut Stack,
    ) -> Option<Vec<(MemberId, SocketAddr)>> {
        self.agent.handle_timeout(now);
        self.answer_questions(stack);
        let view = self.agent.view()?;
        if view.epoch <= self.epoch {
            return None;
        }
        self.epoch = view.epoch;
        self.view_installed_at = now;
        stack.set_epoch(view.epoch);
        // Joining members too: the primary streams state to them.
        let peers = view
            .members
            .iter()
            .filter(|m| (m.alive || m.joining) && m.id != self.me.0)
            .map(|m| (MemberId(m.id), m.ack_addr))
            .collect();
        let epoch = view.epoch;
        let joining = view.is_joining(self.me.0);
        if joining != self.parking {
            self.parking = joining;
            stack.set_parking(joining.then_some(PARKING_LIMIT));
            tracing::info!(joining, "state transfer");
        }
        self.replicator
            .install_view(now, view.to_replication_view());
        // Checkpoints held from the old view first: a backup becoming
        // primary must be where the old primary's client-visible output was.
        self.apply_actions(now, stack);
        let role = if self.replicator.is_primary() {
            Role::Primary
        } else {
            Role::Backup
        };
        if role == Role::Primary {
            // Passive connections: bring every backup exactly to our state.
            for c in stack.full_checkpoints() {
                self.replicator.checkpoint(now, c.encode());
            }
        }
        if role == Role::Primary {
            // A new epoch starts a new log: "opened" entries that had not
            // committed are gone, and a backup that missed a SYN would never
            // learn of that connection. Log every connection again (sorted,
            // for replay); backups ignore the ones they have.
            for key in stack.connections() {
                // Only connections no replica can have closed yet: a closing
                // one logged again would be resurrected on a backup.
                let established = stack
                    .conn_info(key)
                    .is_some_and(|i| matches!(i.state, State::Established | State::CloseWait));
                if let (true, Some(record)) = (established, stack.open_record(key)) {
                    self.replicator.opened(now, key, record.encode());
                }
            }
        }
        match (role, self.role) {
            (Role::Primary, Role::Backup) => self.pending_promotion = true,
            (Role::Backup, Role::Primary) => {
                stack.set_role(now, Role::Backup);
                self.role = Role::Backup;
            }
            _ => {}
        }
        if role == Role::Backup {
            self.pending_promotion = false;
        }
        self.promote_when_leased(now, stack);
        tracing::info!(epoch, ?role, "view installed");
        Some(peers)
    }

    /// Tell the redirector which of the connections it asked about this
    /// replica holds: it lost its flow table (a restart, or another
    /// redirector took over) and finds each connection's group this way.
    fn answer_questions(&mut self, stack: &Stack) {
        let questions = self.agent.take_questions();
        if questions.is_empty() {
            return;
        }
        let held: Vec<ConnKey> = questions
            .into_iter()
            .filter(|&k| stack.conn_info(k).is_some_and(|i| i.state != State::Closed))
            .collect();
        if !held.is_empty() {
            self.agent.report_holds(&held);
        }
    }

    /// Give up this replica's place in the group: a primary hands its role
    /// to the next live member (and stays as a backup when `stay`), a backup
    /// with `stay == false` leaves. Output to clients stops now, before the
    /// authority hears of it, which is what lets the next view go out
    /// without waiting for a lease. False when there is nobody to hand to.
    pub fn resign(&mut self, now: Instant, stay: bool) -> bool {
        let Some(view) = self.agent.view() else {
            return false;
        };
        let others = view.live().any(|m| m.id != self.me.0);
        if !view.is_alive(self.me.0) || !others {
            return false;
        }
        tracing::info!(stay, role = ?self.role, "resigning");
        self.resign_started = Some(now);
        self.agent.resign(now, stay);
        true
    }

    /// A resignation is under way.
    pub fn resigning(&self) -> bool {
        self.resign_started.is_some()
    }

    /// A resignation the authority has not acted on within this long is
    /// given up: the replica serves on rather than leave the group silent.
    const RESIGN_TIMEOUT: stack::Duration = stack::Duration::from_millis(1000);

    fn check_resignation(&mut self, now: Instant) {
        let Some(started) = self.resign_started else {
            return;
        };
        if !self.agent.resigning() {
            self.resign_started = None;
        } else if now.saturating_since(started) >= Self::RESIGN_TIMEOUT {
            tracing::warn!("resignation not acted on in time: serving on");
            self.agent.cancel_resign();
            self.resign_started = None;
            self.resignations_cancelled += 1;
        }
    }

    /// Become the stack's primary once the authority has confirmed our lease
    /// in the new view (DESIGN rule 6: state first, then output).
    fn promote_when_leased(&mut self, now: Instant, stack: &mut Stack) {
        if !self.pending_promotion || !self.agent.lease_valid(now) {
            return;
        }
        // Wait (briefly) for every member's first confirmation in this
        // view: the window we advertise must be one they all promised,
        // and only they tell us what they promised.
        let waited = now.saturating_since(self.view_installed_at) >= Self::CONFIRMATION_WAIT;
        if !self.replicator.confirmed_by_all() && !waited {
            return;
        }
        self.pending_promotion = false;
        // The first view's primary starts the group; later it is a takeover.
        if self.epoch > 1 {
            tracing::warn!(epoch = self.epoch, "taking over as primary");
            self.failovers += 1;
        }
        stack.set_role(now, Role::Primary);
        self.role = Role::Primary;
        // The takeover gated every connection conservatively; where every
        // member has confirmed, gate on what they hold and promised.
        for (key, gate) in self.replicator.gates() {
            stack.adopt_gate(key, gate);
        }
    }

    /// How long a new primary waits for its members' first confirmations.
    const CONFIRMATION_WAIT: stack::Duration = stack::Duration::from_millis(30);

    /// A primary that sees the group's preferred primary live (caught up:
    /// the authority lists a rejoining member live only once it holds every
    /// connection) hands the role back by a deliberate handover, once per
    /// view: output stops first, so the next view needs no lease wait.
    fn hand_back_to_preferred(&mut self, now: Instant) {
        if self.role != Role::Primary || self.pending_promotion || self.resigning() {
            return;
        }
        let Some(view) = self.agent.view() else {
            return;
        };
        let (epoch, due) = (view.epoch, view.handback_due());
        let Some(preferred) = due else {
            return;
        };
        if preferred == self.me.0 || epoch == self.handback_epoch {
            return;
        }
        self.handback_epoch = epoch;
        if self.resign(now, true) {
            tracing::info!(
                preferred,
                epoch,
                "handing the primary role back to the preferred member"
            );
            self.handbacks += 1;
        }
    }

    /// After input: replication timers, then what the protocol decided.
    pub fn settle(&mut self, now: Instant, stack: &mut Stack) {
        self.check_resignation(now);
        self.hand_back_to_preferred(now);
        self.promote_when_leased(now, stack);
        self.replicator.handle_timeout(now);
        self.apply_actions(now, stack);
    }

    /// One event from the stack: received bytes to confirm to the group, a
    /// connection the primary logs as opened, a connection that closed.
    pub fn on_event(&mut self, now: Instant, stack: &mut Stack, event: Event) {
        match event {
            Event::Progress(key) => self.report_progress(now, stack, key),
            Event::Established(key) if self.replicator.is_primary() => {
                if let Some(record) = stack.open_record(key) {
                    self.replicator.opened(now, key, record.encode());
                }
            }
            Event::Closed(key) => {
                self.logged_open.remove(&key);
                self.replicator.closed(now, key);
            }
            _ => {}
        }
    }

    /// What the stack holds of `key` goes to the replicator (and whether
    /// the connection's application shares state with others).
    fn report_progress(&mut self, now: Instant, stack: &mut Stack, key: ConnKey) {
        let Some((held, edge, fin)) = stack.receive_progress(key) else {
            return;
        };
        // Asked of the stack once per connection, not on every segment.
        if !self.replicator.delivers_at_gate(key) && stack.is_independent(key) {
            self.replicator.deliver_at_gate(key);
        }
        let progress = Progress {
            held,
            edge,
            fin,
            beyond: stack.held_beyond(key),
        };
        self.replicator.local_progress(now, key, progress);
    }

    /// Once per turn after the stack's events: apply decisions, queue frames.
    pub fn after_events(&mut self, now: Instant, stack: &mut Stack) {
        self.apply_actions(now, stack);
        self.cut_checkpoints(now, stack);
        self.replicator.flush(now);
        // Actions from the flush (commits of a one-member group) apply now too.
        self.apply_actions(now, stack);
    }

    /// Primary: what passive applications did this turn goes to the backups.
    fn cut_checkpoints(&mut self, now: Instant, stack: &mut Stack) {
        if !self.replicator.is_primary() || !stack.has_passive_changes() {
            return;
        }
        let room = CHECKPOINT_BACKLOG.saturating_sub(self.replicator.checkpoint_backlog());
        if room == 0 {
            return;
        }
        for c in stack.take_checkpoints(room) {
            self.replicator.checkpoint(now, c.encode());
        }
    }

    fn apply_checkpoint(&mut self, now: Instant, stack: &mut Stack, bytes: &[u8]) {
        let applied = Checkpoint::decode(bytes)
            .map_err(|e| e.to_string())
            .and_then(|c| stack.apply_checkpoint(now, &c).map_err(|e| e.to_string()));
        match applied {
            Ok(()) => self.checkpoints_applied += 1,
            Err(e) => {
                self.checkpoints_refused += 1;
                tracing::debug!("checkpoint not applied: {e}");
            }
        }
    }

    fn apply_actions(&mut self, now: Instant, stack: &mut Stack) {
        while let Some(action) = self.replicator.poll_action() {
            match action {
                Action::Gate(key, gate) => stack.set_gate(key, Some(gate)),
                Action::SackAllowed(key, ranges) => stack.set_sack_allowed(key, ranges),
                Action::Deliver(key, upto) => stack.set_delivery_limit(key, Some(upto)),
                Action::RepairHalfOpen { to, key } => {
                    if let Some(record) = stack.half_open_record(key) {
                        self.replicator
                            .send_half_open(now, to, key, &record.encode());
                    }
                }
                Action::HalfOpen(key, record) => self.import_half_open(now, stack, key, &record),
                Action::Open(key, record) => match OpenRecord::decode(&record) {
                    Ok(r) => {
                        self.logged_open.insert(key, r.irs);
                        // A joining member takes connections by snapshot:
                        // made from this entry, its copy would start behind
                        // what the client was told the group holds, and no
                        // repair brings back bytes the primary's application
                        // has already read, so the copy, and the gate
                        // with it, would wait for ever (regression seed
                        // 62064).
                        if stack.conn_info(key).is_none() && !self.parking {
                            match stack.import_open(now, &r) {
                                Ok(_) => self.imported_connections += 1,
                                Err(stack::iface::ConnectError::Finished) => {}
                                Err(e) => {
                                    tracing::warn!(%key.remote, "cannot open logged connection: {e}")
                                }
                            }
                        } else if stack.complete_half_open(&r) {
                            tracing::debug!(%key.remote, "handshake completed from the primary's record");
                        }
                    }
                    Err(e) => tracing::warn!("bad opened record in the log: {e:?}"),
                },
                // The primary's connection ended: every byte both ways was
                // acknowledged (or it was reset). A backup's copy that is
                // still open missed the client's last packets; kept, it
                // would linger forever and be logged again as open by the
                // next primary (regression seed 59522).
                Action::Close(key) => {
                    let logged = self.logged_open.remove(&key);
                    let ours = stack.open_record(key).map(|r| r.irs);
                    if self.role != Role::Primary && logged.is_some() && ours == logged {
                        tracing::debug!(%key.remote, "closed by the primary: dropping our copy");
                        stack.abort(key);
                    }
                }
                Action::Repair { to, key, from, len } => {
                    if let Some(bytes) = stack.held_bytes(key, from, len as usize) {
                        self.replicator.send_fill(now, to, key, from, &bytes);
                    }
                }
                Action::Fill(key, seq, data) => stack.fill_received(key, seq, &data),
                Action::SendSnapshot { to, key } => {
                    if let Some(snapshot) = stack.snapshot(key) {
                        self.replicator.send_snapshot(now, to, &snapshot.encode());
                        // A passive connection's state blocks and exact
                        // position follow in the checkpoint stream.
                        if let Some(full) = stack.full_checkpoint(key) {
                            self.replicator
                                .checkpoint_for_joiner(now, to, full.encode());
                        }
                    }
                }
                Action::Import(bytes) => self.import(now, stack, &bytes),
                Action::JoinerReady(member) => {
                    tracing::info!(member = member.0, "joining member holds every connection");
                    self.agent.report_ready(member.0);
                }
                Action::PeerSuspected(member) => self.agent.report_failure(now, member.0),
                Action::ApplyCheckpoint(bytes) => self.apply_checkpoint(now, stack, &bytes),
                Action::CheckpointHeld(bytes) => match Checkpoint::decode_release(&bytes) {
                    Ok(release) => {
                        stack.release_checkpoint(release);
                        self.checkpoints_applied += 1;
                    }
                    Err(e) => tracing::warn!("bad checkpoint in our own log: {e}"),
                },
            }
        }
    }

    /// Joining: a connection's state from the primary. Its application
    /// resumes it (the stack offers it to the listener's `accept`).
    /// Backup: the primary's record of a connection whose SYN we lost.
    fn import_half_open(&mut self, now: Instant, stack: &mut Stack, key: ConnKey, bytes: &[u8]) {
        // A joining member takes connections by snapshot only.
        if self.parking || stack.conn_info(key).is_some() {
            return;
        }
        match OpenRecord::decode(bytes) {
            Ok(r) if r.key == key => match stack.import_half_open(now, &r) {
                Ok(_) => {
                    tracing::debug!(%key.remote, "half-open copy made from the primary's record")
                }
                Err(stack::iface::ConnectError::Finished) => {}
                Err(e) => tracing::warn!(%key.remote, "cannot make the half-open copy: {e}"),
            },
            Ok(_) => tracing::warn!(%key.remote, "half-open record names another connection"),
            Err(e) => tracing::warn!("bad half-open record: {e:?}"),
        }
    }

    fn import(&mut self, now: Instant, stack: &mut Stack, bytes: &[u8]) {
        let snapshot = match ConnSnapshot::decode(bytes) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("bad connection snapshot from the primary: {e}");
                return;
            }
        };
        let key = snapshot.key;
        if stack.conn_info(key).is_some() {
            return; // we have it (from its SYN, or an earlier snapshot)
        }
        let delivered = snapshot.delivery_limit;
        match stack.import(now, snapshot) {
            Ok(_) => {
                self.replicator.imported(key, delivered);
                self.imported_snapshots += 1;
                self.report_progress(now, stack, key);
            }
            Err(e) => tracing::warn!(%key.remote, "cannot import connection: {e}"),
        }
    }

    /// The next ack-channel frame to send, and the peer it goes to.
    pub fn poll_frame(&mut self) -> Option<(MemberId, Vec<u8>)> {
        self.replicator.poll_transmit()
    }

    /// The next datagram to send to the redirector's view authority.
    pub fn poll_control(&mut self) -> Option<Vec<u8>> {
        self.agent.poll_transmit()
    }

    /// When the logic next needs a turn with no input (keepalives,
    /// replication timers); `None` when nothing is pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.agent.poll_timeout(), self.replicator.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    //= docs/design.md rule 5
    //# Only the primary of the newest view sends to clients; a replica that loses its lease
    //# (no confirmation from the group within the timeout) stops sending.
    /// Whether the stack's output may go to clients now: only a primary
    /// whose lease is valid.
    pub fn may_transmit(&self, now: Instant) -> bool {
        self.role == Role::Primary && self.agent.lease_valid(now)
    }
}
