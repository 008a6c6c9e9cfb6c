//! One connection's control block and its input processing.
//!
//! Read first: RFC 9293 section 3.10.7 (SEGMENT ARRIVES), RFC 5961 (blind
//! in-window attacks), RFC 7323 (window scale, timestamps, PAWS), RFC 2018
//! (SACK), RFC 6298 (RTO), RFC 5681/6582 (congestion control, NewReno).
//! Output (what to send next) lives in [`super::output`], timers in
//! [`super::timer`].
//!
//! Replication (DESIGN.md): a `Backup` control block runs the same input
//! processing but never transmits; it treats everything its application wrote
//! as sent, and accepts ACKs for output its application has not produced yet
//! (rule 4). A `Primary` gates the ACK number and right window edge it sends
//! (rule 2) and its application reads only what the log delivered (rule 3).

use crate::wire::{TcpControl, TcpRepr};

use super::buffer::{Insert, RecvBuffer, SendBuffer};
use super::checkpoint::PassiveState;
use super::congestion::Congestion;
use super::rtt::RttEstimator;
use super::sack::Scoreboard;
use super::timer::Timers;
use super::State;
use crate::config::Config;
use crate::stats::Stats;
use hydra_base::time::Instant;
use hydra_base::Seq;
use hydra_base::{ConnKey, Gate, Role};

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
    pub listener: Option<std::net::SocketAddrV4>,

    // Replication.
    pub gate: Option<Gate>,
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
            // Replicated connections deliver only what the log has committed.
            delivery_limit: (role != Role::Standalone && state != State::SynSent)
                .then_some(rcv_nxt),
            scheduled_deadline: None,
        };
        if state == State::SynReceived {
            tcb.timers.half_open = Some(now + Tcb::half_open_lifetime(cfg));
        }
        //= DESIGN.md rule 2
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

    /// Process one segment addressed to this connection.
    pub fn input(
        &mut self,
        now: Instant,
        cfg: &Config,
        seg: &TcpRepr<'_>,
        stats: &mut Stats,
    ) -> Signals {
        let mut sig = Signals::default();
        self.last_recv_at = now;
        self.keepalive_probes = 0;
        match self.state {
            State::Closed | State::Listen => {}
            State::SynSent => self.input_syn_sent(now, cfg, seg, stats, &mut sig),
            _ => self.input_synchronized(now, cfg, seg, stats, &mut sig),
        }
        sig
    }

    //= RFC 9293 section 3.10.7.3
    //# If the state is SYN-SENT, then ...
    fn input_syn_sent(
        &mut self,
        now: Instant,
        cfg: &Config,
        seg: &TcpRepr<'_>,
        stats: &mut Stats,
        sig: &mut Signals,
    ) {
        if let Some(ack) = seg.ack_number {
            let ack = Seq(ack.0 as u32);
            //# If SEG.ACK =< ISS or SEG.ACK > SND.NXT, send a reset (unless the RST bit is set)
            if ack <= self.iss || ack > self.snd_max {
                if seg.control != TcpControl::Rst {
                    stats.resets_sent += 1;
                    self.reply_rst = Some(ack);
                }
                return;
            }
        }
        if seg.control == TcpControl::Rst {
            //# If the ACK was acceptable, then signal to the user "error: connection reset"
            if seg.ack_number.is_some() {
                stats.resets_received += 1;
                self.close_with(Some(ConnError::Refused), sig);
            }
            return;
        }
        if seg.control != TcpControl::Syn {
            return;
        }
        self.irs = Seq(seg.seq_number.0 as u32);
        self.rcv_nxt = self.irs + 1u32;
        self.recv = RecvBuffer::new(self.rcv_nxt, cfg.ooo_limit);
        self.rcv_adv = self.rcv_nxt;
        self.last_ack_sent = self.rcv_nxt;
        self.negotiate_from_synack(cfg, seg);
        self.snd_wl1 = self.irs;
        match seg.ack_number {
            Some(ack) => {
                let ack = Seq(ack.0 as u32);
                self.snd_una = ack;
                self.peer_acked = ack;
                self.snd_wnd = seg.window_len as u32; // never scaled in a SYN (RFC 7323 2.2)
                self.max_snd_wnd = self.snd_wnd;
                self.snd_wl2 = ack;
                self.take_rtt_sample_syn(now, seg);
                self.set_state(State::Established);
                sig.established = true;
                sig.writable = true;
                self.ack_now = true;
            }
            None => {
                // Simultaneous open: resend our SYN as a SYN-ACK.
                self.set_state(State::SynReceived);
                self.snd_nxt = self.iss;
            }
        }
    }

    fn negotiate_from_synack(&mut self, cfg: &Config, seg: &TcpRepr<'_>) {
        if let Some(mss) = seg.max_seg_size {
            self.opts.send_mss = mss.clamp(64, cfg.mss);
            self.cc.set_mss(self.opts.send_mss as u32);
        } else {
            self.opts.send_mss = 536.min(cfg.mss);
        }
        match seg.window_scale {
            Some(ws) if cfg.window_scaling => {
                self.opts.snd_wscale = ws;
                self.opts.window_scale_ok = true;
            }
            _ => {
                self.opts.snd_wscale = 0;
                self.opts.rcv_wscale = 0;
                self.opts.window_scale_ok = false;
            }
        }
        self.opts.sack &= seg.sack_permitted;
        match seg.timestamp {
            Some(ts) if self.opts.timestamps => self.ts_recent = ts.tsval,
            _ => self.opts.timestamps = false,
        }
    }

    fn take_rtt_sample_syn(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        if let (true, Some(ts)) = (self.opts.timestamps, seg.timestamp) {
            self.sample_rtt_ts(now, ts.tsecr);
        }
    }

    fn sample_rtt_ts(&mut self, now: Instant, tsecr: u32) {
        let sent_ms = tsecr.wrapping_sub(self.opts.ts_offset);
        let now_ms = now.total_millis() as u32;
        let rtt_ms = now_ms.wrapping_sub(sent_ms);
        // An echo from the future or older than a minute is not a sample.
        if tsecr != 0 && rtt_ms < 60_000 {
            self.rtt
                .sample(hydra_base::Duration::from_millis(rtt_ms.max(1) as u64));
        }
    }

    /// Is the segment acceptable (RFC 9293 3.10.7.4 first check, four cases)?
    fn acceptable(&self, seq: Seq, len: u32) -> bool {
        let wnd = self.right_edge().since(self.rcv_nxt);
        match (len, wnd) {
            (0, 0) => seq == self.rcv_nxt,
            (0, _) => seq >= self.rcv_nxt && seq < self.rcv_nxt + wnd,
            (_, 0) => false,
            (_, _) => {
                let end = seq + (len - 1);
                (seq >= self.rcv_nxt && seq < self.rcv_nxt + wnd)
                    || (end >= self.rcv_nxt && end < self.rcv_nxt + wnd)
            }
        }
    }

    fn input_synchronized(
        &mut self,
        now: Instant,
        cfg: &Config,
        seg: &TcpRepr<'_>,
        stats: &mut Stats,
        sig: &mut Signals,
    ) {
        let seq = Seq(seg.seq_number.0 as u32);
        let mut payload = seg.payload;
        let mut fin = seg.control == TcpControl::Fin;
        let is_rst = seg.control == TcpControl::Rst;
        let is_syn = seg.control == TcpControl::Syn;

        // SYN-RECEIVED: a retransmitted SYN of the same connection gets our SYN-ACK again.
        if self.state == State::SynReceived && is_syn && seq == self.irs && seg.ack_number.is_none()
        {
            self.snd_nxt = self.iss;
            return;
        }

        //= RFC 7323 section 5.3
        //# R1) If there is a Timestamps option in the arriving segment, SEG.TSval < TS.Recent,
        //# TS.Recent is valid (see later discussion), and if the RST bit is not set, then treat
        //# the arriving segment as not acceptable: Send an acknowledgement in reply as specified
        //# in RFC 793, page 69, and drop the segment.
        if self.opts.timestamps && !is_rst {
            if let Some(ts) = seg.timestamp {
                if (ts.tsval.wrapping_sub(self.ts_recent) as i32) < 0
                    && self.state != State::SynReceived
                {
                    stats.drop_paws += 1;
                    self.ack_now = true;
                    return;
                }
            }
        }

        //= RFC 9293 section 3.10.7.4
        //# If an incoming segment is not acceptable, an acknowledgment should be sent in reply
        //# (unless the RST bit is set, if so drop the segment and return)
        let seg_len = payload.len() as u32 + u32::from(fin) + u32::from(is_syn);
        if !self.acceptable(seq, seg_len) {
            stats.drop_out_of_window += 1;
            if !is_rst {
                self.ack_now = true;
            }
            if self.state == State::TimeWait && fin {
                self.restart_time_wait(now, cfg);
            }
            return;
        }

        //= RFC 5961 section 3.2
        //# 1) If the RST bit is set and the sequence number is outside the current receive
        //# window, silently drop the segment.
        //# 2) If the RST bit is set and the sequence number exactly matches the next expected
        //# sequence number (RCV.NXT), then TCP MUST reset the connection.
        //# 3) If the RST bit is set and the sequence number does not exactly match the next
        //# expected sequence value, yet is within the current receive window, TCP MUST send an
        //# acknowledgment (challenge ACK)
        if is_rst {
            if seq == self.rcv_nxt {
                stats.resets_received += 1;
                let err = if self.state == State::SynReceived {
                    None
                } else {
                    Some(ConnError::Reset)
                };
                self.close_with(err, sig);
            } else {
                stats.challenge_acks += 1;
                self.ack_now = true;
            }
            return;
        }

        //= RFC 5961 section 4.2
        //# ... if the SYN bit is set, irrespective of the sequence number, TCP MUST send an ACK
        //# (also referred to as challenge ACK) to the remote peer
        if is_syn {
            stats.challenge_acks += 1;
            self.ack_now = true;
            return;
        }

        //# fifth, check the ACK field: if the ACK bit is off, drop the segment and return
        let Some(ack) = seg.ack_number else { return };
        let ack = Seq(ack.0 as u32);

        if self.state == State::SynReceived {
            //# If SND.UNA < SEG.ACK =< SND.NXT, then enter ESTABLISHED state
            //# If the segment acknowledgment is not acceptable, form a reset segment
            let limit = if self.role == Role::Backup {
                ack
            } else {
                self.snd_max
            };
            if ack > self.snd_una && ack <= limit {
                self.set_state(State::Established);
                self.timers.half_open = None;
                self.snd_wnd = (seg.window_len as u32) << self.opts.snd_wscale;
                self.max_snd_wnd = self.snd_wnd;
                self.snd_wl1 = seq;
                self.snd_wl2 = ack;
                if let (true, Some(ts)) = (self.opts.timestamps, seg.timestamp) {
                    self.sample_rtt_ts(now, ts.tsecr);
                }
                sig.established = true;
                sig.writable = true;
            } else {
                if self.role != Role::Backup {
                    stats.resets_sent += 1;
                    self.reply_rst = Some(ack);
                }
                return;
            }
        }

        //= RFC 5961 section 5.2
        //# The ACK value is considered acceptable only if it is in the range of
        //# ((SND.UNA - MAX.SND.WND) =< SEG.ACK =< SND.NXT). All incoming segments whose ACK
        //# value doesn't satisfy the above condition MUST be discarded and an ACK sent back.
        // A backup accepts ACKs above what it "sent": the primary sent that output (rule 4).
        // So does a new primary, within a window of what it sent: without
        // that, a client that acknowledged the old primary's last output is
        // answered with challenge ACKs for ever (sweep seed 302386).
        let inherited =
            self.inherited_output && ack <= self.snd_max + self.max_snd_wnd.max(self.mss());
        let above = ack > self.snd_max && self.role != Role::Backup && !inherited;
        let below = ack < self.snd_una - self.max_snd_wnd.max(self.mss());
        if above || below {
            stats.challenge_acks += 1;
            self.ack_now = true;
            return;
        }

        if let (true, Some(ts)) = (self.opts.timestamps, seg.timestamp) {
            //= RFC 7323 section 4.3
            //# If SEG.TSval >= TS.Recent and SEG.SEQ =< Last.ACK.sent then SEG.TSval is copied to TS.Recent
            if seq <= self.last_ack_sent && (ts.tsval.wrapping_sub(self.ts_recent) as i32) >= 0 {
                self.ts_recent = ts.tsval;
            }
            if (ts.tsecr.wrapping_sub(self.max_tsecr) as i32) > 0 || self.max_tsecr == 0 {
                self.max_tsecr = ts.tsecr;
                self.max_tsecr_at_ms = now.total_millis();
            }
        }

        self.process_ack(now, cfg, seq, ack, seg, stats, sig);
        if self.state == State::Closed {
            return;
        }

        // Trim what is left of the window's left side (already received).
        let mut seq = seq;
        if seq < self.rcv_nxt {
            let dup = self.rcv_nxt.since(seq) as usize;
            if dup >= payload.len() {
                payload = &[];
                if fin && dup > seg.payload.len() {
                    fin = false; // the FIN too was seen already
                    self.ack_now = true;
                }
            } else {
                payload = &payload[dup..];
            }
            seq = self.rcv_nxt;
        }

        //# seventh, process the segment text
        if !payload.is_empty() {
            match self.state {
                State::Established | State::FinWait1 | State::FinWait2 => {
                    self.receive_data(cfg, seq, payload, stats, sig);
                }
                // Data after the peer's FIN: ignore (RFC 9293), ACK it.
                _ => self.ack_now = true,
            }
        }

        //# eighth, check the FIN bit
        if fin {
            let fin_seq = seq + payload.len();
            if self.peer_fin.is_none() {
                self.peer_fin = Some(fin_seq);
            }
        }
        self.maybe_consume_fin(now, cfg, sig);
    }

    /// RFC 9293 3.10.7.4 "fifth" for synchronized states.
    #[allow(clippy::too_many_arguments)]
    fn process_ack(
        &mut self,
        now: Instant,
        cfg: &Config,
        seq: Seq,
        ack: Seq,
        seg: &TcpRepr<'_>,
        stats: &mut Stats,
        sig: &mut Signals,
    ) {
        let wnd = (seg.window_len as u32) << self.opts.snd_wscale;
        let old_una = self.snd_una;
        //= RFC 1122 section 4.2.2.17
        //# the sending TCP MUST allow the connection to stay open as long as
        //# the receiving TCP continues to send acknowledgments in response to
        //# the probe segments
        // An answer that keeps the window shut acknowledges nothing new, but
        // shows the receiver alive: the probes it answers are not failed
        // retransmissions.
        if wnd == 0 && ack >= self.snd_una {
            self.retries = 0;
        }
        if ack > self.peer_acked {
            self.peer_acked = ack;
        }
        if self.role == Role::Backup || ack > self.snd_max {
            // Output we never sent but the (old) primary did: account it as sent.
            self.snd_max = self.snd_max.max(ack);
            self.snd_nxt = self.snd_nxt.max(ack);
        }

        if self.opts.sack && self.role != Role::Backup {
            for (start, end) in seg.sack_ranges.iter().flatten() {
                self.scoreboard
                    .add(Seq(*start), Seq(*end), self.snd_una.max(ack), self.snd_max);
            }
        }

        if ack > self.snd_una {
            let acked = ack.since(self.snd_una);
            self.snd_una = ack;
            self.send.ack_to(self.data_ack_point(ack));
            self.scoreboard.ack_to(ack);
            self.retries = 0;
            if self.snd_nxt < self.snd_una {
                self.snd_nxt = self.snd_una;
            }
            self.rtt_sample_on_ack(now, ack, seg);
            self.on_new_ack(now, acked, old_una, stats);
            sig.writable = true;
            // RFC 6298 5.2/5.3: stop the timer when everything is acknowledged, else restart it.
            if self.snd_una >= self.snd_max {
                self.timers.rto = None;
            } else if self.role != Role::Backup {
                self.timers.rto = Some(now + self.rtt.rto());
            }
        } else if ack == self.snd_una && self.is_dupack(seg, wnd) {
            self.on_dupack(now, stats);
        }

        //# If SND.UNA =< SEG.ACK =< SND.NXT, the send window should be updated. If
        //# (SND.WL1 < SEG.SEQ or (SND.WL1 = SEG.SEQ and SND.WL2 =< SEG.ACK))
        if self.snd_wl1 < seq || (self.snd_wl1 == seq && self.snd_wl2 <= ack) {
            let opened = wnd > self.snd_wnd;
            self.snd_wnd = wnd;
            self.max_snd_wnd = self.max_snd_wnd.max(wnd);
            self.snd_wl1 = seq;
            self.snd_wl2 = ack;
            if wnd > 0 {
                self.timers.persist = None;
            }
            if opened {
                sig.writable = true;
            }
        }

        // State transitions driven by the acknowledgment of our FIN.
        if self.fin_acked() {
            match self.state {
                State::FinWait1 => self.set_state(State::FinWait2),
                State::Closing => self.enter_time_wait(now, cfg),
                State::LastAck => self.close_with(None, sig),
                _ => {}
            }
        }
        if self.state == State::TimeWait && seg.control == TcpControl::Fin {
            self.ack_now = true;
            self.restart_time_wait(now, cfg);
        }
    }

    /// The data sequence number an ACK releases (the FIN is not data).
    fn data_ack_point(&self, ack: Seq) -> Seq {
        match self.fin_seq() {
            Some(f) if ack > f => f,
            _ => ack,
        }
    }

    fn is_dupack(&self, seg: &TcpRepr<'_>, wnd: u32) -> bool {
        //= RFC 5681 section 2
        //# DUPLICATE ACKNOWLEDGMENT: ... (a) the receiver of the ACK has outstanding data,
        //# (b) the incoming acknowledgment carries no data, (c) the SYN and FIN bits are both
        //# off, (d) the acknowledgment number is equal to the greatest acknowledgment received
        //# on the given connection (TCP.UNA from RFC 793) and (e) the advertised window in the
        //# incoming acknowledgment equals the advertised window in the last incoming acknowledgment.
        self.role != Role::Backup
            && self.snd_max > self.snd_una
            && seg.payload.is_empty()
            && matches!(seg.control, TcpControl::None | TcpControl::Psh)
            && wnd == self.snd_wnd
    }

    fn rtt_sample_on_ack(&mut self, now: Instant, ack: Seq, seg: &TcpRepr<'_>) {
        if self.opts.timestamps {
            if let Some(ts) = seg.timestamp {
                self.sample_rtt_ts(now, ts.tsecr);
            }
        } else if let Some((probe, sent)) = self.rtt_probe {
            if ack > probe {
                self.rtt.sample(now - sent);
                self.rtt_probe = None;
            }
        }
    }

    /// New data acknowledged: congestion control and recovery (RFC 5681, 6582, 6675).
    fn on_new_ack(&mut self, now: Instant, acked: u32, old_una: Seq, _stats: &mut Stats) {
        self.dupacks = 0;
        if self.role == Role::Backup {
            return;
        }
        match self.recovery {
            Some(recover) if self.snd_una >= recover => {
                //= RFC 6582 section 3.2
                //# Full acknowledgments: ... Set cwnd to either (1) min (ssthresh, max(FlightSize, SMSS) + SMSS) or (2) ssthresh
                let cwnd = self
                    .cc
                    .ssthresh()
                    .min(self.flight().max(self.mss()) + self.mss());
                self.cc.on_recovery_exit(now, cwnd);
                self.recovery = None;
                self.scoreboard.clear();
            }
            Some(_) => {
                //# Partial acknowledgments: ... retransmit the first unacknowledged segment ...
                //# deflate the congestion window by the amount of new data acknowledged ...
                //# then add back SMSS bytes
                let cwnd = self.cc.window().saturating_sub(acked) + self.mss();
                self.cc.set_window(cwnd.max(self.mss()));
                if self.high_rxt < self.snd_una || self.scoreboard.is_empty() {
                    self.high_rxt = self.snd_una;
                }
                let _ = old_una;
            }
            None => {
                let cwnd_limited = self.flight() + acked + self.mss() >= self.cc.window();
                self.cc.on_ack(now, acked, self.rtt.srtt(), cwnd_limited);
            }
        }
    }

    fn on_dupack(&mut self, now: Instant, stats: &mut Stats) {
        self.dupacks += 1;
        if self.recovery.is_some() {
            if !self.opts.sack {
                //= RFC 6582 section 3.2
                //# For each additional duplicate ACK received (after the third), increment cwnd by SMSS.
                self.cc.set_window(self.cc.window() + self.mss());
            }
            return;
        }
        let sack_loss = self.opts.sack && self.scoreboard.sacked_bytes() >= 3 * self.mss();
        //= RFC 5681 section 3.2
        //# The fast retransmit algorithm uses the arrival of 3 duplicate ACKs ... as an
        //# indication that a segment has been lost.
        if self.dupacks >= 3 || sack_loss {
            stats.fast_retransmits += 1;
            self.recovery = Some(self.snd_max);
            self.cc.on_congestion_event(now, self.flight());
            if !self.opts.sack {
                self.cc.set_window(self.cc.ssthresh() + 3 * self.mss());
            }
            self.high_rxt = self.snd_una;
            self.rtt_probe = None;
        }
    }

    /// Client bytes a peer replica held for us (our copy of the segment was
    /// lost): stored as if the segment had arrived, nothing else changes.
    pub fn fill_received(
        &mut self,
        cfg: &Config,
        seq: Seq,
        payload: &[u8],
        stats: &mut Stats,
        sig: &mut Signals,
    ) {
        if !matches!(
            self.state,
            State::Established | State::FinWait1 | State::FinWait2
        ) {
            return;
        }
        self.receive_data(cfg, seq, payload, stats, sig);
    }

    /// Store received data and schedule the acknowledgment.
    fn receive_data(
        &mut self,
        cfg: &Config,
        seq: Seq,
        payload: &[u8],
        stats: &mut Stats,
        sig: &mut Signals,
    ) {
        // Bytes beyond the advertised right edge are not ours to keep.
        let edge = self.right_edge();
        let room = edge.since(seq) as usize;
        let payload = &payload[..payload.len().min(room)];
        if payload.is_empty() {
            self.ack_now = true;
            return;
        }
        match self.recv.insert(seq, payload) {
            Insert::InOrder(n) => {
                let filled_hole = !self.recv.ooo.is_empty() || n > payload.len();
                self.rcv_nxt = self.recv.end();
                sig.readable = true;
                sig.progress = true;
                // A segment the sender's or our kernel coalesced stands for
                // as many full-sized segments as it carries: counted as one,
                // the last of a burst of 64 KiB segments waited for the
                // delayed-ACK timer, and the sender probed for loss.
                let full_sized = (payload.len() / self.mss().max(1) as usize).max(1);
                self.unacked_segments = self.unacked_segments.saturating_add(full_sized as u32);
                //= RFC 5681 section 4.2
                //# an ACK SHOULD be generated for at least every second full-sized segment, and
                //# MUST be generated within 500 ms of the arrival of the first unacknowledged packet.
                //# Out-of-order data segments SHOULD be acknowledged immediately
                if filled_hole || cfg.delayed_ack.is_none() || self.unacked_segments >= 2 {
                    self.ack_now = true;
                }
            }
            Insert::OutOfOrder => {
                self.ack_now = true;
            }
            Insert::Duplicate => self.ack_now = true,
            Insert::OverLimit => {
                stats.drop_ooo_limit += 1;
                self.ack_now = true;
            }
        }
    }

    /// Process the peer's FIN once every byte before it arrived.
    fn maybe_consume_fin(&mut self, now: Instant, cfg: &Config, sig: &mut Signals) {
        let Some(fin) = self.peer_fin else { return };
        if self.rcv_nxt != fin {
            return;
        }
        self.rcv_nxt = fin + 1u32;
        self.ack_now = true;
        sig.readable = true;
        sig.progress = true;
        match self.state {
            State::SynReceived | State::Established => self.set_state(State::CloseWait),
            State::FinWait1 => {
                if self.fin_acked() {
                    self.enter_time_wait(now, cfg);
                } else {
                    self.set_state(State::Closing);
                }
            }
            State::FinWait2 => self.enter_time_wait(now, cfg),
            _ => {}
        }
    }

    /// The peer's FIN is part of the stream: the application sees end of stream.
    pub fn fin_received(&self) -> bool {
        matches!(self.peer_fin, Some(f) if self.rcv_nxt > f)
    }

    pub fn enter_time_wait(&mut self, now: Instant, cfg: &Config) {
        self.set_state(State::TimeWait);
        self.timers = Timers::default();
        self.timers.time_wait = Some(now + cfg.time_wait);
    }

    fn restart_time_wait(&mut self, now: Instant, cfg: &Config) {
        self.timers.time_wait = Some(now + cfg.time_wait);
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
