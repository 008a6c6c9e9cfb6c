//! SEGMENT ARRIVES (RFC 9293 section 3.10.7) for one connection: SYN-SENT,
//! the acceptability test, RFC 5961's checks, PAWS, RST and SYN handling,
//! data into the receive buffer, and FIN. Acknowledgement processing is in
//! [`super::ack`].

use crate::wire::{TcpControl, TcpRepr};

use super::buffer::{Insert, RecvBuffer};
use super::conn::{ConnError, Signals, Tcb};
use super::timer::Timers;
use super::State;
use crate::config::Config;
use crate::stats::Stats;
use hydra_base::time::Instant;
use hydra_base::Role;
use hydra_base::Seq;

impl Tcb {
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
    pub(super) fn input_syn_sent(
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

    pub(super) fn negotiate_from_synack(&mut self, cfg: &Config, seg: &TcpRepr<'_>) {
        let ours = cfg.mss_for(self.key.local.ip());
        if let Some(mss) = seg.max_seg_size {
            self.opts.send_mss = mss.clamp(64, ours);
            self.cc.set_mss(self.opts.send_mss as u32);
        } else {
            self.opts.send_mss = crate::config::default_mss(self.key.local.ip()).min(ours);
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

    pub(super) fn take_rtt_sample_syn(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        if let (true, Some(ts)) = (self.opts.timestamps, seg.timestamp) {
            self.sample_rtt_ts(now, ts.tsecr);
        }
    }

    pub(super) fn sample_rtt_ts(&mut self, now: Instant, tsecr: u32) {
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
    pub(super) fn acceptable(&self, seq: Seq, len: u32) -> bool {
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

    pub(super) fn input_synchronized(
        &mut self,
        now: Instant,
        cfg: &Config,
        seg: &TcpRepr<'_>,
        stats: &mut Stats,
        sig: &mut Signals,
    ) {
        let seq = Seq(seg.seq_number.0 as u32);
        let is_syn = seg.control == TcpControl::Syn;

        // SYN-RECEIVED: a retransmitted SYN of the same connection gets our SYN-ACK again.
        if self.state == State::SynReceived && is_syn && seq == self.irs && seg.ack_number.is_none()
        {
            self.snd_nxt = self.iss;
            return;
        }
        if self.rejected_by_paws(seg, stats)
            || self.outside_window(now, cfg, seq, seg, stats)
            || self.rst_or_syn_handled(seq, seg, stats, sig)
        {
            return;
        }
        //# fifth, check the ACK field: if the ACK bit is off, drop the segment and return
        let Some(ack) = seg.ack_number else { return };
        let ack = Seq(ack.0 as u32);
        if self.state == State::SynReceived && !self.handshake_completed(now, seq, ack, seg, sig) {
            return;
        }
        if !self.ack_acceptable(ack, stats) {
            return;
        }
        self.note_timestamps(now, seq, seg);
        self.process_ack(now, cfg, seq, ack, seg, stats, sig);
        if self.state == State::Closed {
            return;
        }
        self.segment_text_and_fin(now, cfg, seq, seg, stats, sig);
    }

    //= RFC 7323 section 5.3
    //# R1) If there is a Timestamps option in the arriving segment, SEG.TSval < TS.Recent,
    //# TS.Recent is valid (see later discussion), and if the RST bit is not set, then treat
    //# the arriving segment as not acceptable: Send an acknowledgement in reply as specified
    //# in RFC 793, page 69, and drop the segment.
    /// PAWS: true (and an ACK owed) when the segment's timestamp is older
    /// than TS.Recent.
    fn rejected_by_paws(&mut self, seg: &TcpRepr<'_>, stats: &mut Stats) -> bool {
        let is_rst = seg.control == TcpControl::Rst;
        if !self.opts.timestamps || is_rst || self.state == State::SynReceived {
            return false;
        }
        match seg.timestamp {
            Some(ts) if (ts.tsval.wrapping_sub(self.ts_recent) as i32) < 0 => {
                stats.drop_paws += 1;
                self.ack_now = true;
                true
            }
            _ => false,
        }
    }

    //= RFC 9293 section 3.10.7.4
    //# If an incoming segment is not acceptable, an acknowledgment should be sent in reply
    //# (unless the RST bit is set, if so drop the segment and return)
    /// The sequence check: true when no part of the segment falls in the
    /// receive window (an ACK is owed unless it is a RST).
    fn outside_window(
        &mut self,
        now: Instant,
        cfg: &Config,
        seq: Seq,
        seg: &TcpRepr<'_>,
        stats: &mut Stats,
    ) -> bool {
        let is_rst = seg.control == TcpControl::Rst;
        let fin = seg.control == TcpControl::Fin;
        let is_syn = seg.control == TcpControl::Syn;
        let seg_len = seg.payload.len() as u32 + u32::from(fin) + u32::from(is_syn);
        if self.acceptable(seq, seg_len) {
            return false;
        }
        stats.drop_out_of_window += 1;
        if !is_rst {
            self.ack_now = true;
        }
        if self.state == State::TimeWait && fin {
            self.restart_time_wait(now, cfg);
        }
        true
    }

    //= RFC 5961 section 3.2
    //# 1) If the RST bit is set and the sequence number is outside the current receive
    //# window, silently drop the segment.
    //# 2) If the RST bit is set and the sequence number exactly matches the next expected
    //# sequence number (RCV.NXT), then TCP MUST reset the connection.
    //# 3) If the RST bit is set and the sequence number does not exactly match the next
    //# expected sequence value, yet is within the current receive window, TCP MUST send an
    //# acknowledgment (challenge ACK)
    //= RFC 5961 section 4.2
    //# ... if the SYN bit is set, irrespective of the sequence number, TCP MUST send an ACK
    //# (also referred to as challenge ACK) to the remote peer
    /// An in-window RST or SYN: resets at exactly RCV.NXT, else a challenge
    /// ACK. True when the segment was one of them.
    fn rst_or_syn_handled(
        &mut self,
        seq: Seq,
        seg: &TcpRepr<'_>,
        stats: &mut Stats,
        sig: &mut Signals,
    ) -> bool {
        match seg.control {
            TcpControl::Rst if seq == self.rcv_nxt => {
                stats.resets_received += 1;
                let err = if self.state == State::SynReceived {
                    None
                } else {
                    Some(ConnError::Reset)
                };
                self.close_with(err, sig);
                true
            }
            TcpControl::Rst | TcpControl::Syn => {
                stats.challenge_acks += 1;
                self.ack_now = true;
                true
            }
            _ => false,
        }
    }

    //# If SND.UNA < SEG.ACK =< SND.NXT, then enter ESTABLISHED state
    //# If the segment acknowledgment is not acceptable, form a reset segment
    /// SYN-RECEIVED meets the handshake's last ACK: true when it completed
    /// the handshake (a backup accepts any ACK above its ISS: the primary
    /// sent the SYN-ACK); false when a reset is owed instead.
    fn handshake_completed(
        &mut self,
        now: Instant,
        seq: Seq,
        ack: Seq,
        seg: &TcpRepr<'_>,
        sig: &mut Signals,
    ) -> bool {
        let limit = if self.role == Role::Backup {
            ack
        } else {
            self.snd_max
        };
        if !(ack > self.snd_una && ack <= limit) {
            if self.role != Role::Backup {
                self.reply_rst = Some(ack);
            }
            return false;
        }
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
        true
    }

    //= RFC 5961 section 5.2
    //# The ACK value is considered acceptable only if it is in the range of
    //# ((SND.UNA - MAX.SND.WND) =< SEG.ACK =< SND.NXT). All incoming segments whose ACK
    //# value doesn't satisfy the above condition MUST be discarded and an ACK sent back.
    /// The ACK's range check; false (and a challenge ACK owed) outside it.
    /// A backup accepts ACKs above what it "sent": the primary sent that
    /// output (rule 4). So does a new primary, within a window of what it
    /// sent: a client that acknowledged the old primary's last output must
    /// not be answered with challenge ACKs for ever (sweep seed 302386).
    fn ack_acceptable(&mut self, ack: Seq, stats: &mut Stats) -> bool {
        let inherited =
            self.inherited_output && ack <= self.snd_max + self.max_snd_wnd.max(self.mss());
        let above = ack > self.snd_max && self.role != Role::Backup && !inherited;
        let below = ack < self.snd_una - self.max_snd_wnd.max(self.mss());
        if above || below {
            stats.challenge_acks += 1;
            self.ack_now = true;
            return false;
        }
        true
    }

    /// TS.Recent and the highest TSecr seen, from an acceptable segment.
    fn note_timestamps(&mut self, now: Instant, seq: Seq, seg: &TcpRepr<'_>) {
        let (true, Some(ts)) = (self.opts.timestamps, seg.timestamp) else {
            return;
        };
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

    /// RFC 9293's seventh and eighth steps: the segment's new bytes (its
    /// already-received left part trimmed) into the receive buffer, then
    /// its FIN.
    fn segment_text_and_fin(
        &mut self,
        now: Instant,
        cfg: &Config,
        seq: Seq,
        seg: &TcpRepr<'_>,
        stats: &mut Stats,
        sig: &mut Signals,
    ) {
        let mut payload = seg.payload;
        let mut fin = seg.control == TcpControl::Fin;
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
    pub(super) fn receive_data(
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
                // What a replica holds beyond the in-order end is reported
                // too: its primary's SACK blocks depend on it.
                sig.progress = true;
            }
            Insert::Duplicate => self.ack_now = true,
            Insert::OverLimit => {
                stats.drop_ooo_limit += 1;
                self.ack_now = true;
            }
        }
    }

    /// Process the peer's FIN once every byte before it arrived.
    pub(super) fn maybe_consume_fin(&mut self, now: Instant, cfg: &Config, sig: &mut Signals) {
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

    pub(super) fn restart_time_wait(&mut self, now: Instant, cfg: &Config) {
        self.timers.time_wait = Some(now + cfg.time_wait);
    }
}
