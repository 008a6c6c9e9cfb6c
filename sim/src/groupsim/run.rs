//! Deterministic simulation of a whole replica group: a client
//! stack, the redirector's view authority and copy logic, and replicas
//! running the real stack, ack channel and control code (`ReplicaLogic`, the
//! same glue the binary uses), joined by seeded lossy links, under seeded
//! crashes, pauses and partitions. After every step an invariant checker
//! looks at the whole system; a failing seed replays exactly.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};

use ackchannel::auth::{Counter, GroupKey};
use ackchannel::control::{GroupPolicy, MemberAgent, ViewAuthority};
use ackchannel::replication::{MemberId, ReplicationConfig, Replicator};
use replica::replicated::logic::ReplicaLogic;
use smoltcp::wire::{Ipv4Packet, TcpOption, TcpPacket};
use stack::iface::RecvError;
use stack::State;
use stack::{Config, ConnKey, Duration, Instant, Role, Stack};

pub use crate::simclient::ClientKind;
use crate::simclient::{Received, SimClient};
use crate::simnet::{Link, LinkProfile, Rng};

const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 1);
const PORT: u16 = 7;
const HEARTBEAT_MS: u64 = 10;
const TIMEOUT_MS: u64 = 100;
const LEASE_MS: u64 = 60;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub replicas: usize,
    pub connections: usize,
    pub bytes_per_connection: usize,
    /// Crashes, pauses, partitions and lossy links.
    pub faults: bool,
    /// A known bug to show the checker works: the primary acknowledges
    /// without waiting for the backups (no ACK gating).
    pub inject_no_gating: bool,
    /// Print every event.
    pub trace: bool,
    /// Passive replication: the echo runs only on the primary, chunked
    /// differently on every replica, keeping its position in a state block
    /// that must always match the stream it consumed.
    pub passive: bool,
    /// The client's TCP: ours or smoltcp's.
    pub client: ClientKind,
    /// Request/response: each connection sends this many bytes, waits for
    /// all of them to come back, then sends the next request. None: it
    /// streams (bulk both ways at once).
    pub request: Option<usize>,
    /// Replicas write segments of up to 64 KiB and the simulated device
    /// cuts them into wire segments (segmentation offload, as over a TUN).
    pub segmentation_offload: bool,
    /// The listener is ordered (`Stack::listen_ordered`): besides the echo,
    /// every replica keeps state shared by all connections, built from the
    /// ordered deliveries, and replicas must agree on it.
    pub ordered: bool,
    /// A known bug to show that check works: the shared-state application
    /// reads past each delivery, up to whatever the replica has received.
    pub inject_overread: bool,
}

impl SimConfig {
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            replicas: 3,
            connections: 4,
            bytes_per_connection: 48 * 1024,
            faults: true,
            inject_no_gating: false,
            trace: false,
            passive: false,
            client: ClientKind::Hydra,
            request: None,
            segmentation_offload: false,
            ordered: false,
            inject_overread: false,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass {
        sim_ms: u64,
        crashes: usize,
        failovers: u64,
        /// Deliberate handovers by the primary that started.
        handovers: usize,
        /// Crashed replicas restarted, and restarted ones that caught up.
        restarts: usize,
        rejoins: u64,
        /// Passive checkpoints applied by backups or released by primaries.
        checkpoints: u64,
    },
    /// The faults left no replica both running and in the view (bringing one
    /// back needs rejoin, not built yet): no liveness is owed.
    GroupLost {
        at_ms: u64,
    },
    Violation {
        at_ms: u64,
        what: String,
    },
}

/// Byte `i` of connection `port`'s client stream.
fn stream_byte(seed: u64, port: u16, i: u64) -> u8 {
    let mut r = Rng::new(seed ^ u64::from(port) << 40 ^ (i >> 3));
    (r.next_u64() >> ((i & 7) * 8)) as u8
}

struct Node {
    stack: Stack,
    logic: ReplicaLogic,
    crashed: bool,
    /// A fresh process on a crashed replica's host (it rejoins).
    restarted: bool,
    /// The authority's epoch when it restarted: views up to it describe
    /// the process that crashed.
    restart_epoch: u64,
    paused_until: u64,
    apps: std::collections::BTreeMap<ConnKey, EchoApp>,
    /// The most each connection ever held in order (kept after it closes).
    held: HashMap<ConnKey, stack::Seq>,
    /// The highest right edge each connection reported (for diagnostics).
    edges: HashMap<ConnKey, stack::Seq>,
    /// Ordered mode: the state all connections share (see [`SharedState`]).
    shared: SharedState,
}

/// What an application with state shared across connections builds from
/// the ordered deliveries: the interleaving of the connections' streams, as
/// runs of (client port, bytes), consecutive runs of one connection merged.
/// The bytes of each run follow from the port and the offset (the client's
/// streams are known), so the runs are the whole state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SharedState {
    runs: Vec<(u16, u64)>,
    /// Bytes taken so far per connection.
    taken: HashMap<ConnKey, u64>,
}

impl SharedState {
    fn take(&mut self, key: ConnKey, len: u64) {
        if len == 0 {
            return;
        }
        *self.taken.entry(key).or_default() += len;
        let port = key.remote.port();
        match self.runs.last_mut() {
            Some((p, l)) if *p == port => *l += len,
            _ => self.runs.push((port, len)),
        }
    }

    /// Bytes taken over all connections.
    fn total(&self) -> u64 {
        self.runs.iter().map(|r| r.1).sum()
    }

    /// One state is where the other was or will be: the shorter, byte for
    /// byte, a prefix of the longer (replicas may lag one another).
    fn consistent(a: &SharedState, b: &SharedState) -> bool {
        let (short, long) = if a.total() <= b.total() {
            (a, b)
        } else {
            (b, a)
        };
        let n = short.runs.len();
        if n == 0 {
            return true;
        }
        if long.runs.len() < n || short.runs[..n - 1] != long.runs[..n - 1] {
            return false;
        }
        let (p, l) = short.runs[n - 1];
        let (lp, ll) = long.runs[n - 1];
        p == lp && l <= ll
    }

    /// A digest of the state, equal on replicas that took the same bytes.
    pub fn digest(&self) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for (p, l) in &self.runs {
            for b in p.to_be_bytes().iter().chain(&l.to_be_bytes()) {
                h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        h
    }
}

/// Ordered mode: apply this replica's deliveries, in order, to its shared
/// state, taking exactly the bytes each names (or, with the planted bug,
/// everything received so far).
fn shared_state_app(node: &mut Node, overread: bool) {
    while let Some(d) = node.stack.poll_delivery() {
        let stack::iface::Delivery::Data { key, len, .. } = d else {
            continue;
        };
        let mut len = len as u64;
        if overread {
            // The bug: also take what arrived but the log has not released.
            if let Some(i) = node.stack.conn_info(key) {
                len += u64::from(i.rcv_nxt.since(i.read_from));
            }
        }
        node.shared.take(key, len);
    }
}

#[derive(Default)]
struct EchoApp {
    /// Bytes echoed (consumed) so far.
    delivered: u64,
    closed: bool,
    /// Passive mode: the handle generation it accepted.
    generation: Option<u64>,
}

struct ClientConn {
    key: Option<ConnKey>,
    opens_at: u64,
    sent: u64,
    received: u64,
    closed_write: bool,
    eof: bool,
    /// Highest TSval and right window edge seen from the server.
    max_tsval: Option<u32>,
    max_edge: Option<u32>,
    /// Who sent the highest edge, and with what ACK and window.
    max_edge_from: (u8, u32, u16),
    wscale: u8,
}

pub struct Sim {
    cfg: SimConfig,
    now: u64,
    rng: Rng,
    client: SimClient,
    conns: Vec<ClientConn>,
    authority: ViewAuthority,
    nodes: Vec<Node>,
    up: Link,
    to_replica: Vec<Link>,
    to_client: Vec<Link>,
    control_up: Vec<Link>,
    control_down: Vec<Link>,
    mesh: HashMap<(usize, usize), Link>,
    /// Ack-channel partitions: (a, b) cut until the time.
    cut: HashMap<(usize, usize), u64>,
    /// Output reaching the client, tagged with the sender and its epoch.
    writers: HashMap<u64, u8>,
    crashes: usize,
    handovers: usize,
    restarts: usize,
    key: GroupKey,
    plan: Vec<(u64, Fault)>,
    /// Reused transmit buffer (a fresh zeroed 64 KiB per step dominated the run time).
    scratch: Vec<u8>,
    /// The client's connection ran out of retransmissions.
    client_timed_out: bool,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    CrashPrimary,
    CrashAny,
    Pause(u64),
    Partition(u64),
    /// The primary resigns on purpose (`true`: it stays as a backup).
    Handover(bool),
    /// A crashed replica's host comes back with a fresh process: it
    /// rejoins by state transfer.
    Restart,
}

fn us(ms: u64) -> u64 {
    ms * 1000
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        let mut rng = Rng::new(cfg.seed);
        let key = GroupKey([0x42; 32]);
        let profile = if cfg.faults {
            let mut p = LinkProfile::hostile(200);
            p.loss = (rng.below(4) as f64) * 0.01;
            p.duplicate = 0.005;
            p
        } else {
            LinkProfile::clean(200)
        };
        let mut seeds = {
            let base = rng.next_u64();
            (0u64..).map(move |i| base.wrapping_add(i))
        };
        let mut link = |p: LinkProfile| Link::new(p, seeds.next().expect("endless"));
        let n = cfg.replicas;
        let authority = ViewAuthority::with_counter(
            GroupPolicy {
                name: "sim".into(),
                key: key.clone(),
                members: (1..=n as u8).collect(),
                min_members: n,
                keepalive_timeout: Duration::from_millis(TIMEOUT_MS),
                lease: Duration::from_millis(LEASE_MS),
                heartbeat: Duration::from_millis(HEARTBEAT_MS),
            },
            Counter::starting_at(1),
        );
        let nodes = (0..n).map(|i| new_node(i, &key, 1000, &cfg)).collect();
        let mut mesh = HashMap::new();
        for a in 0..n {
            for b in 0..n {
                if a != b {
                    mesh.insert((a, b), link(profile));
                }
            }
        }
        let conns = (0..cfg.connections)
            .map(|k| ClientConn {
                key: None,
                opens_at: us(400 + 150 * k as u64),
                sent: 0,
                received: 0,
                closed_write: false,
                eof: false,
                max_tsval: None,
                max_edge: None,
                max_edge_from: (0, 0, 0),
                wscale: 0,
            })
            .collect();
        let mut plan = Vec::new();
        if cfg.faults {
            // Up to n-1 crashes (one replica must survive), a pause and an
            // ack-channel partition, at seeded times.
            for _ in 0..rng.below(n as u64) {
                let at = us(300 + rng.below(1500));
                let f = if rng.chance(0.6) {
                    Fault::CrashPrimary
                } else {
                    Fault::CrashAny
                };
                plan.push((at, f));
            }
            if rng.chance(0.5) {
                plan.push((
                    us(300 + rng.below(1500)),
                    Fault::Pause(us(20 + rng.below(250))),
                ));
            }
            if rng.chance(0.3) {
                plan.push((
                    us(300 + rng.below(1500)),
                    Fault::Partition(us(20 + rng.below(200))),
                ));
            }
            if rng.chance(0.4) {
                let stay = rng.chance(0.5);
                plan.push((us(300 + rng.below(1500)), Fault::Handover(stay)));
            }
            // Bring a crashed host back soon after its crash, while
            // connections still run: it must rejoin by state transfer.
            let first_crash = plan
                .iter()
                .filter(|(_, f)| matches!(f, Fault::CrashPrimary | Fault::CrashAny))
                .map(|(t, _)| *t)
                .min();
            if let Some(t) = first_crash {
                if rng.chance(0.6) {
                    plan.push((t + us(120 + rng.below(300)), Fault::Restart));
                }
            }
            plan.sort_by_key(|(t, _)| *t);
        }
        Sim {
            now: 0,
            client: SimClient::new(cfg.client, cfg.seed),
            conns,
            authority,
            up: link(profile),
            to_replica: (0..n).map(|_| link(profile)).collect(),
            to_client: (0..n).map(|_| link(profile)).collect(),
            control_up: (0..n).map(|_| link(profile)).collect(),
            control_down: (0..n).map(|_| link(profile)).collect(),
            mesh,
            cut: HashMap::new(),
            writers: HashMap::new(),
            crashes: 0,
            handovers: 0,
            restarts: 0,
            key,
            plan,
            scratch: vec![0u8; 65536],
            client_timed_out: false,
            nodes,
            rng,
            cfg,
        }
    }

    fn trace(&self, what: impl FnOnce() -> String) {
        if self.cfg.trace {
            eprintln!("{:>9.3} ms  {}", self.now as f64 / 1000.0, what());
        }
    }

    fn instant(&self) -> Instant {
        Instant::from_micros(self.now)
    }

    /// Some replica runs, is live in the view and holds the group's state
    /// (a restarted process the view still counts as the old one holds
    /// none of it).
    fn serving_any(&self) -> bool {
        let view = self.authority.view();
        (0..self.nodes.len()).any(|i| {
            let n = &self.nodes[i];
            !n.crashed
                && view.is_alive(i as u8 + 1)
                && (!n.restarted || view.epoch > n.restart_epoch)
        })
    }

    /// Run to completion or the first violated invariant.
    pub fn run(mut self) -> Verdict {
        let limit = us(120_000);
        for _ in 0..5_000_000u64 {
            if let Err(what) = self.step() {
                // The client gave up on a group that kept no serving
                // member (its last one crashed after dropping the others).
                if self.client_timed_out && !self.serving_any() {
                    return Verdict::GroupLost {
                        at_ms: self.now / 1000,
                    };
                }
                return Verdict::Violation {
                    at_ms: self.now / 1000,
                    what,
                };
            }
            if self
                .conns
                .iter()
                .all(|c| c.eof && c.received == self.cfg.bytes_per_connection as u64)
            {
                if let Err(what) = self.check_shared_state() {
                    return Verdict::Violation {
                        at_ms: self.now / 1000,
                        what,
                    };
                }
                return Verdict::Pass {
                    sim_ms: self.now / 1000,
                    crashes: self.crashes,
                    failovers: self.nodes.iter().map(|n| n.logic.failovers).sum(),
                    handovers: self.handovers,
                    restarts: self.restarts,
                    rejoins: self.authority.stats().rejoins,
                    checkpoints: self.nodes.iter().map(|n| n.logic.checkpoints_applied).sum(),
                };
            }
            let next = self.next_time();
            self.now = next.max(self.now + 1);
            if self.now > limit {
                break;
            }
        }
        if self.now <= limit {
            // The step bound, not the time bound: something wants a wake-up
            // in the past again and again (a spin in the real binary).
            let rel = |t: Option<Instant>| t.map(|t| t.total_micros() as i64 - self.now as i64);
            let stuck: Vec<String> = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| !n.crashed)
                .map(|(i, n)| {
                    format!(
                        "replica {}: stack {:?} logic {:?}",
                        i + 1,
                        rel(n.stack.poll_timeout()),
                        rel(n.logic.next_deadline())
                    )
                })
                .collect();
            return Verdict::Violation {
                at_ms: self.now / 1000,
                what: format!(
                    "livelock: step bound hit; deadlines relative to now (us): {stuck:?}, client {:?}, authority {:?}",
                    rel(self.client.poll_timeout()),
                    rel(self.authority.poll_timeout())
                ),
            };
        }
        if !self.serving_any() {
            return Verdict::GroupLost {
                at_ms: self.now / 1000,
            };
        }
        let progress: Vec<String> = self
            .conns
            .iter()
            .map(|c| format!("{}/{}", c.received, c.sent))
            .collect();
        Verdict::Violation {
            at_ms: self.now / 1000,
            what: format!("liveness: transfers not done within 120 s (echoed/sent per connection: {progress:?})"),
        }
    }

    fn next_time(&mut self) -> u64 {
        let mut t = u64::MAX;
        let mut consider = |x: Option<u64>| {
            if let Some(x) = x {
                t = t.min(x);
            }
        };
        consider(self.up.next_due());
        for l in self
            .to_replica
            .iter()
            .chain(&self.to_client)
            .chain(&self.control_up)
            .chain(&self.control_down)
        {
            consider(l.next_due());
        }
        for l in self.mesh.values() {
            consider(l.next_due());
        }
        consider(self.client.poll_timeout().map(|i| i.total_micros()));
        consider(self.authority.poll_timeout().map(|i| i.total_micros()));
        for n in &self.nodes {
            if !n.crashed {
                consider(n.stack.poll_timeout().map(|i| i.total_micros()));
                consider(n.logic.next_deadline().map(|i| i.total_micros()));
                if n.paused_until > self.now {
                    consider(Some(n.paused_until));
                }
            }
        }
        for c in &self.conns {
            if c.key.is_none() {
                consider(Some(c.opens_at));
            }
        }
        consider(self.plan.first().map(|(t, _)| *t));
        // Applications may have work without a timer: never sleep long.
        t.min(self.now + 1000)
    }

    fn step(&mut self) -> Result<(), String> {
        let now = self.now;
        let inst = self.instant();
        self.faults();
        // Client side.
        while let Some(p) = self.up.recv(now) {
            // Copies to the live members and to those catching up.
            let view = self.authority.view().clone();
            for m in view.members.iter().filter(|m| m.alive || m.joining) {
                self.to_replica[usize::from(m.id) - 1].send(now, &p);
            }
        }
        for i in 0..self.nodes.len() {
            while let Some(p) = self.to_client[i].recv(now) {
                self.client.handle_packet(inst, &p);
            }
        }
        self.client_app()?;
        // Redirector control.
        let epoch = self.authority.view().epoch;
        self.authority.handle_timeout(inst);
        for i in 0..self.nodes.len() {
            while let Some(d) = self.control_up[i].recv(now) {
                if let Ok(Some(reply)) = self.authority.handle_datagram(inst, &d) {
                    self.control_down[i].send(now, &reply);
                }
            }
        }
        if self.authority.view().epoch != epoch {
            self.trace(|| {
                let v = self.authority.view();
                let members: Vec<String> = v
                    .members
                    .iter()
                    .map(|m| {
                        let state = if m.alive {
                            "live"
                        } else if m.joining {
                            "joining"
                        } else {
                            "dead"
                        };
                        format!("{} {state}", m.id)
                    })
                    .collect();
                format!("VIEW {}: {}", v.epoch, members.join(", "))
            });
            if self.cfg.trace {
                for (i, n) in self.nodes.iter().enumerate() {
                    let conns: Vec<String> = n
                        .stack
                        .connections()
                        .into_iter()
                        .filter_map(|k| n.stack.conn_info(k))
                        .map(|c| format!("{}:{:?}@{}", c.key.remote.port(), c.state, c.rcv_nxt.0))
                        .collect();
                    eprintln!(
                        "      replica {} {:?}: {}",
                        i + 1,
                        n.logic.role(),
                        conns.join(" ")
                    );
                }
            }
        }
        // Replicas.
        for i in 0..self.nodes.len() {
            self.replica_step(i)?;
        }
        self.check_invariants()
    }

    fn faults(&mut self) {
        while self.plan.first().is_some_and(|(t, _)| *t <= self.now) {
            let (_, f) = self.plan.remove(0);
            // Members still serving: not crashed and live in the view. The
            // plan never takes the last of them (a group needs one replica).
            let view = self.authority.view().clone();
            let live: Vec<usize> = (0..self.nodes.len())
                .filter(|i| !self.nodes[*i].crashed && view.is_alive(*i as u8 + 1))
                .collect();
            match f {
                Fault::CrashPrimary | Fault::CrashAny if live.len() > 1 => {
                    let primary = self.authority.view().primary().map(|p| usize::from(p) - 1);
                    let victim = match (f, primary) {
                        (Fault::CrashPrimary, Some(p)) if live.contains(&p) => p,
                        _ => live[self.rng.below(live.len() as u64) as usize],
                    };
                    self.nodes[victim].crashed = true;
                    self.crashes += 1;
                    self.trace(|| format!("CRASH replica {}", victim + 1));
                }
                Fault::Pause(d) if live.len() > 1 => {
                    let victim = live[self.rng.below(live.len() as u64) as usize];
                    self.nodes[victim].paused_until = self.now + d;
                    self.trace(|| format!("PAUSE replica {} for {} ms", victim + 1, d / 1000));
                }
                Fault::Handover(stay) if live.len() > 1 => {
                    let Some(p) = view.primary().map(|p| usize::from(p) - 1) else {
                        continue;
                    };
                    let now = self.instant();
                    if live.contains(&p) && self.nodes[p].logic.resign(now, stay) {
                        self.handovers += 1;
                        self.trace(|| format!("HANDOVER by replica {} (stay: {stay})", p + 1));
                    }
                }
                Fault::Restart => {
                    let Some(i) = (0..self.nodes.len()).find(|i| self.nodes[*i].crashed) else {
                        continue;
                    };
                    // Counters above anything the old process used.
                    self.nodes[i] = new_node(i, &self.key, (1 << 40) + self.now, &self.cfg);
                    self.nodes[i].restarted = true;
                    self.nodes[i].restart_epoch = self.authority.view().epoch;
                    self.restarts += 1;
                    self.trace(|| format!("RESTART replica {}", i + 1));
                }
                Fault::Partition(d) if live.len() > 1 => {
                    let a = live[0];
                    let b = live[1 + self.rng.below(live.len() as u64 - 1) as usize];
                    self.cut.insert((a, b), self.now + d);
                    self.cut.insert((b, a), self.now + d);
                    self.trace(|| {
                        format!(
                            "PARTITION ack channel {} <-> {} for {} ms",
                            a + 1,
                            b + 1,
                            d / 1000
                        )
                    });
                }
                _ => {}
            }
        }
    }

    fn replica_step(&mut self, i: usize) -> Result<(), String> {
        let now = self.now;
        let inst = self.instant();
        if self.nodes[i].crashed {
            // A crashed host's inbound traffic is lost.
            while self.to_replica[i].recv(now).is_some() {}
            while self.control_down[i].recv(now).is_some() {}
            for j in 0..self.nodes.len() {
                if let Some(l) = self.mesh.get_mut(&(j, i)) {
                    while l.recv(now).is_some() {}
                }
            }
            return Ok(());
        }
        if now < self.nodes[i].paused_until {
            return Ok(()); // paused: packets wait in the links (and the kernel)
        }
        // A replica the group declared dead stops (as the binary does).
        if self.nodes[i].logic.agent().removed() {
            self.nodes[i].crashed = true;
            self.trace(|| format!("replica {} removed from the group: stops", i + 1));
            return Ok(());
        }
        let node = &mut self.nodes[i];
        while let Some(p) = self.to_replica[i].recv(now) {
            node.stack.handle_packet(inst, &p);
        }
        while let Some(d) = self.control_down[i].recv(now) {
            let _ = node.logic.on_control(inst, &d);
        }
        node.logic.follow(inst, &mut node.stack);
        for j in 0..self.nodes.len() {
            if let Some(l) = self.mesh.get_mut(&(j, i)) {
                while let Some(f) = l.recv(now) {
                    let _ = self.nodes[i].logic.on_frame(inst, &f);
                }
            }
        }
        let cfg_no_gating = self.cfg.inject_no_gating;
        let node = &mut self.nodes[i];
        node.logic.settle(inst, &mut node.stack);
        node.stack.handle_timeout(inst);
        for _ in 0..3 {
            while let Some(e) = node.stack.poll_event() {
                node.logic.on_event(inst, &mut node.stack, e);
            }
            if self.cfg.passive {
                passive_echo_apps(node, self.cfg.seed)?;
            } else {
                echo_apps(node, self.cfg.seed)?;
            }
            if self.cfg.ordered {
                shared_state_app(node, self.cfg.inject_overread);
            }
            node.logic.after_events(inst, &mut node.stack);
            if !node.stack.has_event() {
                break;
            }
        }
        for key in node.stack.connections() {
            if let Some((h, e, _)) = node.stack.receive_progress(key) {
                node.held.insert(key, h);
                let best = node.edges.entry(key).or_insert(e);
                if e > *best && self.cfg.trace {
                    eprintln!(
                        "{:>9.3} ms  replica {} edge {} -> {} port {}",
                        now as f64 / 1000.0,
                        i + 1,
                        best.0,
                        e.0,
                        key.remote.port()
                    );
                }
                *best = (*best).max(e);
            }
        }
        if cfg_no_gating && node.logic.role() == Role::Primary {
            for key in node.stack.connections() {
                node.stack.set_gate(key, None);
            }
        }
        // Output.
        let epoch = node.logic.epoch();
        let member = node.logic.member();
        let may = node.logic.may_transmit(inst);
        let mut frames = Vec::new();
        while let Some((to, f)) = node.logic.poll_frame() {
            frames.push((usize::from(to.0) - 1, f));
        }
        let mut control = Vec::new();
        while let Some(d) = node.logic.poll_control() {
            control.push(d);
        }
        let mut out = Vec::new();
        while let Some((n, cut)) = node.stack.poll_transmit_segmented(inst, &mut self.scratch) {
            if !may {
                continue;
            }
            let packet = &self.scratch[..n];
            match cut {
                // The device cuts it, as the kernel behind a TUN does.
                Some(size) => out.extend(
                    stack::wire::segment_tcp(packet, size)
                        .ok_or_else(|| format!("replica {member} wrote an uncuttable segment"))?,
                ),
                None => out.push(packet.to_vec()),
            }
        }
        for (j, f) in frames {
            let cut = self.cut.get(&(i, j)).is_some_and(|t| *t > now);
            if !cut {
                if let Some(l) = self.mesh.get_mut(&(i, j)) {
                    l.send(now, &f);
                }
            }
        }
        for d in control {
            self.control_up[i].send(now, &d);
        }
        for p in out {
            // One writer per epoch, and only the authority's current epoch.
            let current = self.authority.view().epoch;
            // The writer is the current view's primary: after a view change
            // that named another primary, the old one has stopped (fencing).
            let primary = self.authority.view().primary();
            if primary != Some(member) {
                let lease = self.nodes[i].logic.agent().lease_until();
                return Err(format!(
                    "replica {member} (epoch {epoch}) wrote to the client while view {current} has primary {primary:?} (its lease until {lease:?}, now {now} us)"
                ));
            }
            match self.writers.insert(epoch, member) {
                Some(other) if other != member => {
                    return Err(format!(
                        "two writers in epoch {epoch}: replicas {other} and {member}"
                    ));
                }
                _ => {}
            }
            if self.cfg.trace {
                if let Some(line) = describe(&p, true) {
                    self.trace(|| format!("replica {member} -> client {line}"));
                }
            }
            self.check_server_packet(member, &p)?;
            self.to_client[i].send(now, &p);
        }
        Ok(())
    }

    fn client_app(&mut self) -> Result<(), String> {
        let inst = self.instant();
        let now = self.now;
        self.client.handle_timeout(inst);
        let total = self.cfg.bytes_per_connection as u64;
        for (k, c) in self.conns.iter_mut().enumerate() {
            if c.key.is_none() && now >= c.opens_at {
                let local = SocketAddrV4::new(CLIENT_IP, 40000 + k as u16);
                c.key = Some(
                    self.client
                        .connect(inst, local, SocketAddrV4::new(VIP, PORT))
                        .map_err(|e| format!("connect: {e}"))?,
                );
            }
            let Some(key) = c.key else { continue };
            let port = key.local.port();
            let established = self.client.established(key);
            // Streaming sends everything; request/response sends the next
            // request once the last one came back whole.
            let limit = match self.cfg.request {
                None => total,
                Some(_) if c.sent > c.received => c.sent,
                Some(r) => (c.sent + r as u64).min(total),
            };
            while established && c.sent < limit {
                let n = ((limit - c.sent) as usize).min(4096);
                let data: Vec<u8> = (0..n as u64)
                    .map(|j| stream_byte(self.cfg.seed, port, c.sent + j))
                    .collect();
                match self.client.send(key, &data) {
                    Ok(0) => break,
                    Ok(m) => c.sent += m as u64,
                    Err(e) => {
                        self.client_timed_out |= e.timed_out;
                        return Err(format!(
                            "client connection {k}: {} (a reset the scenario did not cause)",
                            e.what
                        ));
                    }
                }
            }
            if established && c.sent == total && !c.closed_write {
                self.client.shutdown_write(key);
                c.closed_write = true;
            }
            let mut buf = [0u8; 16384];
            while !c.eof {
                match self.client.recv(key, &mut buf) {
                    Ok(Received::Eof) => {
                        if c.received != total {
                            return Err(format!(
                                "client connection {k}: end of stream after {} of {total} bytes",
                                c.received
                            ));
                        }
                        c.eof = true;
                    }
                    Ok(Received::Data(n)) => {
                        for (j, b) in buf[..n].iter().enumerate() {
                            let at = c.received + j as u64;
                            if at >= total || *b != stream_byte(self.cfg.seed, port, at) {
                                return Err(format!(
                                    "client connection {k}: echoed byte {at} is wrong"
                                ));
                            }
                        }
                        c.received += n as u64;
                    }
                    Ok(Received::WouldBlock) => break,
                    Err(e) => {
                        self.client_timed_out |= e.timed_out;
                        return Err(format!(
                            "client connection {k}: {} (a reset the scenario did not cause)",
                            e.what
                        ));
                    }
                }
            }
        }
        let up = &mut self.up;
        let trace = self.cfg.trace;
        self.client.transmit(inst, &mut self.scratch, |p| {
            if trace {
                if let Some(line) = describe(p, false) {
                    eprintln!("{:>9.3} ms  client -> group {line}", now as f64 / 1000.0);
                }
            }
            up.send(now, p)
        });
        Ok(())
    }

    /// In the order the group sends them (whichever replica sends):
    /// timestamps never go backwards, the right edge never shrinks, and no
    /// reset is ever sent to the client.
    fn check_server_packet(&mut self, member: u8, p: &[u8]) -> Result<(), String> {
        let Ok(ip) = Ipv4Packet::new_checked(p) else {
            return Ok(());
        };
        let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
            return Ok(());
        };
        let port = tcp.dst_port();
        let Some(c) = self
            .conns
            .iter_mut()
            .find(|c| c.key.is_some_and(|k| k.local.port() == port))
        else {
            return Ok(());
        };
        if tcp.rst() && !c.eof {
            return Err(format!(
                "a reset was sent to the client on port {port} (seq {} ack {}; client connection: received {} eof {})",
                tcp.seq_number().0 as u32,
                tcp.ack_number().0 as u32,
                c.received,
                c.eof
            ));
        }
        let (tsval, wscale) = tcp_options(&tcp);
        if tcp.syn() {
            c.wscale = wscale.unwrap_or(0);
        }
        if let Some(v) = tsval {
            if let Some(max) = c.max_tsval {
                if (v.wrapping_sub(max) as i32) < 0 {
                    return Err(format!("port {port}: TSval went back from {max} to {v}"));
                }
            }
            c.max_tsval = Some(v);
        }
        if tcp.ack() && !tcp.syn() {
            let edge =
                (tcp.ack_number().0 as u32).wrapping_add(u32::from(tcp.window_len()) << c.wscale);
            if let Some(max) = c.max_edge {
                // Rounding to the window scale may retract the edge by less
                // than one unit (RFC 7323 2.4); anything more is a shrink.
                let unit = 1i32 << c.wscale;
                if (edge.wrapping_sub(max) as i32) <= -unit {
                    let key = ConnKey {
                        local: SocketAddrV4::new(VIP, PORT),
                        remote: SocketAddrV4::new(CLIENT_IP, port),
                    };
                    let reported: Vec<String> = self
                        .nodes
                        .iter()
                        .map(|n| format!("{:?}", n.edges.get(&key).map(|e| e.0)))
                        .collect();
                    return Err(format!(
                        "highest edges reported by replicas: {reported:?}; port {port}: right edge shrank from {max} to {edge} (replica {member}: ack {} window {} scale {}; the edge came from replica {} ack {} window {})",
                        tcp.ack_number().0 as u32,
                        tcp.window_len(),
                        c.wscale,
                        c.max_edge_from.0,
                        c.max_edge_from.1,
                        c.max_edge_from.2
                    ));
                }
            }
            if c.max_edge.is_none_or(|m| (edge.wrapping_sub(m) as i32) > 0) {
                c.max_edge = Some(edge);
                c.max_edge_from = (member, tcp.ack_number().0 as u32, tcp.window_len());
            }
        }
        Ok(())
    }

    /// Every byte the client saw acknowledged is held by every live replica.
    /// Ordered mode: every replica that has run since the start (crashed
    /// ones too, as far as they got) built the same shared state, or a
    /// prefix of it; replicas that took the same bytes have equal digests.
    /// A restarted replica's application starts empty: not compared.
    fn check_shared_state(&self) -> Result<(), String> {
        if !self.cfg.ordered {
            return Ok(());
        }
        let original: Vec<(usize, &SharedState)> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.restarted)
            .map(|(i, n)| (i + 1, &n.shared))
            .collect();
        for (a, sa) in &original {
            for (b, sb) in &original {
                if a >= b {
                    continue;
                }
                if !SharedState::consistent(sa, sb) {
                    let first = sa
                        .runs
                        .iter()
                        .zip(&sb.runs)
                        .position(|(x, y)| x != y)
                        .unwrap_or(0);
                    let around =
                        |r: &[(u16, u64)]| r[first.min(r.len())..(first + 3).min(r.len())].to_vec();
                    return Err(format!(
                        "shared state diverged: replica {a} took {} bytes in {} runs, replica {b} {} in {}; from run {first} (client port, bytes): {:?} vs {:?}",
                        sa.total(),
                        sa.runs.len(),
                        sb.total(),
                        sb.runs.len(),
                        around(&sa.runs),
                        around(&sb.runs),
                    ));
                }
                if sa.total() == sb.total() && sa.digest() != sb.digest() {
                    return Err(format!(
                        "replicas {a} and {b} took the same bytes with different digests"
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_invariants(&self) -> Result<(), String> {
        let live: HashSet<u8> = self.authority.view().live().map(|m| m.id).collect();
        for c in &self.conns {
            let Some(key) = c.key else { continue };
            let Some(progress) = self.client.progress(key) else {
                continue;
            };
            // The server has sent its FIN and seen ours: nothing is left
            // to carry, so a replica that rejoined since need not hold it.
            let finished = progress.finished;
            // Bytes of ours the server acknowledged (SYN and FIN excluded).
            let acked = progress.acked;
            let server_key = ConnKey {
                local: key.remote,
                remote: key.local,
            };
            for (i, n) in self.nodes.iter().enumerate() {
                let id = i as u8 + 1;
                // A restarted process is not the member the view counts
                // until a view has admitted it (the old one crashed).
                let admitted = n
                    .logic
                    .agent()
                    .view()
                    .is_some_and(|v| v.epoch > n.restart_epoch && v.is_alive(id));
                let exempt = n.restarted && (!admitted || finished);
                if n.crashed || !live.contains(&id) || exempt {
                    continue;
                }
                let held = n.held.get(&server_key).copied();
                match held {
                    Some(h) if h >= acked => {}
                    // Nothing beyond the SYN acknowledged yet: nothing to hold.
                    None if progress.opening => {}
                    _ if acked.since(progress.iss) <= 1 => {}
                    other => {
                        return Err(format!(
                            "client port {}: server acknowledged up to {acked} but live replica {id} holds {other:?}",
                            key.local.port(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A fresh replica process: member `i + 1`, its counters starting at
/// `counter` (a restarted process must not reuse its old counters).
fn new_node(i: usize, key: &GroupKey, counter: u64, cfg: &SimConfig) -> Node {
    let id = i as u8 + 1;
    let addr = |port| SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 11 + i as u8), port);
    let agent = MemberAgent::with_counter(
        "sim".into(),
        id,
        key.clone(),
        addr(7100),
        addr(7200),
        Duration::from_millis(HEARTBEAT_MS),
        Counter::starting_at(counter),
    );
    let replicator = Replicator::with_counter(
        MemberId(id),
        key.clone(),
        ReplicationConfig {
            heartbeat_interval: Duration::from_millis(HEARTBEAT_MS),
            peer_timeout: Duration::from_millis(TIMEOUT_MS),
            ..ReplicationConfig::default()
        },
        Counter::starting_at(counter),
    );
    let mut stack = Stack::new(Config {
        isn_key: replica::member::isn_key(&key.0),
        ..Config::default()
    });
    ReplicaLogic::prepare_stack(&mut stack);
    if cfg.segmentation_offload {
        stack.set_segmentation_offload(Some(64 * 1024 - 80));
    }
    let local = SocketAddrV4::new(VIP, PORT);
    if cfg.passive {
        stack.listen_passive(local).expect("listen");
    } else if cfg.ordered {
        stack.listen_ordered(local).expect("listen");
    } else {
        stack.listen(local).expect("listen");
    }
    Node {
        stack,
        logic: ReplicaLogic::new(id, agent, replicator),
        crashed: false,
        restarted: false,
        restart_epoch: 0,
        paused_until: 0,
        apps: std::collections::BTreeMap::new(),
        held: HashMap::new(),
        edges: HashMap::new(),
        shared: SharedState::default(),
    }
}

/// Every replica's application: echo the committed bytes (peek, send,
/// consume what was sent: it keeps no bytes of its own, so a connection
/// restored by state transfer resumes), checking them against the client's
/// stream; close after the client's close.
fn echo_apps(node: &mut Node, seed: u64) -> Result<(), String> {
    let mut fresh = Vec::new();
    while let Some(key) = node.stack.accept(SocketAddrV4::new(VIP, PORT)) {
        fresh.push(key);
    }
    for key in node.stack.connections() {
        if !node.apps.contains_key(&key)
            && node
                .stack
                .conn_info(key)
                .is_some_and(|i| i.state != State::SynReceived)
        {
            fresh.push(key); // imported from the log or a snapshot
        }
    }
    for key in fresh {
        // Bytes the application consumed before (on the replica a snapshot
        // came from); zero for a new connection.
        // Where its reads resume: a primary demoted and promoted again
        // with no full checkpoint in between keeps its read-ahead.
        let consumed = match (node.stack.snapshot(key), node.stack.conn_info(key)) {
            (Some(s), Some(i)) => u64::from(i.read_from.since(s.irs + 1u32)),
            _ => 0,
        };
        node.apps.entry(key).or_insert(EchoApp {
            delivered: consumed,
            ..EchoApp::default()
        });
    }
    let member = node.logic.member();
    let keys: Vec<ConnKey> = node.apps.keys().copied().collect();
    for key in keys {
        let app = node.apps.get_mut(&key).expect("present");
        if app.closed {
            continue;
        }
        let mut buf = [0u8; 16384];
        // A full send buffer (or a closed sending side) takes less: stop.
        while let Some((n, sent)) = echo_step(&mut node.stack, app, key, &mut buf, seed, member)? {
            if sent < n {
                break;
            }
        }
    }
    Ok(())
}

/// The passive application, on the primary only: echo in chunks whose
/// size differs from replica to replica (a nondeterministic application),
/// keeping the position in state block `pos`. A connection it accepts
/// after a takeover must have a block equal to the bytes consumed: a
/// checkpoint that split the read from the state, or lost either, shows.
fn passive_echo_apps(node: &mut Node, seed: u64) -> Result<(), String> {
    let member = node.logic.member();
    while let Some(key) = node.stack.accept(SocketAddrV4::new(VIP, PORT)) {
        let pos = match node.stack.store_lookup(key, "pos") {
            Ok(Some(b)) => u64::from_be_bytes(b.try_into().map_err(|_| "bad pos block")?),
            Ok(None) => 0,
            Err(e) => return Err(format!("replica {member}: state store: {e}")),
        };
        // Where its reads resume: a primary demoted and promoted again
        // with no full checkpoint in between keeps its read-ahead.
        let consumed = match (node.stack.snapshot(key), node.stack.conn_info(key)) {
            (Some(s), Some(i)) => u64::from(i.read_from.since(s.irs + 1u32)),
            _ => 0,
        };
        if pos != consumed {
            return Err(format!(
                "replica {member}: port {} resumes with state block at {pos} but the stream consumed to {consumed}",
                key.remote.port()
            ));
        }
        let generation = node.stack.app_generation(key);
        node.apps.insert(
            key,
            EchoApp {
                delivered: pos,
                closed: false,
                generation,
            },
        );
    }
    // Handles of an earlier term as primary are stale.
    node.apps
        .retain(|key, app| node.stack.app_generation(*key) == app.generation);
    let keys: Vec<ConnKey> = node.apps.keys().copied().collect();
    for key in keys {
        let app = node.apps.get_mut(&key).expect("present");
        if app.closed {
            continue;
        }
        let chunk = 1 + ((app.delivered ^ (u64::from(member) * 0x9e37)) % 3000) as usize;
        let mut buf = vec![0u8; chunk];
        if echo_step(&mut node.stack, app, key, &mut buf, seed, member)?.is_none() {
            continue;
        }
        node.stack
            .store_put(key, "pos", &app.delivered.to_be_bytes())
            .map_err(|e| format!("replica {member}: state store: {e}"))?;
    }
    Ok(())
}

/// One echo step on `key`: peek committed bytes, check them against the
/// client's stream, send and consume what the send buffer takes. `None`
/// when nothing was readable (at end of stream the application closes).
fn echo_step(
    stack: &mut Stack,
    app: &mut EchoApp,
    key: ConnKey,
    buf: &mut [u8],
    seed: u64,
    member: u8,
) -> Result<Option<(usize, usize)>, String> {
    let n = match stack.peek(key, buf) {
        Ok(0) => {
            stack.close(key);
            app.closed = true;
            return Ok(None);
        }
        Ok(n) => n,
        Err(RecvError::WouldBlock) => return Ok(None),
        Err(_) => {
            app.closed = true;
            return Ok(None);
        }
    };
    for (j, b) in buf[..n].iter().enumerate() {
        let at = app.delivered + j as u64;
        if *b != stream_byte(seed, key.remote.port(), at) {
            return Err(format!(
                "replica {member}: application got a wrong byte {at} on port {}",
                key.remote.port()
            ));
        }
    }
    let sent = stack.send(key, &buf[..n]).unwrap_or_default();
    stack.consume(key, sent);
    app.delivered += sent as u64;
    Ok(Some((n, sent)))
}

/// Run one seed.
pub fn run_seed(cfg: SimConfig) -> Verdict {
    Sim::new(cfg).run()
}

/// A segment's TSval and window scale options.
/// One line about a TCP packet for the trace: the client's port, sequence
/// and acknowledgement numbers, window, TSval, length and flags.
fn describe(p: &[u8], to_client: bool) -> Option<String> {
    let ip = Ipv4Packet::new_checked(p).ok()?;
    let t = TcpPacket::new_checked(ip.payload()).ok()?;
    let port = if to_client {
        t.dst_port()
    } else {
        t.src_port()
    };
    Some(format!(
        ":{port} seq {} ack {} win {} ts {:?} len {}{}{}{}",
        t.seq_number().0 as u32,
        t.ack_number().0 as u32,
        t.window_len(),
        tcp_options(&t).0,
        t.payload().len(),
        if t.syn() { " SYN" } else { "" },
        if t.fin() { " FIN" } else { "" },
        if t.rst() { " RST" } else { "" }
    ))
}

fn tcp_options(tcp: &TcpPacket<&[u8]>) -> (Option<u32>, Option<u8>) {
    let (mut tsval, mut wscale) = (None, None);
    let mut rest = tcp.options();
    while !rest.is_empty() {
        match TcpOption::parse(rest) {
            Ok((r, TcpOption::TimeStamp { tsval: v, .. })) => {
                tsval = Some(v);
                rest = r;
            }
            Ok((r, TcpOption::WindowScale(s))) => {
                wscale = Some(s);
                rest = r;
            }
            Ok((_, TcpOption::EndOfList)) | Err(_) => break,
            Ok((r, _)) => rest = r,
        }
    }
    (tsval, wscale)
}
