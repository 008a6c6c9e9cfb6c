//! One connection's control block: its fields, creation, small queries,
//! and the application's side (send, receive, shut down). Segment input
//! is in [`super::input`] and [`super::ack`].
//!
//! Read first: RFC 9293 section 3.10.7 (SEGMENT ARRIVES), RFC 5961 (blind
//! in-window attacks), RFC 7323 (window scale, timestamps, PAWS), RFC 2018
//! (SACK), RFC 6298 (RTO), RFC 5681/6582 (congestion control, NewReno).
//! Output (what to send next) lives in [`super::output`], timers in
//! [`super::timer`].
//!
//! Replication (docs/design.md): a `Backup` control block runs the same input
//! processing but never transmits; it treats everything its application wrote
//! as sent, and accepts ACKs for output its application has not produced yet
//! (rule 4). A `Primary` gates the ACK number and right window edge it sends
//! (rule 2) and its application reads only what the log delivered (rule 3).

use super::buffer::{RecvBuffer, SendBuffer};
use super::checkpoint::PassiveState;
use super::congestion::Congestion;
use super::rtt::RttEstimator;
use super::sack::Scoreboard;
use super::timer::Timers;
use super::State;
use crate::config::Config;
use hydra_base::time::Instant;
use hydra_base::Seq;
use hydra_base::{ConnKey, Gate, HeldBeyond, Role};

/// Why a connection ended abnormally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnError {
    Reset,
    TimedOut,
    Refused,
}

/// What changed during one input or timer step; the stack turns these into events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signals {
    pub established: bool,
    pub readable: bool,
    pub writable: bool,
    pub progress: bool,
    pub closed: bool,
}

/// Negotiated options (RFC 9293 3.7.1 MSS, RFC 7323, RFC 2018).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Largest payload we send (peer's MSS capped by ours).
    pub send_mss: u16,
    /// Shift applied to windows the peer advertises.
    pub snd_wscale: u8,
    /// Shift applied to windows we advertise.
    pub rcv_wscale: u8,
    pub sack: bool,
    pub timestamps: bool,
    /// Added to our millisecond clock to form TSval (RFC 7323 section 5.4).
    pub ts_offset: u32,
    /// Both sides sent the window scale option.
    pub window_scale_ok: bool,
}

/// The control block of one connection.
#[derive(Debug, Clone)]
pub struct Tcb {
    pub key: ConnKey,
    pub state: State,
    pub role: Role,
    pub opts: Options,

    // Send sequence space (RFC 9293 3.3.1).
    /// Initial send sequence number; the SYN occupies it.
    pub iss: Seq,
    /// Oldest unacknowledged sequence number.
    pub snd_una: Seq,
    /// Next sequence number to send (moves back on retransmission).
    pub snd_nxt: Seq,
    /// Highest sequence number sent plus one.
    pub snd_max: Seq,
    /// End of the last segment sent shorter than an MSS (Minshall's Nagle).
    pub snd_sml: Seq,
    /// Peer's receive window in bytes (already scaled).
    pub snd_wnd: u32,
    pub max_snd_wnd: u32,
    pub snd_wl1: Seq,
    pub snd_wl2: Seq,
    /// Application bytes from the first unacknowledged data byte on.
    pub send: SendBuffer,
    /// The application closed its side: FIN follows the last byte in `send`.
    pub fin_queued: bool,
    /// Highest ACK number the peer sent. On a backup it may exceed what our
    /// application produced; those bytes are dropped as they are written.
    pub peer_acked: Seq,
    /// Taken over from another primary: the peer may acknowledge output
    /// that primary sent and we have not yet (our application writes the
    /// same bytes, rule 4); such an ACK is taken as a backup takes it.
    pub inherited_output: bool,

    // Receive sequence space.
    pub irs: Seq,
    /// Next sequence number expected, FIN included once received in order.
    pub rcv_nxt: Seq,
    pub recv: RecvBuffer,
    pub recv_capacity: usize,
    /// Sequence number of the peer's FIN once seen (it may arrive out of order).
    pub peer_fin: Option<Seq>,
    /// Right edge of the last window we advertised; never moves left (RFC 9293 3.8.6).
    pub rcv_adv: Seq,
    pub last_ack_sent: Seq,

    // Timestamps (RFC 7323).
    pub ts_recent: u32,
    /// Largest TSecr the peer echoed: a new primary never sends a lower TSval.
    pub max_tsecr: u32,
    /// Our millisecond clock when `max_tsecr` was last raised.
    pub max_tsecr_at_ms: u64,
    /// The group's view epoch when this copy of the connection opened
    /// (replicated roles; a snapshot carries it). Informational: replicas
    /// differ when the client's SYN reached them in different epochs.
    pub opened_epoch: u64,

    // Loss recovery and congestion control.
    pub cc: Congestion,
    pub rtt: RttEstimator,
    /// Segment being timed when timestamps are off (Karn's algorithm).
    pub rtt_probe: Option<(Seq, Instant)>,
    /// RFC 6582 "recover": set while in fast recovery.
    pub recovery: Option<Seq>,
    pub dupacks: u32,
    pub scoreboard: Scoreboard,
    /// Highest sequence number retransmitted in this recovery episode (RFC 6675 HighRxt).
    pub high_rxt: Seq,
    /// Consecutive retransmission timeouts without progress.
    pub retries: u32,

    pub timers: Timers,
    pub last_recv_at: Instant,
    pub last_send_at: Instant,
    pub keepalive_probes: u32,
    /// Send a keepalive probe (SEG.SEQ = SND.UNA - 1) at the next output.
    pub keepalive_probe: bool,
    /// Send a one-byte zero-window probe at the next output.
    pub persist_probe: bool,
    pub persist_backoff: u32,

    // Pending output.
    pub ack_now: bool,
    /// Extra duplicate ACKs to send (after takeover, to trigger fast retransmit).
    pub dupack_burst: u8,
    /// A RST to send in reply to an unacceptable ACK: its sequence number (= SEG.ACK).
    pub reply_rst: Option<Seq>,
    /// Full-sized segments received since our last ACK (ACK every second one).
    pub unacked_segments: u32,

    pub nodelay: bool,
    pub error: Option<ConnError>,
    /// The application called close(): free the block once the connection ends.
    pub app_closed: bool,
    /// The listener this connection was accepted from, until it is accepted.
    pub listener: Option<std::net::SocketAddr>,

    // Replication.
    pub gate: Option<Gate>,
    /// Primary: the out-of-order ranges every live member holds; its SACK
    /// blocks name nothing else.
    pub sack_allowed: HeldBeyond,
    pub delivery_limit: Option<Seq>,
    /// The application's own state for this connection (opaque bytes it
    /// keeps current through the socket API), carried by snapshots so a
    /// rejoining replica's application can resume.
    pub app_state: Vec<u8>,
    /// `app_written` when `app_state` was set: the state describes the
    /// application as of that output position.
    pub app_state_at: u64,
    /// Bytes the application has written since the connection opened.
    pub app_written: u64,
    /// Passive replication (accepted on a passive listener): checkpoints,
    /// the output gate and the application's state blocks.
    pub passive: Option<Box<PassiveState>>,
    /// Earliest deadline this connection has in the stack's timer heap.
    pub scheduled_deadline: Option<Instant>,
}

impl Tcb {
    /// A control block in SYN-RECEIVED (passive open) or SYN-SENT (active open).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        now: Instant,
        cfg: &Config,
        key: ConnKey,
        role: Role,
        state: State,
        iss: Seq,
        irs: Seq,
        opts: Options,
    ) -> Tcb {
        let rcv_nxt = if state == State::SynSent {
            irs
        } else {
            irs + 1u32
        };
        let mut tcb = Tcb {
            key,
            state,
            role,
            opts,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_sml: iss,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: irs,
            snd_wl2: iss,
            send: SendBuffer::new(iss + 1u32, cfg.send_buffer),
            fin_queued: false,
            peer_acked: iss,
            inherited_output: false,
            irs,
            rcv_nxt,
            recv: RecvBuffer::new(rcv_nxt, cfg.ooo_limit),
            recv_capacity: cfg.recv_buffer,
            peer_fin: None,
            rcv_adv: rcv_nxt,
            last_ack_sent: rcv_nxt,
            ts_recent: 0,
            max_tsecr: 0,
            max_tsecr_at_ms: 0,
            opened_epoch: 0,
            cc: Congestion::new(cfg.congestion, opts.send_mss as u32),
            rtt: RttEstimator::new(cfg.rto_initial, cfg.rto_min, cfg.rto_max),
            rtt_probe: None,
            recovery: None,
            dupacks: 0,
            scoreboard: Scoreboard::default(),
            high_rxt: iss,
            retries: 0,
            timers: Timers::default(),
            last_recv_at: now,
            last_send_at: now,
            keepalive_probes: 0,
            keepalive_probe: false,
            persist_probe: false,
            persist_backoff: 0,
            ack_now: false,
            dupack_burst: 0,
            reply_rst: None,
            unacked_segments: 0,
            nodelay: cfg.nodelay,
            error: None,
            app_closed: false,
            listener: None,
            app_state: Vec::new(),
            app_state_at: 0,
            app_written: 0,
            passive: None,
            gate: None,
            sack_allowed: [None; 3],
            // Replicated connections deliver only what the log has committed.
            delivery_limit: (role != Role::Standalone && state != State::SynSent)
                .then_some(rcv_nxt),
            scheduled_deadline: None,
        };
        if state == State::SynReceived {
            tcb.timers.half_open = Some(now + Tcb::half_open_lifetime(cfg));
        }
        //= docs/design.md rule 2
        //# The ACK number the primary sends to the client for a connection is the minimum,
        //# over the live replicas of the current view, of the sequence number up to which each holds
        // Until backups confirm, acknowledge nothing beyond the SYN. Every
        // replica has the same configuration, so the initial window is the
        // same everywhere and can be advertised at once.
        // A SYN too: the SYN-ACK waits until every live backup holds the
        // connection, or a backup that missed the SYN could be promoted
        // without it and reset a connection the client thinks is open.
        if role == Role::Primary && state != State::SynSent {
            let ack = if state == State::SynReceived {
                rcv_nxt - 1u32
            } else {
                rcv_nxt
            };
            tcb.gate = Some(Gate {
                ack,
                right_edge: tcb.right_edge(),
            });
        }
        tcb
    }

    pub fn mss(&self) -> u32 {
        self.opts.send_mss as u32
    }

    /// Our TSval now (RFC 7323 section 5.4: a per-connection offset on a ms clock).
    pub fn tsval(&self, now: Instant) -> u32 {
        (now.total_millis() as u32).wrapping_add(self.opts.ts_offset)
    }

    /// Sequence number of our FIN, once the application closed.
    pub fn fin_seq(&self) -> Option<Seq> {
        self.fin_queued.then(|| self.send.end())
    }

    /// Our FIN has been acknowledged.
    pub fn fin_acked(&self) -> bool {
        matches!(self.fin_seq(), Some(f) if self.snd_una > f)
    }

    /// Free receive space: the window we could offer now.
    pub fn recv_space(&self) -> u32 {
        // Out-of-order bytes lie inside the window they arrived in: they
        // fill the space they take and do not move the right edge (counting
        // them moved it left, below what another replica had advertised).
        self.recv_capacity
            .saturating_sub(self.recv.len())
            .min(u32::MAX as usize >> 2) as u32
    }

    /// Right edge of the window we would advertise now, never left of a previous one.
    pub fn right_edge(&self) -> Seq {
        (self.rcv_nxt + self.recv_space()).max(self.rcv_adv)
    }

    /// Bytes in flight as far as our send state knows.
    pub fn flight(&self) -> u32 {
        self.snd_max.since(self.snd_una)
    }

    pub fn is_synchronized(&self) -> bool {
        !matches!(
            self.state,
            State::Closed | State::Listen | State::SynSent | State::SynReceived
        )
    }

    pub fn set_state(&mut self, state: State) {
        if self.state != state {
            tracing::trace!(conn = ?self.key, from = ?self.state, to = ?state, "tcp state");
            self.state = state;
        }
    }

    /// Enter CLOSED because of `err` (or normally when `None`).
    pub fn close_with(&mut self, err: Option<ConnError>, sig: &mut Signals) {
        if err.is_some() && self.error.is_none() {
            self.error = err;
        }
        self.set_state(State::Closed);
        self.timers = Timers::default();
        sig.closed = true;
        sig.readable = true;
        sig.writable = true;
    }

    // ---- application side ----

    /// Queue application bytes. On a backup, bytes the peer already
    /// acknowledged (sent by the primary) are consumed without being kept.
    pub fn app_send(&mut self, data: &[u8]) -> usize {
        let already_acked = self.data_ack_point(self.peer_acked).since(self.send.end()) as usize;
        let skip = already_acked.min(data.len());
        if skip > 0 {
            self.send.skip(skip);
        }
        let taken = skip + self.send.push(&data[skip..]);
        if self.role == Role::Backup {
            self.snd_nxt = self.snd_nxt.max(self.send.end());
            self.snd_max = self.snd_max.max(self.send.end());
        }
        taken
    }

    /// The application closes its sending side: queue our FIN.
    pub fn app_shutdown_write(&mut self, now: Instant, cfg: &Config, sig: &mut Signals) {
        if self.fin_queued {
            return;
        }
        match self.state {
            State::SynSent => {
                self.close_with(None, sig);
                return;
            }
            State::SynReceived | State::Established => {
                self.fin_queued = true;
                self.set_state(State::FinWait1);
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.set_state(State::LastAck);
            }
            _ => return,
        }
        if self.role == Role::Backup {
            // The FIN counts as sent; it may even be acknowledged already.
            let fin_end = self.send.end() + 1u32;
            self.snd_nxt = self.snd_nxt.max(fin_end);
            self.snd_max = self.snd_max.max(fin_end);
            if self.peer_acked >= fin_end {
                self.snd_una = self.snd_una.max(fin_end);
                match self.state {
                    State::FinWait1 if self.fin_received() => self.enter_time_wait(now, cfg),
                    State::FinWait1 => self.set_state(State::FinWait2),
                    State::LastAck => self.close_with(None, sig),
                    _ => {}
                }
            }
        }
    }

    /// Read from the receive buffer, honouring the delivery limit.
    pub fn app_recv(&mut self, buf: &mut [u8]) -> usize {
        let n = self.app_peek(buf);
        self.app_consume(n)
    }

    /// Copy readable bytes without reading them.
    pub fn app_peek(&self, buf: &mut [u8]) -> usize {
        self.recv
            .peek_at(self.read_ahead(), buf, self.delivery_limit)
    }

    /// Bytes the application read that a passive checkpoint has not
    /// released yet (they are still in the receive buffer).
    pub fn read_ahead(&self) -> usize {
        self.passive.as_ref().map_or(0, |p| p.read_ahead)
    }

    /// Drop up to `n` readable bytes as read; returns how many. On a
    /// passive connection they stay buffered until a checkpoint holding
    /// the read is committed ([`Tcb::release_read`]).
    pub fn app_consume(&mut self, n: usize) -> usize {
        let n = n.min(self.readable());
        // Alone, nobody else needs the reads: free the bytes at once.
        let replicated = self.role != Role::Standalone;
        if let Some(p) = self.passive.as_mut().filter(|_| replicated) {
            p.read_ahead += n;
            return n;
        }
        self.discard_read(n)
    }

    /// Passive: the group holds the reads before `upto`; free their bytes.
    pub fn release_read(&mut self, upto: Seq) -> usize {
        let n = (upto.since(self.recv.start) as usize).min(self.recv.len());
        if let Some(p) = self.passive.as_mut() {
            p.read_ahead = p.read_ahead.saturating_sub(n);
        }
        self.discard_read(n)
    }

    fn discard_read(&mut self, n: usize) -> usize {
        let before = self.recv_space();
        self.recv.data.drain(..n);
        self.recv.start = self.recv.start + n;
        // RFC 9293 3.8.6.2.2 (receiver SWS avoidance): announce a window that grew
        // by at least min(half the buffer, one MSS).
        let after = self.recv_space();
        let threshold = (self.recv_capacity as u32 / 2).min(self.mss()).max(1);
        let offered = self.rcv_adv.since(self.rcv_nxt);
        if n > 0 && after > before && after >= offered + threshold {
            self.ack_now = true;
        }
        n
    }

    /// Bytes readable now (delivery limit applied).
    pub fn readable(&self) -> usize {
        self.recv
            .readable(self.delivery_limit)
            .saturating_sub(self.read_ahead())
    }

    /// Everything the peer will ever send is readable now.
    pub fn input_complete(&self) -> bool {
        if self.error.is_some() || self.state == State::Closed {
            return true;
        }
        let limit_past_fin = match (self.peer_fin, self.delivery_limit) {
            (Some(f), Some(limit)) => limit > f,
            _ => true,
        };
        self.fin_received()
            && self.readable() + self.read_ahead() == self.recv.len()
            && limit_past_fin
    }

    /// End of stream is visible to the application.
    pub fn at_eof(&self) -> bool {
        if !self.fin_received() || self.recv.len() > self.read_ahead() {
            return false;
        }
        match (self.peer_fin, self.delivery_limit) {
            (Some(f), Some(limit)) => limit > f,
            _ => true,
        }
    }
}
