//! Deliveries in the group's order, for single-threaded applications whose
//! connections share state.
//!
//! A listener opened with [`Stack::listen_ordered`] has every delivery to
//! its connections recorded, one record per step, in the order the stack
//! made the bytes readable: in a group, the order of the delivery log's
//! committed entries (each `set_delivery_limit` is one), which is the same
//! on every member; standalone, the order the bytes arrived in. An
//! application that takes the records one at a time and reads exactly the
//! bytes each names sees the same sequence on every member.

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::{ConnKey, Stack};
use hydra_base::Seq;

/// One step of an ordered listener's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// `len` more bytes of `key` are readable, then the peer's FIN if
    /// `fin` (at most once per connection).
    Data {
        /// The connection.
        key: ConnKey,
        /// Bytes that became readable with this step.
        len: usize,
        /// The peer's FIN follows them.
        fin: bool,
    },
    /// The connection ended without a FIN (a reset, or a timeout). Its
    /// place among the other records is where this member saw it.
    Closed(ConnKey),
}

/// What the ordered records of one stack hold.
#[derive(Debug, Default)]
pub(super) struct OrderedLog {
    /// Ordered listeners (`0.0.0.0` = any local address).
    listeners: Vec<SocketAddr>,
    records: VecDeque<Delivery>,
    /// Per connection: the sequence number up to which bytes were
    /// recorded, and whether its FIN was.
    marks: crate::iface::FastMap<ConnKey, (Seq, bool)>,
}

impl OrderedLog {
    fn covers(&self, local: SocketAddr) -> bool {
        std::iter::once(local)
            .chain(super::wildcards(local))
            .any(|l| self.listeners.contains(&l))
    }
}

impl Stack {
    /// Listen on `local` like [`Stack::listen`], and record the deliveries
    /// of its connections for [`Stack::poll_delivery`].
    /// A stack has one: its records are one sequence.
    pub fn listen_ordered(&mut self, local: SocketAddr) -> Result<(), super::ListenError> {
        if !self.ordered.listeners.is_empty() {
            return Err(super::ListenError::OrderedTaken);
        }
        self.listen(local)?;
        self.ordered.listeners.push(local);
        Ok(())
    }

    /// Whether connections to `local` belong to the ordered listener.
    pub(super) fn ordered_covers(&self, local: SocketAddr) -> bool {
        !self.ordered.listeners.is_empty() && self.ordered.covers(local)
    }

    /// The next delivery of an ordered listener's connections, oldest first.
    pub fn poll_delivery(&mut self) -> Option<Delivery> {
        self.ordered.records.pop_front()
    }

    /// Record what became readable on `key` since its last record. The
    /// bound is the delivery limit where one is set (a group's committed
    /// log position), else what arrived in order.
    pub(super) fn record_delivery(&mut self, key: ConnKey) {
        if self.ordered.listeners.is_empty() || !self.ordered.covers(key.local) {
            return;
        }
        let Some(tcb) = self.conns.get(&key) else {
            return;
        };
        let bound = tcb.delivery_limit.unwrap_or(tcb.rcv_nxt);
        let (bytes_end, fin) = match tcb.peer_fin {
            Some(f) if bound > f => (f, true),
            _ => (bound, false),
        };
        let start = tcb.irs + 1u32;
        let (mark, fin_recorded) = self
            .ordered
            .marks
            .get(&key)
            .copied()
            .unwrap_or((start, false));
        let len = if bytes_end > mark {
            bytes_end.since(mark) as usize
        } else {
            0
        };
        let fin = fin && !fin_recorded;
        if len == 0 && !fin {
            return;
        }
        self.ordered
            .marks
            .insert(key, (mark.max(bytes_end), fin_recorded || fin));
        // Consecutive steps of one connection merge: the order among
        // connections, which is what shared state depends on, is unchanged,
        // and the records stay bounded by the bytes buffered.
        if let Some(Delivery::Data {
            key: last,
            len: l,
            fin: f,
        }) = self.ordered.records.back_mut()
        {
            if *last == key && !*f {
                *l += len;
                *f = fin;
                return;
            }
        }
        self.ordered
            .records
            .push_back(Delivery::Data { key, len, fin });
    }

    /// `key` is gone: an ordered listener's application hears of it.
    pub(super) fn record_closed(&mut self, key: ConnKey) {
        if self.ordered.marks.remove(&key).is_some_and(|(_, fin)| fin) {
            return; // it ended with its FIN, already recorded
        }
        if !self.ordered.listeners.is_empty() && self.ordered.covers(key.local) {
            self.ordered.records.push_back(Delivery::Closed(key));
        }
    }
}
