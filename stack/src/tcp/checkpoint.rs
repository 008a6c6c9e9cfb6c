//! Passive replication of one connection (DESIGN "Replication modes"):
//! only the primary runs the application; what it did to the connection
//! travels to the backups as *checkpoints*, each an atomic step: input
//! consumed up to here, these output bytes (and FIN), these changes to the
//! application's keyed state blocks. The primary transmits output only
//! once every backup holds the checkpoint that wrote it (output commit), so
//! a backup that takes over continues from a state consistent with what
//! the client has seen.

use std::collections::BTreeMap;

use super::buffer::SendBuffer;
use hydra_base::codec::{DecodeError, Put, Reader};
use hydra_base::ConnKey;
use hydra_base::Seq;

/// Bytes of state blocks one connection may hold.
pub const MAX_STATE_BYTES: usize = 1 << 20;
/// Blocks one connection may hold.
pub const MAX_BLOCKS: usize = 256;
/// Longest block name, in bytes.
pub const MAX_NAME: usize = 64;

/// Why a state-store operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No connection with that key is in the stack.
    #[error("no such connection")]
    NotConnected,
    /// The connection was not accepted on a passive listener, so it has no state store.
    #[error("the connection was not accepted on a passive listener")]
    NotPassive,
    /// The block name is empty or longer than `MAX_NAME` (64) bytes.
    #[error("block names are 1 to {MAX_NAME} bytes")]
    BadName,
    /// No block has this name.
    #[error("no block named `{0}`")]
    NoSuchBlock(String),
    /// A write would extend past the end of the block.
    #[error("write of {len} bytes at {offset} is outside block `{name}` of {size} bytes")]
    OutOfRange {
        /// The block written.
        name: String,
        /// Offset of the write, in bytes.
        offset: usize,
        /// Length of the write, in bytes.
        len: usize,
        /// The block's size, in bytes.
        size: usize,
    },
    /// The connection would hold more than `MAX_STATE_BYTES` (1 MiB) or
    /// `MAX_BLOCKS` (256) blocks.
    #[error("a connection's state is limited to {MAX_STATE_BYTES} bytes in {MAX_BLOCKS} blocks")]
    TooLarge,
}

/// What changed in a block since the last checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dirty {
    /// Bytes `lo..hi` (the block may also have changed size).
    Range(usize, usize),
    Removed,
}

/// The passive-mode part of a connection's control block.
#[derive(Debug, Clone, Default)]
pub struct PassiveState {
    /// Primary: bytes the application read that no checkpoint has released
    /// yet; they stay in the receive buffer so a demoted primary can
    /// forget the reads (another replica's application redoes them).
    pub read_ahead: usize,
    /// Primary: sequence numbers before this may be transmitted (the FIN
    /// counts as one): the backups hold the checkpoints that wrote them.
    pub send_limit: Seq,
    blocks: BTreeMap<String, Vec<u8>>,
    block_bytes: usize,
    dirty: BTreeMap<String, Dirty>,
    /// Output recorded in checkpoints up to here, FIN included.
    recorded_out: Seq,
    recorded_fin: bool,
    recorded_consumed: Seq,
    /// Application handles of older generations no longer act on the
    /// connection (bumped when the replica stops being primary).
    pub app_generation: u64,
    /// Open atomic sections: no checkpoint is cut in the middle of one.
    pub atomic_depth: u32,
}

impl PassiveState {
    /// Passive state of a connection whose output starts at sequence number
    /// `out_start` and whose input the application has consumed up to
    /// `consumed`; nothing is recorded or released beyond those yet.
    pub fn new(out_start: Seq, consumed: Seq) -> PassiveState {
        PassiveState {
            send_limit: out_start,
            recorded_out: out_start,
            recorded_consumed: consumed,
            ..Default::default()
        }
    }

    /// The content of block `name`, if there is one.
    pub fn lookup(&self, name: &str) -> Option<&[u8]> {
        self.blocks.get(name).map(Vec::as_slice)
    }

    /// The names of all blocks, in sorted order.
    pub fn names(&self) -> Vec<String> {
        self.blocks.keys().cloned().collect()
    }

    /// Create (or resize) a block of `len` bytes; new bytes are zero.
    pub fn allocate(&mut self, name: &str, len: usize) -> Result<(), StoreError> {
        check_name(name)?;
        let old = self.blocks.get(name).map_or(0, Vec::len);
        let new_total = self.block_bytes - old + len;
        let new_count = self.blocks.len() + usize::from(!self.blocks.contains_key(name));
        if new_total > MAX_STATE_BYTES || new_count > MAX_BLOCKS {
            return Err(StoreError::TooLarge);
        }
        self.blocks
            .entry(name.to_string())
            .or_default()
            .resize(len, 0);
        self.block_bytes = new_total;
        self.mark(name, 0, len);
        Ok(())
    }

    /// Write `bytes` at `offset` of an existing block.
    pub fn push(&mut self, name: &str, offset: usize, bytes: &[u8]) -> Result<(), StoreError> {
        let block = self
            .blocks
            .get_mut(name)
            .ok_or_else(|| StoreError::NoSuchBlock(name.to_string()))?;
        let end = offset.saturating_add(bytes.len());
        if end > block.len() {
            return Err(StoreError::OutOfRange {
                name: name.to_string(),
                offset,
                len: bytes.len(),
                size: block.len(),
            });
        }
        block[offset..end].copy_from_slice(bytes);
        self.mark(name, offset, end);
        Ok(())
    }

    /// Replace a block's whole content (allocating it as needed).
    pub fn put(&mut self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.allocate(name, bytes.len())?;
        self.push(name, 0, bytes)
    }

    /// Remove block `name`; false if there was none.
    pub fn remove(&mut self, name: &str) -> bool {
        let Some(block) = self.blocks.remove(name) else {
            return false;
        };
        self.block_bytes -= block.len();
        self.dirty.insert(name.to_string(), Dirty::Removed);
        true
    }

    fn mark(&mut self, name: &str, lo: usize, hi: usize) {
        let range = match self.dirty.get(name) {
            Some(Dirty::Range(a, b)) => Dirty::Range(lo.min(*a), hi.max(*b)),
            _ => Dirty::Range(lo, hi),
        };
        self.dirty.insert(name.to_string(), range);
    }

    /// Something happened that the next checkpoint must carry.
    pub fn changed(&self, out_end: Seq, fin: bool, consumed: Seq) -> bool {
        !self.dirty.is_empty()
            || out_end != self.recorded_out
            || fin != self.recorded_fin
            || consumed != self.recorded_consumed
    }

    /// The step since the last checkpoint: reads up to `consumed`, output
    /// written since (from `send`), the FIN if the application closed.
    pub fn take_delta(
        &mut self,
        key: ConnKey,
        consumed: Seq,
        send: &SendBuffer,
        fin: bool,
    ) -> Checkpoint {
        let out_from = self.recorded_out.max(send.start).min(send.end());
        let mut blocks = Vec::with_capacity(self.dirty.len());
        for (name, dirty) in std::mem::take(&mut self.dirty) {
            match (dirty, self.blocks.get(&name)) {
                (Dirty::Range(lo, hi), Some(b)) => {
                    let (lo, hi) = (lo.min(b.len()), hi.min(b.len()));
                    blocks.push(BlockChange::Write {
                        name,
                        size: b.len() as u32,
                        offset: lo as u32,
                        bytes: b[lo..hi].to_vec(),
                    });
                }
                // Allocated then removed, or removed: gone either way.
                _ => blocks.push(BlockChange::Remove { name }),
            }
        }
        self.recorded_out = send.end();
        self.recorded_fin = fin;
        self.recorded_consumed = consumed;
        Checkpoint {
            key,
            sync: false,
            consumed,
            out_from,
            output: copy_from(send, out_from),
            fin,
            blocks,
        }
    }

    /// Everything, for a backup that must be brought exactly to our state
    /// (a new view): it replaces what the backup had.
    pub fn take_full(
        &mut self,
        key: ConnKey,
        consumed: Seq,
        send: &SendBuffer,
        fin: bool,
    ) -> Checkpoint {
        self.dirty.clear();
        self.recorded_out = send.end();
        self.recorded_fin = fin;
        self.recorded_consumed = consumed;
        let blocks = self
            .blocks
            .iter()
            .map(|(name, b)| BlockChange::Write {
                name: name.clone(),
                size: b.len() as u32,
                offset: 0,
                bytes: b.clone(),
            })
            .collect();
        Checkpoint {
            key,
            sync: true,
            consumed,
            out_from: send.start,
            output: copy_from(send, send.start),
            fin,
            blocks,
        }
    }

    /// Backup: apply a checkpoint's block changes (all blocks, for a sync).
    /// Values from the primary, which enforced the limits; a malformed one
    /// is refused as a whole.
    pub fn apply_blocks(&mut self, c: &Checkpoint) -> Result<(), StoreError> {
        let mut next = if c.sync {
            BTreeMap::new()
        } else {
            self.blocks.clone()
        };
        for change in &c.blocks {
            match change {
                BlockChange::Write {
                    name,
                    size,
                    offset,
                    bytes,
                } => {
                    check_name(name)?;
                    let block = next.entry(name.clone()).or_default();
                    block.resize(*size as usize, 0);
                    let at = *offset as usize;
                    let end = at.saturating_add(bytes.len());
                    if end > block.len() {
                        return Err(StoreError::OutOfRange {
                            name: name.clone(),
                            offset: at,
                            len: bytes.len(),
                            size: block.len(),
                        });
                    }
                    block[at..end].copy_from_slice(bytes);
                }
                BlockChange::Remove { name } => {
                    next.remove(name);
                }
            }
        }
        let total: usize = next.values().map(Vec::len).sum();
        if total > MAX_STATE_BYTES || next.len() > MAX_BLOCKS {
            return Err(StoreError::TooLarge);
        }
        self.blocks = next;
        self.block_bytes = total;
        Ok(())
    }
}

/// The send buffer's bytes from `from` on.
fn copy_from(send: &SendBuffer, from: Seq) -> Vec<u8> {
    let (a, b) = send.slices(from, send.end().since(from) as usize);
    [a, b].concat()
}

fn check_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(StoreError::BadName);
    }
    Ok(())
}

/// One change to a state block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockChange {
    /// Make the block `size` bytes long and write `bytes` at `offset`.
    Write {
        /// Name of the block.
        name: String,
        /// The block's size after the change, in bytes.
        size: u32,
        /// Where `bytes` go in the block.
        offset: u32,
        /// The bytes written.
        bytes: Vec<u8>,
    },
    /// Delete the block.
    Remove {
        /// Name of the block.
        name: String,
    },
}

/// One atomic step of a passive connection, primary to backups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The connection it belongs to.
    pub key: ConnKey,
    /// Replace the backup's state (blocks, output from `out_from`) rather
    /// than add to it: the first checkpoint of each connection in a view.
    pub sync: bool,
    /// Client bytes before this have been consumed by the application.
    pub consumed: Seq,
    /// Sequence number of the first byte of `output`.
    pub out_from: Seq,
    /// Output bytes the application wrote in this step, from `out_from` on.
    pub output: Vec<u8>,
    /// The application closed its side after `output`.
    pub fin: bool,
    /// Changes to the application's state blocks (every block, for a sync).
    pub blocks: Vec<BlockChange>,
}

const CHECKPOINT_VERSION: u8 = 2;
const CHANGE_WRITE: u8 = 1;
const CHANGE_REMOVE: u8 = 2;

/// What the primary needs once a checkpoint is held everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// The connection it belongs to.
    pub key: ConnKey,
    /// Client bytes before this were consumed by the application: the primary
    /// may free them from its receive buffer (and open its window).
    pub consumed: Seq,
    /// Sequence numbers before this may be transmitted (FIN included).
    pub send_limit: Seq,
}

impl Checkpoint {
    /// End of the output it covers, its FIN counted.
    pub fn out_end(&self) -> Seq {
        self.out_from + self.output.len() + usize::from(self.fin)
    }

    /// Encode the checkpoint in its versioned binary form (primary to backups).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(40 + self.output.len());
        w.put_u8(CHECKPOINT_VERSION);
        w.put_key(&self.key);
        w.put_u8(u8::from(self.sync) | u8::from(self.fin) << 1);
        w.put_seq(self.consumed);
        w.put_seq(self.out_from);
        w.put_bytes(&self.output);
        w.put_u16(self.blocks.len() as u16);
        for change in &self.blocks {
            match change {
                BlockChange::Write {
                    name,
                    size,
                    offset,
                    bytes,
                } => {
                    w.put_u8(CHANGE_WRITE);
                    w.put_u8(name.len() as u8);
                    w.put_raw(name.as_bytes());
                    w.put_u32(*size);
                    w.put_u32(*offset);
                    w.put_bytes(bytes);
                }
                BlockChange::Remove { name } => {
                    w.put_u8(CHANGE_REMOVE);
                    w.put_u8(name.len() as u8);
                    w.put_raw(name.as_bytes());
                }
            }
        }
        w
    }

    /// Decode a checkpoint written by [`encode`](Self::encode).
    ///
    /// Errors: [`DecodeError`] if the bytes are truncated, of another format
    /// version, or hold invalid flags, a block name that is not UTF-8 or an
    /// unknown change, or have bytes left over.
    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, DecodeError> {
        let mut r = Reader::new(bytes);
        let (key, sync, fin, consumed, out_from) = Self::header(&mut r)?;
        let output = r.bytes()?;
        let n = r.u16()? as usize;
        let mut blocks = Vec::with_capacity(n.min(MAX_BLOCKS));
        for _ in 0..n {
            let op = r.u8()?;
            let len = r.u8()? as usize;
            let name = std::str::from_utf8(r.take(len)?)
                .map_err(|_| DecodeError::Invalid)?
                .to_string();
            blocks.push(match op {
                CHANGE_WRITE => BlockChange::Write {
                    name,
                    size: r.u32()?,
                    offset: r.u32()?,
                    bytes: r.bytes()?,
                },
                CHANGE_REMOVE => BlockChange::Remove { name },
                _ => return Err(DecodeError::Invalid),
            });
        }
        if !r.is_empty() {
            return Err(DecodeError::Invalid);
        }
        Ok(Checkpoint {
            key,
            sync,
            consumed,
            out_from,
            output,
            fin,
            blocks,
        })
    }

    /// The release point of an encoded checkpoint, without copying its bytes.
    pub fn decode_release(bytes: &[u8]) -> Result<Release, DecodeError> {
        let mut r = Reader::new(bytes);
        let (key, _, fin, consumed, out_from) = Self::header(&mut r)?;
        let len = r.u32()? as usize;
        r.take(len)?;
        Ok(Release {
            key,
            consumed,
            send_limit: out_from + len + usize::from(fin),
        })
    }

    fn header(r: &mut Reader) -> Result<(ConnKey, bool, bool, Seq, Seq), DecodeError> {
        let version = r.u8()?;
        if version != CHECKPOINT_VERSION {
            return Err(DecodeError::Version(version));
        }
        let key = r.key()?;
        let flags = r.u8()?;
        if flags > 3 {
            return Err(DecodeError::Invalid);
        }
        Ok((key, flags & 1 != 0, flags & 2 != 0, r.seq()?, r.seq()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};

    fn sent(start: u32, bytes: &[u8]) -> SendBuffer {
        let mut b = SendBuffer::new(Seq(start), 1 << 16);
        b.push(bytes);
        b
    }

    fn key() -> ConnKey {
        ConnKey {
            local: SocketAddr::from((Ipv4Addr::new(198, 18, 0, 1), 7000)),
            remote: SocketAddr::from((Ipv4Addr::new(198, 18, 1, 2), 40000)),
        }
    }

    #[test]
    fn deltas_carry_only_what_changed_and_round_trip() {
        let mut p = PassiveState::new(Seq(101), Seq(501));
        p.put("session", b"count=1").unwrap();
        p.allocate("history", 8).unwrap();
        let c = p.take_delta(key(), Seq(510), &sent(101, b"hello"), false);
        assert_eq!(c.out_from, Seq(101));
        assert_eq!(c.output, b"hello");
        assert_eq!(c.blocks.len(), 2);
        assert_eq!(Checkpoint::decode(&c.encode()).unwrap(), c);

        p.push("history", 2, b"ab").unwrap();
        assert!(p.remove("session"));
        // Bytes 101..104 were acknowledged meanwhile; two more were written.
        let c = p.take_delta(key(), Seq(515), &sent(104, b"lo!!"), true);
        assert_eq!((c.out_from, c.output.as_slice()), (Seq(106), &b"!!"[..]));
        assert_eq!(c.out_end(), Seq(109));
        assert_eq!(
            c.blocks,
            vec![
                BlockChange::Write {
                    name: "history".into(),
                    size: 8,
                    offset: 2,
                    bytes: b"ab".to_vec()
                },
                BlockChange::Remove {
                    name: "session".into()
                },
            ]
        );
        let release = Checkpoint::decode_release(&c.encode()).unwrap();
        assert_eq!(release.send_limit, Seq(109));
        assert_eq!(release.consumed, Seq(515));
        assert!(!p.changed(Seq(108), true, Seq(515)));
    }

    #[test]
    fn a_backup_applies_deltas_and_a_sync_replaces_everything() {
        let mut primary = PassiveState::new(Seq(1), Seq(1));
        let mut backup = PassiveState::new(Seq(1), Seq(1));
        primary.put("a", b"xxxx").unwrap();
        primary.put("b", b"yy").unwrap();
        let c = primary.take_delta(key(), Seq(1), &sent(1, b""), false);
        backup.apply_blocks(&c).unwrap();
        primary.push("a", 1, b"Z").unwrap();
        let c = primary.take_delta(key(), Seq(1), &sent(1, b""), false);
        backup.apply_blocks(&c).unwrap();
        assert_eq!(backup.lookup("a"), Some(&b"xZxx"[..]));
        // The backup got ahead of a new primary that never saw "b".
        let mut other = PassiveState::new(Seq(1), Seq(1));
        other.put("a", b"q").unwrap();
        let sync = other.take_full(key(), Seq(1), &sent(1, b""), false);
        backup.apply_blocks(&sync).unwrap();
        assert_eq!(backup.names(), vec!["a".to_string()]);
        assert_eq!(backup.lookup("a"), Some(&b"q"[..]));
    }

    #[test]
    fn limits_and_bad_input_are_refused() {
        let mut p = PassiveState::new(Seq(1), Seq(1));
        assert_eq!(p.allocate("", 1), Err(StoreError::BadName));
        assert_eq!(
            p.allocate("x", MAX_STATE_BYTES + 1),
            Err(StoreError::TooLarge)
        );
        assert!(matches!(
            p.push("nope", 0, b"a"),
            Err(StoreError::NoSuchBlock(_))
        ));
        p.allocate("x", 4).unwrap();
        assert!(matches!(
            p.push("x", 3, b"ab"),
            Err(StoreError::OutOfRange { .. })
        ));
        assert!(matches!(
            p.push("x", usize::MAX, b"ab"),
            Err(StoreError::OutOfRange { .. })
        ));
        let c = p.take_delta(key(), Seq(1), &sent(1, b""), false);
        let bytes = c.encode();
        for cut in 0..bytes.len() {
            assert!(Checkpoint::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert_eq!(Checkpoint::decode(&bad), Err(DecodeError::Version(9)));
        // A write beyond its stated size is refused by the backup.
        let evil = Checkpoint {
            blocks: vec![BlockChange::Write {
                name: "x".into(),
                size: 2,
                offset: 1,
                bytes: b"abc".to_vec(),
            }],
            ..c
        };
        assert!(p.apply_blocks(&evil).is_err());
        assert_eq!(p.lookup("x"), Some(&[0u8; 4][..]));
    }
}
