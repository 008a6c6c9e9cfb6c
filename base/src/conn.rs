//! A connection's identity, and what replication asks of a stack.

use std::net::SocketAddr;

use crate::seq::Seq;

/// A connection's identity: the same on every replica of a group.
///
/// Both addresses are of one family: an IPv4 client of a dual-stack
/// listener has an IPv4 key (never an IPv4-mapped IPv6 one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    /// The service's address (the virtual IP and port in a group).
    pub local: SocketAddr,
    /// The client's address.
    pub remote: SocketAddr,
}

/// What a stack does with its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// No replication: send freely.
    #[default]
    Standalone,
    /// Replicated primary: send, with acknowledgements limited by a [`Gate`].
    Primary,
    /// Replicated backup: process input and application writes, send nothing at all.
    Backup,
}

/// Client bytes a replica holds beyond its in-order end (out of order):
/// up to three ranges `[start, end)`, lowest first. A group's primary
/// names in its SACK blocks only bytes every live member holds so (RFC
/// 2018 lets a receiver renege, but a client that sees SACK blocks for
/// bytes a new primary lacks retransmits them only at its timeout).
pub type HeldBeyond = [Option<(Seq, Seq)>; 3];

/// The ranges both `a` and `b` cover, lowest first (at most three).
pub fn intersect_held(a: &HeldBeyond, b: &HeldBeyond) -> HeldBeyond {
    let mut out = [None; 3];
    let mut n = 0;
    for (a0, a1) in a.iter().flatten() {
        for (b0, b1) in b.iter().flatten() {
            let (start, end) = ((*a0).max(*b0), (*a1).min(*b1));
            if start < end && n < out.len() {
                out[n] = Some((start, end));
                n += 1;
            }
        }
    }
    out[..n].sort_unstable();
    out
}

/// Limits a replicated primary applies to what it acknowledges: it never
/// acknowledges bytes some live replica does not hold yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    /// Highest ACK number we may send: every live replica holds the bytes below it.
    pub ack: Seq,
    /// Highest right window edge we may advertise.
    pub right_edge: Seq,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(v: &[(u32, u32)]) -> HeldBeyond {
        let mut out = [None; 3];
        for (i, (a, b)) in v.iter().enumerate() {
            out[i] = Some((Seq(*a), Seq(*b)));
        }
        out
    }

    #[test]
    fn held_ranges_intersect_to_what_both_hold() {
        let a = r(&[(100, 200), (300, 400)]);
        assert_eq!(intersect_held(&a, &a), a);
        assert_eq!(
            intersect_held(&a, &r(&[(150, 350)])),
            r(&[(150, 200), (300, 350)])
        );
        assert_eq!(intersect_held(&a, &r(&[(200, 300)])), r(&[]));
        assert_eq!(intersect_held(&a, &r(&[])), r(&[]));
        // Across the sequence-number wrap.
        let wrap = r(&[(u32::MAX - 10, 20)]);
        assert_eq!(intersect_held(&wrap, &r(&[(5, 50)])), r(&[(5, 20)]));
    }
}
