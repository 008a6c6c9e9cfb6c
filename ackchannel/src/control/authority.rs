//! The redirector's side of the control protocol: registration, the
//! members' liveness and leases, and the views it publishes.

use std::net::SocketAddr;

use hydra_base::{ConnKey, Duration, Instant};

use super::lookup::Lookup;
use super::messages::{decode, encode, Message, DOMAIN};
use super::{ControlError, View, ViewMember, AUTHORITY};
use crate::auth::{self, AuthError, Counter, GroupKey, ReplayGuard};

/// Settings of one group at the authority.
#[derive(Debug, Clone)]
pub struct GroupPolicy {
    /// The group's name; registrations must carry it.
    pub name: String,
    /// The group's key: every control datagram is sealed with it.
    pub key: GroupKey,
    /// Member ids allowed to register.
    pub members: Vec<u8>,
    /// No view is formed before this many members registered.
    pub min_members: usize,
    /// A live member silent this long is declared dead.
    pub keepalive_timeout: Duration,
    /// How long an answered keepalive lets a primary send to clients.
    pub lease: Duration,
    /// The members' keepalive period; a backup's report about the primary is
    /// believed once the primary has been silent for three of them.
    pub heartbeat: Duration,
    /// The member that should be primary whenever it is live and caught up:
    /// views name it, and a primary that sees it live hands the role back
    /// by a deliberate handover (no failure-sized stall).
    pub preferred_primary: Option<u8>,
}

#[derive(Debug, Clone)]
struct Member {
    id: u8,
    data_addr: SocketAddr,
    ack_addr: SocketAddr,
    /// The process's registration stamp (see [`Message::Register`]).
    incarnation: u64,
    alive: bool,
    /// Dead and back: catching up before it counts (see [`ViewMember::joining`]).
    joining: bool,
    last_heard: Instant,
    last_answered: Instant,
    /// Declared dead; the view change waits for its lease to run out.
    condemned: bool,
    /// A newer process of this member registered while the view still
    /// counts the old one: its stamp. That process holds none of the old
    /// one's state and gets no lease until it has rejoined.
    successor: Option<u64>,
    /// When a live backup reported it (its ack-channel connection closed,
    /// or it fell silent) before it was late here too. While it stays
    /// unheard since, it is declared dead as soon as it has been silent
    /// for three heartbeats, not only after the keepalive timeout.
    reported_at: Option<Instant>,
}

/// A member as the authority keeps it across a restart of the redirector.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedMember {
    /// Its member id.
    pub id: u8,
    /// Live in the saved view.
    pub alive: bool,
    /// Catching up in the saved view.
    pub joining: bool,
    /// Where client packets are copied to it.
    pub data_addr: SocketAddr,
    /// Where its peers reach its ack channel.
    pub ack_addr: SocketAddr,
    /// The stamp of the process the view counts (see [`Message::Register`]).
    pub incarnation: u64,
}

/// Counters the operator sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorityStats {
    /// Datagrams not sealed with the group key.
    pub refused_unauthenticated: u64,
    /// Datagrams whose counter was not above the sender's last.
    pub refused_replayed: u64,
    /// Datagrams from members not configured, not registered, or of another group.
    pub refused_unknown_member: u64,
    /// Registrations of dead members that could not rejoin.
    pub refused_dead_member: u64,
    /// Datagrams refused for any other reason (a body that does not decode).
    pub refused_malformed: u64,
    /// Views published.
    pub view_changes: u64,
    /// Failure reports received, believed or not.
    pub failure_reports: u64,
    /// Handovers and leaves done at a member's own request.
    pub resignations: u64,
    /// Members admitted back after catching up.
    pub rejoins: u64,
    /// Answers about held connections dropped: nobody took the earlier ones.
    pub holds_dropped: u64,
}

/// The redirector's registrar and view authority for one group, sans IO.
/// It admits registered members, answers keepalives with the view and a
/// lease, declares silent or reported members dead, and publishes the next
/// view only once a dead member's lease has run out, so that an epoch
/// never has two primaries sending to clients.
#[derive(Debug)]
pub struct ViewAuthority {
    policy: GroupPolicy,
    counter: Counter,
    guard: ReplayGuard,
    members: Vec<Member>,
    view: View,
    /// A view change is due at this time (when condemned leases run out).
    change_at: Option<Instant>,
    /// The preferred primary handed its role away itself (an operator's
    /// handover): views name no preferred member, so nobody hands the
    /// role straight back, until it next rejoins.
    preference_waived: bool,
    lookup: Lookup,
    stats: AuthorityStats,
}

impl ViewAuthority {
    /// An authority with no members yet; its frame counter starts at the wall
    /// clock.
    pub fn new(policy: GroupPolicy) -> ViewAuthority {
        ViewAuthority::with_counter(policy, Counter::from_clock())
    }

    /// An authority whose frame counter starts at `counter` (deterministic
    /// simulation).
    pub fn with_counter(policy: GroupPolicy, counter: Counter) -> ViewAuthority {
        ViewAuthority {
            policy,
            counter,
            guard: ReplayGuard::default(),
            members: Vec::new(),
            view: View::default(),
            change_at: None,
            preference_waived: false,
            lookup: Lookup::default(),
            stats: AuthorityStats::default(),
        }
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.policy.name
    }

    /// The current view (epoch 0 before the first is formed).
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Counters for the operator.
    pub fn stats(&self) -> &AuthorityStats {
        &self.stats
    }

    /// Milliseconds since each member was last heard from, by id.
    pub fn silence(&self, now: Instant) -> Vec<(u8, u64)> {
        self.members
            .iter()
            .map(|m| (m.id, now.saturating_since(m.last_heard).total_millis()))
            .collect()
    }

    /// The group can take new connections: a view exists and a live member
    /// has been heard from within the keepalive timeout (a group whose last
    /// member went silent keeps it in the view, but serves nobody new).
    pub fn serving(&self, now: Instant) -> bool {
        self.view.epoch > 0
            && self.members.iter().any(|m| {
                m.alive
                    && !m.condemned
                    && now.saturating_since(m.last_heard) < self.policy.keepalive_timeout
            })
    }

    /// Data addresses of the live and joining members: where client
    /// packets are copied.
    pub fn live_data_addrs(&self) -> Vec<SocketAddr> {
        self.view
            .members
            .iter()
            .filter(|m| m.alive || m.joining)
            .map(|m| m.data_addr)
            .collect()
    }

    /// Ask the members which of `connections` they hold (replacing the
    /// earlier questions; at most [`MAX_QUESTIONS`](super::MAX_QUESTIONS)):
    /// the replies carry a few each, in turn, until the questions change.
    /// The answers arrive through [`take_holds`](Self::take_holds).
    pub fn ask(&mut self, connections: Vec<ConnKey>) {
        self.lookup.set_questions(connections);
    }

    /// Connections a live or catching-up member said it holds since the
    /// last call (each once).
    pub fn take_holds(&mut self) -> Vec<ConnKey> {
        self.stats.holds_dropped = self.lookup.dropped;
        self.lookup.take_answers()
    }

    /// Would this key have sealed `datagram`? (picks the group of a datagram)
    pub fn accepts_key_of(&self, datagram: &[u8]) -> bool {
        auth::open(&self.policy.key, DOMAIN, datagram).is_ok()
    }

    /// Take one datagram from a member: a registration, keepalive, failure
    /// report, readiness report or resignation, sealed with the group key
    /// and newer than the member's last. Returns the reply to send back to
    /// its source (the current view, with a lease only for a live member in
    /// good standing), or none where the member must get no answer (a
    /// condemned member, whose lease must run out; a report). Refusals are
    /// counted in [`stats`](Self::stats).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        datagram: &[u8],
    ) -> Result<Option<Vec<u8>>, ControlError> {
        self.handle_counted(now, datagram, false)
    }

    /// As [`handle_datagram`](Self::handle_datagram), for an authority that
    /// may keep the members' leases going but must change nothing (its
    /// redirector's role holds, the margin before its deadline does not):
    /// keepalives are answered with the current view, every other message
    /// is dropped unread (its sender sends it again).
    pub fn handle_keepalive(
        &mut self,
        now: Instant,
        datagram: &[u8],
    ) -> Result<Option<Vec<u8>>, ControlError> {
        self.handle_counted(now, datagram, true)
    }

    fn handle_counted(
        &mut self,
        now: Instant,
        datagram: &[u8],
        keepalives_only: bool,
    ) -> Result<Option<Vec<u8>>, ControlError> {
        let result = self.handle_inner(now, datagram, keepalives_only);
        if let Err(e) = &result {
            match e {
                ControlError::Auth(AuthError::Replay { .. }) => self.stats.refused_replayed += 1,
                ControlError::Auth(_) => self.stats.refused_unauthenticated += 1,
                ControlError::UnknownMember(_)
                | ControlError::WrongGroup(_)
                | ControlError::NotRegistered(_) => self.stats.refused_unknown_member += 1,
                ControlError::DeadMember(_) => self.stats.refused_dead_member += 1,
                _ => self.stats.refused_malformed += 1,
            }
        }
        result
    }

    fn handle_inner(
        &mut self,
        now: Instant,
        datagram: &[u8],
        keepalives_only: bool,
    ) -> Result<Option<Vec<u8>>, ControlError> {
        let (header, msg) = decode(&self.policy.key, datagram)?;
        let id = header.sender;
        if !self.policy.members.contains(&id) {
            return Err(ControlError::UnknownMember(id));
        }
        if keepalives_only && !matches!(msg, Message::Keepalive) {
            return Ok(None);
        }
        self.guard.check(&header)?;
        match msg {
            Message::Register {
                group,
                data_addr,
                ack_addr,
                incarnation,
            } => {
                if group != self.policy.name {
                    return Err(ControlError::WrongGroup(group));
                }
                self.register(now, id, data_addr, ack_addr, incarnation)?;
            }
            Message::Keepalive => {
                let Some(m) = self.members.iter_mut().find(|m| m.id == id) else {
                    return Err(ControlError::NotRegistered(id));
                };
                if !m.alive {
                    // Tell it the group moved on; no lease.
                    return Ok(Some(self.reply(header.counter, Duration::ZERO)));
                }
                m.last_heard = now;
            }
            Message::FailureReport { suspect } => {
                self.stats.failure_reports += 1;
                self.failure_report(now, id, suspect);
                return Ok(None);
            }
            Message::Ready { member } => {
                // Only the primary of the current view knows who caught up.
                if self.view.primary() == Some(id) && header.epoch == self.view.epoch {
                    self.admit(member);
                }
                return Ok(None);
            }
            Message::Resign { stay } => {
                let Some(m) = self.members.iter_mut().find(|m| m.id == id) else {
                    return Err(ControlError::NotRegistered(id));
                };
                if m.alive {
                    m.last_heard = now;
                    // A resignation sent under an older view is stale: the
                    // member may have been given a new role since.
                    if header.epoch == self.view.epoch {
                        self.resign(id, stay);
                    }
                }
                // No lease: a resigning member has promised not to send.
                return Ok(Some(self.reply(header.counter, Duration::ZERO)));
            }
            Message::Holds { connections } => {
                // Only members that may hold connections: live or catching up.
                if self.view.is_alive(id) || self.view.is_joining(id) {
                    self.lookup.answered(connections);
                }
                return Ok(None);
            }
            Message::Reply { .. } => return Err(ControlError::Unexpected),
        }
        let Some(m) = self.members.iter_mut().find(|m| m.id == id) else {
            return Ok(None);
        };
        if m.condemned {
            return Ok(None); // no answer, so no lease renewal
        }
        if !m.alive && !m.joining && self.view.epoch > 0 {
            // Tell it the group moved on; no lease.
            return Ok(Some(self.reply(header.counter, Duration::ZERO)));
        }
        // Counters only grow, and a process's first value is its stamp:
        // this is the newer process, which must not act as the old one (a
        // last member cannot be condemned, so this is what fences it).
        if m.successor.is_some_and(|s| header.counter >= s) {
            return Ok(Some(self.reply(header.counter, Duration::ZERO)));
        }
        m.last_answered = now;
        Ok(Some(self.reply(header.counter, self.policy.lease)))
    }

    fn register(
        &mut self,
        now: Instant,
        id: u8,
        data_addr: SocketAddr,
        ack_addr: SocketAddr,
        incarnation: u64,
    ) -> Result<(), ControlError> {
        if let Some(m) = self.members.iter_mut().find(|m| m.id == id) {
            let same_process = m.incarnation == incarnation;
            if !same_process {
                if m.alive {
                    m.successor = Some(m.successor.map_or(incarnation, |s| s.max(incarnation)));
                    // Restarted before we noticed it was gone: the old
                    // process and its state are lost. It is dead once its
                    // lease ran out; its next registration then rejoins.
                    if !m.condemned {
                        tracing::warn!(group = %self.policy.name, member = id, "member restarted");
                        self.condemn(now, id);
                    }
                    return Ok(());
                }
                m.incarnation = incarnation;
                m.successor = None;
                if m.joining {
                    // Restarted while catching up: start the transfer over
                    // (a new view makes the primary forget what it sent).
                    m.last_heard = now;
                    self.publish();
                    return Ok(());
                }
            }
            // A repeated registration (its answer was lost) refreshes it.
            m.last_heard = now;
            m.data_addr = data_addr;
            m.ack_addr = ack_addr;
            if !m.alive && !m.joining && self.view.epoch > 0 {
                if same_process {
                    // The process the group declared dead (paused, or cut
                    // off): what it holds is stale. The answer shows it
                    // dead, and it stops; restarted, it rejoins.
                    return Ok(());
                }
                // Dead and back (a restarted process): it must catch up
                // through a state transfer before it counts.
                if self.view.primary().is_none() {
                    return Err(ControlError::DeadMember(id));
                }
                tracing::info!(group = %self.policy.name, member = id, "member rejoining: state transfer");
                m.joining = true;
                self.order_members();
                self.publish();
            }
            return Ok(());
        }
        // A member never seen joins a running group the same way.
        let joining = self.view.epoch > 0;
        tracing::info!(group = %self.policy.name, member = id, %data_addr, %ack_addr, joining, "member registered");
        self.members.push(Member {
            id,
            data_addr,
            ack_addr,
            incarnation,
            alive: !joining,
            joining,
            last_heard: now,
            last_answered: now,
            condemned: false,
            successor: None,
            reported_at: None,
        });
        if joining {
            self.order_members();
            self.publish();
            return Ok(());
        }
        let registered = self.members.iter().filter(|m| m.alive).count();
        if registered >= self.policy.min_members {
            if self.view.epoch == 0 {
                // The first view lists members by id; later ones keep the primary first.
                self.members.sort_by_key(|m| m.id);
            }
            self.publish();
        }
        Ok(())
    }

    fn failure_report(&mut self, now: Instant, reporter: u8, suspect: u8) {
        let primary = self.view.primary();
        if primary == Some(reporter) && self.view.is_joining(suspect) {
            // The primary feeds a joining member its state: when it says
            // the member confirms nothing, the transfer cannot finish.
            // Dropped as a silent one is; restarted, it joins again.
            if let Some(m) = self
                .members
                .iter_mut()
                .find(|m| m.id == suspect && m.joining)
            {
                tracing::warn!(group = %self.policy.name, member = suspect, "joining member stalled: dropped on the primary's report");
                m.joining = false;
                self.order_members();
                self.publish();
            }
            return;
        }
        if !self.view.is_alive(reporter) || !self.view.is_alive(suspect) {
            return;
        }
        let Some(m) = self.members.iter().find(|m| m.id == suspect) else {
            return;
        };
        let silent = now.saturating_since(m.last_heard);
        // The primary's word about a backup is enough (it cannot gate without
        // it); a backup's word about the primary needs the primary to be late
        // here too, or a backup cut off from the primary would depose it.
        let believed =
            reporter == primary.unwrap_or(0) || silent >= self.policy.heartbeat.saturating_mul(3);
        if believed {
            tracing::warn!(group = %self.policy.name, reporter, suspect, silent_ms = silent.total_millis(), "failure report accepted");
            self.condemn(now, suspect);
        } else if let Some(m) = self.members.iter_mut().find(|m| m.id == suspect) {
            // Not late here yet: believed once it is, unless heard first.
            m.reported_at = Some(now);
        }
    }

    /// The report about `m` still stands: nothing heard from it since.
    fn report_stands(m: &Member) -> bool {
        m.reported_at.is_some_and(|r| m.last_heard <= r)
    }

    /// Primary, live backups, members catching up, the dead.
    fn order_members(&mut self) {
        self.members.sort_by_key(|m| (!m.alive, !m.joining));
    }

    /// A joining member caught up: it becomes the last live backup.
    fn admit(&mut self, id: u8) {
        let Some(m) = self.members.iter_mut().find(|m| m.id == id && m.joining) else {
            return;
        };
        m.joining = false;
        m.alive = true;
        tracing::info!(group = %self.policy.name, member = id, "member caught up: live again");
        if Some(id) == self.policy.preferred_primary {
            self.preference_waived = false;
        }
        self.stats.rejoins += 1;
        self.order_members();
        self.publish();
    }

    /// A member gives up its place. It has stopped sending, so unlike a
    /// failure this needs no wait for a lease: the next view goes out now.
    fn resign(&mut self, id: u8, stay: bool) {
        let primary = self.view.primary() == Some(id);
        if stay && !primary {
            return; // a backup staying a backup changes nothing
        }
        let usable = |m: &Member| m.alive && !m.condemned;
        if !self.members.iter().any(|m| usable(m) && m.id != id) {
            tracing::warn!(group = %self.policy.name, member = id, "resignation refused: no other live member to take over");
            return;
        }
        let Some(at) = self.members.iter().position(|m| m.id == id) else {
            return;
        };
        if Some(id) == self.policy.preferred_primary && stay {
            self.preference_waived = true;
        }
        let mut m = self.members.remove(at);
        // Live members that can serve first (one of them becomes primary),
        // then those awaiting their declared death, the joining, the dead.
        self.members
            .sort_by_key(|m| (!m.alive, m.condemned, !m.joining));
        // A handover goes to the preferred primary when it can serve.
        if let Some(p) = self
            .members
            .iter()
            .position(|m| Some(m.id) == self.policy.preferred_primary && usable(m))
        {
            let preferred = self.members.remove(p);
            self.members.insert(0, preferred);
        }
        if stay {
            let after = self.members.iter().filter(|m| usable(m)).count();
            self.members.insert(after, m);
        } else {
            m.alive = false;
            m.condemned = false;
            self.members.push(m);
        }
        tracing::info!(group = %self.policy.name, member = id, primary, stay, "member resigned");
        self.stats.resignations += 1;
        self.publish();
    }

    fn condemn(&mut self, now: Instant, id: u8) {
        // The last live member is never declared dead: a silent lone
        // survivor may come back, and a group with no member serves nobody.
        let others_alive = self
            .members
            .iter()
            .any(|m| m.alive && !m.condemned && m.id != id);
        if !others_alive {
            return;
        }
        let lease = self.policy.lease;
        let Some(m) = self
            .members
            .iter_mut()
            .find(|m| m.id == id && m.alive && !m.condemned)
        else {
            return;
        };
        m.condemned = true;
        // It may send until its last answered keepalive's lease runs out; the
        // keepalive was sent before we answered it, so this bound is safe.
        let due = (m.last_answered + lease).max(now);
        self.change_at = Some(self.change_at.map_or(due, |t| t.max(due)));
    }

    /// Time has passed: declare silent members dead, drop silent joining
    /// members, and publish the next view once the condemned members'
    /// leases have run out.
    pub fn handle_timeout(&mut self, now: Instant) {
        let timeout = self.policy.keepalive_timeout;
        let late: Vec<u8> = self
            .members
            .iter()
            .filter(|m| m.alive && !m.condemned && now.saturating_since(m.last_heard) >= timeout)
            .map(|m| m.id)
            .collect();
        for id in late {
            tracing::warn!(group = %self.policy.name, member = id, "keepalives missed");
            self.condemn(now, id);
        }
        let confirmed = self.policy.heartbeat.saturating_mul(3);
        let reported: Vec<u8> = self
            .members
            .iter()
            .filter(|m| m.alive && !m.condemned && Self::report_stands(m))
            .filter(|m| now.saturating_since(m.last_heard) >= confirmed)
            .map(|m| m.id)
            .collect();
        for id in reported {
            tracing::warn!(group = %self.policy.name, member = id, "reported member silent here too");
            self.condemn(now, id);
        }
        // A joining member sends nothing to clients: no lease to wait for.
        let mut gave_up = false;
        for m in self
            .members
            .iter_mut()
            .filter(|m| m.joining && now.saturating_since(m.last_heard) >= timeout)
        {
            tracing::warn!(group = %self.policy.name, member = m.id, "joining member went silent");
            m.joining = false;
            gave_up = true;
        }
        if gave_up {
            self.order_members();
            self.publish();
        }
        if self.change_at.is_some_and(|t| now >= t) {
            self.change_at = None;
            for m in self.members.iter_mut().filter(|m| m.condemned) {
                m.condemned = false;
                m.alive = false;
            }
            // Dead members go last; the live keep their order.
            self.order_members();
            self.publish();
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let watched: Vec<&Member> = self
            .members
            .iter()
            .filter(|m| m.alive && !m.condemned)
            .collect();
        let joining = self
            .members
            .iter()
            .filter(|m| m.joining)
            .map(|m| m.last_heard + self.policy.keepalive_timeout)
            .min();
        // A lone live member is never condemned: no deadline for it (a
        // deadline that never moves would make the caller spin).
        let confirmed = self.policy.heartbeat.saturating_mul(3);
        let next_silence = (watched.len() > 1)
            .then(|| {
                watched
                    .iter()
                    .map(|m| {
                        if Self::report_stands(m) {
                            m.last_heard + confirmed.min(self.policy.keepalive_timeout)
                        } else {
                            m.last_heard + self.policy.keepalive_timeout
                        }
                    })
                    .min()
            })
            .flatten();
        [next_silence, self.change_at, joining]
            .into_iter()
            .flatten()
            .min()
    }

    /// The newest view with each member's incarnation, in view order: what
    /// a restarted redirector needs to carry on (see [`restore`](Self::restore)).
    pub fn saved(&self) -> (u64, Vec<SavedMember>) {
        let members = self
            .members
            .iter()
            .map(|m| SavedMember {
                id: m.id,
                alive: m.alive,
                joining: m.joining,
                data_addr: m.data_addr,
                ack_addr: m.ack_addr,
                incarnation: m.incarnation,
            })
            .collect();
        (self.view.epoch, members)
    }

    /// Restart the frame counter from the wall clock, never downwards. A
    /// redirector that takes the authority over from another must send
    /// above every counter the other sent, and the other's counter started
    /// from its own clock, perhaps after ours.
    pub fn restart_counter(&mut self) {
        let fresh = Counter::from_clock();
        if fresh.last() > self.counter.last() {
            self.counter = fresh;
        }
    }

    /// Carry on from a saved view after a restart: the same epoch and
    /// members, so the replicas see no change and the primary keeps its
    /// role. Every member gets a keepalive timeout from `now` to show up.
    /// Members of other groups' ids are dropped.
    pub fn restore(&mut self, now: Instant, epoch: u64, saved: &[SavedMember]) {
        self.members = saved
            .iter()
            .filter(|m| self.policy.members.contains(&m.id))
            .map(|m| Member {
                id: m.id,
                data_addr: m.data_addr,
                ack_addr: m.ack_addr,
                incarnation: m.incarnation,
                alive: m.alive,
                joining: m.joining,
                last_heard: now,
                // No answer from us yet: any lease it holds is the old
                // process's; counting from now only waits longer.
                last_answered: now,
                condemned: false,
                successor: None,
                reported_at: None,
            })
            .collect();
        self.change_at = None;
        self.view = self.view_of(epoch);
        tracing::info!(group = %self.policy.name, epoch, primary = ?self.view.primary(), "view restored");
    }

    /// Carry on after a pause in which this authority read nothing from
    /// its members (its redirector did not act for a while, its role kept):
    /// silence it could not hear is no evidence, so every member gets a
    /// keepalive timeout from `now` to show up, as after
    /// [`restore`](Self::restore), and reports from before the pause no
    /// longer stand. The view and the members' leases are kept.
    pub fn resume(&mut self, now: Instant) {
        for m in &mut self.members {
            m.last_heard = now;
            m.reported_at = None;
        }
    }

    fn view_of(&self, epoch: u64) -> View {
        View {
            epoch,
            preferred: self
                .policy
                .preferred_primary
                .filter(|_| !self.preference_waived),
            members: self
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

    fn publish(&mut self) {
        self.view = self.view_of(self.view.epoch + 1);
        self.stats.view_changes += 1;
        tracing::info!(
            group = %self.policy.name,
            epoch = self.view.epoch,
            primary = ?self.view.primary(),
            members = ?self.view.members.iter().map(|m| (m.id, m.alive)).collect::<Vec<_>>(),
            "new view"
        );
    }

    fn reply(&mut self, echo: u64, lease: Duration) -> Vec<u8> {
        let counter = self.counter.next_value();
        let msg = Message::Reply {
            echo,
            lease,
            view: self.view.clone(),
            questions: self.lookup.next_batch(),
        };
        encode(&self.policy.key, AUTHORITY, self.view.epoch, counter, &msg)
    }
}
