//! NewReno congestion avoidance (RFC 5681 section 3.1, byte counting).

/// Bytes acknowledged since cwnd last grew by one segment.
#[derive(Debug, Clone, Default)]
pub struct Reno {
    acked_bytes: u32,
}

impl Reno {
    /// Grow by one SMSS per window's worth of acknowledged bytes (RFC 5681
    /// equation 3 done by byte counting as RFC 3465 recommends).
    pub fn on_ack(&mut self, cwnd: u32, acked: u32, mss: u32) -> u32 {
        self.acked_bytes = self.acked_bytes.saturating_add(acked);
        if self.acked_bytes >= cwnd {
            self.acked_bytes -= cwnd;
            return cwnd.saturating_add(mss);
        }
        cwnd
    }

    /// RFC 5681 equation 4: ssthresh = max(FlightSize / 2, 2*SMSS).
    pub fn on_loss(&mut self, flight: u32, mss: u32) -> u32 {
        self.acked_bytes = 0;
        (flight / 2).max(2 * mss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_segment_per_window_acknowledged() {
        let mut r = Reno::default();
        let mut cwnd = 10_000;
        for _ in 0..9 {
            cwnd = r.on_ack(cwnd, 1000, 1000);
        }
        assert_eq!(cwnd, 10_000);
        cwnd = r.on_ack(cwnd, 1000, 1000);
        assert_eq!(cwnd, 11_000);
    }
}
