//! Moving connections between stacks: snapshots, export and import, parking
//! segments of connections not yet transferred, and the application's state
//! attached to a connection.

use std::net::SocketAddr;

use super::*;
use crate::tcp::conn::{Signals, Tcb};
use crate::tcp::snapshot::ConnSnapshot;
use hydra_base::time::Instant;

impl Stack {
    /// Take a connection out of this stack, silently (no RST, no FIN, no
    /// event): returns its [`ConnSnapshot`] and the stack forgets the
    /// connection, so another stack can [`import`](Self::import) it and carry
    /// on. Unlike [`snapshot`](Self::snapshot), which copies, this removes.
    /// Returns `None` if there is no such connection.
    pub fn take_connection(&mut self, key: ConnKey) -> Option<ConnSnapshot> {
        let now = self.now_of(key);
        let snap = self.conns.get(&key)?.to_snapshot(now);
        self.detach(key);
        Some(snap)
    }

    /// Copy a connection's state without removing it: the connection carries
    /// on here, and the copy brings a joining (or rejoining) replica's stack
    /// to the same point through [`import`](Self::import). Unlike
    /// [`take_connection`](Self::take_connection), the connection stays in this stack. Returns
    /// `None` if there is no such connection.
    pub fn snapshot(&self, key: ConnKey) -> Option<ConnSnapshot> {
        let now = self.now_of(key);
        Some(self.conns.get(&key)?.to_snapshot(now))
    }

    /// Put a connection into the stack; it carries on from the snapshot's
    /// state, in this stack's role, with its timers restarted from `now`.
    /// A listener on its address offers it to `accept` (the application
    /// resumes it from its app state); packets parked for it (see
    /// [`set_parking`](Self::set_parking)) are replayed. Returns its key.
    ///
    /// Errors: [`ConnectError::AddrInUse`] if the stack holds a connection
    /// with the same 4-tuple, [`ConnectError::TooMany`] if it holds
    /// `max_connections` already.
    pub fn import(
        &mut self,
        now: Instant,
        snapshot: ConnSnapshot,
    ) -> Result<ConnKey, ConnectError> {
        let key = snapshot.key;
        if self.conns.contains_key(&key) {
            return Err(ConnectError::AddrInUse);
        }
        if self.conns.len() >= self.cfg.max_connections {
            return Err(ConnectError::TooMany);
        }
        let mut tcb = Tcb::from_snapshot(now, &self.cfg, self.role, &snapshot);
        tcb.ack_now = self.role != Role::Backup && tcb.is_synchronized();
        let synchronized = tcb.is_synchronized();
        tcb.listener = self.listener_for(key.local);
        self.conns.insert(key, tcb);
        self.stats.connections_opened += 1;
        let sig = Signals {
            established: synchronized,
            writable: true,
            readable: true,
            ..Default::default()
        };
        self.after_change(key, sig);
        self.update_timer(key);
        for packet in self.parked.remove(&key).unwrap_or_default() {
            self.parked_bytes -= packet.len();
            self.handle_packet(now, &packet);
        }
        Ok(key)
    }

    /// The listener that accepts connections to `local`, if any.
    pub(super) fn listener_for(&self, local: SocketAddr) -> Option<SocketAddr> {
        std::iter::once(local)
            .chain(super::wildcards(local))
            .find(|l| self.listeners.contains_key(l))
    }

    /// Joining replica: hold packets of connections not in the stack (up to
    /// `limit` bytes; over it they are dropped and counted) until
    /// [`import`](Self::import) brings the connection. `None` stops and
    /// forgets what is held.
    pub fn set_parking(&mut self, limit: Option<usize>) {
        self.parking = limit;
        if limit.is_none() {
            self.parked.clear();
            self.parked_bytes = 0;
        }
    }

    pub(super) fn park(&mut self, key: ConnKey, packet: &[u8]) {
        let limit = self.parking.unwrap_or(0);
        if self.parked_bytes + packet.len() > limit {
            self.stats.drop_parking_full += 1;
            return;
        }
        self.parked_bytes += packet.len();
        self.stats.parked_segments += 1;
        self.parked.entry(key).or_default().push(packet.to_vec());
    }

    /// Copy up to `buf.len()` readable bytes without consuming them.
    pub fn peek(&self, key: ConnKey, buf: &mut [u8]) -> Result<usize, RecvError> {
        let tcb = self.conns.get(&key).ok_or(RecvError::NotConnected)?;
        if tcb.readable() > 0 {
            return Ok(tcb.app_peek(buf));
        }
        Self::recv_status(tcb)
    }

    /// No byte beyond those readable now will ever be readable (end of
    /// stream delivered, an error, or no such connection).
    pub fn input_complete(&self, key: ConnKey) -> bool {
        self.conns.get(&key).is_none_or(Tcb::input_complete)
    }

    /// Mark up to `n` readable bytes as read (after [`peek`](Self::peek)).
    pub fn consume(&mut self, key: ConnKey, n: usize) -> usize {
        let Some(tcb) = self.conns.get_mut(&key) else {
            return 0;
        };
        let n = tcb.app_consume(n);
        if n > 0 {
            self.after_read(key);
        }
        n
    }

    /// Replace the application's state blob of a connection (an opaque
    /// byte string kept with it); snapshots carry it.
    pub fn set_app_state(&mut self, key: ConnKey, state: &[u8]) {
        if let Some(tcb) = self.conns.get_mut(&key) {
            tcb.app_state.clear();
            tcb.app_state.extend_from_slice(state);
            tcb.app_state_at = tcb.app_written;
        }
    }

    /// The application's state: the blob, the output count when it was
    /// set, and the output count now.
    pub fn app_state(&self, key: ConnKey) -> Option<AppState> {
        self.conns.get(&key).map(|t| AppState {
            state: t.app_state.clone(),
            set_at: t.app_state_at,
            written: t.app_written,
        })
    }
}
