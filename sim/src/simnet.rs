//! A deterministic simulated link: packets in, packets out at a later
//! simulated time, with seeded loss, duplication, delay jitter and
//! reordering. No threads, no clock: the caller owns time (microseconds).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The seeded generator (splitmix64, from `hydra-base`): a seed replays
/// exactly on every platform.
pub use hydra_base::rng::SplitMix64 as Rng;

/// How a link misbehaves.
#[derive(Debug, Clone, Copy)]
pub struct LinkProfile {
    /// One-way base delay.
    pub delay_us: u64,
    /// Extra uniform delay in `0..jitter_us` (reorders packets close in time).
    pub jitter_us: u64,
    pub loss: f64,
    pub duplicate: f64,
    /// Probability a packet is held back by `reorder_us` more.
    pub reorder: f64,
    pub reorder_us: u64,
    /// Packets in flight at most; beyond it the link drops (a bounded queue).
    pub capacity: usize,
}

impl LinkProfile {
    pub fn clean(delay_us: u64) -> LinkProfile {
        LinkProfile {
            delay_us,
            jitter_us: 0,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_us: 0,
            capacity: 4096,
        }
    }

    /// Loss, duplication, jitter and reordering all at once.
    pub fn hostile(delay_us: u64) -> LinkProfile {
        LinkProfile {
            delay_us,
            jitter_us: delay_us / 2,
            loss: 0.02,
            duplicate: 0.01,
            reorder: 0.03,
            reorder_us: delay_us * 3,
            capacity: 4096,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub overflowed: u64,
}

/// One direction of a simulated link.
#[derive(Debug)]
pub struct Link {
    profile: LinkProfile,
    rng: Rng,
    /// (due time, arrival order, packet): ties leave in send order.
    queue: BinaryHeap<Reverse<(u64, u64, Vec<u8>)>>,
    order: u64,
    pub stats: LinkStats,
}

impl Link {
    pub fn new(profile: LinkProfile, seed: u64) -> Link {
        Link {
            profile,
            rng: Rng::new(seed),
            queue: BinaryHeap::new(),
            order: 0,
            stats: LinkStats::default(),
        }
    }

    pub fn send(&mut self, now_us: u64, packet: &[u8]) {
        self.stats.sent += 1;
        if self.rng.chance(self.profile.loss) {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.rng.chance(self.profile.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            if self.queue.len() >= self.profile.capacity {
                self.stats.overflowed += 1;
                return;
            }
            let mut due =
                now_us + self.profile.delay_us + self.rng.below(self.profile.jitter_us.max(1));
            if self.rng.chance(self.profile.reorder) {
                self.stats.reordered += 1;
                due += self.profile.reorder_us;
            }
            self.order += 1;
            self.queue.push(Reverse((due, self.order, packet.to_vec())));
        }
    }

    /// The next packet due at or before `now_us`.
    pub fn recv(&mut self, now_us: u64) -> Option<Vec<u8>> {
        if self
            .queue
            .peek()
            .is_some_and(|Reverse((due, _, _))| *due <= now_us)
        {
            self.stats.delivered += 1;
            return self.queue.pop().map(|Reverse((_, _, p))| p);
        }
        None
    }

    pub fn next_due(&self) -> Option<u64> {
        self.queue.peek().map(|Reverse((due, _, _))| *due)
    }

    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }
}

/// The TCP segment an IPv4 or IPv6 packet carries (IPv6 extension headers
/// walked), without checking its checksum: the simulator reads what the
/// stacks it runs have sent.
pub fn tcp_segment(packet: &[u8]) -> Option<smoltcp::wire::TcpPacket<&[u8]>> {
    let segment = match packet.first()? >> 4 {
        4 => smoltcp::wire::Ipv4Packet::new_checked(packet)
            .ok()?
            .payload(),
        6 => {
            let ip = stack::wire::ipv6::parse(packet).ok()?;
            if ip.protocol != 6 {
                return None;
            }
            &packet[ip.upper..ip.end]
        }
        _ => return None,
    };
    smoltcp::wire::TcpPacket::new_checked(segment).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_fate_to_every_packet() {
        let run = |seed| {
            let mut link = Link::new(LinkProfile::hostile(1000), seed);
            let mut out = Vec::new();
            for t in 0..2000u64 {
                link.send(t * 10, &t.to_be_bytes());
                while let Some(p) = link.recv(t * 10) {
                    out.push(p);
                }
            }
            while let Some(p) = link.recv(u64::MAX) {
                out.push(p);
            }
            (out, link.stats.clone())
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7).0, run(8).0);
        let (out, stats) = run(7);
        assert!(
            stats.lost > 0 && stats.duplicated > 0 && stats.reordered > 0,
            "{stats:?}"
        );
        assert_eq!(out.len() as u64, stats.delivered);
        let mut sorted = out.clone();
        sorted.sort();
        assert_ne!(sorted, out, "some packets were reordered");
    }

    #[test]
    fn a_clean_link_delivers_everything_in_order_after_the_delay() {
        let mut link = Link::new(LinkProfile::clean(500), 1);
        link.send(0, b"a");
        link.send(1, b"b");
        assert_eq!(link.recv(499), None);
        assert_eq!(link.recv(501).as_deref(), Some(&b"a"[..]));
        assert_eq!(link.recv(501).as_deref(), Some(&b"b"[..]));
        assert_eq!(link.next_due(), None);
    }
}
