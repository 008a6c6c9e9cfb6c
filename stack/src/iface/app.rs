//! The application's calls: listening, accepting and opening connections,
//! reading, writing, closing, and what it may ask about them.

use std::net::SocketAddr;

use super::*;
use crate::tcp::conn::{ConnError, Options, Signals, Tcb};
use crate::tcp::{isn, State};
use hydra_base::time::Instant;
use hydra_base::Seq;

impl Stack {
    /// Listen on `local` (`0.0.0.0` = any local address): SYNs to it open
    /// connections (passive open), which wait in the listener's accept queue
    /// once established; [`Event::Acceptable`] tells when one is there.
    ///
    /// Errors: [`ListenError::AddrInUse`] if something already listens on
    /// exactly this address and port.
    pub fn listen(&mut self, local: SocketAddr) -> Result<(), ListenError> {
        if self.listeners.contains_key(&local) {
            return Err(ListenError::AddrInUse);
        }
        self.listeners.insert(
            local,
            Listener {
                accept_queue: VecDeque::new(),
                half_open: 0,
                passive: false,
            },
        );
        Ok(())
    }

    /// Stop listening on `local`: established connections still waiting in
    /// its accept queue are aborted (RST). Connections already accepted are
    /// not affected. Nothing happens if nothing listens there.
    pub fn unlisten(&mut self, local: SocketAddr) {
        if let Some(l) = self.listeners.remove(&local) {
            for key in l.accept_queue {
                self.abort(key);
            }
        }
    }

    /// Take one established connection from the listener on `local`, oldest
    /// first; call it on [`Event::Acceptable`]. From then on the connection
    /// is the application's: `recv`, `send` and finally `close` it.
    ///
    /// Returns `None` if nothing listens on `local`, its queue is empty, or
    /// it is a passive listener (see [`listen_passive`](Self::listen_passive))
    /// and this stack is a backup.
    pub fn accept(&mut self, local: SocketAddr) -> Option<ConnKey> {
        if self.accept_blocked(local) {
            return None;
        }
        let l = self.listeners.get_mut(&local)?;
        while let Some(key) = l.accept_queue.pop_front() {
            if let Some(tcb) = self.conns.get_mut(&key) {
                tcb.listener = None;
                return Some(key);
            }
        }
        None
    }

    /// Active open (used by clients in tests and benchmarks): create a
    /// connection from `local` to `remote` in SYN-SENT; its SYN goes out at
    /// the next [`poll_transmit`](Self::poll_transmit). [`Event::Established`]
    /// follows when the handshake completes, [`Event::Closed`] if it is
    /// refused or times out. Returns the connection's key.
    ///
    /// Errors: [`ConnectError::AddrInUse`] if a connection with this
    /// 4-tuple exists, [`ConnectError::TooMany`] if the stack holds
    /// `max_connections` already.
    pub fn connect(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<ConnKey, ConnectError> {
        let key = ConnKey { local, remote };
        if self.conns.contains_key(&key) {
            return Err(ConnectError::AddrInUse);
        }
        if self.conns.len() >= self.cfg.max_connections {
            return Err(ConnectError::TooMany);
        }
        let iss = Seq(isn::client_isn(&self.cfg.isn_key, local, remote, now));
        let opts = Options {
            send_mss: self.cfg.mss_for(local.ip()),
            snd_wscale: 0,
            rcv_wscale: if self.cfg.window_scaling {
                self.wscale_for_buffer()
            } else {
                0
            },
            sack: self.cfg.sack,
            timestamps: self.cfg.timestamps,
            ts_offset: isn::ts_offset(&self.cfg.isn_key, local, remote),
            window_scale_ok: false,
        };
        let mut tcb = Tcb::new(
            now,
            &self.cfg,
            key,
            self.role,
            State::SynSent,
            iss,
            Seq(0),
            opts,
        );
        tcb.opened_epoch = self.epoch;
        self.conns.insert(key, tcb);
        self.stats.connections_opened += 1;
        self.schedule(key);
        Ok(key)
    }

    /// Queue bytes for sending; returns how many were taken (as many as fit
    /// in the send buffer). They go out from [`poll_transmit`](Self::poll_transmit)
    /// as the peer's window, congestion control and Nagle allow (a passive
    /// primary's only once its backups hold the checkpoint that wrote them;
    /// a backup sends nothing). Empty `data` returns `Ok(0)`.
    ///
    /// Errors: [`SendError::NotConnected`] (no such connection),
    /// [`SendError::WouldBlock`] (buffer full: wait for [`Event::Writable`]),
    /// [`SendError::Closed`] (our side was shut down, or the connection is in
    /// CLOSED or TIME-WAIT), [`SendError::Reset`] (reset or refused by the
    /// peer), [`SendError::TimedOut`].
    pub fn send(&mut self, key: ConnKey, data: &[u8]) -> Result<usize, SendError> {
        let tcb = self.conns.get_mut(&key).ok_or(SendError::NotConnected)?;
        match tcb.error {
            Some(ConnError::Reset) | Some(ConnError::Refused) => return Err(SendError::Reset),
            Some(ConnError::TimedOut) => return Err(SendError::TimedOut),
            None => {}
        }
        if tcb.fin_queued || matches!(tcb.state, State::Closed | State::TimeWait) {
            return Err(SendError::Closed);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let n = tcb.app_send(data);
        if n == 0 {
            return Err(SendError::WouldBlock);
        }
        tcb.app_written += n as u64;
        self.passive_touched(key);
        self.schedule(key);
        Ok(n)
    }

    /// Read received in-order bytes into `buf`; returns how many. In a
    /// replicated role only bytes before the delivery limit are readable
    /// (see [`set_delivery_limit`](Self::set_delivery_limit)). Reading frees
    /// receive buffer space, which opens the window advertised to the peer.
    ///
    /// `Ok(0)` is end of stream: the peer's FIN was reached, or the
    /// connection closed without error. Errors: [`RecvError::NotConnected`]
    /// (no such connection), [`RecvError::WouldBlock`] (nothing to read yet:
    /// wait for [`Event::Readable`]), [`RecvError::Reset`] (reset or refused
    /// by the peer), [`RecvError::TimedOut`].
    pub fn recv(&mut self, key: ConnKey, buf: &mut [u8]) -> Result<usize, RecvError> {
        let tcb = self.conns.get_mut(&key).ok_or(RecvError::NotConnected)?;
        if tcb.readable() > 0 {
            let n = tcb.app_recv(buf);
            self.after_read(key);
            return Ok(n);
        }
        Self::recv_status(tcb)
    }

    pub(super) fn after_read(&mut self, key: ConnKey) {
        self.passive_touched(key);
        if self.conns.get(&key).is_some_and(|t| t.ack_now) {
            self.schedule(key);
        }
        if self.role != Role::Standalone {
            // Reading moved the right edge: replicas report it, or the
            // group's window would lag behind the buffers.
            self.push_event(Event::Progress(key));
        }
    }

    /// What a read finds when nothing is readable.
    pub(super) fn recv_status(tcb: &Tcb) -> Result<usize, RecvError> {
        if tcb.at_eof() {
            return Ok(0);
        }
        match tcb.error {
            Some(ConnError::Reset) | Some(ConnError::Refused) => Err(RecvError::Reset),
            Some(ConnError::TimedOut) => Err(RecvError::TimedOut),
            None if tcb.state == State::Closed => Ok(0),
            None => Err(RecvError::WouldBlock),
        }
    }

    /// Close our sending side (FIN after queued data).
    pub fn shutdown_write(&mut self, key: ConnKey) {
        let now = self.now_of(key);
        if let Some(tcb) = self.conns.get_mut(&key) {
            let mut sig = Signals::default();
            tcb.app_shutdown_write(now, &self.cfg, &mut sig);
            self.passive_touched(key);
            self.after_change(key, sig);
        }
    }

    /// Close: FIN after queued data; the stack frees the connection when done.
    /// Unread received data makes it a reset, as RFC 2525 section 2.17 advises.
    pub fn close(&mut self, key: ConnKey) {
        let Some(tcb) = self.conns.get_mut(&key) else {
            return;
        };
        tcb.app_closed = true;
        if tcb.readable() > 0 && tcb.role == Role::Standalone {
            self.abort(key);
            return;
        }
        if tcb.state == State::Closed {
            self.remove(key);
            return;
        }
        self.shutdown_write(key);
    }

    /// Abort with RST.
    pub fn abort(&mut self, key: ConnKey) {
        let Some(tcb) = self.conns.get(&key) else {
            return;
        };
        if tcb.is_synchronized() || tcb.state == State::SynReceived {
            let (local, remote, seq, ack) =
                (tcb.key.local, tcb.key.remote, tcb.snd_nxt, tcb.rcv_nxt);
            if tcb.role != Role::Backup
                && tcb.state != State::Closed
                && tcb.state != State::TimeWait
            {
                self.queue_rst(local, remote, seq, Some(ack));
            }
        }
        self.remove(key);
    }

    /// Disable (`true`) or enable Nagle's algorithm on one connection
    /// (TCP_NODELAY). Unknown connections are ignored.
    pub fn set_nodelay(&mut self, key: ConnKey, nodelay: bool) {
        if let Some(tcb) = self.conns.get_mut(&key) {
            tcb.nodelay = nodelay;
            self.schedule(key);
        }
    }

    /// A read-only view of one connection's state, or `None` if there is no
    /// such connection.
    pub fn conn_info(&self, key: ConnKey) -> Option<ConnInfo> {
        let t = self.conns.get(&key)?;
        Some(ConnInfo {
            key,
            state: t.state,
            recv_ready: t.readable(),
            send_queued: t.send.data.len(),
            send_space: t.send.space(),
            read_from: t.recv.start + t.read_ahead(),
            rcv_nxt: t.rcv_nxt,
            snd_una: t.snd_una,
            snd_nxt: t.snd_nxt,
            cwnd: t.cc.window(),
            srtt_us: t.rtt.srtt().map(|d| d.total_micros()),
        })
    }

    /// The keys of every connection the stack holds, sorted.
    pub fn connections(&self) -> Vec<ConnKey> {
        let mut v: Vec<ConnKey> = self.conns.keys().copied().collect();
        v.sort();
        v
    }

    /// Number of connections the stack holds (in any state).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Bytes held for incomplete IPv4 datagrams (`FragmentPolicy::Reassemble`).
    pub fn fragment_bytes(&self) -> usize {
        self.reassembly
            .as_ref()
            .map_or(0, fragments::Reassembly::held_bytes)
    }

    /// Bytes held out of order (waiting for a hole to fill), over all
    /// connections.
    pub fn out_of_order_bytes(&self) -> usize {
        self.conns.values().map(|t| t.recv.ooo_bytes).sum()
    }

    /// Free space in a connection's send buffer.
    pub fn send_space(&self, key: ConnKey) -> usize {
        self.conns.get(&key).map_or(0, |t| t.send.space())
    }
}
