//! The ack channel's sans-IO core (DESIGN rules 2, 3, 4 and 6).
//!
//! Every replica reports its own in-order receive progress per connection
//! (`local_progress`). Backups send theirs to the primary as *confirmations*.
//! The primary gates each connection at the minimum over the live members
//! (ACK number and advertised right edge) and, as the sequencer, appends to
//! the *delivery log*: connection opened, client bytes up to N (FIN
//! included), connection closed. Backups acknowledge log positions; an entry
//! is *committed* once every live backup holds it, and only then does any
//! replica (the primary too) hand the bytes to its application.
//!
//! Data entries are cumulative ("bytes up to N"), so a new primary can drop
//! the previous epoch's uncommitted tail and log again from what it holds:
//! nothing is delivered twice and nothing committed is lost.

use std::collections::{BTreeSet, HashMap, VecDeque};

use hydra_base::Gate;
use hydra_base::Seq;
use hydra_base::{ConnKey, Duration, Instant};

use crate::auth::{
    self, put_addr, AuthError, Counter, GroupKey, Header, Malformed, Reader, ReplayGuard,
};

mod checkpoints;
use checkpoints::CheckpointStream;

const DOMAIN: &[u8] = b"hydra ackchannel v1";
const KIND_APPEND: u8 = 1;
const KIND_CONFIRM: u8 = 2;
const KIND_FILL: u8 = 3;
const KIND_SNAPSHOT: u8 = 4;
const KIND_DELIVER: u8 = 5;
const KIND_CHECKPOINT: u8 = 6;
const KIND_CHECKPOINT_ACK: u8 = 7;
/// A confirmation that lists every connection the sender holds.
const KIND_CONFIRM_ALL: u8 = 8;
/// Primary to a backup: send me the client bytes from here (a copy the
/// primary lost that a backup holds; otherwise only the client's
/// retransmission, maybe after its RTO, would bring them).
const KIND_FILL_REQUEST: u8 = 9;
/// Append flag: the backup should confirm every connection it holds.
const FLAG_SEND_ALL: u8 = 1;
/// Client bytes sent in one repair at most.
pub const MAX_FILL: usize = 32 * 1024;

const ENTRY_OPENED: u8 = 1;
const ENTRY_DATA: u8 = 2;
const ENTRY_CLOSED: u8 = 3;

/// A member of the group (the redirector's member id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(pub u8);

/// Epoch and live members in order: the first is the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationView {
    pub epoch: u64,
    pub members: Vec<MemberId>,
    /// Members catching up: the primary sends them every connection's
    /// state and gates on their confirmations, but they hold no log.
    pub joining: Vec<MemberId>,
}

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
        to: MemberId,
        key: ConnKey,
        from: Seq,
        len: u32,
    },
    /// Backup: client bytes the primary held for us (a lost copy).
    Fill(ConnKey, Seq, Vec<u8>),
    /// Primary: joining member `to` lacks this connection; snapshot it and
    /// pass the bytes to [`Replicator::send_snapshot`].
    SendSnapshot { to: MemberId, key: ConnKey },
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

/// One delivery-log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Opened { key: ConnKey, record: Vec<u8> },
    Data { key: ConnKey, upto: Seq },
    Closed { key: ConnKey },
}

/// A member's in-order receive progress on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub held: Seq,
    pub edge: Seq,
    pub fin: bool,
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Malformed(#[from] Malformed),
    #[error("frame of epoch {got}, ours is {ours}")]
    Epoch { got: u64, ours: u64 },
    #[error("no view installed yet")]
    NoView,
    #[error("member {0} is not live in this view")]
    NotMember(u8),
    #[error("frame kind {0} not expected in our role")]
    Role(u8),
}

/// Counters for the operator and the tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicationStats {
    pub frames_sent: u64,
    pub frames_received: u64,
    pub refused_auth: u64,
    pub refused_epoch: u64,
    pub refused_other: u64,
    pub entries_appended: u64,
    pub entries_committed: u64,
    pub gate_updates: u64,
    /// Confirmations dropped because a peer reported too many connections.
    pub confirmations_dropped: u64,
    /// Lost copies repaired from the primary's buffer (primary: sent, backup: received).
    pub repairs: u64,
    /// Primary: requests to a backup for bytes the primary lost.
    pub fill_requests: u64,
    /// Connection snapshots for joining members (primary: sent, joiner: received).
    pub snapshots: u64,
}

/// Primary's view of a member catching up.
#[derive(Debug, Clone, Default)]
struct Joiner {
    /// It has confirmed in this epoch: its first frame lists every
    /// connection it holds (a joiner may hold some from an earlier epoch).
    synced: bool,
    confirmed: HashMap<ConnKey, Progress>,
    /// When each connection's snapshot was last sent.
    sent: HashMap<ConnKey, Instant>,
    ready_reported: bool,
    /// Passive connections: it must have applied the checkpoint stream up
    /// to here (the full checkpoints that follow its snapshots).
    must_apply: u64,
}

/// Snapshots sent per timer turn at most (a burst of a thousand would
/// crowd the ack channel).
const SNAPSHOTS_PER_TURN: usize = 256;

#[derive(Debug, Clone)]
struct Peer {
    /// Highest log index the backup holds.
    acked: u64,
    /// Highest log index sent to it.
    sent: u64,
    commit_sent: u64,
    last_progress: Instant,
    /// Last time it was caught up or its acknowledgement moved.
    acked_at: Instant,
    /// It has confirmed in this epoch (so it saw the view).
    synced: bool,
    /// It has listed every connection it holds in this epoch.
    complete: bool,
    confirmed: HashMap<ConnKey, Progress>,
}

impl Peer {
    fn new(now: Instant) -> Peer {
        Peer {
            acked: 0,
            sent: 0,
            commit_sent: 0,
            last_progress: now,
            acked_at: now,
            synced: false,
            complete: false,
            confirmed: HashMap::new(),
        }
    }
}

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

    // Primary: gates issued, what the log covers, uncommitted entries, backups.
    gates: HashMap<ConnKey, Gate>,
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
    next_repair_check: Instant,

    last_heard: HashMap<MemberId, Instant>,
    last_sent: HashMap<MemberId, Instant>,
    outbox: VecDeque<(MemberId, Vec<u8>)>,
    actions: VecDeque<Action>,
    stats: ReplicationStats,
}

impl Replicator {
    pub fn new(me: MemberId, key: GroupKey, cfg: ReplicationConfig) -> Replicator {
        Replicator::with_counter(me, key, cfg, Counter::from_clock())
    }

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
            gates: HashMap::new(),
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
            next_repair_check: Instant::ZERO,
            last_heard: HashMap::new(),
            last_sent: HashMap::new(),
            outbox: VecDeque::new(),
            actions: VecDeque::new(),
            stats: ReplicationStats::default(),
        }
    }

    pub fn stats(&self) -> &ReplicationStats {
        &self.stats
    }

    pub fn epoch(&self) -> u64 {
        self.view.as_ref().map_or(0, |v| v.epoch)
    }

    fn primary(&self) -> Option<MemberId> {
        self.view.as_ref().and_then(|v| v.members.first().copied())
    }

    pub fn is_primary(&self) -> bool {
        self.primary() == Some(self.me)
    }

    fn backups(&self) -> Vec<MemberId> {
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
        // Closes the old log had not committed: the connections are gone
        // here and nothing would log them again, so the backups' copies
        // (which may have missed the client's last packets) would linger
        // for ever (seed 59522).
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

    /// This replica's in-order progress on a connection changed.
    pub fn local_progress(&mut self, now: Instant, key: ConnKey, held: Seq, edge: Seq, fin: bool) {
        let p = Progress { held, edge, fin };
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

    fn forget(&mut self, key: ConnKey) {
        self.local.remove(&key);
        self.gates.remove(&key);
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

    // ---- primary: gating and the log ----

    fn recompute(&mut self, key: ConnKey) {
        let Some(mine) = self.local.get(&key).copied() else {
            return;
        };
        let (mut ack, mut edge) = (mine.held, mine.edge);
        for b in self.backups() {
            match self.peers.get(&b).and_then(|p| p.confirmed.get(&key)) {
                Some(p) => {
                    ack = ack.min(p.held);
                    edge = edge.min(p.edge);
                }
                // A backup that has not confirmed holds nothing we know of.
                None => return,
            }
        }
        // A joining member counts from its snapshot on: the gate never
        // passes what it holds, so nothing it lacks can be delivered (and
        // leave the primary's buffer) before it catches up. Before the
        // snapshot is sent the gate moves without it: the snapshot will
        // hold everything up to the gate of that moment.
        // Once we have reported it ready it may be admitted any moment, and
        // a member gets no snapshots: from then on it counts like a backup.
        for j in self.joiners.values() {
            match j.confirmed.get(&key) {
                Some(p) => {
                    ack = ack.min(p.held);
                    edge = edge.min(p.edge);
                }
                None if !j.synced || j.ready_reported || j.sent.contains_key(&key) => return,
                None => {}
            }
        }
        // Monotonic: an earlier gate was the minimum over a superset of
        // today's live members, so it still holds.
        let gate = match self.gates.get(&key) {
            Some(g) => Gate {
                ack: g.ack.max(ack),
                right_edge: g.right_edge.max(edge),
            },
            None => Gate {
                ack,
                right_edge: edge,
            },
        };
        if self.gates.get(&key) != Some(&gate) {
            self.gates.insert(key, gate);
            self.stats.gate_updates += 1;
            self.actions.push_back(Action::Gate(key, gate));
        }
        if self.logged.get(&key).is_none_or(|l| gate.ack > *l) {
            if self.log.len() >= self.cfg.max_log {
                self.unlogged.insert(key);
                return;
            }
            self.logged.insert(key, gate.ack);
            self.append(Entry::Data {
                key,
                upto: gate.ack,
            });
        }
    }

    fn append(&mut self, entry: Entry) {
        let index = self.next_index;
        self.next_index += 1;
        self.log.push_back((index, entry));
        self.stats.entries_appended += 1;
        self.advance_commit();
    }

    fn advance_commit(&mut self) {
        let top = self.next_index - 1;
        let stable = self
            .peers
            .values()
            .map(|p| p.acked)
            .min()
            .unwrap_or(top)
            .min(top);
        while self.commit < stable {
            let Some((index, entry)) = self.log.pop_front() else {
                break;
            };
            self.commit = index;
            self.apply(entry);
        }
        // Room in the log again: log what had to wait.
        if !self.unlogged.is_empty() && self.log.len() < self.cfg.max_log / 2 {
            let waiting: Vec<ConnKey> = std::mem::take(&mut self.unlogged).into_iter().collect();
            for key in waiting {
                self.recompute(key);
            }
        }
    }

    /// A committed entry takes effect on this replica.
    fn apply(&mut self, entry: Entry) {
        self.stats.entries_committed += 1;
        match entry {
            Entry::Opened { key, record } => {
                if !self.is_primary() {
                    self.actions.push_back(Action::Open(key, record));
                }
            }
            Entry::Data { key, upto } => {
                if self.delivered.get(&key).is_none_or(|d| upto > *d) {
                    self.delivered.insert(key, upto);
                    self.actions.push_back(Action::Deliver(key, upto));
                    if !self.joiners.is_empty() {
                        self.joiner_deliveries.push((key, upto));
                    }
                }
            }
            Entry::Closed { key } => {
                self.delivered.remove(&key);
                self.actions.push_back(Action::Close(key));
            }
        }
    }

    // ---- frames from peers ----

    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> Result<(), FrameError> {
        let result = self.handle_inner(now, frame);
        match &result {
            Ok(()) => self.stats.frames_received += 1,
            Err(FrameError::Auth(_)) => self.stats.refused_auth += 1,
            Err(FrameError::Epoch { .. }) => self.stats.refused_epoch += 1,
            Err(_) => self.stats.refused_other += 1,
        }
        result
    }

    fn handle_inner(&mut self, now: Instant, frame: &[u8]) -> Result<(), FrameError> {
        let (header, body) = auth::open(&self.key, DOMAIN, frame)?;
        self.guard.check(&header)?;
        let view = self.view.as_ref().ok_or(FrameError::NoView)?;
        if header.epoch != view.epoch {
            return Err(FrameError::Epoch {
                got: header.epoch,
                ours: view.epoch,
            });
        }
        let sender = MemberId(header.sender);
        if sender == self.me || !(view.members.contains(&sender) || view.joining.contains(&sender))
        {
            return Err(FrameError::NotMember(header.sender));
        }
        let from_primary = view.members.first() == Some(&sender);
        let mut r = Reader::new(body);
        match header.kind {
            KIND_APPEND if from_primary && !self.is_primary() => {
                let commit = r.u64()?;
                let flags = r.u8()?;
                let entries = decode_entries(&mut r)?;
                self.last_heard.insert(sender, now);
                if flags & FLAG_SEND_ALL != 0 {
                    self.dirty.extend(self.local.keys().copied());
                }
                self.on_append(commit, entries);
            }
            KIND_FILL_REQUEST if from_primary && !self.is_primary() => {
                let key = get_key(&mut r)?;
                let from = Seq(r.u32()?);
                let len = r.u32()?;
                if len as usize > MAX_FILL || !r.is_empty() {
                    return Err(Malformed.into());
                }
                self.last_heard.insert(sender, now);
                self.actions.push_back(Action::Repair {
                    to: sender,
                    key,
                    from,
                    len,
                });
            }
            KIND_FILL
                if (from_primary && !self.is_primary())
                    || (self.is_primary() && self.peers.contains_key(&sender)) =>
            {
                let key = get_key(&mut r)?;
                let seq = Seq(r.u32()?);
                let len = r.u32()? as usize;
                if len > MAX_FILL {
                    return Err(Malformed.into());
                }
                let data = r.take(len)?.to_vec();
                if !r.is_empty() {
                    return Err(Malformed.into());
                }
                self.last_heard.insert(sender, now);
                if !self.is_primary() {
                    self.synced = true;
                }
                self.stats.repairs += 1;
                self.actions.push_back(Action::Fill(key, seq, data));
            }
            KIND_CONFIRM | KIND_CONFIRM_ALL if self.is_primary() => {
                let acked = r.u64()?;
                let confirms = decode_confirms(&mut r)?;
                self.last_heard.insert(sender, now);
                if self.joiners.contains_key(&sender) {
                    let complete = header.kind == KIND_CONFIRM_ALL;
                    self.on_joiner_confirm(sender, confirms, complete);
                } else {
                    if let Some(p) = self.peers.get_mut(&sender) {
                        p.complete |= header.kind == KIND_CONFIRM_ALL;
                    }
                    self.on_confirm(now, sender, acked, confirms);
                }
            }
            KIND_DELIVER if from_primary && !self.is_primary() => {
                let n = r.u32()? as usize;
                let mut notes = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    notes.push((get_key(&mut r)?, Seq(r.u32()?)));
                }
                if !r.is_empty() {
                    return Err(Malformed.into());
                }
                self.last_heard.insert(sender, now);
                for (key, upto) in notes {
                    if self.delivered.get(&key).is_none_or(|d| upto > *d) {
                        self.delivered.insert(key, upto);
                        self.actions.push_back(Action::Deliver(key, upto));
                    }
                }
            }
            KIND_CHECKPOINT if from_primary && !self.is_primary() => {
                self.last_heard.insert(sender, now);
                self.synced = true;
                for record in self.checkpoints.on_frame(&mut r)? {
                    self.actions.push_back(Action::ApplyCheckpoint(record));
                }
            }
            KIND_CHECKPOINT_ACK if self.is_primary() => {
                let received = r.u64()?;
                let applied = r.u64()?;
                if !r.is_empty() {
                    return Err(Malformed.into());
                }
                self.last_heard.insert(sender, now);
                for held in self.checkpoints.on_ack(now, sender, received, applied) {
                    self.actions.push_back(Action::CheckpointHeld(held));
                }
            }
            KIND_SNAPSHOT if from_primary && !self.is_primary() => {
                self.last_heard.insert(sender, now);
                self.synced = true;
                self.stats.snapshots += 1;
                self.actions.push_back(Action::Import(r.rest().to_vec()));
            }
            kind => return Err(FrameError::Role(kind)),
        }
        Ok(())
    }

    fn on_append(&mut self, commit: u64, entries: Vec<(u64, Entry)>) {
        self.synced = true;
        for (index, entry) in entries {
            if index <= self.received {
                continue; // already held
            }
            if index != self.received + 1 || self.pending.len() >= self.cfg.max_log {
                break; // a gap or no room: the primary sends again from our ack
            }
            self.pending.push_back((index, entry));
            self.received = index;
        }
        self.ack_dirty = true;
        let stable = commit.min(self.received);
        while self.pending.front().is_some_and(|(i, _)| *i <= stable) {
            let (index, entry) = self.pending.pop_front().expect("checked");
            self.commit = index;
            self.apply(entry);
        }
    }

    fn on_confirm(
        &mut self,
        now: Instant,
        sender: MemberId,
        acked: u64,
        confirms: Vec<(ConnKey, Progress)>,
    ) {
        let top = self.next_index - 1;
        let max_connections = self.cfg.max_connections;
        let Some(peer) = self.peers.get_mut(&sender) else {
            return;
        };
        if !peer.synced {
            peer.synced = true;
            peer.sent = acked.min(top);
        }
        if acked > peer.acked {
            peer.acked = acked.min(top);
            peer.last_progress = now;
            peer.acked_at = now;
        }
        let mut changed = Vec::with_capacity(confirms.len());
        for (key, progress) in confirms {
            if peer.confirmed.len() >= max_connections && !peer.confirmed.contains_key(&key) {
                self.stats.confirmations_dropped += 1;
                continue;
            }
            peer.confirmed.insert(key, progress);
            changed.push(key);
        }
        for key in changed {
            self.recompute(key);
        }
        self.advance_commit();
    }

    /// A joining member's confirmations; `complete` when, with the frames
    /// before, they list every connection it holds: only then are the
    /// connections it does not list known to be missing there.
    fn on_joiner_confirm(
        &mut self,
        sender: MemberId,
        confirms: Vec<(ConnKey, Progress)>,
        complete: bool,
    ) {
        let max_connections = self.cfg.max_connections;
        let Some(j) = self.joiners.get_mut(&sender) else {
            return;
        };
        let first = complete && !j.synced;
        j.synced |= complete;
        let mut changed = Vec::with_capacity(confirms.len());
        for (key, progress) in confirms {
            // Only connections we have: a joiner may still hold closed ones.
            if !self.local.contains_key(&key)
                || (j.confirmed.len() >= max_connections && !j.confirmed.contains_key(&key))
            {
                continue;
            }
            j.confirmed.insert(key, progress);
            changed.push(key);
        }
        if first {
            // Connections it does not hold no longer wait for it.
            changed = self.local.keys().copied().collect();
            changed.sort_unstable();
        }
        for key in changed {
            self.recompute(key);
        }
    }

    /// A joining member sent a connection's state it imported: it will
    /// confirm it. Which connections it still lacks, and whether it holds
    /// them all (then the authority may admit it).
    fn feed_joiners(&mut self, now: Instant) {
        let resend_after = self.cfg.repair_after.saturating_mul(5);
        let mut keys: Vec<ConnKey> = self.local.keys().copied().collect();
        keys.sort_unstable();
        let mut ids: Vec<MemberId> = self.joiners.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let j = self.joiners.get_mut(&id).expect("listed");
            let mut budget = SNAPSHOTS_PER_TURN;
            let mut missing = 0;
            for key in &keys {
                if let Some(p) = j.confirmed.get(key) {
                    // Held, and everything acknowledged to the client too
                    // (a copy lost to it is repaired first).
                    if self.gates.get(key).is_some_and(|g| p.held < g.ack) {
                        missing += 1;
                    }
                    continue;
                }
                missing += 1;
                let due = j
                    .sent
                    .get(key)
                    .is_none_or(|t| now.saturating_since(*t) >= resend_after);
                if due && budget > 0 {
                    budget -= 1;
                    j.sent.insert(*key, now);
                    self.actions
                        .push_back(Action::SendSnapshot { to: id, key: *key });
                }
            }
            let applied = self.checkpoints.applied_by(id) >= j.must_apply;
            if missing == 0 && applied && !j.ready_reported {
                j.ready_reported = true;
                self.actions.push_back(Action::JoinerReady(id));
            }
        }
    }

    /// Primary: send a joining member a connection's encoded snapshot
    /// (after [`Action::SendSnapshot`]).
    pub fn send_snapshot(&mut self, now: Instant, to: MemberId, snapshot: &[u8]) {
        if !self.is_primary() || !self.joiners.contains_key(&to) {
            return;
        }
        self.stats.snapshots += 1;
        self.send(now, to, KIND_SNAPSHOT, snapshot);
    }

    /// Joining member: a connection arrived by snapshot; the application
    /// has been given everything before `delivered`.
    pub fn imported(&mut self, key: ConnKey, delivered: Option<Seq>) {
        match (self.delivered.get(&key).copied(), delivered) {
            // Commits the primary passed on before the snapshot arrived.
            (Some(known), Some(d)) if known > d => {
                self.actions.push_back(Action::Deliver(key, known));
            }
            (_, Some(d)) => {
                self.delivered.insert(key, d);
            }
            _ => {}
        }
    }

    /// The transport saw `peer`'s side close our connection to it: its
    /// process has most likely ended. A peer this member watches (the
    /// primary, or the primary's backups) is reported at once instead of
    /// after [`ReplicationConfig::peer_timeout`] of silence; the authority
    /// still checks the report against its own keepalives and waits out
    /// the peer's lease, so a wrong report cannot make two primaries.
    pub fn peer_closed(&mut self, now: Instant, peer: MemberId) {
        if self.view.is_none() || !self.watched().contains(&peer) {
            return;
        }
        tracing::warn!(peer = peer.0, "peer closed its ack-channel connection");
        self.actions.push_back(Action::PeerSuspected(peer));
        // A silence report only after another full timeout.
        self.last_heard.insert(peer, now);
    }

    // ---- time and output ----

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.view.is_none() {
            return;
        }
        for peer in self.watched() {
            let heard = self.last_heard.get(&peer).copied().unwrap_or(now);
            if now.saturating_since(heard) >= self.cfg.peer_timeout {
                tracing::warn!(
                    peer = peer.0,
                    silent_ms = now.saturating_since(heard).total_millis(),
                    "peer silent"
                );
                self.actions.push_back(Action::PeerSuspected(peer));
                self.last_heard.insert(peer, now); // report again after another timeout
            }
        }
        if self.is_primary() && now >= self.next_repair_check {
            self.next_repair_check = now + self.cfg.heartbeat_interval;
            self.find_lost_copies(now);
            self.feed_joiners(now);
        }
        if self.is_primary() {
            // Go back: a backup that stopped acknowledging gets the tail again.
            let stall = self.cfg.heartbeat_interval.saturating_mul(4);
            self.checkpoints.go_back(now, stall);
            let top = self.next_index - 1;
            let mut lagging = Vec::new();
            for (id, p) in self.peers.iter_mut() {
                if p.acked < p.sent && now.saturating_since(p.last_progress) >= stall {
                    p.sent = p.acked;
                    p.last_progress = now;
                }
                // A backup that confirms but never takes the log (it hears
                // us not, we hear it: a one-way cut) holds every commit
                // back: report it like a silent one.
                if p.acked >= top {
                    p.acked_at = now;
                } else if now.saturating_since(p.acked_at) >= self.cfg.peer_timeout {
                    tracing::warn!(
                        peer = id.0,
                        acked = p.acked,
                        top,
                        "backup's log acknowledgements stalled"
                    );
                    p.acked_at = now;
                    lagging.push(*id);
                }
            }
            lagging.sort_unstable();
            for id in lagging {
                self.actions.push_back(Action::PeerSuspected(id));
            }
        } else if now >= self.next_full_confirm || !self.synced || self.is_joining() {
            // Until the primary shows it is in our epoch, or now and then
            // anyway, send everything: it may have refused earlier frames.
            if now >= self.next_full_confirm || self.heartbeat_due(now) {
                self.dirty.extend(self.local.keys().copied());
                self.next_full_confirm = now + self.cfg.full_confirm_interval;
            }
        }
        self.flush(now);
    }

    /// A backup stuck behind us on a connection lost a copy of a client
    /// segment; rather than leave it to the client's retransmission timeout,
    /// ask the stack for the bytes (we hold them: nothing past the gate has
    /// been delivered) and send them over.
    fn find_lost_copies(&mut self, now: Instant) {
        let mut seen = std::collections::HashSet::new();
        let mut ids: Vec<MemberId> = self
            .peers
            .keys()
            .chain(self.joiners.keys())
            .copied()
            .collect();
        ids.sort_unstable();
        for id in &ids {
            let confirmed = match self.peers.get(id) {
                Some(p) => &p.confirmed,
                None => &self.joiners[id].confirmed,
            };
            let mut keys: Vec<&ConnKey> = confirmed.keys().collect();
            keys.sort_unstable();
            for key in keys {
                let theirs = &confirmed[key];
                let Some(mine) = self.local.get(key) else {
                    continue;
                };
                if theirs.held >= mine.held {
                    continue;
                }
                seen.insert((*id, *key));
                match self.behind.get_mut(&(*id, *key)) {
                    Some((held, since)) if *held == theirs.held => {
                        if now.saturating_since(*since) >= self.cfg.repair_after {
                            *since = now;
                            self.actions.push_back(Action::Repair {
                                to: *id,
                                key: *key,
                                from: theirs.held,
                                len: mine.held.since(theirs.held).min(MAX_FILL as u32),
                            });
                        }
                    }
                    _ => {
                        self.behind.insert((*id, *key), (theirs.held, now));
                    }
                }
            }
        }
        self.fetch_own_lost_copies(now, &mut seen);
        self.behind.retain(|k, _| seen.contains(k));
    }

    /// Primary: a connection where a backup holds in order bytes we lack
    /// (our copy was lost on our link): ask the backup that holds the most
    /// for them, as we repair theirs. The client need not retransmit, and a
    /// gap we reported in SACK blocks is filled before it matters.
    fn fetch_own_lost_copies(
        &mut self,
        now: Instant,
        seen: &mut std::collections::HashSet<(MemberId, ConnKey)>,
    ) {
        let mut keys: Vec<ConnKey> = self.local.keys().copied().collect();
        keys.sort_unstable();
        let me = self.me;
        for key in keys {
            let mine = self.local[&key].held;
            let best = self
                .backups()
                .into_iter()
                .filter_map(|b| Some((b, self.peers.get(&b)?.confirmed.get(&key)?.held)))
                .filter(|(_, held)| *held > mine)
                .max_by_key(|(b, held)| (*held, std::cmp::Reverse(*b)));
            let Some((from_member, theirs)) = best else {
                continue;
            };
            seen.insert((me, key));
            match self.behind.get_mut(&(me, key)) {
                Some((held, since)) if *held == mine => {
                    if now.saturating_since(*since) >= self.cfg.repair_after {
                        *since = now;
                        let mut body = Vec::with_capacity(20);
                        put_key(&mut body, &key);
                        body.extend_from_slice(&mine.0.to_be_bytes());
                        let len = theirs.since(mine).min(MAX_FILL as u32);
                        body.extend_from_slice(&len.to_be_bytes());
                        self.stats.fill_requests += 1;
                        self.send(now, from_member, KIND_FILL_REQUEST, &body);
                    }
                }
                _ => {
                    self.behind.insert((me, key), (mine, now));
                }
            }
        }
    }

    /// Send the client bytes a member lacks (after [`Action::Repair`]): the
    /// primary to a backup, or a backup to the primary that asked for them.
    pub fn send_fill(&mut self, now: Instant, to: MemberId, key: ConnKey, from: Seq, data: &[u8]) {
        // The primary repairs its members; a backup answers the primary's request.
        if data.is_empty() || !(self.is_primary() || self.primary() == Some(to)) {
            return;
        }
        let data = &data[..data.len().min(MAX_FILL)];
        let mut body = Vec::with_capacity(24 + data.len());
        put_key(&mut body, &key);
        body.extend_from_slice(&from.0.to_be_bytes());
        body.extend_from_slice(&(data.len() as u32).to_be_bytes());
        body.extend_from_slice(data);
        self.stats.repairs += 1;
        self.send(now, to, KIND_FILL, &body);
    }

    /// The view lists us as catching up.
    fn is_joining(&self) -> bool {
        self.view
            .as_ref()
            .is_some_and(|v| v.joining.contains(&self.me))
    }

    /// The peers whose silence we notice: the backups (primary) or the primary.
    fn watched(&self) -> Vec<MemberId> {
        if self.is_primary() {
            self.backups()
        } else {
            self.primary().into_iter().collect()
        }
    }

    fn heartbeat_due(&self, now: Instant) -> bool {
        let Some(to) = (if self.is_primary() {
            None
        } else {
            self.primary()
        }) else {
            return false;
        };
        self.last_sent
            .get(&to)
            .is_none_or(|t| now >= *t + self.cfg.heartbeat_interval)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.view.as_ref()?;
        let hb = self.cfg.heartbeat_interval;
        // Beats go to the members we watch (and they to us); a joining
        // member gets frames only when there is something for it, so its
        // last send time must not count (a stale one would be a deadline
        // in the past for ever: a busy loop).
        let watched = self.watched();
        let next_beat = watched
            .iter()
            .filter_map(|m| self.last_sent.get(m))
            .map(|t| *t + hb)
            .min();
        let next_suspicion = watched
            .iter()
            .filter_map(|m| self.last_heard.get(m))
            .map(|t| *t + self.cfg.peer_timeout)
            .min();
        // Only backups send full confirmations; the primary never moves this deadline.
        let full_confirm = (!self.is_primary()).then_some(self.next_full_confirm);
        [next_beat, next_suspicion, full_confirm]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn poll_transmit(&mut self) -> Option<(MemberId, Vec<u8>)> {
        self.outbox.pop_front()
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Queue the frames due now: log entries and commit (primary),
    /// confirmations and log acks (backup), heartbeats (both).
    pub fn flush(&mut self, now: Instant) {
        if self.view.is_none() {
            return;
        }
        if self.is_primary() {
            self.flush_primary(now);
            self.flush_checkpoints(now);
        } else {
            self.flush_backup(now);
        }
    }

    fn flush_primary(&mut self, now: Instant) {
        if !self.joiner_deliveries.is_empty() {
            let notes = std::mem::take(&mut self.joiner_deliveries);
            for chunk in notes.chunks(self.cfg.max_batch.max(1)) {
                let mut body = Vec::with_capacity(4 + chunk.len() * 16);
                body.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
                for (key, upto) in chunk {
                    put_key(&mut body, key);
                    body.extend_from_slice(&upto.0.to_be_bytes());
                }
                let mut ids: Vec<MemberId> = self.joiners.keys().copied().collect();
                ids.sort_unstable();
                for id in ids {
                    self.send(now, id, KIND_DELIVER, &body);
                }
            }
        }
        let hb = self.cfg.heartbeat_interval;
        for b in self.backups() {
            while let Some(peer) = self.peers.get(&b) {
                // The log holds indices commit+1.. in order: index arithmetic
                // finds the first unsent entry without a scan.
                let start = peer.sent.max(self.commit) + 1;
                let offset = (start - self.commit - 1) as usize;
                let end = (offset + self.cfg.max_batch).min(self.log.len());
                let entries: Vec<(u64, Entry)> =
                    self.log.range(offset.min(end)..end).cloned().collect();
                let beat = self.last_sent.get(&b).is_none_or(|t| now >= *t + hb);
                if entries.is_empty() && peer.commit_sent == self.commit && !beat {
                    break;
                }
                let mut body = Vec::with_capacity(16 + entries.len() * 24);
                body.extend_from_slice(&self.commit.to_be_bytes());
                // Until this backup has listed everything in our epoch, ask it
                // for its whole state: its earlier confirmations may have been refused
                // (sent before we installed the view).
                body.push(u8::from(!peer.complete) * FLAG_SEND_ALL);
                encode_entries(&mut body, &entries);
                let last = entries.last().map(|(i, _)| *i);
                let commit = self.commit;
                let peer = self.peers.get_mut(&b).expect("present");
                if let Some(last) = last {
                    peer.sent = last;
                }
                peer.commit_sent = commit;
                self.send(now, b, KIND_APPEND, &body);
                if last.is_none() || entries.len() < self.cfg.max_batch {
                    break;
                }
            }
        }
    }

    fn flush_checkpoints(&mut self, now: Instant) {
        let mut followers = self.backups();
        followers.extend(self.joiners.keys().copied());
        followers.sort_unstable();
        for b in followers {
            while let Some(body) = self.checkpoints.frame_for(b) {
                self.send(now, b, KIND_CHECKPOINT, &body);
            }
        }
    }

    fn flush_backup(&mut self, now: Instant) {
        let Some(primary) = self.primary() else {
            return;
        };
        if let Some(ack) = self.checkpoints.take_ack() {
            self.send(now, primary, KIND_CHECKPOINT_ACK, &ack);
        }
        let beat = self.heartbeat_due(now);
        if self.dirty.is_empty() && !self.ack_dirty && !beat {
            self.drop_closing();
            return;
        }
        // Every connection we hold is in this flush: its last frame says so.
        let complete = self.dirty.len() >= self.local.len()
            && self.local.keys().all(|k| self.dirty.contains(k));
        loop {
            let batch: Vec<ConnKey> = self
                .dirty
                .iter()
                .take(self.cfg.max_batch)
                .copied()
                .collect();
            for k in &batch {
                self.dirty.remove(k);
            }
            let confirms: Vec<(ConnKey, Progress)> = batch
                .iter()
                .filter_map(|k| self.local.get(k).map(|p| (*k, *p)))
                .collect();
            let mut body = Vec::with_capacity(16 + confirms.len() * 21);
            body.extend_from_slice(&self.received.to_be_bytes());
            encode_confirms(&mut body, &confirms);
            let kind = if complete && self.dirty.is_empty() {
                KIND_CONFIRM_ALL
            } else {
                KIND_CONFIRM
            };
            self.send(now, primary, kind, &body);
            if self.dirty.is_empty() {
                break;
            }
        }
        self.ack_dirty = false;
        self.drop_closing();
    }

    fn drop_closing(&mut self) {
        for key in std::mem::take(&mut self.closing) {
            if !self.dirty.contains(&key) {
                self.local.remove(&key);
                self.delivered.remove(&key);
            } else {
                self.closing.push(key);
            }
        }
    }

    fn send(&mut self, now: Instant, to: MemberId, kind: u8, body: &[u8]) {
        let header = Header {
            kind,
            epoch: self.epoch(),
            sender: self.me.0,
            counter: self.counter.next_value(),
        };
        self.outbox
            .push_back((to, auth::seal(&self.key, DOMAIN, header, body)));
        self.last_sent.insert(to, now);
        self.stats.frames_sent += 1;
    }
}

// ---- encoding ----

fn put_key(out: &mut Vec<u8>, key: &ConnKey) {
    put_addr(out, key.local);
    put_addr(out, key.remote);
}

fn get_key(r: &mut Reader) -> Result<ConnKey, Malformed> {
    Ok(ConnKey {
        local: r.addr()?,
        remote: r.addr()?,
    })
}

fn encode_entries(out: &mut Vec<u8>, entries: &[(u64, Entry)]) {
    out.extend_from_slice(&(entries.len() as u16).to_be_bytes());
    for (index, entry) in entries {
        out.extend_from_slice(&index.to_be_bytes());
        match entry {
            Entry::Opened { key, record } => {
                out.push(ENTRY_OPENED);
                put_key(out, key);
                out.extend_from_slice(&(record.len() as u16).to_be_bytes());
                out.extend_from_slice(record);
            }
            Entry::Data { key, upto } => {
                out.push(ENTRY_DATA);
                put_key(out, key);
                out.extend_from_slice(&upto.0.to_be_bytes());
            }
            Entry::Closed { key } => {
                out.push(ENTRY_CLOSED);
                put_key(out, key);
            }
        }
    }
}

fn decode_entries(r: &mut Reader) -> Result<Vec<(u64, Entry)>, Malformed> {
    let n = r.u16()? as usize;
    let mut entries = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let index = r.u64()?;
        let entry = match r.u8()? {
            ENTRY_OPENED => {
                let key = get_key(r)?;
                let len = r.u16()? as usize;
                Entry::Opened {
                    key,
                    record: r.take(len)?.to_vec(),
                }
            }
            ENTRY_DATA => Entry::Data {
                key: get_key(r)?,
                upto: Seq(r.u32()?),
            },
            ENTRY_CLOSED => Entry::Closed { key: get_key(r)? },
            _ => return Err(Malformed),
        };
        entries.push((index, entry));
    }
    if !r.is_empty() {
        return Err(Malformed);
    }
    Ok(entries)
}

fn encode_confirms(out: &mut Vec<u8>, confirms: &[(ConnKey, Progress)]) {
    out.extend_from_slice(&(confirms.len() as u16).to_be_bytes());
    for (key, p) in confirms {
        put_key(out, key);
        out.extend_from_slice(&p.held.0.to_be_bytes());
        out.extend_from_slice(&p.edge.0.to_be_bytes());
        out.push(u8::from(p.fin));
    }
}

fn decode_confirms(r: &mut Reader) -> Result<Vec<(ConnKey, Progress)>, Malformed> {
    let n = r.u16()? as usize;
    let mut out = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let key = get_key(r)?;
        out.push((
            key,
            Progress {
                held: Seq(r.u32()?),
                edge: Seq(r.u32()?),
                fin: r.u8()? != 0,
            },
        ));
    }
    if !r.is_empty() {
        return Err(Malformed);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
