//! The stack's side of passive replication (see [`crate::tcp::checkpoint`]):
//! passive listeners, the application's state store, cutting checkpoints
//! on the primary, applying them on backups, and handing connections to
//! the application of whichever replica is primary.

use std::net::SocketAddr;

use super::{Event, ListenError, Role, Stack};
use crate::tcp::checkpoint::{Checkpoint, PassiveState, Release, StoreError};
use crate::tcp::State;
use hydra_base::time::Instant;
use hydra_base::ConnKey;

/// Why a backup could not apply a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The checkpoint's connection is not in this stack.
    #[error("no such connection here")]
    Unknown,
    /// The connection is here but was not accepted on a passive listener.
    #[error("the connection is not passive here (is the same application listening?)")]
    NotPassive,
    /// The checkpoint's output starts after the end of ours: a checkpoint
    /// in between is missing.
    #[error("output from {from} does not follow ours, which ends at {ours}")]
    Gap {
        /// Sequence number of the checkpoint's first output byte.
        from: u32,
        /// Sequence number just past our output.
        ours: u32,
    },
    /// Its state block changes do not apply (a malformed checkpoint).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Stack {
    /// Listen on `local` for a passively replicated application: only the
    /// primary's application runs. On a backup, `accept` finds nothing;
    /// the connections wait, kept current by checkpoints, and are offered
    /// to the application if this replica becomes primary.
    pub fn listen_passive(&mut self, local: SocketAddr) -> Result<(), ListenError> {
        self.listen(local)?;
        if let Some(l) = self.listeners.get_mut(&local) {
            l.passive = true;
        }
        Ok(())
    }

    pub(super) fn listener_is_passive(&self, local: Option<SocketAddr>) -> bool {
        local
            .and_then(|l| self.listeners.get(&l))
            .is_some_and(|l| l.passive)
    }

    /// A connection of a passive listener got established: give it its
    /// passive state.
    pub(super) fn adopt_passive(&mut self, key: ConnKey) {
        let Some(tcb) = self.conns.get(&key) else {
            return;
        };
        if tcb.passive.is_some() || !self.listener_is_passive(tcb.listener) {
            return;
        }
        let tcb = self.conns.get_mut(&key).expect("present");
        let mut state = PassiveState::new(tcb.send.start, tcb.recv.start);
        state.send_limit = tcb.snd_una;
        tcb.passive = Some(Box::new(state));
    }

    /// Whether the connection was accepted on a passive listener (passive
    /// replication: checkpoints carry its steps). False for unknown keys.
    pub fn is_passive(&self, key: ConnKey) -> bool {
        self.conns.get(&key).is_some_and(|t| t.passive.is_some())
    }

    /// The generation of application handles that may act on a passive
    /// connection (`None` for other connections: any handle may).
    pub fn app_generation(&self, key: ConnKey) -> Option<u64> {
        self.conns
            .get(&key)?
            .passive
            .as_ref()
            .map(|p| p.app_generation)
    }

    /// Note a change of a passive connection the next checkpoint carries.
    pub(super) fn passive_touched(&mut self, key: ConnKey) {
        if self.is_passive(key) {
            self.passive_dirty.insert(key);
        }
    }

    fn store_mut(&mut self, key: ConnKey) -> Result<&mut PassiveState, StoreError> {
        let tcb = self.conns.get_mut(&key).ok_or(StoreError::NotConnected)?;
        let state = tcb.passive.as_deref_mut().ok_or(StoreError::NotPassive)?;
        self.passive_dirty.insert(key);
        Ok(state)
    }

    /// Create (or resize) state block `name` of a passive connection.
    pub fn store_allocate(
        &mut self,
        key: ConnKey,
        name: &str,
        len: usize,
    ) -> Result<(), StoreError> {
        self.store_mut(key)?.allocate(name, len)
    }

    /// Write `bytes` at `offset` of block `name`.
    pub fn store_push(
        &mut self,
        key: ConnKey,
        name: &str,
        offset: usize,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.store_mut(key)?.push(name, offset, bytes)
    }

    /// Replace block `name` with `bytes` (allocated as needed).
    pub fn store_put(&mut self, key: ConnKey, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.store_mut(key)?.put(name, bytes)
    }

    /// A copy of state block `name` of a passive connection, `None` if it
    /// has no such block.
    ///
    /// Errors: [`StoreError::NotConnected`] (no such connection),
    /// [`StoreError::NotPassive`] (not a passive connection).
    pub fn store_lookup(&self, key: ConnKey, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tcb = self.conns.get(&key).ok_or(StoreError::NotConnected)?;
        let state = tcb.passive.as_deref().ok_or(StoreError::NotPassive)?;
        Ok(state.lookup(name).map(<[u8]>::to_vec))
    }

    /// Remove block `name`; false if there was none.
    pub fn store_remove(&mut self, key: ConnKey, name: &str) -> Result<bool, StoreError> {
        Ok(self.store_mut(key)?.remove(name))
    }

    /// Open (`true`) or close an atomic section: a checkpoint never splits one.
    pub fn set_atomic(&mut self, key: ConnKey, open: bool) {
        if let Some(p) = self.conns.get_mut(&key).and_then(|t| t.passive.as_mut()) {
            p.atomic_depth = if open {
                p.atomic_depth + 1
            } else {
                p.atomic_depth.saturating_sub(1)
            };
            self.passive_dirty.insert(key);
        }
    }

    /// Whether some passive connection changed since the last
    /// [`take_checkpoints`](Self::take_checkpoints) (a primary has a
    /// checkpoint to cut).
    pub fn has_passive_changes(&self) -> bool {
        !self.passive_dirty.is_empty()
    }

    /// Primary: the checkpoints of every passive connection the
    /// application changed since the last call, up to about `max_bytes`
    /// of them (the rest wait for the next call). Connections inside an
    /// atomic section wait for its end.
    pub fn take_checkpoints(&mut self, max_bytes: usize) -> Vec<Checkpoint> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let keys: Vec<ConnKey> = self.passive_dirty.iter().copied().collect();
        for key in keys {
            if bytes >= max_bytes {
                break;
            }
            let Some(tcb) = self.conns.get_mut(&key) else {
                self.passive_dirty.remove(&key);
                continue;
            };
            let consumed = tcb.recv.start + tcb.read_ahead();
            let fin = tcb.fin_queued;
            let Some(p) = tcb.passive.as_deref_mut() else {
                self.passive_dirty.remove(&key);
                continue;
            };
            if p.atomic_depth > 0 {
                continue;
            }
            self.passive_dirty.remove(&key);
            if !p.changed(tcb.send.end(), fin, consumed) {
                continue;
            }
            let c = p.take_delta(key, consumed, &tcb.send, fin);
            bytes += c.output.len() + 64;
            out.push(c);
        }
        out
    }

    /// Primary of a new view: a full checkpoint of every passive connection,
    /// which replaces the backups' state (they may be behind, or ahead with
    /// steps the old primary never got committed).
    pub fn full_checkpoints(&mut self) -> Vec<Checkpoint> {
        self.connections()
            .into_iter()
            .filter_map(|key| self.full_checkpoint(key))
            .collect()
    }

    /// A full checkpoint of one passive connection (for a member that just
    /// received it by snapshot); `None` for other connections.
    pub fn full_checkpoint(&mut self, key: ConnKey) -> Option<Checkpoint> {
        let tcb = self.conns.get_mut(&key)?;
        let consumed = tcb.recv.start + tcb.read_ahead();
        let fin = tcb.fin_queued;
        let p = tcb.passive.as_deref_mut()?;
        let c = p.take_full(key, consumed, &tcb.send, fin);
        self.passive_dirty.remove(&key);
        Some(c)
    }

    /// Backup: take over a committed checkpoint of the primary: drop the
    /// input it consumed, queue its output, apply its state changes.
    pub fn apply_checkpoint(&mut self, now: Instant, c: &Checkpoint) -> Result<(), ApplyError> {
        let tcb = self.conns.get_mut(&c.key).ok_or(ApplyError::Unknown)?;
        // All or nothing: refuse before changing anything.
        let ours = tcb.send.end();
        if !c.sync && c.out_from > ours {
            return Err(ApplyError::Gap {
                from: c.out_from.0,
                ours: ours.0,
            });
        }
        let passive = tcb.passive.as_deref_mut().ok_or(ApplyError::NotPassive)?;
        passive.apply_blocks(c)?;
        passive.read_ahead = 0;
        if tcb.release_read(c.consumed) > 0 {
            // Our window opened: the group must hear of the new edge.
            self.push_event(Event::Progress(c.key));
        }
        let tcb = self.conns.get_mut(&c.key).expect("present");
        if c.sync {
            // A demoted primary's application may have closed in a step
            // the group never held: its FIN (never sent) goes too.
            if !c.fin && tcb.fin_queued && !tcb.fin_acked() {
                tcb.fin_queued = false;
                match tcb.state {
                    State::FinWait1 => tcb.set_state(State::Established),
                    State::LastAck | State::Closing => tcb.set_state(State::CloseWait),
                    _ => {}
                }
            }
            // The primary's output from its oldest unacknowledged byte
            // replaces ours: what we had beyond it was never transmitted.
            if c.out_from > tcb.snd_una {
                // The client acknowledged this much (we missed the ACK).
                tcb.snd_una = c.out_from;
                tcb.peer_acked = tcb.peer_acked.max(c.out_from);
            }
            tcb.send.replace_from(c.out_from);
            let end = tcb.send.end() + usize::from(tcb.fin_queued);
            tcb.snd_nxt = tcb.snd_nxt.min(end).max(tcb.snd_una);
            tcb.snd_max = tcb.snd_max.min(end).max(tcb.snd_una);
        }
        // After a sync our buffer ends at `out_from` (or past it: the client
        // acknowledged beyond what the primary had seen).
        let ours = tcb.send.end();
        let skip = (ours.since(c.out_from) as usize).min(c.output.len());
        let fresh = &c.output[skip..];
        // What the primary's buffer held fits ours: grow it if a missed
        // ACK left ours fuller than the primary's.
        tcb.send.capacity = tcb.send.capacity.max(tcb.send.data.len() + fresh.len());
        let taken = tcb.app_send(fresh);
        tcb.app_written += taken as u64;
        let closing = c.fin && !tcb.fin_queued;
        if closing {
            self.shutdown_write(c.key);
        }
        self.schedule(c.key);
        self.update_timer(c.key);
        let _ = now;
        Ok(())
    }

    /// Primary: every backup holds this checkpoint: free the input it
    /// consumed and let its output (and FIN) go to the client.
    pub fn release_checkpoint(&mut self, r: Release) {
        let Some(tcb) = self.conns.get_mut(&r.key) else {
            return;
        };
        let Some(p) = tcb.passive.as_deref_mut() else {
            return;
        };
        p.send_limit = p.send_limit.max(r.send_limit);
        if tcb.release_read(r.consumed) > 0 {
            // The window opened: the group's edge moves with ours.
            self.push_event(Event::Progress(r.key));
        }
        self.schedule(r.key);
    }

    /// The primary stepped down: its applications stop acting on passive
    /// connections (their handles fail) and the connections wait for
    /// `accept` again.
    pub(super) fn passive_demote(&mut self) {
        for key in self.connections() {
            let listener = self.listener_for(key.local);
            let tcb = self.conns.get_mut(&key).expect("listed");
            let Some(p) = tcb.passive.as_deref_mut() else {
                continue;
            };
            // Its reads, output and state blocks stay as its application
            // left them, consistent with one another: a full checkpoint
            // from the next primary replaces all three, and if none came
            // before it is primary again, it carries on from them.
            p.atomic_depth = 0;
            p.app_generation += 1;
            p.send_limit = tcb.snd_una;
            self.passive_dirty.remove(&key);
            // Its application may have closed in a step the group never
            // held (the next primary's full checkpoint takes the FIN back):
            // only a FIN the client acknowledged is final.
            let done = tcb.fin_acked()
                || !matches!(
                    tcb.state,
                    State::Established
                        | State::CloseWait
                        | State::FinWait1
                        | State::LastAck
                        | State::Closing
                );
            if tcb.listener.is_none() {
                if done || listener.is_none() {
                    // No application will take it again: free it when done.
                    tcb.app_closed = true;
                } else {
                    tcb.app_closed = false;
                    tcb.listener = listener;
                    if let Some(l) = listener.and_then(|l| self.listeners.get_mut(&l)) {
                        l.accept_queue.push_back(key);
                    }
                }
            }
            // Wake the threads that held them: they find their handles stale.
            self.push_event(Event::Readable(key));
            self.push_event(Event::Writable(key));
        }
    }

    /// This replica became primary: its applications may accept the
    /// passive connections that waited.
    pub(super) fn passive_promote(&mut self) {
        let ready: Vec<SocketAddr> = self
            .listeners
            .iter()
            .filter(|(_, l)| l.passive && !l.accept_queue.is_empty())
            .map(|(a, _)| *a)
            .collect();
        for local in ready {
            self.push_event(Event::Acceptable { local });
        }
    }

    /// `accept` on a passive listener finds nothing on a backup.
    pub(super) fn accept_blocked(&self, local: SocketAddr) -> bool {
        self.role == Role::Backup && self.listener_is_passive(Some(local))
    }
}
