//! Acknowledgements arriving (RFC 9293 section 3.10.7.4 "fifth"): what the
//! peer acknowledged, RTT samples (RFC 6298, RFC 7323), duplicate ACKs and
//! fast retransmit (RFC 5681, RFC 6582), SACK (RFC 2018) and the send window.

use crate::wire::{TcpControl, TcpRepr};

use super::conn::{Signals, Tcb};
use super::State;
use crate::config::Config;
use crate::stats::Stats;
use hydra_base::time::Instant;
use hydra_base::Role;
use hydra_base::Seq;

impl Tcb {
    /// RFC 9293 3.10.7.4 "fifth" for synchronized states.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn process_ack(
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
    pub(super) fn data_ack_point(&self, ack: Seq) -> Seq {
        match self.fin_seq() {
            Some(f) if ack > f => f,
            _ => ack,
        }
    }

    pub(super) fn is_dupack(&self, seg: &TcpRepr<'_>, wnd: u32) -> bool {
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

    pub(super) fn rtt_sample_on_ack(&mut self, now: Instant, ack: Seq, seg: &TcpRepr<'_>) {
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
    pub(super) fn on_new_ack(
        &mut self,
        now: Instant,
        acked: u32,
        old_una: Seq,
        _stats: &mut Stats,
    ) {
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

    pub(super) fn on_dupack(&mut self, now: Instant, stats: &mut Stats) {
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
}
