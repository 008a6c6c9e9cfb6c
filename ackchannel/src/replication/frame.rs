//! The wire format of replication frames: the frame kinds and the bodies
//! they carry, written with [`Put`] and read with [`Reader`] (the project's
//! one byte codec, so a connection key has one encoding everywhere). Every
//! decoder refuses trailing bytes: a body is exactly what its kind says.

use hydra_base::codec::{DecodeError, Put, Reader};
use hydra_base::{ConnKey, HeldBeyond, Seq};

use super::{Entry, Progress};

pub(super) const DOMAIN: &[u8] = b"hydra ackchannel v1";
pub(super) const KIND_APPEND: u8 = 1;
pub(super) const KIND_CONFIRM: u8 = 2;
pub(super) const KIND_FILL: u8 = 3;
pub(super) const KIND_SNAPSHOT: u8 = 4;
pub(super) const KIND_DELIVER: u8 = 5;
pub(super) const KIND_CHECKPOINT: u8 = 6;
pub(super) const KIND_CHECKPOINT_ACK: u8 = 7;
/// A confirmation that lists every connection the sender holds.
pub(super) const KIND_CONFIRM_ALL: u8 = 8;
/// Primary to a backup: send me the client bytes from here (a copy the
/// primary lost that a backup holds; otherwise only the client's
/// retransmission, maybe after its RTO, would bring them).
pub(super) const KIND_FILL_REQUEST: u8 = 9;
/// Primary to a backup: a connection's half-open record (the backup lost
/// the client's SYN).
pub(super) const KIND_HALF_OPEN: u8 = 10;
/// Append flag: the backup should confirm every connection it holds.
pub(super) const FLAG_SEND_ALL: u8 = 1;
/// Client bytes sent in one repair at most.
pub const MAX_FILL: usize = 32 * 1024;

pub(super) const ENTRY_OPENED: u8 = 1;
pub(super) const ENTRY_DATA: u8 = 2;
pub(super) const ENTRY_CLOSED: u8 = 3;

/// Primary to a backup: the commit index, flags ([`FLAG_SEND_ALL`]) and
/// log entries.
pub(super) fn append_body(commit: u64, flags: u8, entries: &[(u64, Entry)]) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + entries.len() * 24);
    body.put_u64(commit);
    body.put_u8(flags);
    encode_entries(&mut body, entries);
    body
}

/// A log entry with its index in the epoch's log.
pub(super) type Indexed = (u64, Entry);

/// A decoded append frame.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Append {
    /// The primary's commit index.
    pub commit: u64,
    /// [`FLAG_SEND_ALL`] or nothing.
    pub flags: u8,
    /// Entries in index order.
    pub entries: Vec<Indexed>,
}

/// Reads an append body: commit index, flags, entries.
pub(super) fn read_append(r: &mut Reader<'_>) -> Result<Append, DecodeError> {
    Ok(Append {
        commit: r.u64()?,
        flags: r.u8()?,
        entries: decode_entries(r)?,
    })
}

/// Backup to the primary: the highest log index it holds and its progress
/// on some connections.
pub(super) fn confirm_body(received: u64, confirms: &[(ConnKey, Progress)]) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + confirms.len() * 22);
    body.put_u64(received);
    encode_confirms(&mut body, confirms);
    body
}

/// Reads a confirmation body: log index held, then the confirmations.
pub(super) fn read_confirm(
    r: &mut Reader<'_>,
) -> Result<(u64, Vec<(ConnKey, Progress)>), DecodeError> {
    let acked = r.u64()?;
    Ok((acked, decode_confirms(r)?))
}

/// Primary to a backup: send me `len` client bytes of `key` from `from`.
pub(super) fn fill_request_body(key: &ConnKey, from: Seq, len: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(20);
    body.put_key(key);
    body.put_seq(from);
    body.put_u32(len);
    body
}

/// Reads a fill request; a request for more than [`MAX_FILL`] is refused.
pub(super) fn read_fill_request(r: &mut Reader<'_>) -> Result<(ConnKey, Seq, u32), DecodeError> {
    let key = r.key()?;
    let from = r.seq()?;
    let len = r.u32()?;
    if len as usize > MAX_FILL || !r.is_empty() {
        return Err(DecodeError::Invalid);
    }
    Ok((key, from, len))
}

/// Client bytes of `key` from `from` (at most [`MAX_FILL`]: the caller cuts).
pub(super) fn fill_body(key: &ConnKey, from: Seq, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(24 + data.len());
    body.put_key(key);
    body.put_seq(from);
    body.put_bytes(data);
    body
}

/// Reads a fill; more than [`MAX_FILL`] bytes is refused before they are
/// read.
pub(super) fn read_fill(r: &mut Reader<'_>) -> Result<(ConnKey, Seq, Vec<u8>), DecodeError> {
    let key = r.key()?;
    let seq = r.seq()?;
    let len = r.u32()? as usize;
    if len > MAX_FILL {
        return Err(DecodeError::Invalid);
    }
    let data = r.take(len)?.to_vec();
    if !r.is_empty() {
        return Err(DecodeError::Invalid);
    }
    Ok((key, seq, data))
}

/// Primary to a joining member: commits to pass to its application.
pub(super) fn deliver_body(notes: &[(ConnKey, Seq)]) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + notes.len() * 16);
    body.put_u32(notes.len() as u32);
    for (key, upto) in notes {
        body.put_key(key);
        body.put_seq(*upto);
    }
    body
}

/// Reads a deliver body.
pub(super) fn read_deliveries(r: &mut Reader<'_>) -> Result<Vec<(ConnKey, Seq)>, DecodeError> {
    let n = r.u32()? as usize;
    let mut notes = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        notes.push((r.key()?, r.seq()?));
    }
    if !r.is_empty() {
        return Err(DecodeError::Invalid);
    }
    Ok(notes)
}

/// Reads a checkpoint acknowledgement: records held, then applied.
pub(super) fn read_checkpoint_ack(r: &mut Reader<'_>) -> Result<(u64, u64), DecodeError> {
    let received = r.u64()?;
    let applied = r.u64()?;
    if !r.is_empty() {
        return Err(DecodeError::Invalid);
    }
    Ok((received, applied))
}

/// A count (two bytes), then each entry: index, kind, connection key and
/// the kind's fields.
pub(super) fn encode_entries(out: &mut Vec<u8>, entries: &[(u64, Entry)]) {
    out.put_u16(entries.len() as u16);
    for (index, entry) in entries {
        out.put_u64(*index);
        match entry {
            Entry::Opened { key, record } => {
                out.put_u8(ENTRY_OPENED);
                out.put_key(key);
                out.put_u16(record.len() as u16);
                out.put_raw(record);
            }
            Entry::Data { key, upto } => {
                out.put_u8(ENTRY_DATA);
                out.put_key(key);
                out.put_seq(*upto);
            }
            Entry::Closed { key } => {
                out.put_u8(ENTRY_CLOSED);
                out.put_key(key);
            }
        }
    }
}

/// Reads what [`encode_entries`] wrote, to the end of the body.
pub(super) fn decode_entries(r: &mut Reader<'_>) -> Result<Vec<(u64, Entry)>, DecodeError> {
    let n = r.u16()? as usize;
    let mut entries = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let index = r.u64()?;
        let entry = match r.u8()? {
            ENTRY_OPENED => {
                let key = r.key()?;
                let len = r.u16()? as usize;
                Entry::Opened {
                    key,
                    record: r.take(len)?.to_vec(),
                }
            }
            ENTRY_DATA => Entry::Data {
                key: r.key()?,
                upto: r.seq()?,
            },
            ENTRY_CLOSED => Entry::Closed { key: r.key()? },
            _ => return Err(DecodeError::Invalid),
        };
        entries.push((index, entry));
    }
    if !r.is_empty() {
        return Err(DecodeError::Invalid);
    }
    Ok(entries)
}

/// A count (two bytes), then each connection's key, held, edge and FIN.
pub(super) fn encode_confirms(out: &mut Vec<u8>, confirms: &[(ConnKey, Progress)]) {
    out.put_u16(confirms.len() as u16);
    for (key, p) in confirms {
        out.put_key(key);
        out.put_seq(p.held);
        out.put_seq(p.edge);
        out.put_bool(p.fin);
        let ranges: Vec<&(Seq, Seq)> = p.beyond.iter().flatten().collect();
        out.put_u8(ranges.len() as u8);
        for (start, end) in ranges {
            out.put_seq(*start);
            out.put_seq(*end);
        }
    }
}

/// Reads what [`encode_confirms`] wrote, to the end of the body. Any
/// non-zero FIN byte counts as set.
pub(super) fn decode_confirms(r: &mut Reader<'_>) -> Result<Vec<(ConnKey, Progress)>, DecodeError> {
    let n = r.u16()? as usize;
    let mut out = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let key = r.key()?;
        let (held, edge, fin) = (r.seq()?, r.seq()?, r.u8()? != 0);
        let count = r.u8()? as usize;
        let mut beyond: HeldBeyond = [None; 3];
        if count > beyond.len() {
            return Err(DecodeError::Invalid);
        }
        for slot in beyond.iter_mut().take(count) {
            *slot = Some((r.seq()?, r.seq()?));
        }
        out.push((
            key,
            Progress {
                held,
                edge,
                fin,
                beyond,
            },
        ));
    }
    if !r.is_empty() {
        return Err(DecodeError::Invalid);
    }
    Ok(out)
}
