//! Primary: repair of a lost handshake. A backup that lost the copy of a
//! client's SYN holds no copy of the connection and never confirms it, so
//! the gate, and with it the SYN-ACK, waits until the client sends its SYN
//! again (a second or more later). When a backup has not confirmed a
//! connection we hold for two repair periods, the stack is asked for the
//! connection's half-open record ([`Action::RepairHalfOpen`]); the backup
//! makes from it the copy its lost SYN would have made
//! ([`Action::HalfOpen`]).

use std::collections::HashSet;

use hydra_base::codec::{DecodeError, Put, Reader};
use hydra_base::{ConnKey, Instant};

use super::frame::KIND_HALF_OPEN;
use super::{Action, MemberId, Replicator};

/// A half-open record's length at most (an encoded `OpenRecord` is about
/// 80 bytes).
pub const MAX_HALF_OPEN_RECORD: usize = 512;

impl Replicator {
    /// Primary, each repair check: ask for the half-open record of each
    /// connection a backup has not confirmed for two repair periods.
    pub(super) fn find_lost_handshakes(&mut self, now: Instant) {
        let after = self.cfg.repair_after.saturating_mul(2);
        let backups = self.backups();
        // A connection every backup confirmed has a gate: only those
        // without one can wait for a backup (and this runs every check).
        let mut keys: Vec<ConnKey> = self
            .local
            .keys()
            .filter(|k| !self.gates.contains_key(k))
            .copied()
            .collect();
        keys.sort_unstable();
        let mut seen = HashSet::new();
        for key in keys {
            for &b in &backups {
                let Some(peer) = self.peers.get(&b) else {
                    continue;
                };
                if peer.confirmed.contains_key(&key) {
                    continue;
                }
                seen.insert((b, key));
                match self.unconfirmed.get_mut(&(b, key)) {
                    Some(since) if now.saturating_since(*since) >= after => {
                        *since = now;
                        self.actions
                            .push_back(Action::RepairHalfOpen { to: b, key });
                    }
                    Some(_) => {}
                    None => {
                        self.unconfirmed.insert((b, key), now);
                    }
                }
            }
        }
        self.unconfirmed.retain(|k, _| seen.contains(k));
    }

    /// Primary: send backup `to` the half-open record of `key` (after
    /// [`Action::RepairHalfOpen`], when the stack still holds it half-open).
    pub fn send_half_open(&mut self, now: Instant, to: MemberId, key: ConnKey, record: &[u8]) {
        if !self.is_primary() || record.len() > MAX_HALF_OPEN_RECORD {
            return;
        }
        let mut body = Vec::with_capacity(48 + record.len());
        body.put_key(&key);
        body.put_bytes(record);
        self.stats.half_open_repairs += 1;
        self.send(now, to, KIND_HALF_OPEN, &body);
    }
}

/// Reads a half-open repair: the connection and its encoded record.
pub(super) fn read_half_open(r: &mut Reader<'_>) -> Result<(ConnKey, Vec<u8>), DecodeError> {
    let key = r.key()?;
    let len = r.u32()? as usize;
    if len > MAX_HALF_OPEN_RECORD {
        return Err(DecodeError::Invalid);
    }
    let record = r.take(len)?.to_vec();
    if !r.is_empty() {
        return Err(DecodeError::Invalid);
    }
    Ok((key, record))
}
