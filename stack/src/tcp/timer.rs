//! A connection's timers as deadlines (logical state; the stack's driver
//! turns the earliest one into a wakeup).

use hydra_base::time::Instant;

/// Armed timers of one connection; `None` means not running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timers {
    /// Retransmission timer (RFC 6298).
    pub rto: Option<Instant>,
    /// Delayed ACK (RFC 1122 4.2.3.2, RFC 5681 4.2).
    pub delayed_ack: Option<Instant>,
    /// Zero-window probe (RFC 9293 3.8.6.1).
    pub persist: Option<Instant>,
    /// Keepalive probe (RFC 1122 4.2.3.6).
    pub keepalive: Option<Instant>,
    /// End of TIME-WAIT (2 MSL).
    pub time_wait: Option<Instant>,
    /// Latest end of SYN-RECEIVED, in every role: a backup never sends the
    /// SYN-ACK whose retransmissions would end it, and a primary waits
    /// for its backups before sending one.
    pub half_open: Option<Instant>,
}

impl Timers {
    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        [
            self.rto,
            self.delayed_ack,
            self.persist,
            self.keepalive,
            self.time_wait,
            self.half_open,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

use super::conn::{ConnError, Signals, Tcb};
use super::State;
use crate::config::Config;
use crate::stats::Stats;
use hydra_base::time::Duration;
use hydra_base::Role;

impl Tcb {
    /// Fire every timer whose deadline is at or before `now`.
    pub fn on_timeout(&mut self, now: Instant, cfg: &Config, stats: &mut Stats) -> Signals {
        let mut sig = Signals::default();
        if matches!(self.timers.time_wait, Some(t) if t <= now) {
            self.timers.time_wait = None;
            self.close_with(None, &mut sig);
            return sig;
        }
        if matches!(self.timers.half_open, Some(t) if t <= now) {
            self.timers.half_open = None;
            if self.state == State::SynReceived {
                stats.half_open_expired += 1;
                self.close_with(Some(ConnError::TimedOut), &mut sig);
                return sig;
            }
        }
        if matches!(self.timers.delayed_ack, Some(t) if t <= now) {
            self.timers.delayed_ack = None;
            self.ack_now = true;
        }
        if matches!(self.timers.rto, Some(t) if t <= now) {
            self.timers.rto = None;
            self.on_rto(now, cfg, stats, &mut sig);
            if self.state == State::Closed {
                return sig;
            }
        }
        if matches!(self.timers.persist, Some(t) if t <= now) {
            self.timers.persist = None;
            self.on_persist(now, cfg);
        }
        if matches!(self.timers.keepalive, Some(t) if t <= now) {
            self.timers.keepalive = None;
            self.on_keepalive(now, cfg, &mut sig);
        }
        sig
    }

    //= RFC 6298 section 5
    //# (5.4) Retransmit the earliest segment that has not been acknowledged by the TCP receiver.
    //# (5.5) The host MUST set RTO <- RTO * 2 ("back off the timer").
    //# (5.6) Start the retransmission timer, such that it expires after RTO seconds
    fn on_rto(&mut self, now: Instant, cfg: &Config, stats: &mut Stats, sig: &mut Signals) {
        if self.role == Role::Backup
            || self.snd_una >= self.snd_max
                && self.state != State::SynSent
                && self.state != State::SynReceived
        {
            return;
        }
        self.retries += 1;
        let limit = if self.state == State::SynReceived {
            cfg.synack_retries
        } else {
            cfg.max_retransmissions
        };
        if self.retries > limit {
            self.close_with(Some(ConnError::TimedOut), sig);
            return;
        }
        stats.rto_expirations += 1;
        stats.retransmits += 1;
        self.rtt.backoff();
        if self.is_synchronized() {
            //= RFC 5681 section 3.1
            //# when a TCP sender detects segment loss using the retransmission timer ... the value
            //# of ssthresh MUST be set to no more than the value given in equation (4)
            if self.retries == 1 {
                self.cc.on_rto(now, self.flight());
            } else {
                self.cc.set_window(self.mss());
            }
        }
        // Go back: resend from the oldest unacknowledged byte (or the SYN).
        self.go_back_to_unacknowledged();
        self.timers.rto = Some(now + self.rtt.rto());
    }

    /// Send again from the oldest unacknowledged byte: what was sent
    /// after it is taken as lost, with the recovery, SACK and RTT-sample
    /// state that went with it.
    pub(crate) fn go_back_to_unacknowledged(&mut self) {
        self.snd_nxt = self.snd_una;
        self.recovery = None;
        self.dupacks = 0;
        self.scoreboard.clear();
        self.high_rxt = self.snd_una;
        self.rtt_probe = None;
    }

    /// How long a half-open connection may live: the SYN-ACK and its
    /// `synack_retries` retransmissions with their back-off, and one initial
    /// RTO more, so a backup keeps its copy a little longer than the
    /// primary, which starts the schedule once the backups hold the SYN.
    /// (A backup that gave up a connection the client completes after all
    /// gets it from the log's "opened" entry.)
    pub fn half_open_lifetime(cfg: &Config) -> Duration {
        let mut total = cfg.rto_initial;
        let mut rto = cfg.rto_initial.max(cfg.rto_min);
        for _ in 0..=cfg.synack_retries.min(64) {
            total = total + rto.min(cfg.rto_max);
            rto = rto.saturating_mul(2);
        }
        total
    }

    /// Zero-window probe: output sends one byte beyond the window.
    fn on_persist(&mut self, now: Instant, cfg: &Config) {
        let waiting = self.send.end().since(self.snd_nxt) as usize;
        let window_fits = self.snd_wnd as usize >= waiting.min(usize::from(self.opts.send_mss));
        if self.role == Role::Backup || self.snd_nxt >= self.send.end() || window_fits {
            return;
        }
        self.persist_probe = true;
        self.persist_backoff = (self.persist_backoff + 1).min(16);
        let base = self.rtt.rto().max(cfg.rto_min);
        let wait = Duration::from_micros(
            base.total_micros()
                .saturating_mul(1 << self.persist_backoff.min(6)),
        )
        .min(cfg.rto_max);
        self.timers.persist = Some(now + wait);
    }

    //= RFC 1122 section 4.2.3.6
    //# Keep-alive packets MUST only be sent when no data or acknowledgement packets have been
    //# received for the connection within an interval.
    fn on_keepalive(&mut self, now: Instant, cfg: &Config, sig: &mut Signals) {
        let Some(idle) = cfg.keepalive else { return };
        if self.role == Role::Backup || !self.is_synchronized() {
            return;
        }
        let since = now - self.last_recv_at;
        if since < idle && self.keepalive_probes == 0 {
            self.timers.keepalive = Some(self.last_recv_at + idle);
            return;
        }
        if self.keepalive_probes >= cfg.keepalive_probes {
            self.close_with(Some(ConnError::TimedOut), sig);
            return;
        }
        self.keepalive_probes += 1;
        self.keepalive_probe = true;
        self.timers.keepalive = Some(now + cfg.keepalive_interval);
    }

    /// Re-arm the keepalive timer after activity.
    pub fn arm_keepalive(&mut self, cfg: &Config) {
        if let Some(idle) = cfg.keepalive {
            if self.is_synchronized()
                && self.timers.keepalive.is_none()
                && self.role != Role::Backup
            {
                self.timers.keepalive = Some(self.last_recv_at + idle);
            }
        }
    }
}
