//! Send and receive byte queues, in sequence-number terms.

use std::collections::VecDeque;

use hydra_base::Seq;

/// Bytes the application wrote that the peer has not acknowledged yet.
/// `start` is the sequence number of the first byte held.
#[derive(Debug, Clone, Default)]
pub struct SendBuffer {
    pub start: Seq,
    pub data: VecDeque<u8>,
    pub capacity: usize,
}

impl SendBuffer {
    pub fn new(start: Seq, capacity: usize) -> Self {
        SendBuffer {
            start,
            data: VecDeque::new(),
            capacity,
        }
    }
    /// Sequence number after the last byte held.
    pub fn end(&self) -> Seq {
        self.start + self.data.len()
    }
    pub fn space(&self) -> usize {
        self.capacity.saturating_sub(self.data.len())
    }
    /// Append what fits; returns bytes taken.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.space());
        self.data.extend(&bytes[..n]);
        n
    }
    /// Drop held bytes before `seq` (they were acknowledged). An ACK beyond
    /// what was written (a backup's application lagging the primary's) only
    /// empties the buffer; the writer skips those bytes as they arrive.
    pub fn ack_to(&mut self, seq: Seq) {
        let held = (seq.since(self.start) as usize).min(self.data.len());
        self.data.drain(..held);
        self.start = self.start + held;
    }
    /// Forget held bytes from `seq` on (never sent: a new primary replaces
    /// them); a `seq` past the end skips to it (the peer acknowledged up to
    /// there, so those bytes are never needed).
    pub fn replace_from(&mut self, seq: Seq) {
        if seq >= self.end() {
            self.data.clear();
            self.start = seq;
        } else if seq > self.start {
            self.data.truncate(seq.since(self.start) as usize);
        } else {
            self.data.clear();
        }
    }
    /// Consume `n` bytes the peer already acknowledged without keeping them.
    pub fn skip(&mut self, n: usize) {
        debug_assert!(self.data.is_empty());
        self.start = self.start + n;
    }
    /// The two slices of `len` bytes starting at `seq` (must be held).
    pub fn slices(&self, seq: Seq, len: usize) -> (&[u8], &[u8]) {
        if len == 0 {
            return (&[], &[]);
        }
        let off = (seq.since(self.start) as usize).min(self.data.len());
        let (a, b) = self.data.as_slices();
        let end = (off + len).min(self.data.len());
        if off >= a.len() {
            (&b[off - a.len()..end - a.len()], &[])
        } else if end <= a.len() {
            (&a[off..end], &[])
        } else {
            (&a[off..], &b[..end - a.len()])
        }
    }
}

/// A received segment waiting for the hole before it to fill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OooSegment {
    pub seq: Seq,
    pub data: Vec<u8>,
}

impl OooSegment {
    fn end(&self) -> Seq {
        self.seq + self.data.len()
    }
}

/// In-order bytes for the application plus bounded out-of-order reassembly.
#[derive(Debug, Clone, Default)]
pub struct RecvBuffer {
    /// Sequence number of the first unread byte.
    pub start: Seq,
    pub data: VecDeque<u8>,
    /// Out-of-order segments, sorted by sequence number relative to `end()`,
    /// disjoint and not adjacent to each other.
    pub ooo: Vec<OooSegment>,
    pub ooo_bytes: usize,
    pub ooo_limit: usize,
    /// Index in `ooo` of the most recently changed block (first SACK block, RFC 2018).
    pub ooo_latest: Option<Seq>,
}

/// Out-of-order blocks kept at most; beyond it new holes are dropped (counted).
const MAX_OOO_SEGMENTS: usize = 256;

/// What `insert` did with a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// Bytes appended in order (count), possibly pulling out-of-order data after them.
    InOrder(usize),
    /// Stored out of order.
    OutOfOrder,
    /// Nothing new (duplicate).
    Duplicate,
    /// Dropped: out-of-order memory limit reached.
    OverLimit,
}

impl RecvBuffer {
    pub fn new(start: Seq, ooo_limit: usize) -> Self {
        RecvBuffer {
            start,
            ooo_limit,
            ..Default::default()
        }
    }
    /// Sequence number after the last in-order byte (RCV.NXT before any FIN).
    pub fn end(&self) -> Seq {
        self.start + self.data.len()
    }
    pub fn len(&self) -> usize {
        self.data.len()
    }
    /// Read up to `buf.len()` bytes, never at or past `limit`.
    #[cfg(test)]
    pub fn read(&mut self, buf: &mut [u8], limit: Option<Seq>) -> usize {
        let n = self.peek(buf, limit);
        self.consume(n, limit)
    }

    /// Copy up to `buf.len()` readable bytes without consuming them.
    #[cfg(test)]
    pub fn peek(&self, buf: &mut [u8], limit: Option<Seq>) -> usize {
        self.peek_at(0, buf, limit)
    }

    /// Like [`peek`](Self::peek), from `offset` bytes past the first unread one.
    pub fn peek_at(&self, offset: usize, buf: &mut [u8], limit: Option<Seq>) -> usize {
        let n = self.readable(limit).saturating_sub(offset).min(buf.len());
        let (a, b) = self.data.as_slices();
        // The bytes offset..offset+n, split where the ring wraps.
        let in_a = a.len().saturating_sub(offset).min(n);
        buf[..in_a].copy_from_slice(&a[offset.min(a.len())..offset.min(a.len()) + in_a]);
        let b_from = (offset + in_a) - a.len().min(offset + in_a);
        buf[in_a..n].copy_from_slice(&b[b_from..b_from + n - in_a]);
        n
    }

    /// Drop up to `n` readable bytes; returns how many.
    #[cfg(test)]
    pub fn consume(&mut self, n: usize, limit: Option<Seq>) -> usize {
        let n = self.readable(limit).min(n);
        self.data.drain(..n);
        self.start = self.start + n;
        n
    }
    /// A copy of held in-order bytes from `seq` (not yet read), at most `max`.
    pub fn copy_from(&self, seq: Seq, max: usize) -> Option<Vec<u8>> {
        if seq < self.start || seq >= self.end() {
            return None;
        }
        let offset = seq.since(self.start) as usize;
        let n = (self.data.len() - offset).min(max);
        Some(self.data.range(offset..offset + n).copied().collect())
    }

    /// Bytes the application may read now.
    pub fn readable(&self, limit: Option<Seq>) -> usize {
        match limit {
            Some(l) => (l.since(self.start) as usize).min(self.data.len()),
            None => self.data.len(),
        }
    }

    /// Store `payload` received at `seq`. The caller has checked it is within
    /// the window; bytes already held are trimmed.
    pub fn insert(&mut self, seq: Seq, payload: &[u8]) -> Insert {
        let end = self.end();
        let seg_end = seq + payload.len();
        if seg_end <= end {
            return Insert::Duplicate;
        }
        if seq <= end {
            let skip = end.since(seq) as usize;
            self.data.extend(&payload[skip..]);
            let mut added = payload.len() - skip;
            added += self.pull_ooo();
            return Insert::InOrder(added);
        }
        self.insert_ooo(seq, payload)
    }

    /// Move out-of-order segments that now touch the in-order end.
    fn pull_ooo(&mut self) -> usize {
        let mut added = 0;
        while let Some(first) = self.ooo.first() {
            let end = self.end();
            if first.seq > end {
                break;
            }
            let seg = self.ooo.remove(0);
            self.ooo_bytes -= seg.data.len();
            if seg.end() > end {
                let skip = end.since(seg.seq) as usize;
                self.data.extend(&seg.data[skip..]);
                added += seg.data.len() - skip;
            }
        }
        if self.ooo.is_empty() {
            self.ooo_latest = None;
        }
        added
    }

    fn insert_ooo(&mut self, seq: Seq, payload: &[u8]) -> Insert {
        // Merge with every block it overlaps or touches into one block.
        let mut new_seq = seq;
        let mut new_end = seq + payload.len();
        let mut first = None;
        let mut last = 0;
        for (i, s) in self.ooo.iter().enumerate() {
            if s.end() < new_seq {
                continue;
            }
            if s.seq > new_end {
                break;
            }
            if first.is_none() {
                first = Some(i);
            }
            last = i;
        }
        if let Some(f) = first {
            if self.ooo[f].seq <= seq && self.ooo[last].end() >= new_end && f == last {
                return Insert::Duplicate;
            }
            new_seq = new_seq.min(self.ooo[f].seq);
            new_end = new_end.max(self.ooo[last].end());
        }
        let merged_len = new_end.since(new_seq) as usize;
        let removed: usize =
            first.map_or(0, |f| self.ooo[f..=last].iter().map(|s| s.data.len()).sum());
        let blocks_after = self.ooo.len() - first.map_or(0, |f| last + 1 - f) + 1;
        if self.ooo_bytes - removed + merged_len > self.ooo_limit || blocks_after > MAX_OOO_SEGMENTS
        {
            return Insert::OverLimit;
        }
        // A segment that extends a block at its end (the usual case after a
        // loss) grows that block's buffer in place: copying the whole block
        // for every segment would cost quadratic time in the hole's length.
        let (mut data, merged_from) = match first {
            Some(f) if self.ooo[f].seq == new_seq => (std::mem::take(&mut self.ooo[f].data), f + 1),
            _ => (Vec::new(), first.unwrap_or(0)),
        };
        data.resize(merged_len, 0);
        if let Some(f) = first {
            for s in &self.ooo[merged_from.max(f)..=last] {
                let off = s.seq.since(new_seq) as usize;
                data[off..off + s.data.len()].copy_from_slice(&s.data);
            }
        }
        let off = seq.since(new_seq) as usize;
        data[off..off + payload.len()].copy_from_slice(payload);
        let block = OooSegment { seq: new_seq, data };
        let at = match first {
            Some(f) => {
                self.ooo.drain(f..=last);
                f
            }
            None => self
                .ooo
                .iter()
                .position(|s| s.seq > new_seq)
                .unwrap_or(self.ooo.len()),
        };
        self.ooo.insert(at, block);
        self.ooo_bytes = self.ooo_bytes - removed + merged_len;
        self.ooo_latest = Some(new_seq);
        Insert::OutOfOrder
    }

    /// The lowest three out-of-order blocks: what a replica tells its
    /// group's primary it holds beyond the in-order end.
    pub fn held_beyond(&self) -> hydra_base::HeldBeyond {
        let mut out = [None; 3];
        for (slot, s) in out.iter_mut().zip(&self.ooo) {
            *slot = Some((s.seq, s.end()));
        }
        out
    }

    /// Whether `[start, end)` was received: in order, or within one
    /// out-of-order block.
    pub fn holds(&self, start: Seq, end: Seq) -> bool {
        end <= self.end() || self.ooo.iter().any(|s| s.seq <= start && end <= s.end())
    }

    /// Up to three SACK blocks (RFC 2018 section 4): the block holding the most
    /// recent segment first, then the others from the lowest.
    pub fn sack_blocks(&self) -> [Option<(u32, u32)>; 3] {
        let mut out = [None; 3];
        let mut n = 0;
        if let Some(latest) = self.ooo_latest {
            if let Some(s) = self.ooo.iter().find(|s| s.seq == latest) {
                out[0] = Some((s.seq.0, s.end().0));
                n = 1;
            }
        }
        for s in &self.ooo {
            if n == 3 {
                break;
            }
            if Some(s.seq) == self.ooo_latest {
                continue;
            }
            out[n] = Some((s.seq.0, s.end().0));
            n += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_at_reads_across_the_ring_wrap() {
        let mut r = RecvBuffer::new(Seq(0), 1 << 20);
        // Make the deque wrap: fill, drain the front, fill again.
        r.insert(Seq(0), &[0u8; 12]);
        r.consume(10, None);
        let bytes: Vec<u8> = (1..=20).collect();
        r.insert(Seq(12), &bytes);
        for offset in 0..22 {
            let mut buf = [0u8; 8];
            let n = r.peek_at(offset, &mut buf, None);
            let all: Vec<u8> = r.data.iter().copied().collect();
            let want = &all[offset.min(all.len())..(offset + 8).min(all.len())];
            assert_eq!(&buf[..n], want, "offset {offset}");
        }
        // The delivery limit still bounds what is visible.
        let mut buf = [0u8; 8];
        assert_eq!(r.peek_at(3, &mut buf, Some(Seq(15))), 2);
    }

    #[test]
    fn in_order_then_hole_filled() {
        let mut r = RecvBuffer::new(Seq(100), 1 << 20);
        assert_eq!(r.insert(Seq(100), b"abc"), Insert::InOrder(3));
        assert_eq!(r.insert(Seq(106), b"ghi"), Insert::OutOfOrder);
        assert_eq!(r.sack_blocks()[0], Some((106, 109)));
        assert_eq!(r.insert(Seq(103), b"def"), Insert::InOrder(6));
        assert!(r.ooo.is_empty());
        let mut buf = [0u8; 16];
        assert_eq!(r.read(&mut buf, None), 9);
        assert_eq!(&buf[..9], b"abcdefghi");
        assert_eq!(r.start, Seq(109));
    }

    #[test]
    fn overlapping_ooo_blocks_merge() {
        let mut r = RecvBuffer::new(Seq(0), 1 << 20);
        r.insert(Seq(10), b"aaaa");
        r.insert(Seq(20), b"cccc");
        r.insert(Seq(12), b"bbbbbbbbbb");
        assert_eq!(r.ooo.len(), 1);
        assert_eq!(r.ooo[0].seq, Seq(10));
        assert_eq!(&r.ooo[0].data, b"aabbbbbbbbbbcc");
        assert_eq!(r.ooo_bytes, 14);
        assert_eq!(r.insert(Seq(11), b"x"), Insert::Duplicate);
    }

    #[test]
    fn a_long_run_after_a_hole_grows_one_block_then_fills_in_order() {
        let stream: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut r = RecvBuffer::new(Seq(0), 1 << 20);
        // Segment 0 is lost; the rest arrive in order, then a block in front
        // of the first one, then the retransmission of segment 0.
        for (i, chunk) in stream.chunks(1000).enumerate().skip(3) {
            assert_eq!(r.insert(Seq(i as u32 * 1000), chunk), Insert::OutOfOrder);
        }
        assert_eq!(r.ooo.len(), 1);
        assert_eq!(r.insert(Seq(1000), &stream[1000..3000]), Insert::OutOfOrder);
        assert_eq!(r.ooo.len(), 1);
        assert_eq!(r.ooo_bytes, stream.len() - 1000);
        assert_eq!(
            r.insert(Seq(0), &stream[..1000]),
            Insert::InOrder(stream.len())
        );
        let mut out = vec![0u8; stream.len()];
        assert_eq!(r.read(&mut out, None), stream.len());
        assert_eq!(out, stream);
    }

    #[test]
    fn ooo_limit_drops() {
        let mut r = RecvBuffer::new(Seq(0), 8);
        assert_eq!(r.insert(Seq(10), b"12345678"), Insert::OutOfOrder);
        assert_eq!(r.insert(Seq(30), b"x"), Insert::OverLimit);
        assert_eq!(r.ooo_bytes, 8);
    }

    #[test]
    fn delivery_limit_caps_reads() {
        let mut r = RecvBuffer::new(Seq(0), 64);
        r.insert(Seq(0), b"hello world");
        let mut buf = [0u8; 32];
        assert_eq!(r.read(&mut buf, Some(Seq(5))), 5);
        assert_eq!(r.read(&mut buf, Some(Seq(5))), 0);
        assert_eq!(r.read(&mut buf, None), 6);
    }

    #[test]
    fn send_buffer_ack_beyond_written_skips_future_bytes() {
        let mut s = SendBuffer::new(Seq(1), 100);
        s.push(b"abcdef");
        s.ack_to(Seq(4));
        assert_eq!(s.slices(Seq(4), 3), (&b"def"[..], &b""[..]));
        s.ack_to(Seq(10));
        assert_eq!(
            s.start,
            Seq(7),
            "start stays at the next byte to be written"
        );
        assert!(s.data.is_empty());
        s.skip(3);
        assert_eq!(s.end(), Seq(10));
    }
}
