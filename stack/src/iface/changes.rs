//! Bookkeeping after every change to a connection: timers, events, and removing
//! a connection that ended.

use super::*;
use crate::tcp::conn::Signals;
use crate::tcp::State;
use hydra_base::time::Instant;

impl Stack {
    pub(super) fn now_of(&self, key: ConnKey) -> Instant {
        self.conns
            .get(&key)
            .map_or(Instant::ZERO, |t| t.last_recv_at.max(t.last_send_at))
    }

    pub(super) fn schedule(&mut self, key: ConnKey) {
        if self.in_ready.insert(key) {
            self.ready.push_back(key);
        }
    }

    pub(super) fn push_event(&mut self, ev: Event) {
        if self.queued_events.insert(ev) {
            self.events.push_back(ev);
        }
    }

    /// Keep the timer heap holding this connection's earliest deadline.
    pub(super) fn update_timer(&mut self, key: ConnKey) {
        let Some(tcb) = self.conns.get_mut(&key) else {
            return;
        };
        let Some(next) = tcb.timers.next() else {
            return;
        };
        if tcb.scheduled_deadline.is_none_or(|s| next < s) {
            tcb.scheduled_deadline = Some(next);
            self.timers.push(Reverse((next, key)));
        }
    }

    pub(super) fn after_change(&mut self, key: ConnKey, sig: Signals) {
        let replicated = self.role != Role::Standalone;
        let Some(tcb) = self.conns.get_mut(&key) else {
            return;
        };
        if tcb.unacked_segments > 0 && !tcb.ack_now && tcb.timers.delayed_ack.is_none() {
            if let Some(delay) = self.cfg.delayed_ack {
                tcb.timers.delayed_ack = Some(tcb.last_recv_at + delay);
            }
        }
        tcb.arm_keepalive(&self.cfg);
        let listener = tcb.listener;
        let was_half_open = listener.is_some() && (sig.established || sig.closed);
        if sig.established {
            self.adopt_passive(key);
            if let Some(l) = listener.and_then(|l| self.listeners.get_mut(&l)) {
                l.half_open = l.half_open.saturating_sub(1);
                l.accept_queue.push_back(key);
                self.push_event(Event::Acceptable {
                    local: listener.unwrap_or(key.local),
                });
            }
            if replicated {
                self.push_event(Event::Established(key));
            }
        }
        if sig.readable {
            self.push_event(Event::Readable(key));
            self.record_delivery(key);
        }
        if sig.writable {
            self.push_event(Event::Writable(key));
        }
        if sig.progress && replicated {
            self.push_event(Event::Progress(key));
        }
        if sig.closed {
            self.stats.connections_closed += 1;
            let tcb = &self.conns[&key];
            let unaccepted = listener.is_some();
            if unaccepted && was_half_open && !sig.established {
                if let Some(l) = listener.and_then(|l| self.listeners.get_mut(&l)) {
                    l.half_open = l.half_open.saturating_sub(1);
                }
            }
            if unaccepted || tcb.app_closed {
                self.remove(key);
                return;
            }
            self.record_closed(key);
            self.push_event(Event::Closed(key));
        }
        self.schedule(key);
        self.update_timer(key);
    }

    /// Forget a connection. Replication hears of it (`Closed`) however it
    /// ended, or a group would keep tracking it forever.
    pub(super) fn remove(&mut self, key: ConnKey) {
        let known = self.detach(key);
        if known {
            self.record_closed(key);
        }
        if known && self.role != Role::Standalone {
            self.push_event(Event::Closed(key));
        }
    }

    /// Forget a connection without telling anyone (it moves elsewhere).
    pub(super) fn detach(&mut self, key: ConnKey) -> bool {
        let Some(tcb) = self.conns.remove(&key) else {
            return false;
        };
        self.ooo_total = self.ooo_total.saturating_sub(tcb.recv.ooo_bytes);
        if let Some(l) = tcb.listener.and_then(|l| self.listeners.get_mut(&l)) {
            if tcb.state == State::SynReceived {
                l.half_open = l.half_open.saturating_sub(1);
            }
            l.accept_queue.retain(|k| *k != key);
        }
        self.in_ready.remove(&key);
        self.passive_dirty.remove(&key);
        if self.ended.insert(key, tcb.irs).is_none() {
            self.ended_order.push_back(key);
            if self.ended_order.len() > ENDED_REMEMBERED {
                if let Some(old) = self.ended_order.pop_front() {
                    self.ended.remove(&old);
                }
            }
        }
        true
    }
}
