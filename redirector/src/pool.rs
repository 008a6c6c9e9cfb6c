//! Load sharing: several groups behind one service. Each new connection
//! (a client SYN) is assigned to a group by the pool's policy and keeps it
//! for life; the flow table remembers the assignment (RSerPool's pool
//! element selection, `shared/seeds/`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use hydra_base::ConnKey;

use serde::{Deserialize, Serialize};
use stack::{Duration, Instant};

/// How a pool picks the group for a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    RoundRobin,
    /// Round robin in proportion to the groups' weights (smooth: a 3:1 pool
    /// sends A A B A, not A A A B).
    WeightedRoundRobin,
    /// The group with the fewest open connections (ties: the first).
    LeastConnections,
    Random,
    /// A hash of the client's address: one client's connections share a
    /// group, and a group leaving moves only its own clients (rendezvous).
    ClientHash,
}

/// A TCP connection as the redirector sees it: client to service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub client: IpAddr,
    pub client_port: u16,
    pub service: IpAddr,
    pub service_port: u16,
}

impl FlowKey {
    /// The connection as the group's stacks name it.
    pub fn conn_key(&self) -> ConnKey {
        ConnKey {
            local: SocketAddr::new(self.service, self.service_port),
            remote: SocketAddr::new(self.client, self.client_port),
        }
    }

    /// The flow of a group's connection.
    pub fn from_conn_key(key: ConnKey) -> FlowKey {
        FlowKey {
            client: key.remote.ip(),
            client_port: key.remote.port(),
            service: key.local.ip(),
            service_port: key.local.port(),
        }
    }
}

/// Where [`Pool::place`] puts a client packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// To this group (global index).
    Group(usize),
    /// A non-SYN packet of a flow the table does not know.
    Unknown,
    /// Dropped (counted in the pool's status, by reason).
    Dropped,
}

/// What one client packet says about its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowPacket {
    pub key: FlowKey,
    /// SYN without ACK: a connection attempt.
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
}

#[derive(Debug, Clone, Copy)]
struct Flow {
    /// Index into the pool's groups.
    member: usize,
    last_seen: Instant,
    /// The client sent FIN or RST: no longer counted as open.
    closing: bool,
}

/// Per-group figures of a pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PoolMemberStatus {
    pub group: String,
    pub weight: u32,
    /// Connections assigned since start.
    pub assigned: u64,
    /// Assigned connections not yet closing.
    pub open: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PoolStatus {
    pub name: String,
    pub policy: String,
    pub flows: usize,
    pub members: Vec<PoolMemberStatus>,
    /// Connection attempts dropped: no group available.
    pub dropped_no_group: u64,
    /// Connection attempts dropped: the flow table was full.
    pub dropped_table_full: u64,
    /// Connections the table did not know (opened before a restart of
    /// this redirector or through another one) that a group claimed.
    pub adopted: u64,
}

#[derive(Debug, Clone)]
pub struct PoolLimits {
    /// Flows remembered at most (bounds memory; ~100 bytes each).
    pub max_flows: usize,
    /// An open flow silent this long is forgotten.
    pub idle_timeout: Duration,
    /// A closing flow (FIN or RST seen) silent this long is forgotten.
    pub closing_timeout: Duration,
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            max_flows: 1 << 18,
            idle_timeout: Duration::from_secs(7200),
            closing_timeout: Duration::from_secs(60),
        }
    }
}

pub struct Pool {
    name: String,
    policy: Policy,
    /// Global group indices and their names.
    groups: Vec<usize>,
    names: Vec<String>,
    weights: Vec<u32>,
    limits: PoolLimits,
    flows: HashMap<FlowKey, Flow>,
    assigned: Vec<u64>,
    open: Vec<u64>,
    /// Smooth weighted round robin: each group's running credit.
    credit: Vec<i64>,
    next: usize,
    rng: hydra_base::rng::SplitMix64,
    next_sweep: Instant,
    status: PoolStatus,
}

impl Pool {
    /// `groups`: (global index, name, weight) in configuration order.
    pub fn new(
        name: String,
        policy: Policy,
        groups: Vec<(usize, String, u32)>,
        limits: PoolLimits,
        seed: u64,
    ) -> Pool {
        let n = groups.len();
        Pool {
            name,
            policy,
            groups: groups.iter().map(|g| g.0).collect(),
            names: groups.iter().map(|g| g.1.clone()).collect(),
            weights: groups.iter().map(|g| g.2.max(1)).collect(),
            limits,
            flows: HashMap::new(),
            assigned: vec![0; n],
            open: vec![0; n],
            credit: vec![0; n],
            next: 0,
            rng: hydra_base::rng::SplitMix64::new(seed),
            next_sweep: Instant::ZERO,
            status: PoolStatus::default(),
        }
    }

    /// Where a client packet goes. A flow keeps the group it was placed
    /// on; a SYN is placed by the policy among the groups `available`
    /// marks (`available[g]`: group `g` has a live member and is not
    /// draining); a non-SYN packet of a flow the table does not know is
    /// left to the caller, which asks the groups.
    pub fn place(&mut self, now: Instant, p: &FlowPacket, available: &[bool]) -> Placement {
        self.sweep(now);
        if let Some(flow) = self.flows.get_mut(&p.key) {
            // A SYN on a finished flow is the client reusing the port pair.
            let reused = p.syn && flow.closing;
            if !reused {
                flow.last_seen = now;
                if (p.fin || p.rst) && !flow.closing {
                    flow.closing = true;
                    self.open[flow.member] -= 1;
                }
                let group = self.groups[flow.member];
                if p.rst {
                    self.flows.remove(&p.key);
                }
                return Placement::Group(group);
            }
            self.flows.remove(&p.key);
        }
        if !p.syn {
            return Placement::Unknown;
        }
        if self.flows.len() >= self.limits.max_flows {
            self.status.dropped_table_full += 1;
            return Placement::Dropped;
        }
        let usable: Vec<usize> = (0..self.groups.len())
            .filter(|&m| available.get(self.groups[m]).copied().unwrap_or(false))
            .collect();
        let Some(member) = self.pick(&usable, p.key.client) else {
            self.status.dropped_no_group += 1;
            return Placement::Dropped;
        };
        self.assigned[member] += 1;
        self.open[member] += 1;
        self.flows.insert(
            p.key,
            Flow {
                member,
                last_seen: now,
                closing: false,
            },
        );
        Placement::Group(self.groups[member])
    }

    /// The table knows this flow.
    pub fn knows(&self, key: &FlowKey) -> bool {
        self.flows.contains_key(key)
    }

    /// The global indices of the pool's groups.
    pub fn group_indices(&self) -> &[usize] {
        &self.groups
    }

    /// Group `group` (global index) holds the flow `key`, which the table
    /// did not know: it keeps that group from now on. False when the group
    /// is not in this pool or the table is full (counted).
    pub fn adopt(&mut self, now: Instant, key: FlowKey, group: usize) -> bool {
        let Some(member) = self.groups.iter().position(|&g| g == group) else {
            return false;
        };
        if self.flows.contains_key(&key) {
            return true;
        }
        if self.flows.len() >= self.limits.max_flows {
            self.status.dropped_table_full += 1;
            return false;
        }
        self.open[member] += 1;
        self.status.adopted += 1;
        self.flows.insert(
            key,
            Flow {
                member,
                last_seen: now,
                closing: false,
            },
        );
        true
    }

    /// For packets that belong to no connection (ICMP to the VIP): the
    /// pool's first available group.
    pub fn any_group(&self, available: &[bool]) -> Option<usize> {
        self.groups
            .iter()
            .copied()
            .find(|&g| available.get(g).copied().unwrap_or(false))
    }

    /// The policy's choice among `usable` (indices into this pool's groups).
    fn pick(&mut self, usable: &[usize], client: IpAddr) -> Option<usize> {
        if usable.is_empty() {
            return None;
        }
        let chosen = match self.policy {
            Policy::RoundRobin => {
                // The first usable group at or after the cursor.
                let n = self.groups.len();
                let m = (0..n)
                    .map(|i| (self.next + i) % n)
                    .find(|m| usable.contains(m))?;
                self.next = (m + 1) % n;
                m
            }
            Policy::WeightedRoundRobin => {
                let total: i64 = usable.iter().map(|&m| i64::from(self.weights[m])).sum();
                for &m in usable {
                    self.credit[m] += i64::from(self.weights[m]);
                }
                let m = *usable
                    .iter()
                    .max_by_key(|&&m| (self.credit[m], std::cmp::Reverse(m)))?;
                self.credit[m] -= total;
                m
            }
            Policy::LeastConnections => *usable.iter().min_by_key(|&&m| (self.open[m], m))?,
            Policy::Random => usable[(self.random() % usable.len() as u64) as usize],
            Policy::ClientHash => *usable
                .iter()
                .max_by_key(|&&m| mix(address_bits(client) ^ name_hash(&self.names[m])))?,
        };
        Some(chosen)
    }

    fn random(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Forget flows silent past their timeout (a full pass every second).
    fn sweep(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + Duration::from_secs(1);
        let limits = &self.limits;
        let open = &mut self.open;
        self.flows.retain(|_, f| {
            let timeout = if f.closing {
                limits.closing_timeout
            } else {
                limits.idle_timeout
            };
            let keep = now.saturating_since(f.last_seen) < timeout;
            if !keep && !f.closing {
                open[f.member] -= 1;
            }
            keep
        });
    }

    pub fn status(&self) -> PoolStatus {
        PoolStatus {
            name: self.name.clone(),
            policy: serde_json::to_value(self.policy)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            flows: self.flows.len(),
            members: (0..self.groups.len())
                .map(|m| PoolMemberStatus {
                    group: self.names[m].clone(),
                    weight: self.weights[m],
                    assigned: self.assigned[m],
                    open: self.open[m],
                })
                .collect(),
            ..self.status.clone()
        }
    }
}

/// splitmix64's finaliser: spreads nearby inputs over the whole range.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a: a stable hash of a group's name (the same on every restart).
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;

/// An address as 64 bits for rendezvous hashing: an IPv4 address as its
/// 32-bit value, an IPv6 one folded (its halves exclusive-or'ed).
fn address_bits(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(a) => u64::from(u32::from(a)),
        IpAddr::V6(a) => {
            let v = u128::from(a);
            (v >> 64) as u64 ^ v as u64
        }
    }
}
