//! Bounded IPv4 reassembly for `FragmentPolicy::Reassemble` (RFC 791
//! section 3.2, RFC 1122 section 3.3.2).
//!
//! Everything an attacker could use to hold memory is bounded: the bytes
//! of all incomplete datagrams together (oldest evicted first), and their
//! age. A fragment that overlaps one already held, disagrees about where
//! the datagram ends, or would make it longer than an IPv4 packet can be
//! makes the whole datagram be dropped (as Linux does since 4.19 and RFC
//! 5722 requires for IPv6): legitimate senders never overlap, and
//! reassembly ambiguities are how inspection is evaded.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;

use crate::wire::Ipv4Packet;

use hydra_base::time::{Duration, Instant};

/// Memory charged per incomplete datagram beyond its bytes.
const DATAGRAM_COST: usize = 128;
/// Memory charged per received range of a datagram.
const RANGE_COST: usize = 16;

/// A datagram's identity (RFC 791: source, destination, protocol, ident).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    ident: u16,
}

/// An incomplete datagram.
#[derive(Debug)]
struct Datagram {
    started: Instant,
    /// The IP header of the fragment at offset 0, once it came.
    header: Option<Vec<u8>>,
    /// Payload bytes, up to the highest end seen.
    data: Vec<u8>,
    /// Received payload ranges `[start, end)`, sorted and disjoint.
    ranges: Vec<(usize, usize)>,
    /// Payload length, once the last fragment came.
    total: Option<usize>,
}

impl Datagram {
    fn cost(&self) -> usize {
        DATAGRAM_COST
            + self.data.len()
            + self.header.as_ref().map_or(0, Vec::len)
            + RANGE_COST * self.ranges.len()
    }
}

/// What one fragment did.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Outcome {
    /// The reassembled packet, when this fragment completed one.
    pub complete: Option<Vec<u8>>,
    /// Fragments dropped by this step: this one if refused, and those of
    /// every datagram given up (overlap, expiry, eviction).
    pub dropped: u64,
}

/// Incomplete datagrams under a memory budget and an age limit.
#[derive(Debug)]
pub(super) struct Reassembly {
    max_bytes: usize,
    timeout: Duration,
    datagrams: HashMap<Key, Datagram>,
    /// (start, key) of datagrams, oldest first; stale pairs are skipped.
    order: VecDeque<(Instant, Key)>,
    bytes: usize,
}

impl Reassembly {
    pub(super) fn new(max_bytes: usize, timeout: Duration) -> Reassembly {
        Reassembly {
            max_bytes,
            timeout,
            datagrams: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Bytes held for incomplete datagrams (as charged to the budget).
    pub(super) fn held_bytes(&self) -> usize {
        self.bytes
    }

    /// Take one fragment: `packet` is an IPv4 packet with a valid header
    /// whose More Fragments flag or offset is set.
    pub(super) fn insert(&mut self, now: Instant, packet: &[u8]) -> Outcome {
        let mut dropped = self.expire(now);
        let refused = |dropped| Outcome {
            complete: None,
            dropped: dropped + 1,
        };
        let Ok(ip) = Ipv4Packet::new_checked(packet) else {
            return refused(dropped);
        };
        let header_len = usize::from(ip.header_len());
        let payload = &packet[header_len..usize::from(ip.total_len())];
        let offset = usize::from(ip.frag_offset());
        let end = offset + payload.len();
        let more = ip.more_frags();
        //= RFC 791 section 3.2
        //# the data in each fragment (except possibly the last) is a multiple of 8 octets
        if payload.is_empty()
            || (more && !payload.len().is_multiple_of(8))
            || header_len + end > 65535
        {
            return refused(dropped);
        }
        let key = Key {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            protocol: ip.next_header().into(),
            ident: ip.ident(),
        };
        let datagram = self.datagrams.entry(key).or_insert_with(|| Datagram {
            started: now,
            header: None,
            data: Vec::new(),
            ranges: Vec::new(),
            total: None,
        });
        if datagram.ranges.is_empty() {
            self.order.push_back((now, key));
        }
        let overlaps = datagram.ranges.iter().any(|&(s, e)| s < end && offset < e);
        let beyond_end = datagram.total.is_some_and(|t| end > t);
        let bad_end = !more
            && (datagram.total.is_some_and(|t| t != end)
                || datagram.ranges.last().is_some_and(|&(_, e)| e > end));
        if overlaps || beyond_end || bad_end {
            dropped += self.give_up(key) + 1;
            return Outcome {
                complete: None,
                dropped,
            };
        }
        let growth = end.saturating_sub(datagram.data.len())
            + if offset == 0 { header_len } else { 0 }
            + RANGE_COST
            + if datagram.ranges.is_empty() {
                DATAGRAM_COST
            } else {
                0
            };
        dropped += self.make_room(growth, key);
        if self.bytes + growth > self.max_bytes {
            dropped += self.give_up(key) + 1;
            return Outcome {
                complete: None,
                dropped,
            };
        }
        let Some(datagram) = self.datagrams.get_mut(&key) else {
            return refused(dropped);
        };
        let before = if datagram.ranges.is_empty() {
            0
        } else {
            datagram.cost()
        };
        if datagram.data.len() < end {
            datagram.data.resize(end, 0);
        }
        datagram.data[offset..end].copy_from_slice(payload);
        let at = datagram.ranges.partition_point(|&(s, _)| s < offset);
        datagram.ranges.insert(at, (offset, end));
        if offset == 0 {
            datagram.header = Some(packet[..header_len].to_vec());
        }
        if !more {
            datagram.total = Some(end);
        }
        self.bytes = self.bytes - before + datagram.cost();
        let complete = match (&datagram.header, datagram.total) {
            (Some(_), Some(total)) => {
                datagram.ranges.iter().map(|&(s, e)| e - s).sum::<usize>() == total
            }
            _ => false,
        };
        if !complete {
            return Outcome {
                complete: None,
                dropped,
            };
        }
        let datagram = self.take(key);
        Outcome {
            complete: datagram.and_then(rebuild),
            dropped,
        }
    }

    /// Give up datagrams older than the timeout; returns their fragments.
    fn expire(&mut self, now: Instant) -> u64 {
        let mut dropped = 0;
        while let Some(&(started, key)) = self.order.front() {
            if now - started < self.timeout {
                break;
            }
            self.order.pop_front();
            if self
                .datagrams
                .get(&key)
                .is_some_and(|d| d.started == started)
            {
                dropped += self.give_up(key);
            }
        }
        dropped
    }

    /// Evict the oldest datagrams other than `keep` until `growth` fits.
    fn make_room(&mut self, growth: usize, keep: Key) -> u64 {
        let mut dropped = 0;
        let mut kept = Vec::new();
        while self.bytes + growth > self.max_bytes {
            let Some((started, key)) = self.order.pop_front() else {
                break;
            };
            if key == keep {
                kept.push((started, key));
                continue;
            }
            if self
                .datagrams
                .get(&key)
                .is_some_and(|d| d.started == started)
            {
                dropped += self.give_up(key);
            }
        }
        for entry in kept.into_iter().rev() {
            self.order.push_front(entry);
        }
        dropped
    }

    /// Forget a datagram; returns how many fragments it held.
    fn give_up(&mut self, key: Key) -> u64 {
        self.take(key).map_or(0, |d| d.ranges.len() as u64)
    }

    fn take(&mut self, key: Key) -> Option<Datagram> {
        let datagram = self.datagrams.remove(&key)?;
        if !datagram.ranges.is_empty() {
            self.bytes -= datagram.cost();
        }
        Some(datagram)
    }
}

/// The whole packet: the first fragment's header, no fragment fields, the
/// new length and checksum, then the payload.
fn rebuild(datagram: Datagram) -> Option<Vec<u8>> {
    let header = datagram.header?;
    let total = datagram.total?;
    let mut packet = header;
    packet.extend_from_slice(datagram.data.get(..total)?);
    let len = u16::try_from(packet.len()).ok()?;
    let mut ip = Ipv4Packet::new_unchecked(&mut packet);
    ip.set_total_len(len);
    ip.set_more_frags(false);
    ip.set_frag_offset(0);
    ip.fill_checksum();
    Some(packet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{IpProtocol, Ipv4Repr};

    /// An IPv4 packet of `payload` split into fragments of `size` bytes
    /// (a multiple of 8), in order.
    fn fragments(ident: u16, payload: &[u8], size: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut offset = 0;
        while offset < payload.len() {
            let part = &payload[offset..(offset + size).min(payload.len())];
            let repr = Ipv4Repr {
                src_addr: Ipv4Addr::new(198, 18, 0, 1),
                dst_addr: Ipv4Addr::new(198, 19, 0, 1),
                next_header: IpProtocol::Udp,
                payload_len: part.len(),
                hop_limit: 64,
            };
            let mut buf = vec![0u8; 20 + part.len()];
            let mut ip = Ipv4Packet::new_unchecked(&mut buf);
            repr.emit(&mut ip, &Default::default());
            ip.set_ident(ident);
            ip.set_frag_offset(offset as u16);
            ip.set_more_frags(offset + part.len() < payload.len());
            ip.fill_checksum();
            buf[20..].copy_from_slice(part);
            out.push(buf);
            offset += part.len();
        }
        out
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn r() -> Reassembly {
        Reassembly::new(1 << 20, Duration::from_secs(30))
    }

    const T0: Instant = Instant::from_millis(1000);

    #[test]
    fn fragments_in_any_order_make_the_original_packet() {
        let data = payload(3000);
        let mut frags = fragments(7, &data, 1200);
        frags.swap(0, 2);
        let mut r = r();
        assert_eq!(r.insert(T0, &frags[0]).complete, None);
        assert_eq!(r.insert(T0, &frags[1]).complete, None);
        let whole = r.insert(T0, &frags[2]).complete.expect("complete");
        let ip = Ipv4Packet::new_checked(&whole).unwrap();
        assert!(ip.verify_checksum());
        assert!(!ip.more_frags());
        assert_eq!(ip.frag_offset(), 0);
        assert_eq!(usize::from(ip.total_len()), 20 + data.len());
        assert_eq!(&whole[20..], &data[..]);
        assert_eq!(r.held_bytes(), 0);
    }

    #[test]
    fn an_overlapping_fragment_drops_the_whole_datagram() {
        let data = payload(64);
        let frags = fragments(9, &data, 16);
        let mut r = r();
        r.insert(T0, &frags[0]);
        r.insert(T0, &frags[1]);
        // The same first 16 bytes again, claiming the 8 after them as well.
        let mut overlap = fragments(9, &payload(24), 24).remove(0);
        Ipv4Packet::new_unchecked(&mut overlap).set_more_frags(true);
        Ipv4Packet::new_unchecked(&mut overlap).fill_checksum();
        let out = r.insert(T0, &overlap);
        assert_eq!(out.complete, None);
        assert_eq!(out.dropped, 3, "the two held and the overlapping one");
        assert_eq!(r.held_bytes(), 0);
        // The rest alone never completes it.
        assert_eq!(r.insert(T0, &frags[2]).complete, None);
        assert_eq!(r.insert(T0, &frags[3]).complete, None);
    }

    #[test]
    fn incomplete_datagrams_expire() {
        let frags = fragments(3, &payload(100), 48);
        let mut r = r();
        r.insert(T0, &frags[0]);
        assert!(r.held_bytes() > 0);
        let later = T0 + Duration::from_secs(30);
        let out = r.insert(later, &frags[1]);
        assert_eq!(out.dropped, 1, "the expired first fragment");
        assert_eq!(out.complete, None, "its datagram starts over");
    }

    #[test]
    fn the_budget_evicts_the_oldest_datagram() {
        let mut r = Reassembly::new(3000, Duration::from_secs(30));
        let a = fragments(1, &payload(4000), 1600);
        let b = fragments(2, &payload(4000), 1600);
        r.insert(T0, &a[0]);
        let out = r.insert(T0, &b[0]);
        assert_eq!(out.dropped, 1, "a's fragment made room");
        assert!(r.held_bytes() <= 3000);
        // b alone exceeds the budget: it is given up, never overrun.
        let out = r.insert(T0, &b[1]);
        assert_eq!(out.dropped, 2);
        assert_eq!(r.held_bytes(), 0);
    }

    #[test]
    fn malformed_fragments_are_refused() {
        let mut r = r();
        let mut odd = fragments(4, &payload(100), 48).remove(0);
        // 44 bytes of data with More Fragments: not a multiple of 8.
        odd.truncate(64);
        let mut ip = Ipv4Packet::new_unchecked(&mut odd);
        ip.set_total_len(64);
        ip.fill_checksum();
        assert_eq!(r.insert(T0, &odd).dropped, 1);
        // An offset that puts the end beyond 65,535 bytes.
        let mut far = fragments(5, &payload(100), 48).remove(0);
        Ipv4Packet::new_unchecked(&mut far).set_frag_offset(65528);
        Ipv4Packet::new_unchecked(&mut far).fill_checksum();
        assert_eq!(r.insert(T0, &far).dropped, 1);
        assert_eq!(r.held_bytes(), 0);
    }

    #[test]
    fn random_fragment_storms_stay_within_the_budget() {
        let mut r = Reassembly::new(20_000, Duration::from_secs(30));
        let mut rng = hydra_base::rng::SplitMix64::new(1);
        let mut next = || rng.next_u64();
        let mut now = T0;
        for _ in 0..20_000 {
            let ident = (next() % 16) as u16;
            let len = 8 * (1 + next() % 40) as usize;
            let mut frag = fragments(ident, &payload(len), len).remove(0);
            let mut ip = Ipv4Packet::new_unchecked(&mut frag);
            ip.set_frag_offset((8 * (next() % 200)) as u16);
            ip.set_more_frags(next() % 4 != 0);
            ip.fill_checksum();
            if let Some(p) = r.insert(now, &frag).complete {
                let ip = Ipv4Packet::new_checked(&p).unwrap();
                assert!(ip.verify_checksum());
            }
            assert!(r.held_bytes() <= 20_000);
            now += Duration::from_millis(next() % 50);
        }
    }
}
