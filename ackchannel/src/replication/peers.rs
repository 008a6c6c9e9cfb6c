//! Frames from peers: authentication and dispatch, joining members'
//! state transfer, and the repair of lost copies of client bytes.

use std::collections::HashMap;

use hydra_base::codec::Reader;
use hydra_base::{ConnKey, Instant, Seq};

use super::frame::*;
use super::half_open::read_half_open;
use super::{Action, FrameError, MemberId, Progress, Replicator};
use crate::auth;

/// Primary's view of a member catching up.
#[derive(Debug, Clone, Default)]
pub(super) struct Joiner {
    /// It has confirmed in this epoch: its first frame lists every
    /// connection it holds (a joiner may hold some from an earlier epoch).
    pub(super) synced: bool,
    pub(super) confirmed: HashMap<ConnKey, Progress>,
    /// When each connection's snapshot was last sent.
    pub(super) sent: HashMap<ConnKey, Instant>,
    pub(super) ready_reported: bool,
    /// Passive connections: it must have applied the checkpoint stream up
    /// to here (the full checkpoints that follow its snapshots).
    pub(super) must_apply: u64,
    /// Since when snapshots have waited for it with no new confirmation
    /// (None: nothing outstanding).
    pub(super) stalled_since: Option<Instant>,
}

/// A joining member that confirms nothing new for this many peer timeouts
/// while snapshots wait for it (it still sends, so it is not silent: a
/// one-way cut) is reported: it holds back the gates of the connections
/// it was sent.
const JOINER_STALL_TIMEOUTS: u32 = 10;

/// Snapshots sent per timer turn at most (a burst of a thousand would
/// crowd the ack channel).
const SNAPSHOTS_PER_TURN: usize = 256;

#[derive(Debug, Clone)]
pub(super) struct Peer {
    /// Highest log index the backup holds.
    pub(super) acked: u64,
    /// Highest log index sent to it.
    pub(super) sent: u64,
    pub(super) commit_sent: u64,
    pub(super) last_progress: Instant,
    /// Last time it was caught up or its acknowledgement moved.
    pub(super) acked_at: Instant,
    /// It has confirmed in this epoch (so it saw the view).
    pub(super) synced: bool,
    /// It has listed every connection it holds in this epoch.
    pub(super) complete: bool,
    pub(super) confirmed: HashMap<ConnKey, Progress>,
}

impl Peer {
    pub(super) fn new(now: Instant) -> Peer {
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

impl Replicator {
    /// Take a frame from a peer. It must be sealed with the group key, newer
    /// than the last from its sender, of our epoch, from a live or joining
    /// member, and of a kind our role takes from that sender: log entries
    /// with the commit index, fills and fill requests, deliveries (joining
    /// members), snapshots and checkpoints from the primary; confirmations,
    /// fills and checkpoint acknowledgements at the primary.
    /// Anything else is refused, counted, and changes nothing.
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

    pub(super) fn handle_inner(&mut self, now: Instant, frame: &[u8]) -> Result<(), FrameError> {
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
                let Append {
                    commit,
                    flags,
                    entries,
                } = read_append(&mut r)?;
                self.last_heard.insert(sender, now);
                if flags & FLAG_SEND_ALL != 0 {
                    self.dirty.extend(self.local.keys().copied());
                }
                self.on_append(commit, entries);
            }
            KIND_FILL_REQUEST if from_primary && !self.is_primary() => {
                let (key, from, len) = read_fill_request(&mut r)?;
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
                let (key, seq, data) = read_fill(&mut r)?;
                self.last_heard.insert(sender, now);
                if !self.is_primary() {
                    self.synced = true;
                }
                self.stats.repairs += 1;
                self.actions.push_back(Action::Fill(key, seq, data));
            }
            KIND_CONFIRM | KIND_CONFIRM_ALL if self.is_primary() => {
                let (acked, confirms) = read_confirm(&mut r)?;
                self.last_heard.insert(sender, now);
                if self.joiners.contains_key(&sender) {
                    let complete = header.kind == KIND_CONFIRM_ALL;
                    self.on_joiner_confirm(now, sender, confirms, complete);
                } else {
                    if let Some(p) = self.peers.get_mut(&sender) {
                        p.complete |= header.kind == KIND_CONFIRM_ALL;
                    }
                    self.on_confirm(now, sender, acked, confirms);
                }
            }
            KIND_DELIVER if from_primary && !self.is_primary() => {
                let notes = read_deliveries(&mut r)?;
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
                let (received, applied) = read_checkpoint_ack(&mut r)?;
                self.last_heard.insert(sender, now);
                for held in self.checkpoints.on_ack(now, sender, received, applied) {
                    self.actions.push_back(Action::CheckpointHeld(held));
                }
            }
            KIND_HALF_OPEN if from_primary && !self.is_primary() => {
                let (key, record) = read_half_open(&mut r)?;
                self.last_heard.insert(sender, now);
                self.stats.half_open_repairs += 1;
                self.actions.push_back(Action::HalfOpen(key, record));
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

    /// Primary, each timer turn: send every joining member snapshots of the
    /// connections it has not confirmed (a bounded number per turn, and
    /// again if still unconfirmed after a while), and report it ready once
    /// it holds every connection up to its gate and has applied the
    /// checkpoints its snapshots rely on: then the authority may admit it.
    pub(super) fn feed_joiners(&mut self, now: Instant) {
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
            let waiting = j.sent.keys().any(|k| !j.confirmed.contains_key(k));
            let stall = self.cfg.peer_timeout.saturating_mul(JOINER_STALL_TIMEOUTS);
            match j.stalled_since {
                _ if !waiting => j.stalled_since = None,
                None => j.stalled_since = Some(now),
                Some(since) if now.saturating_since(since) >= stall => {
                    tracing::warn!(
                        member = id.0,
                        stalled_ms = now.saturating_since(since).total_millis(),
                        "joining member confirms nothing it was sent"
                    );
                    // Reported again after another stall if it stays.
                    j.stalled_since = Some(now);
                    self.actions.push_back(Action::PeerSuspected(id));
                }
                Some(_) => {}
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
        // The snapshot carries what the opening record would.
        self.open_committed.insert(key);
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
    /// after [`peer_timeout`](super::ReplicationConfig::peer_timeout) of
    /// silence; the authority still checks the report against its own
    /// keepalives and waits out the peer's lease, so a wrong report cannot
    /// make two primaries.
    pub fn peer_closed(&mut self, now: Instant, peer: MemberId) {
        if self.view.is_none() || !self.watched().contains(&peer) {
            return;
        }
        tracing::warn!(peer = peer.0, "peer closed its ack-channel connection");
        self.actions.push_back(Action::PeerSuspected(peer));
        // A silence report only after another full timeout.
        self.last_heard.insert(peer, now);
    }

    /// A backup stuck behind us on a connection lost a copy of a client
    /// segment; rather than leave it to the client's retransmission timeout,
    /// ask the stack for the bytes (we hold them: nothing past the gate has
    /// been delivered) and send them over.
    pub(super) fn find_lost_copies(&mut self, now: Instant) {
        let mut seen = std::collections::HashSet::new();
        // Every connection is looked at each check, but only those behind
        // are sorted (for a deterministic order of repairs): a sort of
        // every key each heartbeat slowed a primary holding thousands.
        let mut behind: Vec<(MemberId, ConnKey, Seq, Seq)> = Vec::new();
        for (id, confirmed) in self
            .peers
            .iter()
            .map(|(id, p)| (id, &p.confirmed))
            .chain(self.joiners.iter().map(|(id, j)| (id, &j.confirmed)))
        {
            for (key, theirs) in confirmed {
                let Some(mine) = self.local.get(key) else {
                    continue;
                };
                if theirs.held < mine.held {
                    behind.push((*id, *key, theirs.held, mine.held));
                }
            }
        }
        behind.sort_unstable_by_key(|b| (b.0, b.1));
        for (id, key, theirs, mine) in behind {
            seen.insert((id, key));
            match self.behind.get_mut(&(id, key)) {
                Some((held, since)) if *held == theirs => {
                    if now.saturating_since(*since) >= self.cfg.repair_after {
                        *since = now;
                        self.actions.push_back(Action::Repair {
                            to: id,
                            key,
                            from: theirs,
                            len: mine.since(theirs).min(MAX_FILL as u32),
                        });
                    }
                }
                _ => {
                    self.behind.insert((id, key), (theirs, now));
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
    pub(super) fn fetch_own_lost_copies(
        &mut self,
        now: Instant,
        seen: &mut std::collections::HashSet<(MemberId, ConnKey)>,
    ) {
        let me = self.me;
        let backups = self.backups();
        // Only the connections where a backup holds more are sorted.
        let mut ahead: Vec<(ConnKey, Seq, MemberId, Seq)> = Vec::new();
        for (key, conn) in &self.local {
            let mine = conn.held;
            let best = backups
                .iter()
                .filter_map(|&b| Some((b, self.peers.get(&b)?.confirmed.get(key)?.held)))
                .filter(|(_, held)| *held > mine)
                .max_by_key(|(b, held)| (*held, std::cmp::Reverse(*b)));
            if let Some((from_member, theirs)) = best {
                ahead.push((*key, mine, from_member, theirs));
            }
        }
        ahead.sort_unstable_by_key(|a| a.0);
        for (key, mine, from_member, theirs) in ahead {
            seen.insert((me, key));
            match self.behind.get_mut(&(me, key)) {
                Some((held, since)) if *held == mine => {
                    if now.saturating_since(*since) >= self.cfg.repair_after {
                        *since = now;
                        let len = theirs.since(mine).min(MAX_FILL as u32);
                        let body = fill_request_body(&key, mine, len);
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
        let body = fill_body(&key, from, data);
        self.stats.repairs += 1;
        self.send(now, to, KIND_FILL, &body);
    }
}
