//! Primary: gating. Each connection's gate is the minimum of every live
//! member's confirmed progress; what the gate passes is logged.

use hydra_base::{intersect_held, ConnKey, Gate, Instant};

use super::{Action, Entry, MemberId, Progress, Replicator};

impl Replicator {
    /// Primary: the gate of `key` is the minimum of our progress and every
    /// backup's (and joining member's) confirmed progress, and never moves
    /// back; bytes it newly passes are logged, or wait while the log is
    /// full.
    pub(super) fn recompute(&mut self, key: ConnKey) {
        let Some(mine) = self.local.get(&key).copied() else {
            return;
        };
        let (mut ack, mut edge) = (mine.held, mine.edge);
        let mut beyond = mine.beyond;
        for b in self.backups() {
            match self.peers.get(&b).and_then(|p| p.confirmed.get(&key)) {
                Some(p) => {
                    ack = ack.min(p.held);
                    edge = edge.min(p.edge);
                    beyond = intersect_held(&beyond, &p.beyond);
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
                    beyond = intersect_held(&beyond, &p.beyond);
                }
                None if !j.synced || j.ready_reported || j.sent.contains_key(&key) => return,
                None => {}
            }
        }
        if self.sack_allowed.get(&key).is_none_or(|b| *b != beyond) {
            self.sack_allowed.insert(key, beyond);
            self.actions.push_back(Action::SackAllowed(key, beyond));
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
            self.deliver_gate(key);
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

    /// A backup's confirmations and log acknowledgement: its progress
    /// moves the gates, its acknowledgement may advance the commit.
    pub(super) fn on_confirm(
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
    pub(super) fn on_joiner_confirm(
        &mut self,
        now: Instant,
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
            if j.confirmed.insert(key, progress) != Some(progress) && j.stalled_since.is_some() {
                // Something new: whatever waits for it may come too.
                j.stalled_since = Some(now);
            }
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
}
