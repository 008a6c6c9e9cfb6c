//! The simulated group ([`Sim`]): the client, the redirectors, the
//! replicas and the links between them, and the run loop that advances the
//! virtual clock to the next deadline.

use std::collections::HashMap;

use ackchannel::auth::GroupKey;
use stack::{ConnKey, Instant};

use super::apps::stream_byte;
use super::checker::tcp_options;
use super::config::{SimConfig, Verdict};
use super::faults::{self, Fault};
use super::node::{new_node, Node};
use super::redirectors::{new_authority, Coordination, Redirector};
use super::us;
use crate::simclient::{Received, SimClient};
use crate::simnet::{Link, LinkProfile, Rng};

/// One client connection and what the client has seen on it.
pub(super) struct ClientConn {
    pub(super) key: Option<ConnKey>,
    pub(super) opens_at: u64,
    pub(super) sent: u64,
    pub(super) received: u64,
    pub(super) closed_write: bool,
    pub(super) eof: bool,
    /// Highest TSval and right window edge seen from the server.
    pub(super) max_tsval: Option<u32>,
    pub(super) max_edge: Option<u32>,
    /// Who sent the highest edge, and with what ACK and window.
    pub(super) max_edge_from: (u8, u32, u16),
    pub(super) wscale: u8,
}

/// A simulated group: one client, the redirectors (each with its view
/// authority), the replicas and the links between them, on a virtual clock.
pub struct Sim {
    pub(super) cfg: SimConfig,
    pub(super) now: u64,
    pub(super) rng: Rng,
    pub(super) client: SimClient,
    pub(super) conns: Vec<ClientConn>,
    pub(super) redirectors: Vec<Redirector>,
    /// With two or more redirectors: the store and what they share.
    pub(super) coordination: Option<Coordination>,
    pub(super) nodes: Vec<Node>,
    pub(super) up: Link,
    /// Copies to each replica, from whichever redirector sends them.
    pub(super) to_replica: Vec<Link>,
    pub(super) to_client: Vec<Link>,
    pub(super) mesh: HashMap<(usize, usize), Link>,
    /// Ack-channel partitions: (a, b) cut until the time.
    pub(super) cut: HashMap<(usize, usize), u64>,
    /// Output reaching the client, tagged with the sender and its epoch.
    pub(super) writers: HashMap<u64, u8>,
    pub(super) crashes: usize,
    pub(super) handovers: usize,
    pub(super) restarts: usize,
    pub(super) key: GroupKey,
    pub(super) plan: Vec<(u64, Fault)>,
    /// Reused transmit buffer: zeroing a fresh 64 KiB every step would
    /// dominate the run time.
    pub(super) scratch: Vec<u8>,
    /// The client's connection ran out of retransmissions.
    pub(super) client_timed_out: bool,
    /// Per client port, the segments after the SYN whose copies were lost
    /// (`lose_handshake_ack_to`).
    pub(super) handshake_lost: HashMap<u16, u8>,
    /// Per client port, the SYN copies lost (`lose_syn_to`).
    pub(super) syns_lost: HashMap<u16, u8>,
}

impl Sim {
    /// The group of `cfg`, its links and fault plan drawn from the seed.
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
        let mut plan = if cfg.faults {
            faults::plan(&mut rng, n)
        } else {
            Vec::new()
        };
        // Links in the order one redirector always drew them, so a seed
        // runs as it did; more redirectors draw theirs after.
        let up = link(profile);
        let to_replica = (0..n).map(|_| link(profile)).collect();
        let to_client = (0..n).map(|_| link(profile)).collect();
        let mut redirectors = Vec::new();
        for r in 0..cfg.redirectors.max(1) {
            let control_up = (0..n).map(|_| link(profile)).collect();
            let control_down = (0..n).map(|_| link(profile)).collect();
            let agent = (cfg.redirectors > 1).then(|| super::agent::Agent::for_run(r, &cfg));
            let authority = new_authority(&cfg, &key, 1);
            redirectors.push(Redirector::new(authority, agent, control_up, control_down));
        }
        let coordination = (cfg.redirectors > 1).then(|| {
            if cfg.faults {
                faults::plan_redirectors(&mut rng, &mut plan);
            }
            Coordination::new(cfg.redirectors, cfg.seed ^ 0x5709_e5e5)
        });
        Sim {
            now: 0,
            client: SimClient::new(cfg.client, cfg.seed),
            conns,
            redirectors,
            coordination,
            up,
            to_replica,
            to_client,
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
            handshake_lost: HashMap::new(),
            syns_lost: HashMap::new(),
            nodes,
            rng,
            cfg,
        }
    }

    pub(super) fn trace(&self, what: impl FnOnce() -> String) {
        if self.cfg.trace {
            eprintln!("{:>9.3} ms  {}", self.now as f64 / 1000.0, what());
        }
    }

    pub(super) fn instant(&self) -> Instant {
        Instant::from_micros(self.now)
    }

    /// Some replica runs, is live in the view and holds the group's state
    /// (a restarted process the view still counts as the old one holds
    /// none of it).
    fn serving_any(&self) -> bool {
        let view = self.view();
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
                    rejoins: self.redirectors.iter().map(|r| r.rejoins()).sum(),
                    handbacks: self.nodes.iter().map(|n| n.logic.handbacks).sum(),
                    checkpoints: self.nodes.iter().map(|n| n.logic.checkpoints_applied).sum(),
                    gate_deliveries: self
                        .nodes
                        .iter()
                        .map(|n| n.logic.replicator().stats().gate_deliveries)
                        .sum(),
                    elections: self.coordination.as_ref().map_or(0, |c| c.elections),
                    deposed_writes: self
                        .coordination
                        .as_ref()
                        .map_or(0, |c| c.store.fenced_off()),
                    heartbeat_depositions: self
                        .coordination
                        .as_ref()
                        .map_or(0, |c| c.heartbeat_depositions),
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
                    "livelock: step bound hit; deadlines relative to now (us): {stuck:?}, client {:?}, redirectors {:?}",
                    rel(self.client.poll_timeout()),
                    self.redirectors_next().map(|t| t as i64 - self.now as i64)
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
        for l in self.to_replica.iter().chain(&self.to_client) {
            consider(l.next_due());
        }
        for l in self.mesh.values() {
            consider(l.next_due());
        }
        consider(self.client.poll_timeout().map(|i| i.total_micros()));
        consider(self.redirectors_next());
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
        // Client side: copies from the redirector holding the next hop.
        while let Some(p) = self.up.recv(now) {
            let Some(r) = self.forwarder() else {
                continue; // its host is gone: lost
            };
            // Copies to the live members and to those catching up.
            let view = self.redirectors[r].authority.view().clone();
            let skip = self.lost_handshake_ack(&p).or_else(|| self.lost_syn(&p));
            for m in view.members.iter().filter(|m| m.alive || m.joining) {
                if skip != Some(m.id) {
                    self.to_replica[usize::from(m.id) - 1].send(now, &p);
                }
            }
        }
        for i in 0..self.nodes.len() {
            while let Some(p) = self.to_client[i].recv(now) {
                self.client.handle_packet(inst, &p);
            }
        }
        self.client_app()?;
        // Redirector control.
        self.redirectors_step()?;
        // Replicas.
        for i in 0..self.nodes.len() {
            self.replica_step(i)?;
        }
        self.check_invariants()
    }

    /// The member whose copy of `p` is lost: the one named by
    /// `lose_handshake_ack_to`, when `p` is one of a connection's first two
    /// segments after its SYN.
    fn lost_handshake_ack(&mut self, p: &[u8]) -> Option<u8> {
        let member = self.cfg.lose_handshake_ack_to?;
        let tcp = crate::simnet::tcp_segment(p)?;
        if tcp.syn() || !tcp.ack() {
            return None;
        }
        let lost = self.handshake_lost.entry(tcp.src_port()).or_default();
        (*lost < 2).then(|| {
            *lost += 1;
            member
        })
    }

    /// The member whose copy of `p` is lost: the one named by
    /// `lose_syn_to`, when `p` is a connection's first SYN.
    fn lost_syn(&mut self, p: &[u8]) -> Option<u8> {
        let member = self.cfg.lose_syn_to?;
        let tcp = crate::simnet::tcp_segment(p)?;
        if !tcp.syn() || tcp.ack() {
            return None;
        }
        let lost = self.syns_lost.entry(tcp.src_port()).or_default();
        (*lost < 1).then(|| {
            *lost += 1;
            member
        })
    }

    pub(super) fn client_app(&mut self) -> Result<(), String> {
        let inst = self.instant();
        let now = self.now;
        self.client.handle_timeout(inst);
        let total = self.cfg.bytes_per_connection as u64;
        for (k, c) in self.conns.iter_mut().enumerate() {
            if c.key.is_none() && now >= c.opens_at {
                let local = self.cfg.client(40000 + k as u16);
                c.key = Some(
                    self.client
                        .connect(inst, local, self.cfg.service())
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
}

/// Run one seed.
pub fn run_seed(cfg: SimConfig) -> Verdict {
    Sim::new(cfg).run()
}

/// One line about a TCP packet for the trace: the client's port, sequence
/// and acknowledgement numbers, window, TSval, length and flags.
pub(super) fn describe(p: &[u8], to_client: bool) -> Option<String> {
    let t = crate::simnet::tcp_segment(p)?;
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
