//! The replica's side of the control protocol: registration, keepalives,
//! the lease they renew, failure reports and resignation.

use std::collections::VecDeque;
use std::net::SocketAddr;

use hydra_base::{ConnKey, Duration, Instant};

use super::messages::{decode, encode, Message, MAX_KEYS_PER_MESSAGE};
use super::{ControlError, View, AUTHORITY, MAX_MEMBERS};
use crate::auth::{Counter, GroupKey, ReplayGuard};

/// Keepalives remembered for lease computation.
const SENT_MEMORY: usize = 64;
/// Questions about held connections kept until the replica takes them.
const MAX_QUESTIONS_KEPT: usize = 4 * MAX_KEYS_PER_MESSAGE;

/// The replica's side of the control protocol, sans IO: it registers
/// with the authority, sends a keepalive every heartbeat, and keeps the
/// newest view and the lease the answers grant. A primary may send to
/// clients only while [`lease_valid`](Self::lease_valid) holds.
#[derive(Debug)]
pub struct MemberAgent {
    group: String,
    pub(super) id: u8,
    key: GroupKey,
    data_addr: SocketAddr,
    ack_addr: SocketAddr,
    heartbeat: Duration,
    pub(super) counter: Counter,
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
    pub(super) incarnation: u64,
    /// Connections the authority asked about, not yet taken.
    questions: Vec<ConnKey>,
}

impl MemberAgent {
    /// A replica's agent; its frame counter (and so its incarnation) starts at
    /// the wall clock.
    pub fn new(
        group: String,
        id: u8,
        key: GroupKey,
        data_addr: SocketAddr,
        ack_addr: SocketAddr,
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

    /// An agent whose counter starts at `counter` (deterministic simulation);
    /// its first value is the incarnation.
    pub fn with_counter(
        group: String,
        id: u8,
        key: GroupKey,
        data_addr: SocketAddr,
        ack_addr: SocketAddr,
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
            questions: Vec::new(),
        }
    }

    /// The newest view the authority sent, if any.
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

    /// A resignation is under way.
    pub fn resigning(&self) -> bool {
        self.resigning.is_some()
    }

    /// Take a datagram from the authority: a reply carrying the current view
    /// and, for a live member, a lease counted from when the echoed keepalive
    /// was sent. Adopts newer views (a new epoch voids the old lease), notes
    /// when the group has dropped this member, and finishes a resignation the
    /// view shows done. Anything not from the authority, replayed, or not a
    /// reply is refused.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Result<(), ControlError> {
        let (header, msg) = decode(&self.key, datagram)?;
        if header.sender != AUTHORITY {
            return Err(ControlError::Unexpected);
        }
        self.guard.check(&header)?;
        let Message::Reply {
            echo,
            lease,
            view,
            questions,
        } = msg
        else {
            return Err(ControlError::Unexpected);
        };
        for q in questions {
            if self.questions.len() < MAX_QUESTIONS_KEPT && !self.questions.contains(&q) {
                self.questions.push(q);
            }
        }
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

    /// Time has passed: every heartbeat, queue a registration (until a view
    /// lists this member live), a keepalive, or a resignation under way.
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

    /// When [`handle_timeout`](Self::handle_timeout) next sends (none once removed).
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.removed).then_some(self.next_send)
    }

    /// The next datagram for the authority.
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

    /// Connections the authority asked about since the last call: the
    /// replica answers with [`report_holds`](Self::report_holds) for those
    /// it holds.
    pub fn take_questions(&mut self) -> Vec<ConnKey> {
        std::mem::take(&mut self.questions)
    }

    /// Tell the authority this member holds `connections` (sent at once,
    /// a few per datagram).
    pub fn report_holds(&mut self, connections: &[ConnKey]) {
        let epoch = self.view.as_ref().map_or(0, |v| v.epoch);
        for chunk in connections.chunks(MAX_KEYS_PER_MESSAGE) {
            let counter = self.counter.next_value();
            let msg = Message::Holds {
                connections: chunk.to_vec(),
            };
            self.outbox
                .push_back(encode(&self.key, self.id, epoch, counter, &msg));
        }
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
