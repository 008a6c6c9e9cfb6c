//! The wire format of replication frames: frame kinds and the bodies
//! they carry (log entries, confirmations), encoded and decoded.

use hydra_base::{ConnKey, Seq};

use super::{Entry, Progress};
use crate::auth::{put_addr, Malformed, Reader};

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
/// Append flag: the backup should confirm every connection it holds.
pub(super) const FLAG_SEND_ALL: u8 = 1;
/// Client bytes sent in one repair at most.
pub const MAX_FILL: usize = 32 * 1024;

pub(super) const ENTRY_OPENED: u8 = 1;
pub(super) const ENTRY_DATA: u8 = 2;
pub(super) const ENTRY_CLOSED: u8 = 3;

pub(super) fn put_key(out: &mut Vec<u8>, key: &ConnKey) {
    put_addr(out, key.local);
    put_addr(out, key.remote);
}

pub(super) fn get_key(r: &mut Reader) -> Result<ConnKey, Malformed> {
    Ok(ConnKey {
        local: r.addr()?,
        remote: r.addr()?,
    })
}

pub(super) fn encode_entries(out: &mut Vec<u8>, entries: &[(u64, Entry)]) {
    out.extend_from_slice(&(entries.len() as u16).to_be_bytes());
    for (index, entry) in entries {
        out.extend_from_slice(&index.to_be_bytes());
        match entry {
            Entry::Opened { key, record } => {
                out.push(ENTRY_OPENED);
                put_key(out, key);
                out.extend_from_slice(&(record.len() as u16).to_be_bytes());
                out.extend_from_slice(record);
            }
            Entry::Data { key, upto } => {
                out.push(ENTRY_DATA);
                put_key(out, key);
                out.extend_from_slice(&upto.0.to_be_bytes());
            }
            Entry::Closed { key } => {
                out.push(ENTRY_CLOSED);
                put_key(out, key);
            }
        }
    }
}

pub(super) fn decode_entries(r: &mut Reader) -> Result<Vec<(u64, Entry)>, Malformed> {
    let n = r.u16()? as usize;
    let mut entries = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let index = r.u64()?;
        let entry = match r.u8()? {
            ENTRY_OPENED => {
                let key = get_key(r)?;
                let len = r.u16()? as usize;
                Entry::Opened {
                    key,
                    record: r.take(len)?.to_vec(),
                }
            }
            ENTRY_DATA => Entry::Data {
                key: get_key(r)?,
                upto: Seq(r.u32()?),
            },
            ENTRY_CLOSED => Entry::Closed { key: get_key(r)? },
            _ => return Err(Malformed),
        };
        entries.push((index, entry));
    }
    if !r.is_empty() {
        return Err(Malformed);
    }
    Ok(entries)
}

pub(super) fn encode_confirms(out: &mut Vec<u8>, confirms: &[(ConnKey, Progress)]) {
    out.extend_from_slice(&(confirms.len() as u16).to_be_bytes());
    for (key, p) in confirms {
        put_key(out, key);
        out.extend_from_slice(&p.held.0.to_be_bytes());
        out.extend_from_slice(&p.edge.0.to_be_bytes());
        out.push(u8::from(p.fin));
    }
}

pub(super) fn decode_confirms(r: &mut Reader) -> Result<Vec<(ConnKey, Progress)>, Malformed> {
    let n = r.u16()? as usize;
    let mut out = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let key = get_key(r)?;
        out.push((
            key,
            Progress {
                held: Seq(r.u32()?),
                edge: Seq(r.u32()?),
                fin: r.u8()? != 0,
            },
        ));
    }
    if !r.is_empty() {
        return Err(Malformed);
    }
    Ok(out)
}
