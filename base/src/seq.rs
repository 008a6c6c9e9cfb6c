//! Sequence-number arithmetic modulo 2^32 (RFC 9293 section 3.4).

use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, Sub};

/// A TCP sequence number. Ordering is defined only between numbers less than
/// 2^31 apart, as RFC 9293 requires; `cmp` follows that convention.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Seq(pub u32);

impl Seq {
    /// Signed distance `self - other`, valid when the two are within 2^31.
    pub fn diff(self, other: Seq) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }
    /// Bytes from `start` up to `self`, zero if `self` is before `start`.
    pub fn since(self, start: Seq) -> u32 {
        let d = self.diff(start);
        if d < 0 {
            0
        } else {
            d as u32
        }
    }
    /// The later of two sequence numbers.
    pub fn max(self, other: Seq) -> Seq {
        if self >= other {
            self
        } else {
            other
        }
    }
    /// The earlier of two sequence numbers.
    pub fn min(self, other: Seq) -> Seq {
        if self <= other {
            self
        } else {
            other
        }
    }
    /// `start <= self < end` in sequence space.
    pub fn in_range(self, start: Seq, end: Seq) -> bool {
        self >= start && self < end
    }
}

impl PartialOrd for Seq {
    fn partial_cmp(&self, other: &Seq) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Seq {
    fn cmp(&self, other: &Seq) -> Ordering {
        self.diff(*other).cmp(&0)
    }
}

impl Add<u32> for Seq {
    type Output = Seq;
    fn add(self, rhs: u32) -> Seq {
        Seq(self.0.wrapping_add(rhs))
    }
}

impl Add<usize> for Seq {
    type Output = Seq;
    fn add(self, rhs: usize) -> Seq {
        Seq(self.0.wrapping_add(rhs as u32))
    }
}

impl Sub<u32> for Seq {
    type Output = Seq;
    fn sub(self, rhs: u32) -> Seq {
        Seq(self.0.wrapping_sub(rhs))
    }
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_wraps() {
        assert!(Seq(u32::MAX) < Seq(0));
        assert!(Seq(5) > Seq(u32::MAX - 5));
        assert_eq!((Seq(u32::MAX) + 2u32).0, 1);
        assert_eq!(Seq(1).diff(Seq(u32::MAX)), 2);
        assert_eq!(Seq(1).since(Seq(3)), 0);
    }
}
