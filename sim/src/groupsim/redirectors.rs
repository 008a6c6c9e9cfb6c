//! The simulated redirectors, each with its own view authority. One alone
//! always acts. Two or more coordinate through the simulated store: each
//! runs an agent model, only the one whose lease surely holds answers the
//! replicas' control traffic (the others read and drop it), its replies
//! carry only views the store holds, and the one holding the clients' next
//! hop (the last elected, until it steps down) sends the copies. Between
//! its margin and its deadline a loop answers keepalives only, and when it
//! acts again with its role kept every member gets a fresh keepalive
//! timeout (`ViewAuthority::resume`). The views members accepted and the
//! store held are recorded here for the one-view-per-epoch check, and no
//! two loops may answer at once.

use std::collections::BTreeMap;

use ackchannel::auth::{Counter, GroupKey};
use ackchannel::control::{GroupPolicy, View, ViewAuthority, ViewMember};
use stack::Duration;

use super::agent::{Agent, Event, STORE_TTL};
use super::config::SimConfig;
use super::run::Sim;
use super::store::{StoreNet, StoredView};
use super::{HEARTBEAT_MS, LEASE_MS, TIMEOUT_MS};
use crate::simnet::Link;

/// One redirector process.
pub(super) struct Redirector {
    pub(super) authority: ViewAuthority,
    /// With two or more redirectors: its coordination agent.
    pub(super) agent: Option<Agent>,
    /// Control datagrams from each replica, and replies to it.
    pub(super) control_up: Vec<Link>,
    pub(super) control_down: Vec<Link>,
    /// Killed: it stops, releasing nothing.
    pub(super) killed: bool,
    /// Cut from the replicas (a lost host) until then.
    pub(super) lost_until: u64,
    /// The epoch last queued for the store.
    saved_epoch: u64,
    /// Rejoins counted by authorities replaced at an election.
    rejoins_before: u64,
    /// The loop acted at its last step (or was elected since).
    was_acting: bool,
    /// Elected since the loop's last step: the restore counts, not a pause.
    elected: bool,
}

impl Redirector {
    /// A redirector with these links to the replicas.
    pub(super) fn new(
        authority: ViewAuthority,
        agent: Option<Agent>,
        control_up: Vec<Link>,
        control_down: Vec<Link>,
    ) -> Redirector {
        Redirector {
            authority,
            agent,
            control_up,
            control_down,
            killed: false,
            lost_until: 0,
            saved_epoch: 0,
            rejoins_before: 0,
            was_acting: false,
            elected: false,
        }
    }

    /// Members admitted back, by this process's authorities.
    pub(super) fn rejoins(&self) -> u64 {
        self.rejoins_before + self.authority.stats().rejoins
    }

    /// The loop answers the replicas now.
    pub(super) fn acting(&self, now: u64) -> bool {
        !self.killed && self.agent.as_ref().is_none_or(|a| a.acting(now))
    }

    /// The loop answers at least keepalives now (acting, or past its
    /// margin with the role still held).
    pub(super) fn answering(&self, now: u64) -> bool {
        !self.killed && self.agent.as_ref().is_none_or(|a| a.answering(now))
    }
}

/// A group's view authority for `cfg`, its frame counter at `counter`.
pub(super) fn new_authority(cfg: &SimConfig, key: &GroupKey, counter: u64) -> ViewAuthority {
    let n = cfg.replicas;
    ViewAuthority::with_counter(
        GroupPolicy {
            name: "sim".into(),
            key: key.clone(),
            members: (1..=n as u8).collect(),
            min_members: n,
            keepalive_timeout: Duration::from_millis(TIMEOUT_MS),
            lease: Duration::from_millis(LEASE_MS),
            heartbeat: Duration::from_millis(HEARTBEAT_MS),
            preferred_primary: cfg.preferred_primary,
        },
        Counter::starting_at(counter),
    )
}

/// A view's shape: per member in order, its id, live, joining.
type Shape = Vec<(u8, bool, bool)>;

/// What two or more redirectors share: the store, who holds the clients'
/// next hop, and the views recorded for the checker.
pub(super) struct Coordination {
    pub(super) store: StoreNet,
    /// The redirector holding the floating next hop.
    pub(super) floating: Option<usize>,
    /// Per epoch, the view (id, live, joining per member, in order) first
    /// recorded, and who showed it.
    views: BTreeMap<u64, (Shape, String)>,
    /// The newest view a member accepted or the store held.
    pub(super) newest: View,
    /// Elections won, over all redirectors.
    pub(super) elections: u64,
    /// Leases a standby revoked because the holder's heartbeat stopped.
    pub(super) heartbeat_depositions: u64,
}

impl Coordination {
    /// The store and nothing recorded yet.
    pub(super) fn new(redirectors: usize, seed: u64) -> Coordination {
        Coordination {
            store: StoreNet::new(STORE_TTL, redirectors, seed),
            floating: None,
            views: BTreeMap::new(),
            newest: View::default(),
            elections: 0,
            heartbeat_depositions: 0,
        }
    }

    /// Record `view`, shown by `by`: it must be the view recorded for its
    /// epoch, if any.
    pub(super) fn record(
        &mut self,
        view: &View,
        by: impl FnOnce() -> String,
    ) -> Result<(), String> {
        let shape: Shape = view
            .members
            .iter()
            .map(|m| (m.id, m.alive, m.joining))
            .collect();
        match self.views.get(&view.epoch) {
            Some((seen, first)) if *seen != shape => Err(format!(
                "two views for epoch {}: {first} showed {seen:?} (member, live, joining), {} shows {shape:?}",
                view.epoch,
                by()
            )),
            Some(_) => Ok(()),
            None => {
                self.views.insert(view.epoch, (shape, by()));
                if view.epoch > self.newest.epoch {
                    self.newest = view.clone();
                }
                Ok(())
            }
        }
    }
}

/// The store's encoding of an authority's view.
fn stored_of(authority: &ViewAuthority) -> StoredView {
    let (epoch, members) = authority.saved();
    StoredView { epoch, members }
}

/// The view members would see for a stored one.
fn view_of(stored: &StoredView, preferred: Option<u8>) -> View {
    View {
        epoch: stored.epoch,
        preferred,
        members: stored
            .members
            .iter()
            .map(|m| ViewMember {
                id: m.id,
                alive: m.alive,
                joining: m.joining,
                data_addr: m.data_addr,
                ack_addr: m.ack_addr,
            })
            .collect(),
    }
}

impl Sim {
    /// The view the checker and the fault plan go by: the one authority's,
    /// or with two or more redirectors the newest view a member accepted
    /// or the store held (a view no member can have seen does not count).
    pub(super) fn view(&self) -> &View {
        match &self.coordination {
            None => self.redirectors[0].authority.view(),
            Some(c) => &c.newest,
        }
    }

    /// The newest epoch any running authority has formed (a restarted
    /// replica's process is new to every view after it).
    pub(super) fn newest_epoch(&self) -> u64 {
        let formed = self
            .redirectors
            .iter()
            .filter(|r| !r.killed)
            .map(|r| r.authority.view().epoch)
            .max()
            .unwrap_or(0);
        formed.max(self.view().epoch)
    }

    /// The redirector client packets reach and that copies them: the one
    /// holding the next hop, if it runs and its host is reachable.
    pub(super) fn forwarder(&self) -> Option<usize> {
        match &self.coordination {
            None => Some(0),
            Some(c) => c.floating.filter(|r| {
                let r = &self.redirectors[*r];
                !r.killed && r.lost_until <= self.now
            }),
        }
    }

    /// When the redirectors and the store next have something to do.
    pub(super) fn redirectors_next(&self) -> Option<u64> {
        let now = self.now;
        let mut t: Option<u64> = None;
        let mut consider = |x: Option<u64>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        for r in &self.redirectors {
            for l in r.control_up.iter().chain(&r.control_down) {
                consider(l.next_due());
            }
            if r.acting(now) {
                consider(r.authority.poll_timeout().map(|i| i.total_micros()));
            }
            if !r.killed {
                consider(r.agent.as_ref().and_then(|a| a.next_deadline(now)));
            }
        }
        if let Some(c) = &self.coordination {
            consider(c.store.next_due());
        }
        t
    }

    /// The redirectors' turn: with one, it handles the replicas' control
    /// traffic; with more, the store's answers reach the agents first, an
    /// elected one carries on from the stored view, and only an acting one
    /// answers (and queues its new views for the store).
    pub(super) fn redirectors_step(&mut self) -> Result<(), String> {
        if self.coordination.is_none() {
            self.single_redirector_step();
            return Ok(());
        }
        self.agents_step()?;
        let now = self.now;
        let inst = self.instant();
        for r in 0..self.redirectors.len() {
            let red = &mut self.redirectors[r];
            if red.killed {
                for l in &mut red.control_up {
                    while l.recv(now).is_some() {}
                }
                continue;
            }
            let acting = red.acting(now);
            let answering = red.answering(now);
            let lost = red.lost_until > now;
            let limit = red.agent.as_ref().map_or(u64::MAX, |a| a.announce_limit());
            let epoch = red.authority.view().epoch;
            let resumed = acting && !red.was_acting && !red.elected;
            if resumed {
                // It read nothing while it did not act: silence it could
                // not hear is no evidence.
                red.authority.resume(inst);
            }
            red.was_acting = acting || red.elected;
            red.elected = false;
            for i in 0..red.control_up.len() {
                while let Some(d) = red.control_up[i].recv(now) {
                    // A standby reads and drops; a lost host gets nothing.
                    if !answering || lost {
                        continue;
                    }
                    let handled = if acting {
                        red.authority.handle_datagram(inst, &d)
                    } else {
                        red.authority.handle_keepalive(inst, &d)
                    };
                    match handled {
                        Ok(Some(_)) if red.authority.view().epoch > limit => {}
                        Ok(Some(reply)) => red.control_down[i].send(now, &reply),
                        _ => {}
                    }
                }
            }
            if resumed {
                self.trace(|| format!("REDIRECTOR {} acts again, its role kept", r + 1));
            }
            let red = &mut self.redirectors[r];
            if acting {
                red.authority.handle_timeout(inst);
                let v = red.authority.view().epoch;
                if v != red.saved_epoch {
                    red.saved_epoch = v;
                    let stored = stored_of(&red.authority);
                    if let Some(a) = red.agent.as_mut() {
                        a.save(now, stored);
                    }
                }
            }
            if self.redirectors[r].authority.view().epoch != epoch {
                self.trace_view(r);
            }
        }
        Ok(())
    }

    /// The store's traffic, the agents' turns and what they tell the loops.
    fn agents_step(&mut self) -> Result<(), String> {
        let now = self.now;
        let preferred = self.cfg.preferred_primary;
        let Some(c) = self.coordination.as_mut() else {
            return Ok(());
        };
        for (r, id, resp) in c.store.deliver(now) {
            let red = &mut self.redirectors[r];
            if let Some(a) = red.agent.as_mut().filter(|_| !red.killed) {
                a.on_response(now, &mut c.store, id, resp);
            }
        }
        for red in self.redirectors.iter_mut().filter(|r| !r.killed) {
            if let Some(a) = red.agent.as_mut() {
                a.poll(now, &mut c.store);
            }
        }
        for stored in c.store.take_written() {
            c.record(&view_of(&stored, preferred), || "the store".into())?;
        }
        // Each successor is elected only after its predecessor's deadline.
        let answering: Vec<usize> = (0..self.redirectors.len())
            .filter(|r| self.redirectors[*r].answering(now))
            .collect();
        if answering.len() > 1 {
            let who: Vec<String> = answering.iter().map(|r| (r + 1).to_string()).collect();
            return Err(format!(
                "redirectors {} answer the replicas at once",
                who.join(" and ")
            ));
        }
        for r in 0..self.redirectors.len() {
            if self.redirectors[r].killed {
                continue;
            }
            let events = match self.redirectors[r].agent.as_mut() {
                Some(a) => a.take_events(),
                None => Vec::new(),
            };
            for e in events {
                self.steer(r, e);
            }
        }
        Ok(())
    }

    /// Apply what redirector `r`'s agent learnt: elected, it carries on from
    /// the stored view with a frame counter from its clock (above every
    /// counter an earlier authority sent), and claims the next hop; no
    /// longer acting, it releases the next hop.
    fn steer(&mut self, r: usize, event: Event) {
        let now = self.now;
        let inst = self.instant();
        match event {
            Event::Elected(stored) => {
                let fresh = new_authority(&self.cfg, &self.key, 1 + now);
                let red = &mut self.redirectors[r];
                let old = std::mem::replace(&mut red.authority, fresh);
                red.rejoins_before += old.stats().rejoins;
                red.elected = true;
                if let Some(v) = &stored {
                    red.authority.restore(inst, v.epoch, &v.members);
                }
                if let Some(c) = self.coordination.as_mut() {
                    c.floating = Some(r);
                    c.elections += 1;
                }
                self.trace(|| {
                    format!(
                        "REDIRECTOR {} elected, carries on from epoch {:?}",
                        r + 1,
                        stored.map(|v| v.epoch)
                    )
                });
            }
            Event::Deposed(holder) => {
                if let Some(c) = self.coordination.as_mut() {
                    c.heartbeat_depositions += 1;
                }
                self.trace(|| {
                    format!(
                        "REDIRECTOR {} revokes redirector {}'s lease: its heartbeat stopped",
                        r + 1,
                        holder + 1
                    )
                });
            }
            Event::Lost(why) => {
                if let Some(c) = self.coordination.as_mut() {
                    if c.floating == Some(r) {
                        c.floating = None;
                    }
                }
                self.trace(|| format!("REDIRECTOR {} stops acting: {why}", r + 1));
            }
        }
    }

    /// One redirector: it always acts, answers every datagram and has no
    /// store to wait for.
    fn single_redirector_step(&mut self) {
        let now = self.now;
        let inst = self.instant();
        let red = &mut self.redirectors[0];
        let epoch = red.authority.view().epoch;
        red.authority.handle_timeout(inst);
        for i in 0..red.control_up.len() {
            while let Some(d) = red.control_up[i].recv(now) {
                if let Ok(Some(reply)) = red.authority.handle_datagram(inst, &d) {
                    red.control_down[i].send(now, &reply);
                }
            }
        }
        if self.redirectors[0].authority.view().epoch != epoch {
            self.trace_view(0);
        }
    }

    fn trace_view(&self, r: usize) {
        self.trace(|| {
            let v = self.redirectors[r].authority.view();
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
            let by = if self.redirectors.len() > 1 {
                format!(" (redirector {})", r + 1)
            } else {
                String::new()
            };
            format!("VIEW {}{by}: {}", v.epoch, members.join(", "))
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
}
