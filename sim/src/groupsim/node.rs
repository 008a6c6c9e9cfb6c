//! One simulated replica process: the real stack and `ReplicaLogic`, with
//! its crash, pause and restart state, and its step within the group.

use std::collections::HashMap;
use std::net::SocketAddr;

use ackchannel::auth::{Counter, GroupKey};
use ackchannel::control::MemberAgent;
use ackchannel::replication::{MemberId, ReplicationConfig, Replicator};
use replica::replicated::logic::ReplicaLogic;
use stack::{Config, ConnKey, Duration, Role, Stack};

use super::apps::{echo_apps, passive_echo_apps, shared_state_app, EchoApp, SharedState};
use super::run::{describe, Sim};
use super::{SimConfig, HEARTBEAT_MS, TIMEOUT_MS};

/// One replica process on its host.
pub(super) struct Node {
    pub(super) stack: Stack,
    pub(super) logic: ReplicaLogic,
    pub(super) crashed: bool,
    /// A fresh process on a crashed replica's host (it rejoins).
    pub(super) restarted: bool,
    /// The authority's epoch when it restarted: views up to it describe
    /// the process that crashed.
    pub(super) restart_epoch: u64,
    pub(super) paused_until: u64,
    pub(super) apps: std::collections::BTreeMap<ConnKey, EchoApp>,
    /// The most each connection ever held in order (kept after it closes).
    pub(super) held: HashMap<ConnKey, stack::Seq>,
    /// The highest right edge each connection reported (for diagnostics).
    pub(super) edges: HashMap<ConnKey, stack::Seq>,
    /// Ordered mode: the state all connections share (see [`SharedState`]).
    pub(super) shared: SharedState,
}

/// A fresh replica process: member `i + 1`, its counters starting at
/// `counter` (a restarted process must not reuse its old counters).
pub(super) fn new_node(i: usize, key: &GroupKey, counter: u64, cfg: &SimConfig) -> Node {
    let id = i as u8 + 1;
    let addr = |port| SocketAddr::from(([198, 18, 1, 11 + i as u8], port));
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
    let local = cfg.service();
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

impl Sim {
    pub(super) fn replica_step(&mut self, i: usize) -> Result<(), String> {
        let now = self.now;
        let inst = self.instant();
        if self.nodes[i].crashed {
            // A crashed host's inbound traffic is lost.
            while self.to_replica[i].recv(now).is_some() {}
            for r in &mut self.redirectors {
                while r.control_down[i].recv(now).is_some() {}
            }
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
        // Replies from any redirector (one from a lost host is lost).
        for r in &mut self.redirectors {
            let lost = r.lost_until > now;
            while let Some(d) = r.control_down[i].recv(now) {
                if lost || node.logic.on_control(inst, &d).is_err() {
                    continue;
                }
                // Every view a member accepts is the one view of its epoch.
                if let (Some(c), Some(v)) = (self.coordination.as_mut(), node.logic.agent().view())
                {
                    c.record(v, || format!("replica {}", i + 1))?;
                }
            }
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
                passive_echo_apps(node, self.cfg.service(), self.cfg.seed)?;
            } else {
                echo_apps(node, self.cfg.service(), self.cfg.seed)?;
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
        // Control to every redirector (a standby drops it).
        for d in control {
            for r in &mut self.redirectors {
                r.control_up[i].send(now, &d);
            }
        }
        for p in out {
            // One writer per epoch, and only the authority's current epoch.
            let current = self.view().epoch;
            // The writer is the current view's primary: after a view change
            // that named another primary, the old one has stopped (fencing).
            // With two or more redirectors, the current view is the newest a
            // member accepted or the store held (any next authority's).
            let primary = self.view().primary();
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
}
