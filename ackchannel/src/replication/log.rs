//! The delivery log: its entries, how the primary appends and commits
//! them, and how a backup holds them until it learns they are committed.

use hydra_base::{ConnKey, Seq};

use super::{Action, Replicator};

/// One delivery-log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A connection reached ESTABLISHED on the primary.
    Opened {
        /// The connection.
        key: ConnKey,
        /// The stack's encoded `OpenRecord`: what a backup needs to open
        /// the connection the same way.
        record: Vec<u8>,
    },
    /// Client bytes before `upto` (a FIN included) may be delivered.
    Data {
        /// The connection.
        key: ConnKey,
        /// Deliverable up to here (cumulative: a later entry only raises it).
        upto: Seq,
    },
    /// The connection is gone.
    Closed {
        /// The connection.
        key: ConnKey,
    },
}

impl Replicator {
    /// Primary: add an entry at the next index.
    pub(super) fn append(&mut self, entry: Entry) {
        let index = self.next_index;
        self.next_index += 1;
        self.log.push_back((index, entry));
        self.stats.entries_appended += 1;
        self.advance_commit();
    }

    /// Primary: commit every entry all backups hold, apply it here, and log
    /// what waited for room in the log.
    pub(super) fn advance_commit(&mut self) {
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
    pub(super) fn apply(&mut self, entry: Entry) {
        self.stats.entries_committed += 1;
        match entry {
            Entry::Opened { key, record } => {
                self.open_committed.insert(key);
                if self.is_primary() {
                    self.deliver_gate(key);
                } else {
                    self.actions.push_back(Action::Open(key, record));
                }
            }
            Entry::Data { key, upto } => {
                self.deliver(key, upto);
            }
            Entry::Closed { key } => {
                self.delivered.remove(&key);
                self.open_committed.remove(&key);
                self.independent.remove(&key);
                self.actions.push_back(Action::Close(key));
            }
        }
    }

    /// The application of `key` may read client bytes before `upto`;
    /// false when it already could.
    pub(super) fn deliver(&mut self, key: ConnKey, upto: Seq) -> bool {
        if self.delivered.get(&key).is_some_and(|d| upto <= *d) {
            return false;
        }
        self.delivered.insert(key, upto);
        self.actions.push_back(Action::Deliver(key, upto));
        if !self.joiners.is_empty() {
            self.joiner_deliveries.push((key, upto));
        }
        true
    }

    /// Primary: deliver what the gate of `key` passes, if its application
    /// takes bytes at the gate and its opening is committed (see
    /// [`Replicator::deliver_at_gate`]).
    pub(super) fn deliver_gate(&mut self, key: ConnKey) {
        if !self.independent.contains(&key) || !self.open_committed.contains(&key) {
            return;
        }
        let Some(gate) = self.gates.get(&key).copied() else {
            return;
        };
        if self.deliver(key, gate.ack) {
            self.stats.gate_deliveries += 1;
        }
    }

    /// Backup: hold the primary's entries in index order (a gap waits for
    /// the resend from our acknowledgement) and apply those it says are
    /// committed.
    pub(super) fn on_append(&mut self, commit: u64, entries: Vec<(u64, Entry)>) {
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
}
