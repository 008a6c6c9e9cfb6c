//! The checkpoint stream of passive replication: the primary's records
//! (opaque bytes, `stack::Checkpoint`), numbered and sent in
//! order to every live backup. A record is *held* once every backup has
//! acknowledged it: the primary may then show its output to the client.
//! Backups apply a record once they learn it is held (the commit number
//! rides on later frames) or, if they become primary, at once: a record
//! some backup got and another did not is undone by the new primary's full
//! checkpoints at the start of its view.

use std::collections::{HashMap, VecDeque};

use hydra_base::{Duration, Instant};

use super::MemberId;
use hydra_base::codec::{DecodeError, Put, Reader};

/// Bytes of records in one frame at most (one larger record goes alone).
const FRAME_BYTES: usize = 1 << 20;
/// Bytes of unapplied records a backup keeps at most; beyond, it stops
/// taking them and the primary sends again from its acknowledgement.
const MAX_PENDING_BYTES: usize = 64 << 20;

#[derive(Debug, Clone)]
struct Follower {
    /// Highest index it holds.
    acked: u64,
    /// Highest index it has applied (learned committed).
    applied: u64,
    /// Highest index sent to it.
    sent: u64,
    commit_sent: u64,
    last_progress: Instant,
}

#[derive(Debug, Default)]
pub(super) struct CheckpointStream {
    // Primary: records not yet held by every backup.
    log: VecDeque<(u64, Vec<u8>)>,
    log_bytes: usize,
    next: u64,
    commit: u64,
    followers: HashMap<MemberId, Follower>,
    // Backup: records held, not yet known committed.
    pending: VecDeque<(u64, Vec<u8>)>,
    pending_bytes: usize,
    received: u64,
    applied: u64,
    ack_due: bool,
}

impl CheckpointStream {
    /// A new view: numbering starts again. Returns the records this replica
    /// held but had not applied, for a backup that becomes primary (it
    /// applies them before anything else: the client may have seen their
    /// output).
    pub fn reset(&mut self, now: Instant, followers: &[MemberId], primary: bool) -> Vec<Vec<u8>> {
        let held = std::mem::take(&mut self.pending);
        *self = CheckpointStream {
            next: 1,
            followers: followers
                .iter()
                .map(|m| {
                    let f = Follower {
                        acked: 0,
                        applied: 0,
                        sent: 0,
                        commit_sent: 0,
                        last_progress: now,
                    };
                    (*m, f)
                })
                .collect(),
            ..Default::default()
        };
        if primary {
            held.into_iter().map(|(_, r)| r).collect()
        } else {
            Vec::new()
        }
    }

    /// Primary: the index of the newest record.
    pub fn last_index(&self) -> u64 {
        self.next - 1
    }

    /// Primary: the highest index `member` has applied.
    pub fn applied_by(&self, member: MemberId) -> u64 {
        self.followers.get(&member).map_or(0, |f| f.applied)
    }

    /// Primary: bytes of records not yet held everywhere.
    pub fn backlog(&self) -> usize {
        self.log_bytes
    }

    /// Primary: add a record; returns the records held everywhere now
    /// (this one at once when there is no backup).
    pub fn append(&mut self, record: Vec<u8>) -> Vec<Vec<u8>> {
        let index = self.next;
        self.next += 1;
        self.log_bytes += record.len();
        self.log.push_back((index, record));
        self.advance()
    }

    fn advance(&mut self) -> Vec<Vec<u8>> {
        let top = self.next - 1;
        let stable = self
            .followers
            .values()
            .map(|f| f.acked)
            .min()
            .unwrap_or(top)
            .min(top);
        let mut held = Vec::new();
        while self.log.front().is_some_and(|(i, _)| *i <= stable) {
            let (index, record) = self.log.pop_front().expect("checked");
            self.log_bytes -= record.len();
            self.commit = index;
            held.push(record);
        }
        held
    }

    /// Primary: the next frame body for `to`, if it lacks records or the
    /// commit number moved.
    pub fn frame_for(&mut self, to: MemberId) -> Option<Vec<u8>> {
        let f = self.followers.get(&to)?;
        let start = f.sent.max(self.commit) + 1;
        let offset = (start - self.commit - 1) as usize;
        let mut records = Vec::new();
        let mut bytes = 0;
        for (index, record) in self.log.range(offset.min(self.log.len())..) {
            if !records.is_empty() && bytes + record.len() > FRAME_BYTES {
                break;
            }
            bytes += record.len();
            records.push((*index, record));
        }
        if records.is_empty() && f.commit_sent == self.commit {
            return None;
        }
        let mut body = Vec::with_capacity(16 + bytes + records.len() * 12);
        body.put_u64(self.commit);
        body.put_u16(records.len() as u16);
        for (index, record) in &records {
            body.put_u64(*index);
            body.put_bytes(record);
        }
        let last = records.last().map(|(i, _)| *i);
        let commit = self.commit;
        let f = self.followers.get_mut(&to).expect("present");
        if let Some(last) = last {
            f.sent = last;
        }
        f.commit_sent = commit;
        Some(body)
    }

    /// Primary: `from` holds records up to `received`; returns the records
    /// now held everywhere.
    pub fn on_ack(
        &mut self,
        now: Instant,
        from: MemberId,
        received: u64,
        applied: u64,
    ) -> Vec<Vec<u8>> {
        let top = self.next - 1;
        if let Some(f) = self.followers.get_mut(&from) {
            f.applied = f.applied.max(applied.min(top));
            if received > f.acked {
                f.acked = received.min(top);
                f.last_progress = now;
            }
        }
        self.advance()
    }

    /// Primary: a follower that stopped acknowledging gets the tail again.
    pub fn go_back(&mut self, now: Instant, stall: Duration) {
        for f in self.followers.values_mut() {
            if f.acked < f.sent && now.saturating_since(f.last_progress) >= stall {
                f.sent = f.acked;
                f.last_progress = now;
            }
        }
    }

    /// Backup: a frame from the primary. Returns the records now known
    /// committed, to apply in order.
    pub fn on_frame(&mut self, r: &mut Reader<'_>) -> Result<Vec<Vec<u8>>, DecodeError> {
        let commit = r.u64()?;
        let n = r.u16()? as usize;
        let mut records = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let index = r.u64()?;
            let len = r.u32()? as usize;
            records.push((index, r.take(len)?));
        }
        if !r.is_empty() {
            return Err(DecodeError::Invalid);
        }
        for (index, record) in records {
            if index <= self.received {
                continue; // held already
            }
            if index != self.received + 1 || self.pending_bytes + record.len() > MAX_PENDING_BYTES {
                break; // a gap or no room: the primary sends again from our ack
            }
            self.pending_bytes += record.len();
            self.pending.push_back((index, record.to_vec()));
            self.received = index;
        }
        self.ack_due = true;
        let stable = commit.min(self.received);
        let mut apply = Vec::new();
        while self.pending.front().is_some_and(|(i, _)| *i <= stable) {
            let (index, record) = self.pending.pop_front().expect("checked");
            self.pending_bytes -= record.len();
            self.applied = index;
            apply.push(record);
        }
        if !apply.is_empty() {
            self.ack_due = true; // the primary waits for what we applied
        }
        Ok(apply)
    }

    /// Backup: the acknowledgement body, when one is due.
    /// The body is what we hold, then what we applied.
    pub fn take_ack(&mut self) -> Option<Vec<u8>> {
        std::mem::take(&mut self.ack_due).then(|| {
            let mut body = Vec::with_capacity(16);
            body.put_u64(self.received);
            body.put_u64(self.applied);
            body
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u8]) -> Vec<MemberId> {
        v.iter().map(|i| MemberId(*i)).collect()
    }

    #[test]
    fn held_only_once_every_backup_acknowledged_and_applied_after_commit() {
        let now = Instant::ZERO;
        let mut primary = CheckpointStream::default();
        primary.reset(now, &ids(&[2, 3]), true);
        let (mut b2, mut b3) = (CheckpointStream::default(), CheckpointStream::default());
        b2.reset(now, &[], false);
        b3.reset(now, &[], false);
        assert!(primary.append(b"one".to_vec()).is_empty());
        assert!(primary.append(b"two".to_vec()).is_empty());
        let frame = primary.frame_for(MemberId(2)).unwrap();
        assert!(b2.on_frame(&mut Reader::new(&frame)).unwrap().is_empty());
        let ack = b2.take_ack().unwrap();
        let received = u64::from_be_bytes(ack[..8].try_into().unwrap());
        let held = primary.on_ack(now, MemberId(2), received, 0);
        assert!(held.is_empty(), "member 3 has nothing yet");
        let frame = primary.frame_for(MemberId(3)).unwrap();
        b3.on_frame(&mut Reader::new(&frame)).unwrap();
        let held = primary.on_ack(now, MemberId(3), 2, 0);
        assert_eq!(held, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(primary.backlog(), 0);
        // The commit number reaches member 2 with the next frame.
        let frame = primary.frame_for(MemberId(2)).unwrap();
        let applied = b2.on_frame(&mut Reader::new(&frame)).unwrap();
        assert_eq!(applied, vec![b"one".to_vec(), b"two".to_vec()]);
        let ack = b2.take_ack().unwrap();
        assert_eq!(ack[8..], 2u64.to_be_bytes(), "it reports what it applied");
        primary.on_ack(now, MemberId(2), 2, 2);
        assert_eq!(primary.applied_by(MemberId(2)), 2);
        assert!(primary.frame_for(MemberId(2)).is_none(), "nothing new");
    }

    #[test]
    fn a_promoted_backup_gets_what_it_held_and_gaps_wait_for_a_resend() {
        let now = Instant::ZERO;
        let mut primary = CheckpointStream::default();
        primary.reset(now, &ids(&[2]), true);
        let mut b = CheckpointStream::default();
        b.reset(now, &[], false);
        primary.append(b"a".to_vec());
        let first = primary.frame_for(MemberId(2)).unwrap();
        primary.append(b"b".to_vec());
        let second = primary.frame_for(MemberId(2)).unwrap();
        // The first frame is lost: the second does not fit after nothing.
        b.on_frame(&mut Reader::new(&second)).unwrap();
        assert_eq!(b.take_ack().unwrap()[..8], 0u64.to_be_bytes());
        // The primary goes back after a stall and sends both again.
        primary.go_back(now + Duration::from_millis(50), Duration::from_millis(40));
        let again = primary.frame_for(MemberId(2)).unwrap();
        assert!(again.len() > first.len());
        b.on_frame(&mut Reader::new(&again)).unwrap();
        assert_eq!(b.take_ack().unwrap()[..8], 2u64.to_be_bytes());
        // Promoted before learning of the commit: it applies both itself.
        let held = b.reset(now, &ids(&[3]), true);
        assert_eq!(held, vec![b"a".to_vec(), b"b".to_vec()]);
        // A backup of a new view drops them (the new primary resyncs it).
        let mut c = CheckpointStream::default();
        c.reset(now, &[], false);
        c.on_frame(&mut Reader::new(&again)).unwrap();
        assert!(c.reset(now, &[], false).is_empty());
    }

    #[test]
    fn malformed_frames_are_refused() {
        let mut b = CheckpointStream::default();
        b.reset(Instant::ZERO, &[], false);
        let mut body = 0u64.to_be_bytes().to_vec();
        body.extend_from_slice(&1u16.to_be_bytes());
        body.extend_from_slice(&1u64.to_be_bytes());
        body.extend_from_slice(&100u32.to_be_bytes());
        body.extend_from_slice(b"short");
        assert!(b.on_frame(&mut Reader::new(&body)).is_err());
    }
}
