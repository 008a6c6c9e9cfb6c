//! The replication hooks: the stack's role and epoch, taking over as primary,
//! acknowledgement gates, delivery limits, and filling bytes a replica lost
//! from what another held.

use super::*;
use crate::config::Config;
use crate::tcp::conn::{Signals, Tcb};
use crate::tcp::snapshot::OpenRecord;
use crate::tcp::{congestion::Congestion, State};
use hydra_base::time::Instant;
use hydra_base::Seq;

impl Stack {
    /// The group's view epoch: connections record the one they open in,
    /// and a takeover's timestamp floor grows with the epochs since.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = self.epoch.max(epoch);
    }

    /// Change role (see [`Role`]); call it when the group's view makes this
    /// replica primary or backup. Every connection takes the new role.
    /// Backup -> Primary (or Standalone) performs takeover: immediate ACK on
    /// every connection (gated to what the log committed), retransmission of
    /// unacknowledged output, timers resumed, and passive connections offered
    /// to this replica's application. Primary -> Backup stops all output
    /// and takes passive connections back from the application.
    pub fn set_role(&mut self, now: Instant, role: Role) {
        let takeover = self.role == Role::Backup && role != Role::Backup;
        let demoted = self.role == Role::Primary && role == Role::Backup;
        self.role = role;
        // Sorted: the same input gives the same output order (simulation replays).
        let mut keys: Vec<ConnKey> = self.conns.keys().copied().collect();
        keys.sort_unstable();
        for key in keys {
            let Some(tcb) = self.conns.get_mut(&key) else {
                continue;
            };
            tcb.role = role;
            if takeover {
                Self::take_over(now, &self.cfg, self.epoch, tcb);
            }
            self.schedule(key);
            self.update_timer(key);
        }
        if demoted {
            self.passive_demote();
        } else if takeover {
            self.passive_promote();
        }
    }

    //= docs/design.md rule 6
    //# for every connection at once sends the current ACK (and duplicate ACKs where that makes
    //# the client retransmit fast), retransmits unacknowledged output, and resumes timers.
    pub(super) fn take_over(now: Instant, cfg: &Config, epoch: u64, tcb: &mut Tcb) {
        // Acknowledge only what the log committed (held by every replica)
        // until the live backups confirm more; advertise our own edge, which
        // is never left of what the old primary advertised (it was a minimum
        // that included ours). Every connection gets a gate, half-open ones
        // too: without one a promoted backup would acknowledge ungated.
        if !matches!(tcb.state, State::Closed | State::Listen | State::SynSent) {
            let committed = tcb.delivery_limit.unwrap_or(tcb.rcv_nxt).min(tcb.rcv_nxt);
            // A half-open connection's SYN is not known to be held by
            // every backup (nothing is logged for it): its SYN-ACK waits
            // for their confirmations, as on the old primary.
            let committed = if tcb.state == State::SynReceived {
                tcb.irs
            } else {
                committed
            };
            tcb.gate = Some(Gate {
                ack: committed,
                right_edge: tcb.right_edge(),
            });
        }
        match tcb.state {
            State::SynReceived => tcb.snd_nxt = tcb.iss, // resend the SYN-ACK
            State::Closed | State::TimeWait | State::Listen | State::SynSent => {}
            _ => {
                tcb.snd_nxt = tcb.snd_una;
                tcb.inherited_output = true;
                tcb.cc = Congestion::new(tcb.cc.kind(), tcb.mss());
                tcb.recovery = None;
                tcb.scoreboard.clear();
                tcb.dupacks = 0;
                if tcb.snd_max > tcb.snd_una {
                    tcb.timers.rto = Some(now + tcb.rtt.rto());
                }
                tcb.ack_now = true;
                if !tcb.recv.ooo.is_empty() {
                    tcb.dupack_burst = 2;
                }
            }
        }
        // The floor is our newest echo plus the time since, plus a margin:
        // a second per epoch of the group. An earlier primary whose echoes
        // never reached us (a takeover a few ms before ours) computed its
        // floor from the same echoes with a smaller margin, so ours is
        // above it even if our newest echo arrived a little later than its.
        // The margin counts from the group's first epoch, not from when the
        // connection opened: replicas may disagree on that (a SYN the
        // client had to send again reached them in different epochs), and
        // disagreeing margins let a later floor fall below an earlier one
        // (sweep seeds 201087, 301554, 300557). With no echo yet (the
        // client's packets after its SYN never reached us) the group's
        // shared clock stands in for it. Capped at an hour: the clock must
        // not run ahead by more than PAWS tolerates over many takeovers.
        //= docs/design.md rule 1
        //# a new primary never sends a TSval lower than one the old primary could have sent
        if tcb.opts.timestamps {
            let echo = if tcb.max_tsecr != 0 {
                let elapsed = now.total_millis().saturating_sub(tcb.max_tsecr_at_ms) as u32;
                tcb.max_tsecr.wrapping_add(elapsed)
            } else {
                tcb.tsval(now)
            };
            let epochs = epoch.saturating_sub(1).clamp(1, 3600) as u32;
            let floor = echo.wrapping_add(1000 * epochs);
            let current = tcb.tsval(now);
            if (current.wrapping_sub(floor) as i32) < 0 {
                tcb.opts.ts_offset = tcb.opts.ts_offset.wrapping_add(floor.wrapping_sub(current));
            }
        }
        tcb.last_send_at = now;
        tcb.arm_keepalive(cfg);
    }

    /// Gate ACKs and window of one connection (primary only): it acknowledges
    /// no byte at or after `gate.ack` and advertises no window beyond
    /// `gate.right_edge`, so the client never sees acknowledged a byte some
    /// backup does not hold. Call it as backups confirm what they hold. The
    /// advertised edge never moves left; a raised gate sends an ACK at once
    /// (or the SYN-ACK, once every backup holds the SYN). `None` removes the
    /// gate. Unknown connections are ignored.
    pub fn set_gate(&mut self, key: ConnKey, gate: Option<Gate>) {
        let Some(tcb) = self.conns.get_mut(&key) else {
            return;
        };
        let before = tcb.gate;
        // The edge we may advertise never moves left: an earlier gate's edge
        // was justified when it was set, and a shrinking window is what
        // RFC 9293 tells senders to expect but receivers not to do.
        let gate = match (before, gate) {
            (Some(b), Some(g)) => Some(Gate {
                ack: g.ack,
                right_edge: g.right_edge.max(b.right_edge),
            }),
            (_, g) => g,
        };
        tcb.gate = gate;
        let raised = match (before, gate) {
            (Some(b), Some(g)) => g.ack > b.ack || g.right_edge > b.right_edge,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => false,
        };
        // A higher gate lets us acknowledge more: tell the client now (rule 2).
        let more_acked = tcb.last_ack_sent < tcb.rcv_nxt.min(gate.map_or(tcb.rcv_nxt, |g| g.ack));
        let wider = gate.is_some_and(|g| g.right_edge > tcb.rcv_adv);
        // A half-open connection whose SYN every backup now holds: SYN-ACK.
        let syn_ready = tcb.state == State::SynReceived && tcb.snd_nxt == tcb.iss;
        if raised && syn_ready {
            self.schedule(key);
        } else if raised && (more_acked || wider) {
            tcb.ack_now = true;
            self.schedule(key);
        }
    }

    /// Primary: the out-of-order ranges every live member holds (see
    /// [`HeldBeyond`](hydra_base::HeldBeyond)); SACK blocks name nothing
    /// else. Ranges that let a block be named which could not be before go
    /// to the client at once, in a duplicate ACK: it is what makes the
    /// client retransmit the hole.
    pub fn set_sack_allowed(&mut self, key: ConnKey, allowed: hydra_base::HeldBeyond) {
        let Some(tcb) = self.conns.get_mut(&key) else {
            return;
        };
        if tcb.sack_allowed == allowed {
            return;
        }
        let before = tcb.sack_blocks_to_send(&self.cfg);
        tcb.sack_allowed = allowed;
        if tcb.role == Role::Primary && tcb.sack_blocks_to_send(&self.cfg) != before {
            tcb.ack_now = true;
            self.schedule(key);
        }
    }

    /// Client bytes this replica holds beyond its in-order end (the lowest
    /// three out-of-order ranges), for its confirmations to the primary.
    pub fn held_beyond(&self, key: ConnKey) -> hydra_base::HeldBeyond {
        self.conns
            .get(&key)
            .map_or([None; 3], |t| t.recv.held_beyond())
    }

    /// Whether this replica received the client's bytes `[start, end)` of
    /// `key`, in order or out of order (false for an unknown connection).
    pub fn holds_received(&self, key: ConnKey, start: Seq, end: Seq) -> bool {
        self.conns
            .get(&key)
            .is_some_and(|t| t.recv.holds(start, end))
    }

    /// A new primary's gate from its members' first confirmations, which
    /// replaces the takeover's conservative one: acknowledge what they all
    /// hold, advertise no further than every one of them promised (never
    /// less than the old primary advertised: that was within their
    /// promises too, and promises only grow).
    pub fn adopt_gate(&mut self, key: ConnKey, gate: Gate) {
        let Some(tcb) = self.conns.get_mut(&key) else {
            return;
        };
        if tcb.role != Role::Primary {
            return;
        }
        tcb.gate = Some(gate);
        tcb.rcv_adv = tcb
            .rcv_adv
            .min(gate.right_edge)
            .max(tcb.rcv_nxt.min(gate.ack));
        tcb.ack_now = true;
        self.schedule(key);
    }

    /// Limit what the application may read to bytes before `limit` (log
    /// commit): in a replicated role it reads only what every replica's log
    /// holds. `None` lets it read everything received in order. Raising it
    /// queues [`Event::Readable`] if more became readable. Unknown
    /// connections are ignored.
    pub fn set_delivery_limit(&mut self, key: ConnKey, limit: Option<Seq>) {
        let Some(tcb) = self.conns.get_mut(&key) else {
            return;
        };
        let before = tcb.readable();
        let eof_before = tcb.at_eof();
        tcb.delivery_limit = limit;
        if tcb.readable() > before || tcb.at_eof() != eof_before {
            self.push_event(Event::Readable(key));
        }
        self.record_delivery(key);
    }

    /// In-order receive progress: (rcv_nxt, advertised right edge, FIN received).
    ///
    /// A replica confirms its edge to the group, which may advertise up to
    /// it: from then on the edge is a promise and never moves left (out-of-
    /// order data would otherwise shrink it, and a promoted backup would then
    /// advertise less than the old primary did).
    pub fn receive_progress(&mut self, key: ConnKey) -> Option<(Seq, Seq, bool)> {
        let t = self.conns.get_mut(&key)?;
        let edge = t.right_edge();
        if t.role == Role::Backup {
            t.rcv_adv = t.rcv_adv.max(edge);
        }
        Some((t.rcv_nxt, edge, t.fin_received()))
    }

    /// Client bytes held in order from `from` that the application has not
    /// read yet, at most `max`: what a lagging backup is missing.
    pub fn held_bytes(&self, key: ConnKey, from: Seq, max: usize) -> Option<Vec<u8>> {
        self.conns.get(&key)?.recv.copy_from(from, max)
    }

    /// Store client bytes a peer replica supplied for a lost copy (backups).
    pub fn fill_received(&mut self, key: ConnKey, seq: Seq, data: &[u8]) {
        let Some(tcb) = self.conns.get_mut(&key) else {
            return;
        };
        let mut sig = Signals::default();
        tcb.fill_received(&self.cfg, seq, data, &mut self.stats, &mut sig);
        self.after_change(key, sig);
    }

    /// Whether `key`'s application keeps no state shared with other
    /// connections: it was made by a plain listener (not ordered, not
    /// passive). Such a connection needs its bytes held by every member
    /// before it reads them, but no order among connections, so a group's
    /// primary may deliver them at the gate instead of in log order.
    pub fn is_independent(&self, key: ConnKey) -> bool {
        let Some(tcb) = self.conns.get(&key) else {
            return false;
        };
        let Some(listener) = self.listener_for(key.local) else {
            return false;
        };
        tcb.passive.is_none()
            && !self.listener_is_passive(Some(listener))
            && !self.ordered_covers(key.local)
    }

    /// Negotiated connection parameters, for the replication log's "opened" entry.
    pub fn open_record(&self, key: ConnKey) -> Option<OpenRecord> {
        Some(self.conns.get(&key)?.open_record())
    }

    /// The record of a connection still half-open (SYN-RECEIVED), for a
    /// backup that lost the client's SYN (see [`Stack::import_half_open`]).
    pub fn half_open_record(&self, key: ConnKey) -> Option<OpenRecord> {
        let tcb = self.conns.get(&key)?;
        (tcb.state == State::SynReceived).then(|| tcb.open_record())
    }

    /// Whether a connection may be made from the primary's record: not held
    /// already, not ended here already (a primary logs its open connections
    /// again in each new view, and the entry can commit after the
    /// connection ended on this replica), and room for it.
    pub(super) fn may_import(&self, record: &OpenRecord) -> Result<(), ConnectError> {
        if self.conns.contains_key(&record.key) {
            return Err(ConnectError::AddrInUse);
        }
        if self.ended.get(&record.key) == Some(&record.irs) {
            return Err(ConnectError::Finished);
        }
        if self.conns.len() >= self.cfg.max_connections {
            return Err(ConnectError::TooMany);
        }
        Ok(())
    }

    /// Create a connection from a logged "opened" entry (a backup that missed the SYN).
    pub fn import_open(
        &mut self,
        now: Instant,
        record: &OpenRecord,
    ) -> Result<ConnKey, ConnectError> {
        self.may_import(record)?;
        let key = record.key;
        let mut tcb = Tcb::new(
            now,
            &self.cfg,
            key,
            self.role,
            State::Established,
            record.iss,
            record.irs,
            record.opts,
        );
        tcb.snd_una = record.iss + 1u32;
        tcb.snd_nxt = tcb.snd_una;
        tcb.snd_max = tcb.snd_una;
        tcb.peer_acked = tcb.snd_una;
        tcb.snd_wnd = record.snd_wnd;
        tcb.max_snd_wnd = record.snd_wnd;
        tcb.ts_recent = record.ts_recent;
        tcb.listener = self.listener_for(key.local);
        tcb.opened_epoch = record.opened_epoch;
        self.conns.insert(key, tcb);
        self.stats.connections_opened += 1;
        let sig = Signals {
            established: true,
            writable: true,
            ..Default::default()
        };
        self.after_change(key, sig);
        Ok(key)
    }

    /// A replica's half-open copy of a connection the primary logged as
    /// established (`record`): its handshake completes from the record, as
    /// the client's ACK, whose copy this replica lost, would have completed
    /// it. Until then the copy confirms none of the client's bytes and the
    /// primary's gate waits on it, up to the client's retransmission
    /// timeout. Returns whether a half-open copy of the same incarnation
    /// (same initial sequence numbers) was completed.
    pub fn complete_half_open(&mut self, record: &OpenRecord) -> bool {
        let key = record.key;
        let Some(tcb) = self.conns.get_mut(&key) else {
            return false;
        };
        if tcb.state != State::SynReceived || tcb.iss != record.iss || tcb.irs != record.irs {
            return false;
        }
        tcb.set_state(State::Established);
        tcb.timers.half_open = None;
        tcb.snd_una = record.iss + 1u32;
        tcb.snd_nxt = tcb.snd_nxt.max(tcb.snd_una);
        tcb.snd_max = tcb.snd_max.max(tcb.snd_una);
        tcb.peer_acked = tcb.snd_una;
        tcb.snd_wnd = record.snd_wnd;
        tcb.max_snd_wnd = record.snd_wnd;
        tcb.ts_recent = record.ts_recent;
        tcb.opened_epoch = record.opened_epoch;
        tcb.retries = 0;
        self.stats.half_open_completed += 1;
        let sig = Signals {
            established: true,
            writable: true,
            ..Default::default()
        };
        self.after_change(key, sig);
        true
    }
}
