//! A model of one redirector's coordination agent
//! (`redirector::coordination::agent`), driven by the virtual clock and
//! the simulated store: it reads the authority key and campaigns only when
//! it is free, renews its lease every third of it, checks the key is still
//! the one it created, writes each new view fenced by that key's
//! `create_revision` and compare-and-swapped on the view key's
//! `mod_revision`, and steps down (revoking its lease) when it lost the
//! authority or a write was refused. The forwarding loop acts only while
//! the lease surely holds, less a margin, counted from when the renewal
//! that extended it was sent. One request at a time, each given up after a
//! timeout, as the real agent's blocking client does.
//!
//! With a heartbeat (`Agent::with_heartbeat`), the authority writes the
//! heartbeat key every interval and acts only until a few intervals after
//! sending the last one the store took, and a standby finding the role
//! held reads the heartbeat key too and revokes the holder's lease once it
//! has stopped (see `heartbeat`). Between the margin and the deadline the
//! loop answers keepalives only (`Agent::answering`).
//!
//! This is a model of the agent's rules, not the agent's code: the real
//! agent talks HTTP to etcd on a thread of its own.

use super::config::{CoordinationBug, SimConfig};
use super::heartbeat::{Beat, Watch, ACTING_BEATS};
use super::store::{Request, Response, StoreNet, StoredView};
use super::us;

/// The store's lease.
pub(super) const STORE_TTL: u64 = us(150);
/// The loop stops acting this long before the lease surely ends.
const MARGIN: u64 = us(20);
/// Past the margin, the loop still answers keepalives until this long
/// before the deadline (the real loop's 20 ms against its 100 ms margin).
const ANSWER_MARGIN: u64 = us(4);
/// The acting agent's pause between turns with nothing to write.
const TICK: u64 = us(20);
/// The acting agent's pause between turns with a write to retry.
const WRITE_RETRY: u64 = us(2);
/// A standby reads the authority key this often.
const CAMPAIGN_PERIOD: u64 = us(20);
/// A request unanswered this long failed (connectivity).
const REQUEST_TIMEOUT: u64 = us(10);

/// What the agent tells the forwarding loop.
#[derive(Debug, Clone)]
pub(super) enum Event {
    /// We are the authority: carry on from this view (None: the store holds
    /// none) before changing any.
    Elected(Option<StoredView>),
    /// We stopped acting.
    Lost(String),
    /// As a standby, we revoked the lease of redirector `.0`: its
    /// heartbeat had stopped.
    Deposed(usize),
}

#[derive(Debug, Clone, Copy)]
struct Held {
    lease: i64,
    token: i64,
    /// The lease surely holds until then.
    deadline: u64,
    /// When the last heartbeat the store took was sent (the win counts as
    /// one).
    beat_sent: u64,
}

/// Why a turn failed.
#[derive(Debug)]
enum Fail {
    /// The store did not answer: the authority holds while its lease does.
    Unreachable,
    /// The authority is gone, or a view write was refused: step down.
    Lost(String),
}

/// The answer the agent waits for, and what it was asked for.
#[derive(Debug)]
enum Awaiting {
    CampaignGet,
    Grant {
        sent: u64,
    },
    Claim {
        sent: u64,
        lease: i64,
        ttl: u64,
    },
    RevokeUnused {
        outcome: Result<(), ()>,
    },
    Load,
    LoadFailedRevoke,
    KeepAlive {
        sent: u64,
    },
    CheckKey,
    /// A standby's read of the heartbeat key, the role held by `holder`
    /// under `lease`.
    ReadBeat {
        holder: usize,
        lease: i64,
    },
    /// A standby's revocation of a silent holder's lease.
    Depose {
        holder: usize,
    },
    Beat {
        sent: u64,
    },
    Write {
        view: StoredView,
    },
    Resign,
}

/// One redirector's agent.
pub(super) struct Agent {
    id: usize,
    bug: Option<CoordinationBug>,
    acting: bool,
    held: Option<Held>,
    /// When the last renewal completed.
    renewed: u64,
    /// The request in flight: its id, when it is given up, what it was.
    awaiting: Option<(u64, u64, Awaiting)>,
    next_turn: u64,
    /// The newest view not yet written.
    pending: Option<StoredView>,
    /// The view as last read or written, with its `mod_revision`.
    known: (Option<StoredView>, i64),
    /// The newest epoch the store holds as we wrote or read it.
    persisted: u64,
    /// While acting, until when the lease surely holds (what the loop sees).
    acting_until: Option<u64>,
    events: Vec<Event>,
    /// Times this agent won the authority.
    pub(super) elections: u64,
    /// View writes that failed.
    pub(super) save_errors: u64,
    /// The heartbeat's interval (None: no heartbeat).
    heartbeat: Option<u64>,
    /// When the last heartbeat was sent.
    beaten: u64,
    /// As a standby, the watch over the authority's heartbeat.
    watch: Watch,
}

impl Agent {
    /// The agent of redirector `id`; it campaigns at once.
    pub(super) fn new(id: usize, bug: Option<CoordinationBug>) -> Agent {
        Agent {
            id,
            bug,
            acting: false,
            held: None,
            renewed: 0,
            awaiting: None,
            next_turn: 0,
            pending: None,
            known: (None, 0),
            persisted: 0,
            acting_until: None,
            events: Vec::new(),
            elections: 0,
            save_errors: 0,
            heartbeat: None,
            beaten: 0,
            watch: Watch::default(),
        }
    }

    /// The agent of redirector `id` in a run of `cfg` (its bug and
    /// heartbeat).
    pub(super) fn for_run(id: usize, cfg: &SimConfig) -> Agent {
        Agent::new(id, cfg.inject_coordination).with_heartbeat(cfg.heartbeat_ms.map(us))
    }

    /// As the authority, write a heartbeat every `interval` microseconds
    /// and act only while they get through; as a standby, revoke an
    /// authority whose heartbeat stopped.
    pub(super) fn with_heartbeat(mut self, interval: Option<u64>) -> Agent {
        self.heartbeat = interval.filter(|i| *i > 0);
        self
    }

    fn margin(&self) -> u64 {
        match self.bug {
            Some(CoordinationBug::LeaseFromReply) => 0,
            _ => MARGIN,
        }
    }

    fn answer_margin(&self) -> u64 {
        match self.bug {
            Some(CoordinationBug::LeaseFromReply) => 0,
            _ => ANSWER_MARGIN,
        }
    }

    /// The forwarding loop may change views and answer members now.
    pub(super) fn acting(&self, now: u64) -> bool {
        self.acting_until.is_some_and(|u| now + self.margin() < u)
    }

    /// The role surely holds, margin or not: the loop may answer
    /// keepalives with the view it has, but change nothing unless
    /// [`Agent::acting`].
    pub(super) fn answering(&self, now: u64) -> bool {
        self.acting_until
            .is_some_and(|u| now + self.answer_margin() < u)
    }

    /// The newest epoch a reply may carry: the newest the store holds.
    pub(super) fn announce_limit(&self) -> u64 {
        match self.bug {
            Some(CoordinationBug::NoAnnounceLimit) => u64::MAX,
            _ => self.persisted,
        }
    }

    /// What happened since the last call.
    pub(super) fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Write this view soon (it replaces one not yet written).
    pub(super) fn save(&mut self, now: u64, view: StoredView) {
        self.pending = Some(view);
        if self.awaiting.is_none() {
            self.next_turn = self.next_turn.min(now);
        }
    }

    /// When [`Agent::poll`] next has something to do.
    pub(super) fn next_deadline(&self, now: u64) -> Option<u64> {
        let turn = match &self.awaiting {
            Some((_, timeout, _)) => *timeout,
            None => self.next_turn,
        };
        // The loop stops acting, then answering, without a turn of the
        // agent.
        let stop = [self.margin(), self.answer_margin()]
            .into_iter()
            .filter_map(|m| self.acting_until.map(|u| u.saturating_sub(m)))
            .filter(|s| *s > now)
            .min();
        Some(stop.map_or(turn, |s| s.min(turn)))
    }

    /// Time has passed: give up an unanswered request, or start a turn.
    pub(super) fn poll(&mut self, now: u64, net: &mut StoreNet) {
        if self
            .awaiting
            .as_ref()
            .is_some_and(|(_, timeout, _)| now >= *timeout)
        {
            let (_, _, awaiting) = self.awaiting.take().expect("checked");
            self.handle(now, net, awaiting, None);
        }
        if self.awaiting.is_none() && now >= self.next_turn {
            if !self.acting {
                self.request(now, net, Request::GetAuthority, Awaiting::CampaignGet);
            } else if now.saturating_sub(self.renewed) >= STORE_TTL / 3 {
                self.request(
                    now,
                    net,
                    Request::KeepAlive(self.lease()),
                    Awaiting::KeepAlive { sent: now },
                );
            } else {
                self.beat_or_write(now, net);
            }
        }
    }

    /// An answer from the store (ignored unless it is the one awaited).
    pub(super) fn on_response(&mut self, now: u64, net: &mut StoreNet, id: u64, resp: Response) {
        if self.awaiting.as_ref().is_some_and(|(i, _, _)| *i == id) {
            let (_, _, awaiting) = self.awaiting.take().expect("checked");
            self.handle(now, net, awaiting, Some(resp));
        }
    }

    fn lease(&self) -> i64 {
        self.held.map_or(0, |h| h.lease)
    }

    fn request(&mut self, now: u64, net: &mut StoreNet, req: Request, awaiting: Awaiting) {
        let id = net.send(now, self.id, req);
        self.awaiting = Some((id, now + REQUEST_TIMEOUT, awaiting));
    }

    /// Until when the authority may act: while the lease surely holds
    /// and, with a heartbeat, [`ACTING_BEATS`] intervals after sending the
    /// last one the store took.
    fn acting_deadline(&self, h: &Held) -> u64 {
        match self.heartbeat {
            Some(_) if self.bug == Some(CoordinationBug::NoBeatDeadline) => h.deadline,
            Some(i) => h.deadline.min(h.beat_sent + i * ACTING_BEATS),
            None => h.deadline,
        }
    }

    fn is_authority(&self, now: u64) -> bool {
        self.held.is_some_and(|h| now < self.acting_deadline(&h))
    }

    /// The lease's deadline: counted from when the request that granted or
    /// renewed it was sent (the store counts from its arrival, later).
    fn deadline(&self, now: u64, sent: u64, ttl: u64) -> u64 {
        match self.bug {
            Some(CoordinationBug::LeaseFromReply) => now + ttl,
            _ => sent + ttl,
        }
    }

    fn handle(&mut self, now: u64, net: &mut StoreNet, awaiting: Awaiting, resp: Option<Response>) {
        match (awaiting, resp) {
            (Awaiting::CampaignGet, Some(Response::Authority(Some(k)))) => {
                if self.heartbeat.is_some() {
                    let awaiting = Awaiting::ReadBeat {
                        holder: k.holder,
                        lease: k.lease,
                    };
                    self.request(now, net, Request::GetHeartbeat, awaiting);
                } else {
                    self.end(now, net, Ok(()))
                }
            }
            (Awaiting::ReadBeat { holder, lease }, Some(Response::Heartbeat(key))) => {
                // Only a heartbeat written under the holder's lease speaks
                // for it.
                let beat = key.filter(|k| k.lease == lease).map(|k| Beat {
                    revision: k.mod_revision,
                    interval: k.interval,
                });
                if self.watch.silent(now, beat) {
                    self.watch.reset();
                    let awaiting = Awaiting::Depose { holder };
                    self.request(now, net, Request::Revoke(lease), awaiting);
                } else {
                    self.end(now, net, Ok(()));
                }
            }
            (Awaiting::Depose { holder }, Some(Response::Revoked)) => {
                self.events.push(Event::Deposed(holder));
                self.request(now, net, Request::Grant, Awaiting::Grant { sent: now })
            }
            (Awaiting::ReadBeat { .. } | Awaiting::Depose { .. }, None) => {
                self.end(now, net, Err(Fail::Unreachable))
            }
            (Awaiting::CampaignGet, Some(Response::Authority(None))) => {
                self.request(now, net, Request::Grant, Awaiting::Grant { sent: now })
            }
            (Awaiting::Grant { sent }, Some(Response::Granted { lease, ttl })) => self.request(
                now,
                net,
                Request::Claim(lease),
                Awaiting::Claim { sent, lease, ttl },
            ),
            (
                Awaiting::Claim { sent, lease, ttl },
                Some(Response::Claimed {
                    won: true,
                    revision,
                }),
            ) => {
                self.held = Some(Held {
                    lease,
                    token: revision,
                    deadline: self.deadline(now, sent, ttl),
                    beat_sent: sent,
                });
                self.watch.reset();
                self.request(now, net, Request::GetView, Awaiting::Load);
            }
            (Awaiting::Claim { lease, .. }, resp) => {
                // Not ours (or unknown): the lease would only linger.
                let outcome = if resp.is_some() { Ok(()) } else { Err(()) };
                self.request(
                    now,
                    net,
                    Request::Revoke(lease),
                    Awaiting::RevokeUnused { outcome },
                );
            }
            (Awaiting::RevokeUnused { outcome }, _) => {
                self.end(now, net, outcome.map_err(|()| Fail::Unreachable))
            }
            (Awaiting::Load, Some(Response::View(v))) => {
                self.acting = true;
                self.elections += 1;
                self.renewed = now;
                self.pending = None;
                self.persisted = self.persisted.max(v.as_ref().map_or(0, |v| v.0.epoch));
                self.known = match &v {
                    Some((view, rev)) => (Some(view.clone()), *rev),
                    None => (None, 0),
                };
                self.events.push(Event::Elected(v.map(|v| v.0)));
                self.end(now, net, Ok(()));
            }
            (Awaiting::Load, _) => {
                // Acting on a view we could not read could fork it.
                let lease = self.lease();
                self.held = None;
                self.request(now, net, Request::Revoke(lease), Awaiting::LoadFailedRevoke);
            }
            (Awaiting::LoadFailedRevoke, _) => self.end(now, net, Err(Fail::Unreachable)),
            (Awaiting::KeepAlive { .. }, Some(Response::KeptAlive { ttl: 0 })) => {
                self.held = None;
                self.end(now, net, Err(Fail::Lost("its lease expired".into())));
            }
            (Awaiting::KeepAlive { sent }, Some(Response::KeptAlive { ttl })) => {
                let deadline = self.deadline(now, sent, ttl);
                if let Some(h) = &mut self.held {
                    h.deadline = deadline;
                }
                self.request(now, net, Request::GetAuthority, Awaiting::CheckKey);
            }
            (Awaiting::CheckKey, Some(Response::Authority(key))) => {
                let token = self.held.map(|h| h.token);
                if key.is_some_and(|k| Some(k.create_revision) == token) {
                    self.renewed = now;
                    self.beat_or_write(now, net);
                } else {
                    self.held = None;
                    self.end(
                        now,
                        net,
                        Err(Fail::Lost("the authority key is not ours".into())),
                    );
                }
            }
            (Awaiting::Beat { sent }, Some(Response::Beaten { ok: true })) => {
                if let Some(h) = &mut self.held {
                    h.beat_sent = sent;
                }
                self.write_pending(now, net);
            }
            (Awaiting::Beat { .. }, Some(Response::Beaten { ok: false })) => {
                self.held = None;
                let why = "the authority key is no longer ours (its lease was revoked or ran out)";
                self.end(now, net, Err(Fail::Lost(why.into())));
            }
            (Awaiting::Beat { .. }, None) => self.end(now, net, Err(Fail::Unreachable)),
            (Awaiting::KeepAlive { .. } | Awaiting::CheckKey, _) => {
                // The lease alone decides here; the heartbeat's deadline is
                // checked when the turn ends.
                let result = if self.held.is_some_and(|h| now < h.deadline) {
                    Err(Fail::Unreachable)
                } else {
                    self.held = None;
                    Err(Fail::Lost("its lease ran out while renewing failed".into()))
                };
                self.end(now, net, result);
            }
            (
                Awaiting::Write { view },
                Some(Response::Written {
                    ok,
                    revision,
                    authority,
                    view: stored,
                }),
            ) => {
                if ok {
                    self.persisted = self.persisted.max(view.epoch);
                    self.known = (Some(view), revision);
                    return self.end(now, net, Ok(()));
                }
                self.save_errors += 1;
                self.known = match stored {
                    Some((v, rev)) => (Some(v), rev),
                    None => (None, 0),
                };
                let token = self.held.map(|h| h.token);
                let ours = authority.is_some_and(|a| Some(a.create_revision) == token);
                if ours && self.known.0.as_ref() == Some(&view) {
                    // A retry of a write whose answer was lost, and it had landed.
                    self.persisted = self.persisted.max(view.epoch);
                    return self.end(now, net, Ok(()));
                }
                let why = if ours {
                    "the view was changed by someone else"
                } else {
                    "view write fenced off"
                };
                self.end(now, net, Err(Fail::Lost(why.into())));
            }
            (Awaiting::Write { view }, _) => {
                self.save_errors += 1;
                if self.pending.is_none() {
                    self.pending = Some(view);
                }
                self.end(now, net, Err(Fail::Unreachable));
            }
            (Awaiting::Resign, _) => self.schedule(now),
            (awaiting, resp) => {
                // An answer of the wrong kind: the store model never gives one.
                let what = format!("{awaiting:?} answered {resp:?}");
                self.end(now, net, Err(Fail::Lost(what)));
            }
        }
    }

    /// Write the heartbeat if one is due, then the pending view.
    fn beat_or_write(&mut self, now: u64, net: &mut StoreNet) {
        if let (Some(interval), Some(held)) = (self.heartbeat, self.held) {
            if now.saturating_sub(self.beaten) >= interval {
                self.beaten = now;
                let req = Request::Beat {
                    token: held.token,
                    lease: held.lease,
                    interval,
                };
                return self.request(now, net, req, Awaiting::Beat { sent: now });
            }
        }
        self.write_pending(now, net);
    }

    /// Write the pending view, if the authority surely holds.
    fn write_pending(&mut self, now: u64, net: &mut StoreNet) {
        let Some(held) = self.held.filter(|_| self.is_authority(now)) else {
            return self.end(now, net, Ok(()));
        };
        let Some(view) = self.pending.take() else {
            return self.end(now, net, Ok(()));
        };
        if self.known.0.as_ref() == Some(&view) {
            self.persisted = self.persisted.max(view.epoch);
            return self.end(now, net, Ok(()));
        }
        if let Some(stored) = self.known.0.as_ref().filter(|s| s.epoch >= view.epoch) {
            let why = format!("epoch {} offered, {} stored", view.epoch, stored.epoch);
            return self.end(now, net, Err(Fail::Lost(why)));
        }
        let req = Request::Write {
            token: held.token,
            fenced: !matches!(
                self.bug,
                Some(CoordinationBug::NoFence | CoordinationBug::NoCompare)
            ),
            swapped: self.bug != Some(CoordinationBug::NoCompare),
            mod_revision: self.known.1,
            view: view.clone(),
        };
        self.request(now, net, req, Awaiting::Write { view });
    }

    /// The turn is over: step down if the authority is gone, then wait.
    fn end(&mut self, now: u64, net: &mut StoreNet, result: Result<(), Fail>) {
        match result {
            Err(Fail::Lost(why)) => self.step_down(now, net, why),
            Err(Fail::Unreachable) | Ok(()) => {}
        }
        if self.acting && !self.is_authority(now) {
            self.step_down(now, net, "the lease could not be renewed in time".into());
        }
        self.acting_until = self
            .held
            .filter(|_| self.acting)
            .map(|h| self.acting_deadline(&h));
        if self.awaiting.is_none() {
            self.schedule(now);
        }
    }

    fn schedule(&mut self, now: u64) {
        let wait = if self.acting && self.pending.is_none() {
            self.heartbeat.map_or(TICK, |i| i.min(TICK))
        } else if self.acting {
            WRITE_RETRY
        } else {
            CAMPAIGN_PERIOD
        };
        self.next_turn = now + wait;
    }

    /// Stop acting at once, and free the role for a contender that will
    /// read what the store holds.
    fn step_down(&mut self, now: u64, net: &mut StoreNet, why: String) {
        if !self.acting {
            return;
        }
        self.acting = false;
        self.acting_until = None;
        self.pending = None;
        self.events.push(Event::Lost(why));
        if let Some(h) = self.held.take() {
            self.request(now, net, Request::Revoke(h.lease), Awaiting::Resign);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`overlap`] saw.
    struct Overlap {
        /// The most agents whose loops acted at one instant.
        acting: usize,
        /// The most whose loops answered (acting or keepalives only).
        answering: usize,
        /// Elections agent 1 won.
        taken_over: u64,
        /// When agent 1 first acted.
        taken_over_at: Option<u64>,
        /// Leases agent 1 revoked because agent 0's heartbeat stopped.
        depositions: usize,
    }

    /// Two agents on one store; agent 0 acts first, then (with `slow`) its
    /// path to the store slows (replies late, some within the timeout) and,
    /// at 400 ms, is cut.
    fn overlap(
        seed: u64,
        bug: Option<CoordinationBug>,
        heartbeat: Option<u64>,
        slow: bool,
    ) -> Overlap {
        let mut net = StoreNet::new(STORE_TTL, 2, seed);
        let mut agents = [0, 1].map(|id| Agent::new(id, bug).with_heartbeat(heartbeat));
        let mut seen = Overlap {
            acting: 0,
            answering: 0,
            taken_over: 0,
            taken_over_at: None,
            depositions: 0,
        };
        let mut now = 0;
        while now < us(1500) {
            if now == us(300) && slow {
                net.spike(us(1500), us(7), Some(0));
            }
            if now == us(400) {
                net.cut(0, us(1500));
            }
            for (r, id, resp) in net.deliver(now) {
                agents[r].on_response(now, &mut net, id, resp);
            }
            // Agent 1 only campaigns once agent 0 acts, so 0 acts first.
            let started = agents[0].elections > 0;
            for a in agents.iter_mut().take(if started { 2 } else { 1 }) {
                a.poll(now, &mut net);
            }
            let count = |f: fn(&Agent, u64) -> bool| agents.iter().filter(|a| f(a, now)).count();
            seen.acting = seen.acting.max(count(Agent::acting));
            seen.answering = seen.answering.max(count(Agent::answering));
            if agents[1].acting(now) && seen.taken_over_at.is_none() {
                seen.taken_over_at = Some(now);
            }
            now += 50;
        }
        seen.taken_over = agents[1].elections;
        seen.depositions = agents[1]
            .take_events()
            .iter()
            .filter(|e| matches!(e, Event::Deposed(0)))
            .count();
        seen
    }

    #[test]
    fn never_two_acting_at_once_and_the_standby_takes_over() {
        for seed in 1..=200 {
            let seen = overlap(seed, None, None, true);
            assert_eq!(seen.acting, 1, "seed {seed}: two agents acted at once");
            assert_eq!(
                seen.answering, 1,
                "seed {seed}: two agents answered at once"
            );
            assert_eq!(
                seen.taken_over, 1,
                "seed {seed}: the standby did not take over"
            );
            assert_eq!(seen.depositions, 0, "seed {seed}: no heartbeat to go by");
        }
    }

    /// Counting the lease from the renewal's reply, and acting to its end,
    /// lets the deposed agent act on after the store gave the role away.
    #[test]
    fn a_lease_counted_from_the_reply_overlaps_the_next_authority() {
        let caught = (1..=200)
            .filter(|seed| {
                overlap(*seed, Some(CoordinationBug::LeaseFromReply), None, true).acting > 1
            })
            .count();
        assert!(caught > 0, "no seed showed two agents acting at once");
    }

    /// With a heartbeat of 20 ms, the standby revokes the cut-off
    /// authority's lease once its heartbeat stopped, before the lease
    /// (150 ms) would have run out, and the cut-off one has stopped
    /// answering by then.
    #[test]
    fn with_a_heartbeat_the_standby_deposes_a_silent_authority_early() {
        let mut takeovers = Vec::new();
        for seed in 1..=200 {
            let seen = overlap(seed, None, Some(us(20)), false);
            assert_eq!(
                seen.answering, 1,
                "seed {seed}: two agents answered at once"
            );
            assert_eq!(
                seen.taken_over, 1,
                "seed {seed}: the standby did not take over"
            );
            assert_eq!(seen.depositions, 1, "seed {seed}: no heartbeat deposition");
            takeovers.push(seen.taken_over_at.expect("acted") - us(400));
        }
        takeovers.sort_unstable();
        let worst = takeovers[takeovers.len() - 1];
        assert!(
            worst < STORE_TTL,
            "the standby acted up to {worst} us after the cut: not before the lease ran out"
        );
    }

    /// An authority acting until its lease runs out, while the standby
    /// deposes it by its heartbeat, answers after its successor acts.
    #[test]
    fn acting_past_the_heartbeats_deadline_overlaps_the_next_authority() {
        let bug = Some(CoordinationBug::NoBeatDeadline);
        let caught = (1..=200)
            .filter(|seed| overlap(*seed, bug, Some(us(20)), false).answering > 1)
            .count();
        assert!(caught > 0, "no seed showed two agents answering at once");
    }
}
