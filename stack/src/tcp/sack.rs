//! The sender's SACK scoreboard (RFC 2018, RFC 6675): which bytes above
//! SND.UNA the peer reported holding.

use hydra_base::Seq;

/// Ranges kept at most; more are merged away by dropping the highest.
const MAX_RANGES: usize = 64;

/// Disjoint, sorted ranges `[start, end)` the peer has SACKed.
#[derive(Debug, Clone, Default)]
pub struct Scoreboard {
    ranges: Vec<(Seq, Seq)>,
}

impl Scoreboard {
    pub fn clear(&mut self) {
        self.ranges.clear();
    }
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
    /// Record a SACK block if it lies within `(snd_una, snd_max]` (RFC 2018
    /// blocks outside are ignored, RFC 6675 section 5.1).
    pub fn add(&mut self, start: Seq, end: Seq, snd_una: Seq, snd_max: Seq) {
        if start >= end || end <= snd_una || end > snd_max {
            return;
        }
        let start = start.max(snd_una);
        let mut s = start;
        let mut e = end;
        self.ranges.retain(|&(a, b)| {
            if b < s || a > e {
                true
            } else {
                s = s.min(a);
                e = e.max(b);
                false
            }
        });
        let at = self
            .ranges
            .iter()
            .position(|&(a, _)| a > s)
            .unwrap_or(self.ranges.len());
        self.ranges.insert(at, (s, e));
        self.ranges.truncate(MAX_RANGES);
    }
    /// Forget everything below the cumulative ACK.
    pub fn ack_to(&mut self, snd_una: Seq) {
        self.ranges.retain(|&(_, b)| b > snd_una);
        if let Some(first) = self.ranges.first_mut() {
            first.0 = first.0.max(snd_una);
        }
    }
    pub fn sacked_bytes(&self) -> u32 {
        self.ranges.iter().map(|&(a, b)| b.since(a)).sum()
    }
    /// First un-SACKed range at or after `from` and below the highest SACKed byte:
    /// the next hole to retransmit (RFC 6675 NextSeg rule 1, simplified).
    pub fn next_hole(&self, from: Seq) -> Option<(Seq, Seq)> {
        let mut cursor = from;
        for &(a, b) in &self.ranges {
            if cursor < a {
                return Some((cursor, a));
            }
            cursor = cursor.max(b);
        }
        None
    }
    /// Un-SACKed bytes in `[from, highest)` (lost, not yet retransmitted).
    pub fn hole_bytes_from(&self, from: Seq) -> u32 {
        let mut total = 0;
        let mut cursor = from;
        for &(a, b) in &self.ranges {
            if cursor < a {
                total += a.since(cursor);
            }
            cursor = cursor.max(b);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_holes() {
        let mut sb = Scoreboard::default();
        sb.add(Seq(200), Seq(300), Seq(100), Seq(1000));
        sb.add(Seq(400), Seq(500), Seq(100), Seq(1000));
        sb.add(Seq(290), Seq(410), Seq(100), Seq(1000));
        assert_eq!(sb.sacked_bytes(), 300);
        assert_eq!(sb.next_hole(Seq(100)), Some((Seq(100), Seq(200))));
        assert_eq!(sb.next_hole(Seq(200)), None);
        sb.ack_to(Seq(250));
        assert_eq!(sb.sacked_bytes(), 250);
    }

    #[test]
    fn blocks_outside_window_ignored() {
        let mut sb = Scoreboard::default();
        sb.add(Seq(50), Seq(90), Seq(100), Seq(1000));
        sb.add(Seq(900), Seq(1100), Seq(100), Seq(1000));
        assert!(sb.is_empty());
    }
}
