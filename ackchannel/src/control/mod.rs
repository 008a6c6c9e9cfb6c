//! Control messages between replicas and the redirector, the group's
//! registrar and view authority (DESIGN rules 5 and 6).
//!
//! A replica ([`MemberAgent`]) registers with its data and ack-channel
//! addresses, then sends a keepalive every heartbeat. The redirector
//! ([`ViewAuthority`]) answers each one with the current view and echoes
//! the keepalive's counter; the answer renews the replica's *lease*: a
//! primary may send to clients only until `sent_at(keepalive) + lease`. The
//! authority declares a member dead when its keepalives stop (or when the
//! primary reports a backup, or a backup reports a primary whose keepalives
//! are already late), stops answering it, and publishes the next view only
//! once the dead member's lease has certainly run out: one writer per epoch.
//!
//! Both sides are sans-IO: datagrams and time in, datagrams and deadlines out.

use std::collections::VecDeque;
use std::net::SocketAddrV4;

use hydra_base::{Duration, Instant};

use crate::auth::{
    self, put_addr, AuthError, Counter, GroupKey, Header, Malformed, Reader, ReplayGuard,
};
use crate::replication::{MemberId, ReplicationView};

const DOMAIN: &[u8] = b"hydra control v1";
/// Sender id the redirector uses in its frames (member ids start at 1).
pub const AUTHORITY: u8 = 0;
/// Largest group we describe in one datagram.
pub const MAX_MEMBERS: usize = 32;

const KIND_REGISTER: u8 = 1;
const KIND_KEEPALIVE: u8 = 2;
const KIND_FAILURE_REPORT: u8 = 3;
const KIND_REPLY: u8 = 4;
const KIND_RESIGN: u8 = 5;
const KIND_READY: u8 = 6;

const STATUS_DEAD: u8 = 0;
const STATUS_ALIVE: u8 = 1;
const STATUS_JOINING: u8 = 2;

/// One member as the view lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewMember {
    pub id: u8,
    pub alive: bool,
    /// Rejoining: it receives client packets and the primary's state
    /// transfer, but is not a live member until it has caught up.
    pub joining: bool,
    pub data_addr: SocketAddrV4,
    pub ack_addr: SocketAddrV4,
}

/// A group view: epoch and ordered members (primary, live backups, dead last).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    pub epoch: u64,
    pub members: Vec<ViewMember>,
}

impl View {
    pub fn primary(&self) -> Option<u8> {
        self.members.iter().find(|m| m.alive).map(|m| m.id)
    }

    pub fn is_alive(&self, id: u8) -> bool {
        self.members.iter().any(|m| m.id == id && m.alive)
    }

    pub fn live(&self) -> impl Iterator<Item = &ViewMember> {
        self.members.iter().filter(|m| m.alive)
    }

    pub fn is_joining(&self, id: u8) -> bool {
        self.members.iter().any(|m| m.id == id && m.joining)
    }

    /// The part the replication core needs: epoch, live members in order,
    /// and the members catching up.
    pub fn to_replication_view(&self) -> ReplicationView {
        ReplicationView {
            epoch: self.epoch,
            members: self.live().map(|m| MemberId(m.id)).collect(),
            joining: self
                .members
                .iter()
                .filter(|m| m.joining)
                .map(|m| MemberId(m.id))
                .collect(),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.epoch.to_be_bytes());
        let n = self.members.len().min(MAX_MEMBERS);
        out.push(n as u8);
        for m in &self.members[..n] {
            out.push(m.id);
            out.push(if m.alive {
                STATUS_ALIVE
            } else if m.joining {
                STATUS_JOINING
            } else {
                STATUS_DEAD
            });
            put_addr(out, m.data_addr);
            put_addr(out, m.ack_addr);
        }
    }

    fn decode(r: &mut Reader) -> Result<View, Malformed> {
        let epoch = r.u64()?;
        let n = r.u8()? as usize;
        if n > MAX_MEMBERS {
            return Err(Malformed);
        }
        let mut members = Vec::with_capacity(n);
        for _ in 0..n {
            let id = r.u8()?;
            let status = r.u8()?;
            if status > STATUS_JOINING {
                return Err(Malformed);
            }
            members.push(ViewMember {
                id,
                alive: status == STATUS_ALIVE,
                joining: status == STATUS_JOINING,
                data_addr: r.addr()?,
                ack_addr: r.addr()?,
            });
        }
        Ok(View { epoch, members })
    }
}

/// A decoded control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Register {
        group: String,
        data_addr: SocketAddrV4,
        ack_addr: SocketAddrV4,
        /// Differs for each start of the member's process: a registration
        /// with a new one means the old process is gone, state and all.
        incarnation: u64,
    },
    Keepalive,
    FailureReport {
        suspect: u8,
    },
    /// The member has stopped sending to clients and gives up its place:
    /// a primary hands its role to the next live member (staying on as a
    /// backup when `stay`), a backup with `stay == false` leaves the group.
    Resign {
        stay: bool,
    },
    /// From the primary: a joining member holds every connection and may
    /// count in the group from now on.
    Ready {
        member: u8,
    },
    Reply {
        /// Counter of the keepalive or registration being answered.
        echo: u64,
        lease: Duration,
        view: View,
    },
}

/// Why a control datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Malformed(#[from] Malformed),
    #[error("unknown control message kind {0}")]
    Kind(u8),
    #[error("member {0} is not configured in this group")]
    UnknownMember(u8),
    #[error("registration for group {0:?}, but this key belongs to another group")]
    WrongGroup(String),
    #[error("member {0} was declared dead; rejoining needs a state transfer")]
    DeadMember(u8),
    #[error("message from member {0}, which has not registered")]
    NotRegistered(u8),
    #[error("unexpected message")]
    Unexpected,
}

/// Encode `msg` as an authenticated datagram.
pub fn encode(key: &GroupKey, sender: u8, epoch: u64, counter: u64, msg: &Message) -> Vec<u8> {
    let mut body = Vec::new();
    let kind = match msg {
        Message::Register {
            group,
            data_addr,
            ack_addr,
            incarnation,
        } => {
            let name = &group.as_bytes()[..group.len().min(255)];
            body.push(name.len() as u8);
            body.extend_from_slice(name);
            put_addr(&mut body, *data_addr);
            put_addr(&mut body, *ack_addr);
            body.extend_from_slice(&incarnation.to_be_bytes());
            KIND_REGISTER
        }
        Message::Keepalive => KIND_KEEPALIVE,
        Message::FailureReport { suspect } => {
            body.push(*suspect);
            KIND_FAILURE_REPORT
        }
        Message::Resign { stay } => {
            body.push(u8::from(*stay));
            KIND_RESIGN
        }
        Message::Ready { member } => {
            body.push(*member);
            KIND_READY
        }
        Message::Reply { echo, lease, view } => {
            body.extend_from_slice(&echo.to_be_bytes());
            body.extend_from_slice(&(lease.total_millis() as u32).to_be_bytes());
            view.encode(&mut body);
            KIND_REPLY
        }
    };
    let header = Header {
        kind,
        epoch,
        sender,
        counter,
    };
    auth::seal(key, DOMAIN, header, &body)
}

/// Verify and decode a datagram (no replay check: the receiver does that).
pub fn decode(key: &GroupKey, datagram: &[u8]) -> Result<(Header, Message), ControlError> {
    let (header, body) = auth::open(key, DOMAIN, datagram)?;
    let mut r = Reader::new(body);
    let msg = match header.kind {
        KIND_REGISTER => {
            let len = r.u8()? as usize;
            let group = String::from_utf8_lossy(r.take(len)?).into_owned();
            Message::Register {
                group,
                data_addr: r.addr()?,
                ack_addr: r.addr()?,
                incarnation: r.u64()?,
            }
        }
        KIND_KEEPALIVE => Message::Keepalive,
        KIND_FAILURE_REPORT => Message::FailureReport { suspect: r.u8()? },
        KIND_READY => Message::Ready { member: r.u8()? },
        KIND_RESIGN => Message::Resign {
            stay: match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(Malformed.into()),
            },
        },
        KIND_REPLY => Message::Reply {
            echo: r.u64()?,
            lease: Duration::from_millis(u64::from(r.u32()?)),
            view: View::decode(&mut r)?,
        },
        other => return Err(ControlError::Kind(other)),
    };
    if !r.is_empty() {
        return Err(Malformed.into());
    }
    Ok((header, msg))
}

// ---------------------------------------------------------------- member side

/// Keepalives remembered for lease computation.
const SENT_MEMORY: usize = 64;

/// The replica's side of the control protocol.
#[derive(Debug)]
pub struct MemberAgent {
    group: String,
    id: u8,
    key: GroupKey,
    data_addr: SocketAddrV4,
    ack_addr: SocketAddrV4,
    heartbeat: Duration,
    counter: Counter,
    guard: ReplayGuard,
    view: Option<View>,
    /// (counter, send time) of recent keepalives and registrations.
    sent: VecDeque<(u64, Instant)>,
    lease_until: Option<Instant>,
    next_send: Instant,
    outbox: VecDeque<Vec<u8>>,
    reported: Vec<(u64, u8)>,
    removed: bool,
    /// A view listed it live or catching up.
    took_part: bool,
    /// A resignation under way (its `stay` flag) until a view shows it done.
    resigning: Option<bool>,
    /// This process's registrations carry it (the counter's start: it
    /// grows with each restart).
    incarnation: u64,
}

impl MemberAgent {
    pub fn new(
        group: String,
        id: u8,
        key: GroupKey,
        data_addr: SocketAddrV4,
        ack_addr: SocketAddrV4,
        heartbeat: Duration,
    ) -> MemberAgent {
        MemberAgent::with_counter(
            group,
            id,
            key,
            data_addr,
            ack_addr,
            heartbeat,
            Counter::from_clock(),
        )
    }

    pub fn with_counter(
        group: String,
        id: u8,
        key: GroupKey,
        data_addr: SocketAddrV4,
        ack_addr: SocketAddrV4,
        heartbeat: Duration,
        mut counter: Counter,
    ) -> MemberAgent {
        let incarnation = counter.next_value();
        MemberAgent {
            group,
            id,
            key,
            data_addr,
            ack_addr,
            heartbeat,
            counter,
            guard: ReplayGuard::default(),
            view: None,
            sent: VecDeque::new(),
            lease_until: None,
            next_send: Instant::ZERO,
            outbox: VecDeque::new(),
            reported: Vec::new(),
            removed: false,
            took_part: false,
            resigning: None,
            incarnation,
        }
    }

    pub fn view(&self) -> Option<&View> {
        self.view.as_ref()
    }

    /// True once a view lists this member as dead after it had been alive:
    /// the group has moved on without it.
    pub fn removed(&self) -> bool {
        self.removed
    }

    fn admitted(&self) -> bool {
        self.view.as_ref().is_some_and(|v| v.is_alive(self.id))
    }

    /// When the current lease runs out (None: no lease).
    pub fn lease_until(&self) -> Option<Instant> {
        self.lease_until
    }

    /// This member is the primary of the newest view it knows and its lease
    /// (renewed by the authority's answers) has not run out.
    pub fn lease_valid(&self, now: Instant) -> bool {
        let primary = self.view.as_ref().and_then(View::primary) == Some(self.id);
        primary
            && !self.removed
            && self.resigning.is_none()
            && self.lease_until.is_some_and(|t| now < t)
    }

    /// Give up this member's place (see [`Message::Resign`]). From now on
    /// [`lease_valid`](Self::lease_valid) is false, so the caller must
    /// already have stopped sending to clients: the authority publishes the
    /// next view at once, without waiting for a lease to run out. The
    /// request is repeated every heartbeat until a view shows it done.
    pub fn resign(&mut self, now: Instant, stay: bool) {
        if self.removed {
            return;
        }
        self.resigning = Some(stay);
        self.next_send = now;
        self.handle_timeout(now);
    }

    /// Give up a resignation the authority did not act on (it never hands
    /// the role to nobody); the lease is renewed again by keepalives.
    pub fn cancel_resign(&mut self) {
        self.resigning = None;
    }

    pub fn resigning(&self) -> bool {
        self.resigning.is_some()
    }

    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Result<(), ControlError> {
        let (header, msg) = decode(&self.key, datagram)?;
        if header.sender != AUTHORITY {
            return Err(ControlError::Unexpected);
        }
        self.guard.check(&header)?;
        let Message::Reply { echo, lease, view } = msg else {
            return Err(ControlError::Unexpected);
        };
        let known = self.view.as_ref().map_or(0, |v| v.epoch);
        if view.epoch < known {
            return Ok(()); // a late answer from before the current view
        }
        let alive = view.is_alive(self.id);
        let listed = alive || view.is_joining(self.id);
        // Dropped after it took part (live, or catching up): the group moved
        // on without it and what it holds is stale. It may never have seen
        // its own admission (a pause), so catching up counts as taking part.
        if self.took_part && !listed {
            self.removed = true;
        }
        self.took_part |= listed;
        if view.epoch > known {
            // A new view: leases granted under an older one do not carry over.
            self.lease_until = None;
            let done = match self.resigning {
                Some(true) => view.primary() != Some(self.id),
                Some(false) => !alive,
                None => false,
            };
            if done {
                self.resigning = None;
            } else if self.resigning.is_some() {
                // Sent under the older view, it was ignored: send it again.
                self.next_send = now;
            }
        }
        if alive {
            if let Some(&(_, sent_at)) = self.sent.iter().find(|(c, _)| *c == echo) {
                let until = sent_at + lease;
                if self.lease_until.is_none_or(|t| until > t) {
                    self.lease_until = Some(until);
                }
            }
        }
        self.view = Some(view);
        Ok(())
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_send || self.removed {
            return;
        }
        self.next_send = now + self.heartbeat;
        let counter = self.counter.next_value();
        let msg = if let Some(stay) = self.resigning {
            Message::Resign { stay }
        } else if self.admitted() {
            Message::Keepalive
        } else {
            Message::Register {
                group: self.group.clone(),
                data_addr: self.data_addr,
                ack_addr: self.ack_addr,
                incarnation: self.incarnation,
            }
        };
        let epoch = self.view.as_ref().map_or(0, |v| v.epoch);
        self.outbox
            .push_back(encode(&self.key, self.id, epoch, counter, &msg));
        if self.sent.len() == SENT_MEMORY {
            self.sent.pop_front();
        }
        self.sent.push_back((counter, now));
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.removed).then_some(self.next_send)
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }

    /// Primary: tell the authority a joining member has caught up.
    pub fn report_ready(&mut self, member: u8) {
        let epoch = self.view.as_ref().map_or(0, |v| v.epoch);
        let counter = self.counter.next_value();
        let msg = Message::Ready { member };
        self.outbox
            .push_back(encode(&self.key, self.id, epoch, counter, &msg));
    }

    /// Tell the authority a peer looks dead (once per peer and epoch).
    pub fn report_failure(&mut self, _now: Instant, suspect: u8) {
        let epoch = self.view.as_ref().map_or(0, |v| v.epoch);
        if self.reported.contains(&(epoch, suspect)) {
            return;
        }
        if self.reported.len() >= MAX_MEMBERS {
            self.reported.remove(0);
        }
        self.reported.push((epoch, suspect));
        let counter = self.counter.next_value();
        let msg = Message::FailureReport { suspect };
        self.outbox
            .push_back(encode(&self.key, self.id, epoch, counter, &msg));
    }
}

// ------------------------------------------------------------- authority side

/// Settings of one group at the authority.
#[derive(Debug, Clone)]
pub struct GroupPolicy {
    pub name: String,
    pub key: GroupKey,
    /// Member ids allowed to register.
    pub members: Vec<u8>,
    /// No view is formed before this many members registered.
    pub min_members: usize,
    pub keepalive_timeout: Duration,
    pub lease: Duration,
    /// The members' keepalive period; a backup's report about the primary is
    /// believed once the primary has been silent for three of them.
    pub heartbeat: Duration,
}

#[derive(Debug, Clone)]
struct Member {
    id: u8,
    data_addr: SocketAddrV4,
    ack_addr: SocketAddrV4,
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
    pub id: u8,
    pub alive: bool,
    pub joining: bool,
    pub data_addr: SocketAddrV4,
    pub ack_addr: SocketAddrV4,
    pub incarnation: u64,
}

/// Counters the operator sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorityStats {
    pub refused_unauthenticated: u64,
    pub refused_replayed: u64,
    pub refused_unknown_member: u64,
    pub refused_dead_member: u64,
    pub refused_malformed: u64,
    pub view_changes: u64,
    pub failure_reports: u64,
    /// Handovers and leaves done at a member's own request.
    pub resignations: u64,
    /// Members admitted back after catching up.
    pub rejoins: u64,
}

/// The redirector's registrar and view authority for one group.
#[derive(Debug)]
pub struct ViewAuthority {
    policy: GroupPolicy,
    counter: Counter,
    guard: ReplayGuard,
    members: Vec<Member>,
    view: View,
    /// A view change is due at this time (when condemned leases run out).
    change_at: Option<Instant>,
    stats: AuthorityStats,
}

impl ViewAuthority {
    pub fn new(policy: GroupPolicy) -> ViewAuthority {
        ViewAuthority::with_counter(policy, Counter::from_clock())
    }

    pub fn with_counter(policy: GroupPolicy, counter: Counter) -> ViewAuthority {
        ViewAuthority {
            policy,
            counter,
            guard: ReplayGuard::default(),
            members: Vec::new(),
            view: View::default(),
            change_at: None,
            stats: AuthorityStats::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.policy.name
    }

    pub fn view(&self) -> &View {
        &self.view
    }

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
    pub fn live_data_addrs(&self) -> Vec<SocketAddrV4> {
        self.view
            .members
            .iter()
            .filter(|m| m.alive || m.joining)
            .map(|m| m.data_addr)
            .collect()
    }

    /// Would this key have sealed `datagram`? (picks the group of a datagram)
    pub fn accepts_key_of(&self, datagram: &[u8]) -> bool {
        auth::open(&self.policy.key, DOMAIN, datagram).is_ok()
    }

    /// Handle one datagram; returns the answer to send back to its source.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        datagram: &[u8],
    ) -> Result<Option<Vec<u8>>, ControlError> {
        let result = self.handle_inner(now, datagram);
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
    ) -> Result<Option<Vec<u8>>, ControlError> {
        let (header, msg) = decode(&self.policy.key, datagram)?;
        let id = header.sender;
        if !self.policy.members.contains(&id) {
            return Err(ControlError::UnknownMember(id));
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
        data_addr: SocketAddrV4,
        ack_addr: SocketAddrV4,
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
        let mut m = self.members.remove(at);
        // Live members that can serve first (one of them becomes primary),
        // then those awaiting their declared death, the joining, the dead.
        self.members
            .sort_by_key(|m| (!m.alive, m.condemned, !m.joining));
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

    fn view_of(&self, epoch: u64) -> View {
        View {
            epoch,
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
        };
        encode(&self.policy.key, AUTHORITY, self.view.epoch, counter, &msg)
    }
}

#[cfg(test)]
mod tests;
