//! Pooled connections the flow table does not know. After a restart, or
//! when this redirector takes over from another, client packets arrive for
//! connections it never saw open: it cannot place them by policy (their
//! group is fixed), so it parks them and asks the pool's groups which one
//! holds the connection. The question rides on the control replies the
//! members get every heartbeat; a member that holds it answers, the flow
//! enters the table, and the parked packets go on in order.

use std::collections::HashMap;

use hydra_base::ConnKey;
use stack::{Duration, Instant};

use crate::pool::{FlowKey, Pool};

/// Connections waiting for an answer at most (the authority asks about
/// this many at once).
const MAX_PENDING: usize = ackchannel::control::MAX_QUESTIONS;
/// Packets parked per connection at most: the client's window, at worst;
/// later ones are dropped and the client sends them again.
const MAX_PARKED_PER_FLOW: usize = 32;
/// Bytes parked across all connections at most.
const MAX_PARKED_BYTES: usize = 8 << 20;
/// A connection no group claims within this long is forgotten and its
/// packets are dropped: no group holds it (a client of a connection that
/// ended, or packets forged to look like one).
const CLAIM_TIMEOUT: Duration = Duration::from_millis(500);

struct Pending {
    pool: usize,
    since: Instant,
    packets: Vec<Vec<u8>>,
}

/// What happened to packets of unknown connections, for `/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AdoptionCounters {
    /// Packets parked while the groups were asked.
    pub parked: u64,
    /// Connections a group claimed: they are in the flow table again.
    pub adopted: u64,
    /// Parked packets dropped because no group claimed their connection
    /// in time.
    pub dropped_unclaimed: u64,
    /// Packets dropped because too much was parked already.
    pub dropped_parking_full: u64,
}

/// The connections being asked about and their parked packets.
#[derive(Default)]
pub struct Adoption {
    pending: HashMap<FlowKey, Pending>,
    parked_bytes: usize,
    /// The set of connections changed since the questions were last set.
    changed: bool,
    /// When [`expire`](Self::expire) next looks (it walks every entry).
    next_expiry: Instant,
    pub counters: AdoptionCounters,
}

impl Adoption {
    /// Connections waiting for a group's answer.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Keep `packet` of the unknown connection `key` of pool `pool` until
    /// a group claims it. False when it was dropped (counted).
    pub fn park(&mut self, now: Instant, pool: usize, key: FlowKey, packet: &[u8]) -> bool {
        let room = self.parked_bytes + packet.len() <= MAX_PARKED_BYTES;
        if !room || (!self.pending.contains_key(&key) && self.pending.len() >= MAX_PENDING) {
            self.counters.dropped_parking_full += 1;
            return false;
        }
        let entry = self.pending.entry(key).or_insert_with(|| {
            self.changed = true;
            Pending {
                pool,
                since: now,
                packets: Vec::new(),
            }
        });
        if entry.packets.len() >= MAX_PARKED_PER_FLOW {
            self.counters.dropped_parking_full += 1;
            return false;
        }
        entry.packets.push(packet.to_vec());
        self.parked_bytes += packet.len();
        self.counters.parked += 1;
        true
    }

    /// A new connection on the same ports (the client's SYN): what was
    /// parked for the old one is dropped.
    pub fn forget(&mut self, key: &FlowKey) {
        if let Some(p) = self.pending.remove(key) {
            self.drop_parked(&p);
            self.changed = true;
        }
    }

    /// Per group (by global index), the connections to ask its members
    /// about: those of the pools it belongs to. `None` when nothing
    /// changed since the last call.
    pub fn questions(&mut self, pools: &[Pool], groups: usize) -> Option<Vec<Vec<ConnKey>>> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        let mut per_group = vec![Vec::new(); groups];
        for (key, p) in &self.pending {
            for &g in pools[p.pool].group_indices() {
                if let Some(q) = per_group.get_mut(g) {
                    q.push(key.conn_key());
                }
            }
        }
        Some(per_group)
    }

    /// Group `group` holds `key`: the pool it belongs to and the packets
    /// parked for it, oldest first (none when it was not being asked about,
    /// or the group is not in its pool).
    pub fn claim(
        &mut self,
        pools: &[Pool],
        group: usize,
        key: ConnKey,
    ) -> Option<(usize, Vec<Vec<u8>>)> {
        let key = FlowKey::from_conn_key(key);
        let pool = self.pending.get(&key)?.pool;
        if !pools[pool].group_indices().contains(&group) {
            return None;
        }
        let p = self.pending.remove(&key)?;
        self.parked_bytes -= p.packets.iter().map(Vec::len).sum::<usize>();
        self.changed = true;
        self.counters.adopted += 1;
        Some((pool, p.packets))
    }

    /// Forget connections no group claimed in time.
    pub fn expire(&mut self, now: Instant) {
        if now < self.next_expiry {
            return;
        }
        self.next_expiry = now + Duration::from_millis(50);
        let expired: Vec<FlowKey> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_since(p.since) >= CLAIM_TIMEOUT)
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            if let Some(p) = self.pending.remove(&key) {
                self.drop_parked(&p);
                self.counters.dropped_unclaimed += p.packets.len() as u64;
                self.changed = true;
            }
        }
    }

    fn drop_parked(&mut self, p: &Pending) {
        self.parked_bytes -= p.packets.iter().map(Vec::len).sum::<usize>();
    }
}

#[cfg(test)]
mod tests;
