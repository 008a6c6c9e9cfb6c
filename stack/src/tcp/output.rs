//! What a connection sends next: SYN, retransmissions, new data, FIN, ACKs
//! and probes, within the congestion and receive windows.

use crate::wire::{TcpControl, TcpRepr, TcpSeqNumber, TcpTimestampRepr};

use super::conn::Tcb;
use super::State;
use crate::config::Config;
use crate::stats::Stats;
use hydra_base::time::Instant;
use hydra_base::Role;
use hydra_base::Seq;

/// One segment to emit: the header, and which send-buffer bytes follow it.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing {
    pub header: TcpRepr<'static>,
    pub payload_seq: Seq,
    pub payload_len: usize,
}

fn seqn(s: Seq) -> TcpSeqNumber {
    TcpSeqNumber(s.0 as i32)
}

/// TCP options on our data segments: timestamps (10 bytes) and SACK
/// blocks (2 + 8 per block), padded to a multiple of 4 (as encoded).
fn options_len(timestamps: bool, sack_blocks: usize) -> usize {
    let ts = if timestamps { 10 } else { 0 };
    let sack = if sack_blocks > 0 {
        2 + 8 * sack_blocks
    } else {
        0
    };
    (ts + sack).div_ceil(4) * 4
}

impl Tcb {
    /// Payload bytes the next segment may carry once its options are paid
    /// for. The peer's MSS counts data only (RFC 9293 3.7.1): SACK blocks,
    /// which a gated primary sends while it holds out-of-order data, must
    /// come out of the payload too, or full segments exceed the path MTU
    /// and are lost at every retransmission (seen as multi-second stalls
    /// on lossy redirector links).
    pub fn effective_mss(&self, cfg: &Config) -> usize {
        let blocks = self.sack_blocks_to_send(cfg).iter().flatten().count();
        (self.mss() as usize)
            .saturating_sub(options_len(self.opts.timestamps, blocks))
            .max(1)
    }

    /// The SACK blocks of our next segment. A group's primary reports its
    /// out-of-order data too (without SACK blocks a client that negotiated
    /// SACK does not fast-retransmit a segment every replica lost, and waits
    /// for its RTO), but only the parts every live member holds
    /// (`sack_allowed`): a client that saw a block for bytes a new primary
    /// lacks would retransmit them only at its timeout.
    pub(crate) fn sack_blocks_to_send(&self, cfg: &Config) -> [Option<(u32, u32)>; 3] {
        if !self.opts.sack || !cfg.sack_blocks {
            return [None; 3];
        }
        let own = self.recv.sack_blocks();
        if self.role != Role::Primary {
            return own;
        }
        let mut out = [None; 3];
        let mut n = 0;
        for (start, end) in own.iter().flatten() {
            let block = [Some((Seq(*start), Seq(*end))), None, None];
            for (s, e) in hydra_base::intersect_held(&block, &self.sack_allowed)
                .iter()
                .flatten()
            {
                if n < out.len() {
                    out[n] = Some((s.0, e.0));
                    n += 1;
                }
            }
        }
        out
    }

    /// ACK number and right window edge to announce, gated on a primary (DESIGN rule 2).
    fn ack_and_edge(&self) -> (Seq, Seq) {
        let own_edge = self.right_edge();
        match self.gate {
            Some(g) if self.role == Role::Primary => {
                let ack = self
                    .rcv_nxt
                    .min(g.ack)
                    .max(self.last_ack_sent.min(self.rcv_nxt));
                let edge = own_edge.min(g.right_edge).max(self.rcv_adv);
                (ack, edge)
            }
            _ => (self.rcv_nxt, own_edge),
        }
    }

    fn header(
        &self,
        now: Instant,
        cfg: &Config,
        seq: Seq,
        control: TcpControl,
    ) -> TcpRepr<'static> {
        let (ack, edge) = self.ack_and_edge();
        let shift = self.opts.rcv_wscale;
        let span = edge.since(ack) as u64;
        // Round down: the right edge may move left by less than one scale
        // unit, which RFC 7323 2.4 allows, but never past what we can hold.
        // Rounding up would let the edge creep beyond the buffer by up to
        // 2^shift - 1 bytes on every ACK (and, in a group, beyond what the
        // backups confirmed: the simulator caught that).
        let field = (span >> shift).min(u16::MAX as u64) as u16;
        let sack_ranges = self.sack_blocks_to_send(cfg);
        TcpRepr {
            src_port: self.key.local.port(),
            dst_port: self.key.remote.port(),
            control,
            seq_number: seqn(seq),
            ack_number: Some(seqn(ack)),
            window_len: field,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges,
            timestamp: self
                .opts
                .timestamps
                .then(|| TcpTimestampRepr::new(self.tsval(now), self.ts_recent)),
            payload: &[],
        }
    }

    /// Record that a segment carrying our current ACK went out.
    fn note_ack_sent(&mut self, hdr: &TcpRepr<'_>) {
        if let Some(ack) = hdr.ack_number {
            let ack = Seq(ack.0 as u32);
            self.last_ack_sent = ack;
            // The window of a SYN-ACK is not scaled (RFC 7323 2.2): counting
            // it scaled would promise the peer far more than the buffer.
            let shift = if hdr.control == TcpControl::Syn {
                0
            } else {
                self.opts.rcv_wscale
            };
            let edge = ack + ((hdr.window_len as u32) << shift);
            self.rcv_adv = self.rcv_adv.max(edge);
        }
        self.ack_now = false;
        self.unacked_segments = 0;
        self.timers.delayed_ack = None;
    }

    /// The SYN or SYN-ACK with our options (RFC 7323 2.2, 3.2; RFC 2018 2).
    fn syn_segment(&mut self, now: Instant, cfg: &Config) -> Outgoing {
        let with_ack = self.state == State::SynReceived;
        let mut hdr = self.header(now, cfg, self.iss, TcpControl::Syn);
        if !with_ack {
            hdr.ack_number = None;
            hdr.timestamp = self
                .opts
                .timestamps
                .then(|| TcpTimestampRepr::new(self.tsval(now), 0));
        }
        // Window in a SYN is never scaled.
        hdr.window_len = self.recv_space().min(u16::MAX as u32) as u16;
        hdr.max_seg_size = Some(cfg.mss_for(self.key.local.ip()));
        hdr.window_scale = (with_ack && self.opts.snd_wscale_negotiated()
            || !with_ack && cfg.window_scaling)
            .then_some(self.opts.rcv_wscale);
        hdr.sack_permitted = self.opts.sack;
        hdr.sack_ranges = [None; 3];
        self.snd_nxt = self.iss + 1u32;
        self.snd_max = self.snd_max.max(self.snd_nxt);
        self.timers.rto.get_or_insert(now + self.rtt.rto());
        if with_ack {
            self.note_ack_sent(&hdr);
        }
        Outgoing {
            header: hdr,
            payload_seq: self.snd_nxt,
            payload_len: 0,
        }
    }

    /// Decide the next segment, if any. `max_payload` caps one segment's data
    /// (one MSS, or more when the device does segmentation offload).
    pub fn poll_output(
        &mut self,
        now: Instant,
        cfg: &Config,
        max_payload: usize,
        stats: &mut Stats,
    ) -> Option<Outgoing> {
        if self.role == Role::Backup {
            return self.account_backup_output(stats);
        }
        match self.state {
            State::Closed | State::Listen | State::TimeWait if !self.ack_now => return None,
            State::Closed | State::Listen => return None,
            State::SynSent | State::SynReceived => {
                if self.snd_nxt == self.iss {
                    let syn_held = match self.gate {
                        Some(g)
                            if self.role == Role::Primary && self.state == State::SynReceived =>
                        {
                            g.ack >= self.rcv_nxt
                        }
                        _ => true,
                    };
                    if !syn_held {
                        return None; // not every backup holds the SYN yet
                    }
                    return Some(self.syn_segment(now, cfg));
                }
                if self.state == State::SynSent {
                    return None;
                }
            }
            _ => {}
        }
        if self.is_synchronized() && self.state != State::TimeWait {
            if let Some(out) = self.data_segment(now, cfg, max_payload, stats) {
                return Some(out);
            }
        }
        if self.keepalive_probe {
            self.keepalive_probe = false;
            //= RFC 1122 section 4.2.3.6
            //# such a segment generally contains SEG.SEQ = SND.NXT-1 and may or may not contain one garbage octet of data.
            let hdr = self.header(now, cfg, self.snd_una - 1u32, TcpControl::None);
            self.note_ack_sent(&hdr);
            return Some(Outgoing {
                header: hdr,
                payload_seq: self.snd_nxt,
                payload_len: 0,
            });
        }
        if self.ack_now || self.dupack_burst > 0 {
            if !self.ack_now {
                self.dupack_burst -= 1;
            }
            // A pure ACK carries the highest sequence number sent (RFC 9293's
            // SND.NXT): after a go-back retransmission our snd_nxt is behind
            // what the peer already holds, and a SEQ left of its RCV.NXT would
            // make it drop the ACK.
            let seq = if self.state == State::SynReceived {
                self.iss + 1u32
            } else {
                self.snd_max
            };
            let hdr = self.header(now, cfg, seq, TcpControl::None);
            self.note_ack_sent(&hdr);
            return Some(Outgoing {
                header: hdr,
                payload_seq: seq,
                payload_len: 0,
            });
        }
        None
    }

    /// End of the data we may transmit, and the FIN if we may send it: a
    /// passive primary only what the backups hold (output commit).
    fn transmittable(&self) -> (Seq, Option<Seq>) {
        let (end, fin) = (self.send.end(), self.fin_seq());
        match &self.passive {
            Some(p) if self.role != Role::Standalone => {
                let limit = p.send_limit.max(self.snd_una);
                (end.min(limit), fin.filter(|f| limit > *f))
            }
            _ => (end, fin),
        }
    }

    /// A backup sends nothing; what its application wrote counts as sent (rule 4).
    fn account_backup_output(&mut self, stats: &mut Stats) -> Option<Outgoing> {
        if self.state == State::SynReceived && self.snd_nxt == self.iss {
            self.snd_nxt = self.iss + 1u32;
            self.snd_max = self.snd_max.max(self.snd_nxt);
        }
        let end = self.send.end() + u32::from(self.fin_queued);
        self.snd_nxt = self.snd_nxt.max(end);
        self.snd_max = self.snd_max.max(end);
        if self.ack_now {
            stats.suppressed_segments += 1;
        }
        self.ack_now = false;
        self.dupack_burst = 0;
        self.keepalive_probe = false;
        self.persist_probe = false;
        self.unacked_segments = 0;
        self.timers.delayed_ack = None;
        None
    }

    /// Retransmission or new data (with FIN when it is next), if the windows allow.
    fn data_segment(
        &mut self,
        now: Instant,
        cfg: &Config,
        max_payload: usize,
        stats: &mut Stats,
    ) -> Option<Outgoing> {
        let (data_end, fin_seq) = self.transmittable();
        let mss = self.effective_mss(cfg);
        let cwnd = self.cc.window();

        // Loss recovery: resend holes first (RFC 6675 NextSeg, RFC 6582 partial ACK rule).
        if self.recovery.is_some() {
            let from = self.high_rxt.max(self.snd_una);
            let hole = if self.opts.sack && !self.scoreboard.is_empty() {
                self.scoreboard.next_hole(from)
            } else if self.high_rxt <= self.snd_una {
                Some((self.snd_una, self.snd_max))
            } else {
                None
            };
            if let Some((start, end)) = hole {
                let sacked = self.scoreboard.sacked_bytes();
                let lost = self.scoreboard.hole_bytes_from(from);
                let pipe = self.flight().saturating_sub(sacked).saturating_sub(lost);
                let len = (end.since(start) as usize)
                    .min(mss)
                    .min(data_end.since(start) as usize);
                if (pipe as usize + len <= cwnd as usize || self.high_rxt <= self.snd_una)
                    && (len > 0 || fin_seq == Some(start))
                {
                    self.high_rxt = start + len.max(1);
                    stats.retransmits += 1;
                    return Some(self.emit_data(now, cfg, start, len, fin_seq));
                }
            }
        }

        // New data, or go-back-N retransmission after a timeout (snd_nxt < snd_max).
        let in_flight = if self.recovery.is_some() && self.opts.sack {
            self.flight().saturating_sub(self.scoreboard.sacked_bytes())
        } else {
            self.snd_nxt.since(self.snd_una)
        };
        let wnd_limit = self.snd_una + self.snd_wnd;
        let cwnd_room = cwnd.saturating_sub(in_flight) as usize;
        let rwnd_room = wnd_limit.since(self.snd_nxt) as usize;
        let avail = data_end.since(self.snd_nxt) as usize;
        let room = cwnd_room.min(rwnd_room);
        let mut len = avail.min(room).min(max_payload.max(mss));
        if len > mss {
            len -= len % mss; // whole segments when super-segmenting
        }
        let probing = self.persist_probe;
        if self.persist_probe {
            self.persist_probe = false;
            if avail > 0 && len == 0 {
                //= RFC 9293 section 3.8.6.1
                //# The sending TCP must regularly transmit at least one octet of new data (if
                //# available), or retransmit to the receiver if no new data is available
                return Some(self.emit_data(now, cfg, self.snd_nxt, 1, None));
            }
        }
        let retransmitting = self.snd_nxt < self.snd_max;
        if len > 0 {
            //= RFC 9293 section 3.7.4
            //# if there is unacknowledged data ... the sender should buffer all user data
            //# (regardless of the PSH bit) until the outstanding data has been acknowledged or
            //# until the TCP endpoint can send a full-sized segment (Nagle)
            // Minshall's variant (as Linux): hold a short segment only
            // while an earlier short one is unacknowledged, so the tail of a
            // write does not wait for the peer's delayed ACK.
            let full = len >= mss;
            let all_queued = len == avail;
            let no_small_outstanding = self.snd_sml <= self.snd_una;
            let sws_ok = self.max_snd_wnd > 0 && len as u32 >= self.max_snd_wnd / 2;
            // A persist probe into a window too small for a full segment
            // sends what fits (RFC 1122 4.2.3.4's override of SWS avoidance).
            let may_send = full
                || retransmitting
                || probing
                || sws_ok
                || (all_queued && (no_small_outstanding || self.nodelay || self.fin_queued));
            if may_send {
                if retransmitting {
                    stats.retransmits += 1;
                }
                if len < mss {
                    self.snd_sml = self.snd_nxt + len;
                }
                return Some(self.emit_data(now, cfg, self.snd_nxt, len, fin_seq));
            }
        }
        // Data waiting, nothing in flight, and a window too small to send it
        // (zero, or under a segment so SWS avoidance holds it): the persist
        // timer probes (RFC 9293 3.8.6.1, RFC 1122 4.2.3.4). Without it a
        // peer that never sends a window update would stall us forever.
        if avail > 0
            && rwnd_room < avail.min(mss)
            && self.snd_nxt == self.snd_una
            && self.timers.persist.is_none()
        {
            self.timers.persist = Some(now + self.rtt.rto());
        }
        // A FIN alone, once all data is out.
        if let Some(f) = fin_seq {
            if self.snd_nxt == f {
                return Some(self.emit_data(now, cfg, f, 0, fin_seq));
            }
        }
        None
    }

    /// Build a data segment `[seq, seq+len)`, adding our FIN if it follows.
    fn emit_data(
        &mut self,
        now: Instant,
        cfg: &Config,
        seq: Seq,
        len: usize,
        fin_seq: Option<Seq>,
    ) -> Outgoing {
        let with_fin = fin_seq == Some(seq + len);
        let control = if with_fin {
            TcpControl::Fin
        } else if len > 0 && seq + len == self.send.end() {
            TcpControl::Psh
        } else {
            TcpControl::None
        };
        let hdr = self.header(now, cfg, seq, control);
        let end = seq + len + u32::from(with_fin);
        if end > self.snd_nxt {
            // Time one new segment when timestamps are off (Karn: never a retransmission).
            if self.rtt_probe.is_none() && !self.opts.timestamps && seq >= self.snd_max {
                self.rtt_probe = Some((seq, now));
            }
            self.snd_nxt = end;
        }
        self.snd_max = self.snd_max.max(end);
        if self.timers.rto.is_none() {
            self.timers.rto = Some(now + self.rtt.rto());
        }
        if now - self.last_send_at > self.rtt.rto() && seq == self.snd_una && self.snd_nxt == end {
            // RFC 5681 4.1: restart window after an idle period.
            self.cc.on_idle_restart(now);
        }
        self.last_send_at = now;
        self.note_ack_sent(&hdr);
        Outgoing {
            header: hdr,
            payload_seq: seq,
            payload_len: len,
        }
    }
}

impl super::conn::Options {
    /// Window scaling is in use on this connection.
    pub fn snd_wscale_negotiated(&self) -> bool {
        self.window_scale_ok
    }
}
