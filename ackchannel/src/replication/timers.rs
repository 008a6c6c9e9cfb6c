//! Time and output: heartbeats, silence and stall detection, and the
//! frames each role sends when flushed.

use hydra_base::{ConnKey, Instant};

use super::frame::*;
use super::{Action, Entry, MemberId, Progress, Replicator};
use crate::auth::{self, Header};

impl Replicator {
    /// Time has passed: suspect silent peers, and on the primary repair lost
    /// copies, feed joining members, resend a stalled backup's tail and
    /// suspect a backup whose log acknowledgements stall; on a backup, queue
    /// its full state when due. Then flush.
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
            self.find_lost_handshakes(now);
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

    /// The view lists us as catching up.
    pub(super) fn is_joining(&self) -> bool {
        self.view
            .as_ref()
            .is_some_and(|v| v.joining.contains(&self.me))
    }

    /// The peers whose silence we notice: the backups (primary) or the primary.
    pub(super) fn watched(&self) -> Vec<MemberId> {
        if self.is_primary() {
            self.backups()
        } else {
            self.primary().into_iter().collect()
        }
    }

    pub(super) fn heartbeat_due(&self, now: Instant) -> bool {
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

    /// When [`handle_timeout`](Self::handle_timeout) next has something to do
    /// (none before a view is installed).
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

    /// The next frame to send, and to whom.
    pub fn poll_transmit(&mut self) -> Option<(MemberId, Vec<u8>)> {
        self.outbox.pop_front()
    }

    /// The next thing the replica must do to its stack or tell the authority.
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

    pub(super) fn flush_primary(&mut self, now: Instant) {
        if !self.joiner_deliveries.is_empty() {
            let notes = std::mem::take(&mut self.joiner_deliveries);
            for chunk in notes.chunks(self.cfg.max_batch.max(1)) {
                let body = deliver_body(chunk);
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
                // Until this backup has listed everything in our epoch, ask it
                // for its whole state: its earlier confirmations may have been refused
                // (sent before we installed the view).
                let flags = u8::from(!peer.complete) * FLAG_SEND_ALL;
                let body = append_body(self.commit, flags, &entries);
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

    pub(super) fn flush_checkpoints(&mut self, now: Instant) {
        let mut followers = self.backups();
        followers.extend(self.joiners.keys().copied());
        followers.sort_unstable();
        for b in followers {
            while let Some(body) = self.checkpoints.frame_for(b) {
                self.send(now, b, KIND_CHECKPOINT, &body);
            }
        }
    }

    pub(super) fn flush_backup(&mut self, now: Instant) {
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
            let body = confirm_body(self.received, &confirms);
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

    pub(super) fn drop_closing(&mut self) {
        for key in std::mem::take(&mut self.closing) {
            if !self.dirty.contains(&key) {
                self.local.remove(&key);
                self.delivered.remove(&key);
                self.independent.remove(&key);
                self.open_committed.remove(&key);
            } else {
                self.closing.push(key);
            }
        }
    }

    pub(super) fn send(&mut self, now: Instant, to: MemberId, kind: u8, body: &[u8]) {
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
