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
//! This is a model of the agent's rules, not the agent's code: the real
//! agent talks HTTP to etcd on a thread of its own.

use super::config::CoordinationBug;
use super::store::{Request, Response, StoreNet, StoredView};
use super::us;

/// The store's lease.
pub(super) const STORE_TTL: u64 = us(150);
/// The loop stops acting this long before the lease surely ends.
const MARGIN: u64 = us(20);
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
}

#[derive(Debug, Clone, Copy)]
struct Held {
    lease: i64,
    token: i64,
    /// The lease surely holds until then.
    deadline: u64,
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
    Grant { sent: u64 },
    Claim { sent: u64, lease: i64, ttl: u64 },
    RevokeUnused { outcome: Result<(), ()> },
    Load,
    LoadFailedRevoke,
    KeepAlive { sent: u64 },
    CheckKey,
    Write { view: StoredView },
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
        }
    }

    fn margin(&self) -> u64 {
        match self.bug {
            Some(CoordinationBug::LeaseFromReply) => 0,
            _ => MARGIN,
        }
    }

    /// The forwarding loop may change views and answer members now.
    pub(super) fn acting(&self, now: u64) -> bool {
        self.acting_until.is_some_and(|u| now + self.margin() < u)
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
        // The loop stops acting then, without a turn of the agent.
        let stop = self
            .acting_until
            .map(|u| u.saturating_sub(self.margin()))
            .filter(|s| *s > now);
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
                self.write_pending(now, net);
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

    fn is_authority(&self, now: u64) -> bool {
        self.held.is_some_and(|h| now < h.deadline)
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
            (Awaiting::CampaignGet, Some(Response::Authority(Some(_)))) => {
                self.end(now, net, Ok(()))
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
                });
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
                    self.write_pending(now, net);
                } else {
                    self.held = None;
                    self.end(
                        now,
                        net,
                        Err(Fail::Lost("the authority key is not ours".into())),
                    );
                }
            }
            (Awaiting::KeepAlive { .. } | Awaiting::CheckKey, _) => {
                let result = if self.is_authority(now) {
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
        self.acting_until = self.held.filter(|_| self.acting).map(|h| h.deadline);
        if self.awaiting.is_none() {
            self.schedule(now);
        }
    }

    fn schedule(&mut self, now: u64) {
        let wait = if self.acting && self.pending.is_none() {
            TICK
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

    /// Two agents on one store; agent 0 acts first, then its path to the
    /// store slows (replies late but within the timeout) and is cut. The
    /// most agents whose loops act at one instant, and the elections won.
    fn overlap(seed: u64, bug: Option<CoordinationBug>) -> (usize, u64) {
        let mut net = StoreNet::new(STORE_TTL, 2, seed);
        let mut agents = [Agent::new(0, bug), Agent::new(1, bug)];
        let mut most = 0;
        let mut now = 0;
        while now < us(1500) {
            if now == us(300) {
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
            most = most.max(agents.iter().filter(|a| a.acting(now)).count());
            now += 50;
        }
        (most, agents[1].elections)
    }

    #[test]
    fn never_two_acting_at_once_and_the_standby_takes_over() {
        for seed in 1..=200 {
            let (most, taken_over) = overlap(seed, None);
            assert_eq!(most, 1, "seed {seed}: two agents acted at once");
            assert_eq!(taken_over, 1, "seed {seed}: the standby did not take over");
        }
    }

    /// Counting the lease from the renewal's reply, and acting to its end,
    /// lets the deposed agent act on after the store gave the role away.
    #[test]
    fn a_lease_counted_from_the_reply_overlaps_the_next_authority() {
        let caught = (1..=200)
            .filter(|seed| overlap(*seed, Some(CoordinationBug::LeaseFromReply)).0 > 1)
            .count();
        assert!(caught > 0, "no seed showed two agents acting at once");
    }
}
