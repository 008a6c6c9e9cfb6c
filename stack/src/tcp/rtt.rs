//! Retransmission timeout estimation (RFC 6298).

use hydra_base::time::Duration;

/// Clock granularity G of RFC 6298 section 2: our timers tick in microseconds
/// but segments are timed with millisecond timestamps, so 1 ms is honest.
const GRANULARITY: Duration = Duration::from_millis(1);
/// Back-off doublings beyond this cannot change the (clamped) result.
const MAX_BACKOFF_SHIFT: u32 = 16;

/// Smoothed RTT, RTT variance and the current RTO with exponential back-off.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    base_rto: Duration,
    min: Duration,
    max: Duration,
    backoff: u32,
}

impl RttEstimator {
    /// Before the first sample RTO is `initial` (RFC 6298 (2.1): 1 s).
    pub fn new(initial: Duration, min: Duration, max: Duration) -> Self {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            base_rto: initial,
            min,
            max,
            backoff: 0,
        }
    }

    /// Feed one measurement R. Callers follow Karn's rule: no samples from
    /// retransmitted segments unless timestamps disambiguate them.
    pub fn sample(&mut self, rtt: Duration) {
        let r = rtt.total_micros();
        match self.srtt {
            // (2.2) SRTT <- R, RTTVAR <- R/2
            None => {
                self.srtt = Some(rtt);
                self.rttvar = Duration::from_micros(r / 2);
            }
            // (2.3) RTTVAR <- 3/4 RTTVAR + 1/4 |SRTT - R'|; SRTT <- 7/8 SRTT + 1/8 R'
            Some(srtt) => {
                let s = srtt.total_micros();
                let delta = s.abs_diff(r);
                self.rttvar = Duration::from_micros((3 * self.rttvar.total_micros() + delta) / 4);
                self.srtt = Some(Duration::from_micros((7 * s + r) / 8));
            }
        }
        self.recompute();
        // (5.7) a new sample after back-off collapses the back-off.
        self.backoff = 0;
    }

    fn recompute(&mut self) {
        if let Some(srtt) = self.srtt {
            // RTO <- SRTT + max(G, K*RTTVAR), K = 4
            let var = self.rttvar.saturating_mul(4).max(GRANULARITY);
            self.base_rto = srtt + var;
        }
    }

    /// The timeout to arm now, back-off applied and clamped to [min, max]
    /// ((2.4) lower bound, (2.5) upper bound).
    pub fn rto(&self) -> Duration {
        let shifted = self
            .base_rto
            .saturating_mul(1u32 << self.backoff.min(MAX_BACKOFF_SHIFT));
        shifted.max(self.min).min(self.max)
    }

    /// (5.5) the timer expired: double RTO.
    pub fn backoff(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }

    #[cfg(test)]
    pub fn backoff_count(&self) -> u32 {
        self.backoff
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// Reinstate estimates carried in a connection snapshot.
    pub fn restore(&mut self, srtt: Option<Duration>, rttvar: Duration) {
        self.srtt = srtt;
        self.rttvar = rttvar;
        self.backoff = 0;
        self.recompute();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est() -> RttEstimator {
        RttEstimator::new(
            Duration::from_secs(1),
            Duration::from_millis(200),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn initial_rto_is_one_second() {
        assert_eq!(est().rto(), Duration::from_secs(1));
    }

    #[test]
    fn first_sample_sets_srtt_and_half_variance() {
        let mut e = est();
        e.sample(Duration::from_millis(100));
        assert_eq!(e.srtt(), Some(Duration::from_millis(100)));
        assert_eq!(e.rttvar(), Duration::from_millis(50));
        // 100 + 4*50 = 300 ms
        assert_eq!(e.rto(), Duration::from_millis(300));
    }

    #[test]
    fn later_samples_smooth_with_one_eighth_and_one_quarter_gains() {
        let mut e = est();
        e.sample(Duration::from_millis(100));
        e.sample(Duration::from_millis(180));
        // rttvar = (3*50 + 80)/4 = 57.5 ms, srtt = (700 + 180)/8 = 110 ms
        assert_eq!(e.rttvar(), Duration::from_micros(57_500));
        assert_eq!(e.srtt(), Some(Duration::from_millis(110)));
        assert_eq!(e.rto(), Duration::from_millis(340));
    }

    #[test]
    fn rto_is_clamped_to_minimum() {
        let mut e = est();
        e.sample(Duration::from_millis(1));
        assert_eq!(e.rto(), Duration::from_millis(200));
    }

    #[test]
    fn backoff_doubles_until_maximum_and_sample_resets_it() {
        let mut e = est();
        e.sample(Duration::from_millis(100));
        e.backoff();
        assert_eq!(e.rto(), Duration::from_millis(600));
        for _ in 0..40 {
            e.backoff();
        }
        assert_eq!(e.rto(), Duration::from_secs(60));
        e.sample(Duration::from_millis(100));
        assert_eq!(e.backoff_count(), 0);
        assert!(e.rto() < Duration::from_secs(1));
    }

    #[test]
    fn restore_recomputes_rto() {
        let mut e = est();
        e.restore(Some(Duration::from_millis(40)), Duration::from_millis(20));
        assert_eq!(e.rto(), Duration::from_millis(200));
        e.restore(Some(Duration::from_millis(400)), Duration::from_millis(100));
        assert_eq!(e.rto(), Duration::from_millis(800));
    }
}
