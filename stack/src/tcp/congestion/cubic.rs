//! CUBIC congestion avoidance (RFC 9438). Window arithmetic is done in
//! segments as floating point, as the RFC's formulas are written.

use hydra_base::time::{Duration, Instant};

/// RFC 9438 section 4.6: multiplicative decrease factor.
const BETA: f64 = 0.7;
/// RFC 9438 section 5: scaling constant, segments per second cubed.
const C: f64 = 0.4;
/// RFC 9438 section 4.3: additive increase of the Reno-friendly estimate.
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);

#[derive(Debug, Clone, Default)]
pub struct Cubic {
    /// Window before the last reduction, segments (W_max).
    w_max: f64,
    /// W_max before the previous reduction, for fast convergence.
    w_last_max: f64,
    /// Start of the current avoidance epoch; None until the first ACK in it.
    epoch_start: Option<Instant>,
    /// Window at epoch start, segments.
    cwnd_epoch: f64,
    k: f64,
    /// Reno-friendly window estimate, segments (W_est).
    w_est: f64,
}

impl Cubic {
    /// Congestion avoidance growth for one ACK; returns the new cwnd in bytes.
    pub fn on_ack(
        &mut self,
        now: Instant,
        cwnd: u32,
        acked: u32,
        mss: u32,
        srtt: Option<Duration>,
    ) -> u32 {
        let mss_f = f64::from(mss);
        let cwnd_seg = f64::from(cwnd) / mss_f;
        let epoch = match self.epoch_start {
            Some(t) => t,
            None => {
                // Section 4.2: a new epoch starts at the first ACK in avoidance.
                self.epoch_start = Some(now);
                self.cwnd_epoch = cwnd_seg;
                self.w_est = cwnd_seg;
                self.k = if self.w_max > cwnd_seg {
                    ((self.w_max - cwnd_seg) / C).cbrt()
                } else {
                    0.0
                };
                if self.w_max < cwnd_seg {
                    self.w_max = cwnd_seg;
                }
                now
            }
        };
        let rtt = srtt.map_or(0.1, |d| d.total_micros() as f64 / 1e6);
        let t = (now - epoch).total_micros() as f64 / 1e6;
        // Section 4.2: W_cubic(t + RTT), target clamped to [cwnd, 1.5 cwnd].
        let w_cubic = C * (t + rtt - self.k).powi(3) + self.w_max;
        let target = w_cubic.clamp(cwnd_seg, 1.5 * cwnd_seg);
        // Section 4.3: Reno-friendly region.
        let acked_seg = f64::from(acked) / mss_f;
        self.w_est += ALPHA * acked_seg / cwnd_seg;
        let next = if w_cubic < self.w_est {
            self.w_est
        } else {
            // Section 4.4/4.5: grow by (target - cwnd)/cwnd per segment acked.
            cwnd_seg + (target - cwnd_seg) / cwnd_seg * acked_seg
        };
        let bytes = (next * mss_f).min(f64::from(u32::MAX)) as u32;
        bytes.max(cwnd)
    }

    /// Section 4.6 and 4.7: remember W_max (with fast convergence) and return
    /// the new ssthresh in bytes.
    pub fn on_loss(&mut self, _now: Instant, cwnd: u32, flight: u32, mss: u32) -> u32 {
        let cwnd_seg = f64::from(cwnd) / f64::from(mss);
        self.w_max = if cwnd_seg < self.w_last_max {
            cwnd_seg * (1.0 + BETA) / 2.0
        } else {
            cwnd_seg
        };
        self.w_last_max = cwnd_seg;
        self.epoch_start = None;
        let ssthresh = (f64::from(flight) * BETA) as u32;
        ssthresh.max(2 * mss)
    }

    /// After idle the cubic curve must not jump ahead by the idle time.
    pub fn restart_epoch(&mut self, _now: Instant) {
        self.epoch_start = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: u32 = 1000;

    #[test]
    fn loss_reduces_by_beta() {
        let mut c = Cubic::default();
        assert_eq!(
            c.on_loss(Instant::ZERO, 100 * MSS, 100 * MSS, MSS),
            70 * MSS
        );
        assert_eq!(c.w_max, 100.0);
    }

    #[test]
    fn fast_convergence_lowers_w_max_on_consecutive_losses() {
        let mut c = Cubic::default();
        c.on_loss(Instant::ZERO, 100 * MSS, 100 * MSS, MSS);
        c.on_loss(Instant::ZERO, 80 * MSS, 80 * MSS, MSS);
        assert!((c.w_max - 80.0 * 1.7 / 2.0).abs() < 1e-9);
    }

    #[test]
    fn window_is_concave_then_convex_around_w_max() {
        let mut c = Cubic::default();
        // A long RTT keeps CUBIC out of its Reno-friendly region.
        let rtt = Some(Duration::from_millis(100));
        c.on_loss(Instant::ZERO, 100 * MSS, 100 * MSS, MSS);
        let mut cwnd = 70 * MSS;
        let mut t = Instant::from_millis(1);
        let mut growth = Vec::new();
        // Ack one window per RTT for 10 simulated seconds.
        for _ in 0..100 {
            let before = cwnd;
            let segs = cwnd / MSS;
            for _ in 0..segs {
                cwnd = c.on_ack(t, cwnd, MSS, MSS, rtt);
            }
            growth.push((before, cwnd - before));
            t += Duration::from_millis(100);
        }
        // K = cbrt(30/0.4) ~ 4.2 s: growth slows approaching W_max, speeds after.
        let near_plateau = growth
            .iter()
            .find(|(w, _)| *w >= 99 * MSS)
            .expect("reaches w_max");
        let early = growth[1].1;
        let late = growth.last().unwrap().1;
        assert!(
            near_plateau.1 < early,
            "concave: {near_plateau:?} vs {early}"
        );
        assert!(late > near_plateau.1, "convex: {late} vs {near_plateau:?}");
    }

    #[test]
    fn reno_friendly_region_is_never_slower_than_reno() {
        let mut c = Cubic::default();
        // Tiny window, tiny RTT: the cubic term barely moves; W_est must.
        c.on_loss(Instant::ZERO, 4 * MSS, 4 * MSS, MSS);
        let mut cwnd = 2 * MSS;
        for i in 0..200u64 {
            cwnd = c.on_ack(
                Instant::from_micros(i),
                cwnd,
                MSS,
                MSS,
                Some(Duration::from_micros(100)),
            );
        }
        assert!(cwnd > 4 * MSS, "cwnd {cwnd}");
    }
}
