//! Congestion control: slow start and loss reactions shared by both
//! algorithms (RFC 5681), congestion avoidance per algorithm.

mod cubic;
mod reno;

use crate::config::CongestionKind;
use hydra_base::time::{Duration, Instant};

use cubic::Cubic;
use reno::Reno;

/// Congestion avoidance growth rule.
#[derive(Debug, Clone)]
enum Avoidance {
    NewReno(Reno),
    Cubic(Cubic),
}

/// Congestion window state of one connection, in bytes.
#[derive(Debug, Clone)]
pub struct Congestion {
    cwnd: u32,
    ssthresh: u32,
    mss: u32,
    avoidance: Avoidance,
}

/// RFC 6928 initial window, bounded as in RFC 5681 section 3.1 for small MSS.
fn initial_window(mss: u32) -> u32 {
    (10 * mss).min((2 * mss).max(14_600))
}

impl Congestion {
    pub fn new(kind: CongestionKind, mss: u32) -> Self {
        let mss = mss.max(1);
        Self::restore(kind, mss, initial_window(mss), u32::MAX)
    }

    /// Rebuild from a snapshot; algorithm-internal history starts fresh,
    /// which only makes the next growth epoch conservative.
    pub fn restore(kind: CongestionKind, mss: u32, cwnd: u32, ssthresh: u32) -> Self {
        let avoidance = match kind {
            CongestionKind::NewReno => Avoidance::NewReno(Reno::default()),
            CongestionKind::Cubic => Avoidance::Cubic(Cubic::default()),
        };
        let mss = mss.max(1);
        Congestion {
            cwnd: cwnd.max(mss),
            ssthresh: ssthresh.max(2 * mss),
            mss,
            avoidance,
        }
    }

    pub fn kind(&self) -> CongestionKind {
        match self.avoidance {
            Avoidance::NewReno(_) => CongestionKind::NewReno,
            Avoidance::Cubic(_) => CongestionKind::Cubic,
        }
    }

    pub fn window(&self) -> u32 {
        self.cwnd
    }

    pub fn ssthresh(&self) -> u32 {
        self.ssthresh
    }

    pub fn set_mss(&mut self, mss: u32) {
        self.mss = mss.max(1);
    }

    /// New data acknowledged outside recovery. `cwnd_limited` says whether
    /// the sender was actually using the window (RFC 7661: no growth
    /// while application-limited).
    pub fn on_ack(&mut self, now: Instant, acked: u32, srtt: Option<Duration>, cwnd_limited: bool) {
        if !cwnd_limited || acked == 0 {
            return;
        }
        if self.cwnd < self.ssthresh {
            // RFC 5681 (2) with RFC 3465 byte counting, L = 2*SMSS.
            self.cwnd = self
                .cwnd
                .saturating_add(acked.min(2 * self.mss))
                .min(self.ssthresh.max(self.cwnd));
            return;
        }
        self.cwnd = match &mut self.avoidance {
            Avoidance::NewReno(r) => r.on_ack(self.cwnd, acked, self.mss),
            Avoidance::Cubic(c) => c.on_ack(now, self.cwnd, acked, self.mss, srtt),
        };
    }

    /// Loss detected by duplicate ACKs or SACK: RFC 5681 (4) for NewReno,
    /// RFC 9438 section 4.6 for CUBIC. Sets cwnd to ssthresh; NewReno
    /// recovery then inflates it as it chooses.
    pub fn on_congestion_event(&mut self, now: Instant, flight: u32) {
        self.ssthresh = match &mut self.avoidance {
            Avoidance::NewReno(r) => r.on_loss(flight, self.mss),
            Avoidance::Cubic(c) => c.on_loss(now, self.cwnd, flight, self.mss),
        };
        self.cwnd = self.ssthresh;
    }

    /// Retransmission timeout: RFC 5681 (4) and the loss window of one SMSS.
    pub fn on_rto(&mut self, now: Instant, flight: u32) {
        self.on_congestion_event(now, flight);
        self.cwnd = self.mss;
    }

    /// End of fast recovery (RFC 6582 section 3.2 step 3).
    pub fn on_recovery_exit(&mut self, _now: Instant, cwnd: u32) {
        self.set_window(cwnd);
    }

    /// Direct window assignment by the recovery logic.
    pub fn set_window(&mut self, cwnd: u32) {
        self.cwnd = cwnd.max(self.mss);
    }

    /// Sending after an idle period longer than RTO (RFC 5681 section 4.1).
    pub fn on_idle_restart(&mut self, now: Instant) {
        self.cwnd = self.cwnd.min(initial_window(self.mss));
        if let Avoidance::Cubic(c) = &mut self.avoidance {
            c.restart_epoch(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: u32 = 1000;

    #[test]
    fn initial_window_follows_rfc6928() {
        assert_eq!(
            Congestion::new(CongestionKind::NewReno, 1460).window(),
            14_600
        );
        assert_eq!(
            Congestion::new(CongestionKind::NewReno, 536).window(),
            5_360
        );
        assert_eq!(
            Congestion::new(CongestionKind::NewReno, 9000).window(),
            18_000
        );
    }

    #[test]
    fn slow_start_counts_bytes_up_to_two_segments_per_ack() {
        let mut c = Congestion::new(CongestionKind::NewReno, MSS);
        let w = c.window();
        c.on_ack(Instant::ZERO, 5 * MSS, None, true);
        assert_eq!(c.window(), w + 2 * MSS);
        c.on_ack(Instant::ZERO, MSS, None, false);
        assert_eq!(
            c.window(),
            w + 2 * MSS,
            "application-limited ACKs do not grow cwnd"
        );
    }

    #[test]
    fn loss_halves_flight_and_rto_drops_to_one_segment() {
        let mut c = Congestion::new(CongestionKind::NewReno, MSS);
        c.on_congestion_event(Instant::ZERO, 20 * MSS);
        assert_eq!(c.ssthresh(), 10 * MSS);
        assert_eq!(c.window(), 10 * MSS);
        c.on_rto(Instant::ZERO, 4 * MSS);
        assert_eq!(c.ssthresh(), 2 * MSS);
        assert_eq!(c.window(), MSS);
    }

    #[test]
    fn idle_restart_caps_at_initial_window() {
        let mut c = Congestion::restore(CongestionKind::Cubic, MSS, 100 * MSS, 50 * MSS);
        c.on_idle_restart(Instant::from_millis(5));
        assert_eq!(c.window(), 10 * MSS);
    }
}
