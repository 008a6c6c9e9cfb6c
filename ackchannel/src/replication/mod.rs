//! The ack channel's sans-IO core (DESIGN rules 2, 3, 4 and 6).
//!
//! Every replica reports its own in-order receive progress per connection
//! (`local_progress`). Backups send theirs to the primary as *confirmations*.
//! The primary gates each connection at the minimum over the live members
//! (ACK number and advertised right edge) and, as the sequencer, appends to
//! the *delivery log*: connection opened, client bytes up to N (FIN
//! included), connection closed. Backups acknowledge log positions; an entry
//! is *committed* once every live backup holds it, and only then does any
//! replica hand the bytes to its application. One exception shortens the
//! primary's path: a connection whose application keeps no state shared
//! with other connections ([`Replicator::deliver_at_gate`]) needs atomic
//! delivery but no order among connections, so once its opening is
//! committed the primary hands it what the gate passes (bytes every live
//! member holds) without waiting for the log entry to commit.
//!
//! Data entries are cumulative ("bytes up to N"), so a new primary can drop
//! the previous epoch's uncommitted tail and log again from what it holds:
//! nothing is delivered twice and nothing committed is lost.
//!
//! This file holds the [`Replicator`], its configuration, the views it
//! follows and the inputs from the local stack. The layers below it:
//!
//! - `log`: the delivery log's entries, append, commit and apply.
//! - `gating`: the primary's gates, fed by confirmations.
//! - `peers`: frames from peers, joining members, repairs of lost copies.
//! - `half_open`: repairs of lost handshakes (a backup without the SYN).
//! - `timers`: heartbeats, silence, and the frames each role sends.
//! - `frame`: the wire format of frame bodies.
//! - `checkpoints`: passive replication's checkpoint stream.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use hydra_base::{ConnKey, Duration, Gate, HeldBeyond, Instant, Seq};

use hydra_base::codec::DecodeError;

use crate::auth::{AuthError, Counter, GroupKey, ReplayGuard};

mod checkpoints;
mod frame;
mod gating;
mod half_open;
mod log;
mod peers;
mod timers;

use checkpoints::CheckpointStream;
pub use frame::MAX_FILL;
pub use log::Entry;
use peers::{Joiner, Peer};

/// A member of the group (the redirector's member id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(pub u8);

/// Epoch and live members in order: the first is the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationView {
    /// The view number, from the authority; frames of another epoch are refused.
    pub epoch: u64,
    /// The live members in order: the primary first, then the backups.
    pub members: Vec<MemberId>,
    /// Members catching up: the primary sends them every connection's
    /// state and gates on their confirmations, but they hold no log.
    pub joining: Vec<MemberId>,
}

/// The ack channel's timing and memory bounds.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    /// Send at least one frame to each peer this often.
    pub heartbeat_interval: Duration,
    /// A peer silent this long is suspected (reported to the authority).
    pub peer_timeout: Duration,
    /// Backups resend their whole confirmation state this often.
    pub full_confirm_interval: Duration,
    /// Uncommitted log entries the primary keeps at most (bounds memory).
    pub max_log: usize,
    /// Entries per frame at most.
    pub max_batch: usize,
    /// Connections tracked per peer at most.
    pub max_connections: usize,
    /// A backup whose progress on a connection stays behind ours this long
    /// lost a copy: the primary sends it the missing bytes.
    pub repair_after: Duration,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            heartbeat_interval: Duration::from_millis(10),
            peer_timeout: Duration::from_millis(100),
            full_confirm_interval: Duration::from_secs(1),
            max_log: 1 << 16,
            max_batch: 1024,
            max_connections: 1 << 17,
            repair_after: Duration::from_millis(20),
        }
    }
}

/// What the replica must do to its stack or tell the authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Primary: the connection may acknowledge and advertise up to this.
    Gate(ConnKey, Gate),
    /// Primary: the connection's SACK blocks may name these out-of-order
    /// ranges, which every live member holds.
    SackAllowed(ConnKey, HeldBeyond),
    /// The application may read client bytes before this sequence number.
    Deliver(ConnKey, Seq),
    /// Backup: a connection the log opened (encoded `OpenRecord`).
    Open(ConnKey, Vec<u8>),
    /// The log closed this connection.
    Close(ConnKey),
    /// A peer has been silent for the peer timeout.
    PeerSuspected(MemberId),
    /// Primary: backup `to` lacks our client bytes from `from` (at most
    /// `len`); read them from the stack and pass them to [`Replicator::send_fill`].
    Repair {
        /// The member that lacks the bytes: a backup or joining member, or
        /// the primary when it asked a backup for them.
        to: MemberId,
        /// The connection.
        key: ConnKey,
        /// The first sequence number it lacks.
        from: Seq,
        /// How many bytes at most (see [`MAX_FILL`]).
        len: u32,
    },
    /// Backup: client bytes the primary held for us (a lost copy).
    Fill(ConnKey, Seq, Vec<u8>),
    /// Primary: backup `to` has not confirmed `key` for a while (it may
    /// have lost the client's SYN); if the stack holds it half-open, pass
    /// its record to [`Replicator::send_half_open`].
    RepairHalfOpen {
        /// The backup.
        to: MemberId,
        /// The connection.
        key: ConnKey,
    },
    /// Backup: the primary's record of a half-open connection (encoded
    /// `OpenRecord`): make the copy our lost SYN would have made.
    HalfOpen(ConnKey, Vec<u8>),
    /// Primary: joining member `to` lacks this connection; snapshot it and
    /// pass the bytes to [`Replicator::send_snapshot`].
    SendSnapshot {
        /// The joining member.
        to: MemberId,
        /// The connection it lacks.
        key: ConnKey,
    },
    /// Joining member: a connection's encoded snapshot to import.
    Import(Vec<u8>),
    /// Primary: this joining member holds every connection; tell the authority.
    JoinerReady(MemberId),
    /// Backup (or a backup becoming primary): apply this passive-mode
    /// checkpoint of the primary's (encoded `Checkpoint`).
    ApplyCheckpoint(Vec<u8>),
    /// Primary: every backup holds this checkpoint: release its output.
    CheckpointHeld(Vec<u8>),
}

/// A member's receive progress on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Client bytes held in order up to here (the member's ACK number).
    pub held: Seq,
    /// The right edge of the window the member advertises.
    pub edge: Seq,
    /// The client's FIN is held too.
    pub fin: bool,
    /// Client bytes held out of order, beyond `held`: the primary's SACK
    /// blocks name only what every member holds.
    pub beyond: HeldBeyond,
}

impl Progress {
    /// Progress with nothing held out of order.
    pub fn in_order(held: Seq, edge: Seq, fin: bool) -> Progress {
        Progress {
            held,
            edge,
            fin,
            beyond: [None; 3],
        }
    }
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not sealed with the group key, or replayed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The body does not decode as its kind says.
    #[error(transparent)]
    Malformed(#[from] DecodeError),
    /// Sent in another epoch than ours: the sender and we disagree on the view.
    #[error("frame of epoch {got}, ours is {ours}")]
    Epoch {
        /// The frame's epoch.
        got: u64,
        /// Ours.
        ours: u64,
    },
    /// No view installed yet: we do not know who the members are.
    #[error("no view installed yet")]
    NoView,
    /// The sender is not live or joining in our view (or is us).
    #[error("member {0} is not live in this view")]
    NotMember(u8),
    /// A kind our role does not take from this sender (a log append at the
    /// primary, a confirmation at a backup).
    #[error("frame kind {0} not expected in our role")]
    Role(u8),
}

/// Counters for the operator and the tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicationStats {
    /// Frames queued for peers.
    pub frames_sent: u64,
    /// Frames taken.
    pub frames_received: u64,
    /// Frames refused as unauthenticated or replayed.
    pub refused_auth: u64,
    /// Frames refused as of another epoch.
    pub refused_epoch: u64,
    /// Frames refused for any other reason.
    pub refused_other: u64,
    /// Log entries appended (primary).
    pub entries_appended: u64,
    /// Log entries committed and applied here.
    pub entries_committed: u64,
    /// Gates moved (primary).
    pub gate_updates: u64,
    /// Deliveries at the gate, ahead of the log's commit (primary; see
    /// [`Replicator::deliver_at_gate`]).
    pub gate_deliveries: u64,
    /// Confirmations dropped because a peer reported too many connections.
    pub confirmations_dropped: u64,
    /// Lost copies repaired from the primary's buffer (primary: sent, backup: received).
    pub repairs: u64,
    /// Primary: requests to a backup for bytes the primary lost.
    pub fill_requests: u64,
    /// Connection snapshots for joining members (primary: sent, joiner: received).
    pub snapshots: u64,
    /// Half-open records for backups that lost a client's SYN (primary:
    /// sent, backup: received).
    pub half_open_repairs: u64,
}

/// One replica's end of the ack channel, sans IO: the stack's progress,
/// peers' frames and time go in ([`local_progress`](Self::local_progress),
/// [`handle_frame`](Self::handle_frame), [`handle_timeout`](Self::handle_timeout));
/// frames for peers ([`poll_transmit`](Self::poll_transmit)) and actions for
/// the stack and the authority ([`poll_action`](Self::poll_action)) come
/// out. Its role (primary, backup or joining member) follows from the
/// installed view.
#[derive(Debug)]
pub struct Replicator {
    me: MemberId,
    key: GroupKey,
    cfg: ReplicationConfig,
    counter: Counter,
    guard: ReplayGuard,
    view: Option<ReplicationView>,

    local: HashMap<ConnKey, Progress>,
    delivered: HashMap<ConnKey, Seq>,
    /// Connections whose application shares no state with others.
    independent: HashSet<ConnKey>,
    /// Connections whose opening is committed (or came by snapshot).
    open_committed: HashSet<ConnKey>,

    // Primary: gates issued, what the log covers, uncommitted entries, backups.
    gates: HashMap<ConnKey, Gate>,
    sack_allowed: HashMap<ConnKey, HeldBeyond>,
    logged: HashMap<ConnKey, Seq>,
    unlogged: BTreeSet<ConnKey>,
    log: VecDeque<(u64, Entry)>,
    next_index: u64,
    commit: u64,
    peers: HashMap<MemberId, Peer>,

    // Backup: entries held but not committed, confirmations to send.
    pending: VecDeque<(u64, Entry)>,
    received: u64,
    dirty: BTreeSet<ConnKey>,
    closing: Vec<ConnKey>,
    ack_dirty: bool,
    synced: bool,
    next_full_confirm: Instant,

    /// Primary: members catching up.
    joiners: HashMap<MemberId, Joiner>,
    /// Primary: commits to pass on to joining members (they get no log, but
    /// their applications must keep reading, or their windows would close).
    joiner_deliveries: Vec<(ConnKey, Seq)>,

    /// Passive replication's checkpoints, primary to backups.
    checkpoints: CheckpointStream,

    /// Primary: (backup, connection) -> (its held, since when), for repairs.
    behind: HashMap<(MemberId, ConnKey), (Seq, Instant)>,
    /// Primary: (backup, connection) it has not confirmed -> since when.
    unconfirmed: HashMap<(MemberId, ConnKey), Instant>,
    next_repair_check: Instant,

    last_heard: HashMap<MemberId, Instant>,
    last_sent: HashMap<MemberId, Instant>,
    outbox: VecDeque<(MemberId, Vec<u8>)>,
    actions: VecDeque<Action>,
    stats: ReplicationStats,
}

impl Replicator {
    /// Member `me`'s replicator, with no view yet; its frame counter starts at
    /// the wall clock.
    pub fn new(me: MemberId, key: GroupKey, cfg: ReplicationConfig) -> Replicator {
        Replicator::with_counter(me, key, cfg, Counter::from_clock())
    }

    /// A replicator whose frame counter starts at `counter` (deterministic
    /// simulation).
    pub fn with_counter(
        me: MemberId,
        key: GroupKey,
        cfg: ReplicationConfig,
        counter: Counter,
    ) -> Replicator {
        Replicator {
            me,
            key,
            cfg,
            counter,
            guard: ReplayGuard::default(),
            view: None,
            local: HashMap::new(),
            delivered: HashMap::new(),
            independent: HashSet::new(),
            open_committed: HashSet::new(),
            gates: HashMap::new(),
            sack_allowed: HashMap::new(),
            logged: HashMap::new(),
            unlogged: BTreeSet::new(),
            log: VecDeque::new(),
            next_index: 1,
            commit: 0,
            peers: HashMap::new(),
            pending: VecDeque::new(),
            received: 0,
            dirty: BTreeSet::new(),
            closing: Vec::new(),
            ack_dirty: false,
            synced: false,
            next_full_confirm: Instant::ZERO,
            joiners: HashMap::new(),
            joiner_deliveries: Vec::new(),
            checkpoints: CheckpointStream::default(),
            behind: HashMap::new(),
            unconfirmed: HashMap::new(),
            next_repair_check: Instant::ZERO,
            last_heard: HashMap::new(),
            last_sent: HashMap::new(),
            outbox: VecDeque::new(),
            actions: VecDeque::new(),
            stats: ReplicationStats::default(),
        }
    }

    /// Counters for the operator and the tests.
    pub fn stats(&self) -> &ReplicationStats {
        &self.stats
    }

    /// The installed view's epoch (0 before the first).
    pub fn epoch(&self) -> u64 {
        self.view.as_ref().map_or(0, |v| v.epoch)
    }

    pub(super) fn primary(&self) -> Option<MemberId> {
        self.view.as_ref().and_then(|v| v.members.first().copied())
    }

    /// This member is the primary of the installed view.
    pub fn is_primary(&self) -> bool {
        self.primary() == Some(self.me)
    }

    pub(super) fn backups(&self) -> Vec<MemberId> {
        self.view
            .as_ref()
            .map_or(Vec::new(), |v| v.members.iter().skip(1).copied().collect())
    }

    /// Log entries not yet held by every live backup (primary), or held
    /// here but not yet known committed (backup).
    pub fn uncommitted(&self) -> usize {
        self.log.len() + self.pending.len()
    }

    /// Per backup: log entries it still lacks (primary only).
    pub fn lag(&self) -> Vec<(MemberId, u64)> {
        let top = self.next_index - 1;
        let mut lag: Vec<(MemberId, u64)> = self
            .peers
            .iter()
            .map(|(id, p)| (*id, top - p.acked.min(top)))
            .collect();
        lag.sort();
        lag
    }

    /// Adopt a newer view. A new epoch starts a new log. A new primary
    /// first logs again, in their order, the old log's entries it held as a
    /// backup and had not applied: some may have been committed, and delivered, on
    /// a member that heard of the commit before the old primary died, and
    /// every member's applications must see one order of all connections'
    /// events (rule 3). Their bytes are held by every member of the new
    /// view: the old primary logged an entry only once all its members had
    /// confirmed them. Then it logs from what is held.
    pub fn install_view(&mut self, now: Instant, view: ReplicationView) {
        if view.epoch <= self.epoch() {
            return;
        }
        let was_primary = self.is_primary();
        let old_log = std::mem::take(&mut self.log);
        // What a backup holds of the old log and has not applied.
        let held = std::mem::take(&mut self.pending);
        // Closes the old log had not committed are logged again: the
        // connections are gone here and nothing else would log them, so the
        // backups' copies (which may have missed the client's last packets)
        // would linger for ever. Simulator seed 59522 exercises this.
        let closes: Vec<ConnKey> = old_log
            .iter()
            .filter(|_| was_primary)
            .filter_map(|(_, e)| match e {
                Entry::Closed { key } => Some(*key),
                _ => None,
            })
            .collect();
        self.view = Some(view);
        if !was_primary {
            // Gates of an earlier term as primary are stale: this one's come
            // from its members' confirmations.
            self.gates.clear();
        }
        // Which members hold what out of order is asked again.
        self.sack_allowed.clear();
        self.log.clear();
        self.pending.clear();
        self.next_index = 1;
        self.commit = 0;
        self.received = 0;
        self.logged = self.delivered.clone();
        self.unlogged.clear();
        self.synced = false;
        self.ack_dirty = true;
        self.dirty = self.local.keys().copied().collect();
        self.peers = self
            .backups()
            .into_iter()
            .map(|b| (b, Peer::new(now)))
            .collect();
        let primary = self.is_primary();
        // Joining members follow too: they must hold what the client may
        // see before they can be admitted.
        let followers: Vec<MemberId> = match &self.view {
            Some(v) if primary => v.members[1..].iter().chain(&v.joining).copied().collect(),
            _ => Vec::new(),
        };
        for record in self.checkpoints.reset(now, &followers, primary) {
            self.actions.push_back(Action::ApplyCheckpoint(record));
        }
        self.joiners = match &self.view {
            Some(v) if v.members.first() == Some(&self.me) => {
                v.joining.iter().map(|j| (*j, Joiner::default())).collect()
            }
            _ => HashMap::new(),
        };
        self.last_heard.clear();
        self.last_sent.clear();
        self.behind.clear();
        // Only peers we hear from: a backup never hears from other backups,
        // and a stale entry would make poll_timeout fire forever.
        for m in self.watched() {
            self.last_heard.insert(m, now);
        }
        if self.is_primary() && !was_primary {
            for (_, entry) in held {
                match entry {
                    Entry::Data { key, upto } => {
                        if self.logged.get(&key).is_none_or(|l| upto > *l) {
                            self.logged.insert(key, upto);
                            self.append(Entry::Data { key, upto });
                        }
                    }
                    Entry::Opened { .. } => self.append(entry),
                    Entry::Closed { .. } => {}
                }
            }
        }
        if self.is_primary() {
            // Sorted: the log's order must not depend on hash-map order
            // (a simulation replays a seed exactly).
            let mut keys: Vec<ConnKey> = self.local.keys().copied().collect();
            keys.sort_unstable();
            for key in keys {
                self.recompute(key);
            }
            for key in closes {
                if !self.local.contains_key(&key) {
                    self.append(Entry::Closed { key });
                }
            }
        }
        self.flush(now);
    }

    // ---- inputs from the local stack ----

    /// This replica's receive progress on a connection changed.
    pub fn local_progress(&mut self, now: Instant, key: ConnKey, p: Progress) {
        if self.local.get(&key) == Some(&p) {
            return;
        }
        self.local.insert(key, p);
        if self.is_primary() {
            self.recompute(key);
        } else {
            self.dirty.insert(key);
        }
        let _ = now;
    }

    /// This connection's application keeps no state shared with other
    /// connections (active replication, not an ordered listener): it needs
    /// every byte it reads held by every live member, not one order of all
    /// connections' events. Once its opening is committed, the primary
    /// delivers what the gate passes at once instead of when the log entry
    /// commits, which saves a round trip to the backups per request.
    /// Backups still deliver in log order.
    ///
    /// Why a failover loses nothing: the gate is the minimum over the live
    /// members' confirmed progress, so whichever backup takes over holds
    /// every byte delivered here, logs it again from what it holds, and its
    /// application (which sees the connection's bytes as a stream) produces
    /// the same output. The opening must be committed first: its record
    /// carries the options and timestamp base the new primary must use.
    pub fn deliver_at_gate(&mut self, key: ConnKey) {
        if self.independent.insert(key) && self.is_primary() {
            self.deliver_gate(key);
        }
    }

    /// Whether [`deliver_at_gate`](Self::deliver_at_gate) marked `key`
    /// (until the connection is gone).
    pub fn delivers_at_gate(&self, key: ConnKey) -> bool {
        self.independent.contains(&key)
    }

    /// Primary: a connection reached ESTABLISHED; log it (with its options).
    pub fn opened(&mut self, _now: Instant, key: ConnKey, record: Vec<u8>) {
        if self.is_primary() {
            self.append(Entry::Opened { key, record });
        }
    }

    /// The connection is gone from the local stack.
    pub fn closed(&mut self, _now: Instant, key: ConnKey) {
        if self.is_primary() {
            self.append(Entry::Closed { key });
            self.forget(key);
        } else {
            // Its last confirmation (the FIN) still goes out with the next flush.
            self.closing.push(key);
        }
    }

    /// Primary: a passive-mode checkpoint (encoded), to be held by every
    /// backup before its output may be shown ([`Action::CheckpointHeld`]).
    pub fn checkpoint(&mut self, _now: Instant, record: Vec<u8>) {
        if !self.is_primary() {
            return;
        }
        for held in self.checkpoints.append(record) {
            self.actions.push_back(Action::CheckpointHeld(held));
        }
    }

    /// Primary: the gate of every connection that has one, in key order.
    pub fn gates(&self) -> Vec<(ConnKey, Gate)> {
        let mut v: Vec<(ConnKey, Gate)> = self.gates.iter().map(|(k, g)| (*k, *g)).collect();
        v.sort_unstable_by_key(|(k, _)| *k);
        v
    }

    /// Primary: every backup and joining member has confirmed in this view.
    pub fn confirmed_by_all(&self) -> bool {
        self.peers.values().all(|p| p.complete) && self.joiners.values().all(|j| j.synced)
    }

    /// Primary: a full checkpoint of a passive connection just sent to
    /// joining member `to` by snapshot; it is admitted only once it has
    /// applied it.
    pub fn checkpoint_for_joiner(&mut self, now: Instant, to: MemberId, record: Vec<u8>) {
        self.checkpoint(now, record);
        let last = self.checkpoints.last_index();
        if let Some(j) = self.joiners.get_mut(&to) {
            j.must_apply = j.must_apply.max(last);
        }
    }

    /// Primary: bytes of checkpoints not yet held by every backup.
    pub fn checkpoint_backlog(&self) -> usize {
        self.checkpoints.backlog()
    }

    pub(super) fn forget(&mut self, key: ConnKey) {
        self.local.remove(&key);
        // A new connection with the same addresses waits for its own
        // opening to commit.
        self.independent.remove(&key);
        self.open_committed.remove(&key);
        self.gates.remove(&key);
        self.sack_allowed.remove(&key);
        self.logged.remove(&key);
        self.unlogged.remove(&key);
        self.dirty.remove(&key);
        for p in self.peers.values_mut() {
            p.confirmed.remove(&key);
        }
        for j in self.joiners.values_mut() {
            j.confirmed.remove(&key);
            j.sent.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests;
