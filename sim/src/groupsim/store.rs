//! The simulated coordination store (a model of etcd as the redirectors
//! use it: one revision counter, leases, the authority key and its
//! heartbeat key, a group's view key, transactions comparing
//! `create_revision` and `mod_revision`), and
//! the network between it and the redirectors: seeded latency, latency
//! spikes, and partitions that lose requests and replies. The store is
//! linearizable: each request is applied whole when it arrives, in arrival
//! order, on the virtual clock.

use std::collections::BTreeMap;

use ackchannel::control::SavedMember;

use crate::simnet::Rng;

/// A group's view as the store holds it (the state file's encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StoredView {
    pub(super) epoch: u64,
    pub(super) members: Vec<SavedMember>,
}

/// The authority key: who holds it, the revision that created it (the
/// fencing token) and the lease it is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AuthorityKey {
    pub(super) holder: usize,
    pub(super) create_revision: i64,
    pub(super) lease: i64,
}

/// The heartbeat key: the lease it is attached to (the authority key's),
/// its `mod_revision` (new at every write) and the writer's interval (its
/// value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HeartbeatKey {
    pub(super) lease: i64,
    pub(super) mod_revision: i64,
    pub(super) interval: u64,
}

/// What a redirector asks the store.
#[derive(Debug, Clone)]
pub(super) enum Request {
    /// Read the authority key.
    GetAuthority,
    /// Read the group's view key.
    GetView,
    /// Read the heartbeat key.
    GetHeartbeat,
    /// Put the heartbeat key (announcing `interval` microseconds), attached
    /// to `lease`, if the authority key's `create_revision` is `token`.
    Beat {
        token: i64,
        lease: i64,
        interval: u64,
    },
    /// Grant a lease of the store's TTL.
    Grant,
    /// Renew a lease.
    KeepAlive(i64),
    /// Revoke a lease (its keys go with it).
    Revoke(i64),
    /// Create the authority key, attached to this lease, if it is absent
    /// (`create_revision == 0`).
    Claim(i64),
    /// Put the view if the authority key's `create_revision` is `token`
    /// (unless `fenced` is false) and the view key's `mod_revision` is
    /// `mod_revision` (unless `swapped` is false).
    Write {
        token: i64,
        fenced: bool,
        swapped: bool,
        mod_revision: i64,
        view: StoredView,
    },
}

/// The store's answer.
#[derive(Debug, Clone)]
pub(super) enum Response {
    Authority(Option<AuthorityKey>),
    /// The view and its `mod_revision`.
    View(Option<(StoredView, i64)>),
    Heartbeat(Option<HeartbeatKey>),
    /// Whether the heartbeat was written (false: the authority key is not
    /// the writer's).
    Beaten {
        ok: bool,
    },
    Granted {
        lease: i64,
        ttl: u64,
    },
    /// The lease's TTL, 0 when it expired or was revoked.
    KeptAlive {
        ttl: u64,
    },
    Revoked,
    Claimed {
        won: bool,
        revision: i64,
    },
    /// Whether the write happened; either way, the authority key and the
    /// view key as they are after it.
    Written {
        ok: bool,
        revision: i64,
        authority: Option<AuthorityKey>,
        view: Option<(StoredView, i64)>,
    },
}

/// The store itself.
struct Store {
    revision: i64,
    next_lease: i64,
    /// Lease id to expiry time (microseconds).
    leases: BTreeMap<i64, u64>,
    ttl: u64,
    authority: Option<AuthorityKey>,
    heartbeat: Option<HeartbeatKey>,
    view: Option<(StoredView, i64)>,
    /// Every view written, in order, for the checker to take.
    written: Vec<StoredView>,
    /// View writes refused: the writer no longer held the authority key.
    fenced_off: u64,
}

impl Store {
    fn apply(&mut self, now: u64, from: usize, req: Request) -> Response {
        self.expire(now);
        match req {
            Request::GetAuthority => Response::Authority(self.authority),
            Request::GetView => Response::View(self.view.clone()),
            Request::GetHeartbeat => Response::Heartbeat(self.heartbeat),
            Request::Beat {
                token,
                lease,
                interval,
            } => {
                let ok = self.authority.is_some_and(|a| a.create_revision == token)
                    && self.leases.contains_key(&lease);
                if ok {
                    self.revision += 1;
                    self.heartbeat = Some(HeartbeatKey {
                        lease,
                        mod_revision: self.revision,
                        interval,
                    });
                }
                Response::Beaten { ok }
            }
            Request::Grant => {
                self.next_lease += 1;
                self.leases.insert(self.next_lease, now + self.ttl);
                Response::Granted {
                    lease: self.next_lease,
                    ttl: self.ttl,
                }
            }
            Request::KeepAlive(id) => match self.leases.get_mut(&id) {
                Some(until) => {
                    *until = now + self.ttl;
                    Response::KeptAlive { ttl: self.ttl }
                }
                None => Response::KeptAlive { ttl: 0 },
            },
            Request::Revoke(id) => {
                self.drop_lease(id);
                Response::Revoked
            }
            Request::Claim(lease) => {
                let won = self.authority.is_none() && self.leases.contains_key(&lease);
                if won {
                    self.revision += 1;
                    self.authority = Some(AuthorityKey {
                        holder: from,
                        create_revision: self.revision,
                        lease,
                    });
                }
                Response::Claimed {
                    won,
                    revision: self.revision,
                }
            }
            Request::Write {
                token,
                fenced,
                swapped,
                mod_revision,
                view,
            } => {
                let holds = !fenced || self.authority.is_some_and(|a| a.create_revision == token);
                let current = self.view.as_ref().map_or(0, |v| v.1);
                let ok = holds && (!swapped || current == mod_revision);
                if self.authority.is_none_or(|a| a.create_revision != token) {
                    // Refused by the fence (or, with the fence broken, not).
                    self.fenced_off += 1;
                }
                if ok {
                    self.revision += 1;
                    self.written.push(view.clone());
                    self.view = Some((view, self.revision));
                }
                Response::Written {
                    ok,
                    revision: self.revision,
                    authority: self.authority,
                    view: self.view.clone(),
                }
            }
        }
    }

    /// Leases whose time ran out go, with the authority key if attached.
    fn expire(&mut self, now: u64) {
        let expired: Vec<i64> = self
            .leases
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.drop_lease(id);
        }
    }

    fn drop_lease(&mut self, id: i64) {
        self.leases.remove(&id);
        if self.authority.is_some_and(|a| a.lease == id) {
            self.authority = None;
            self.revision += 1;
        }
        if self.heartbeat.is_some_and(|h| h.lease == id) {
            self.heartbeat = None;
            self.revision += 1;
        }
    }
}

enum Message {
    Request {
        from: usize,
        id: u64,
        req: Request,
        /// Already past the point a later partition cuts.
        escapes: bool,
    },
    Response {
        to: usize,
        id: u64,
        resp: Response,
    },
}

/// The store and the messages in flight to and from it.
pub(super) struct StoreNet {
    store: Store,
    rng: Rng,
    next_id: u64,
    /// (due time, sequence) to message: delivered in that order.
    in_flight: BTreeMap<(u64, u64), Message>,
    /// Per redirector: cut from the store until then.
    cut: Vec<u64>,
    /// Messages sent before `.0` take up to `.1` microseconds more: those
    /// of redirector `.2`, or of every redirector.
    spike: (u64, u64, Option<usize>),
    /// The next view write of this redirector is held up in the network
    /// this long, and the redirector is cut off the store right after
    /// sending it for this long.
    held_write: Option<(usize, u64, u64)>,
}

impl StoreNet {
    /// A store granting leases of `ttl` microseconds, reached by
    /// `redirectors`, its latency drawn from `seed`.
    pub(super) fn new(ttl: u64, redirectors: usize, seed: u64) -> StoreNet {
        StoreNet {
            store: Store {
                revision: 1,
                next_lease: 0,
                leases: BTreeMap::new(),
                ttl,
                authority: None,
                heartbeat: None,
                view: None,
                written: Vec::new(),
                fenced_off: 0,
            },
            rng: Rng::new(seed),
            next_id: 0,
            in_flight: BTreeMap::new(),
            cut: vec![0; redirectors],
            spike: (0, 0, None),
            held_write: None,
        }
    }

    fn latency(&mut self, now: u64, r: usize) -> u64 {
        let mut d = 100 + self.rng.below(500);
        if now < self.spike.0 && self.spike.2.is_none_or(|s| s == r) {
            d += self.spike.1 / 2 + self.rng.below(self.spike.1 / 2 + 1);
        }
        d
    }

    fn cut_off(&self, r: usize, now: u64) -> bool {
        self.cut[r] > now
    }

    /// Send `req` from redirector `from`; the answer comes back with this id.
    pub(super) fn send(&mut self, now: u64, from: usize, req: Request) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        if self.cut_off(from, now) {
            return id;
        }
        let mut due = now + self.latency(now, from);
        let mut escapes = false;
        if let Some((r, extra, cut)) = self.held_write {
            if r == from && matches!(req, Request::Write { .. }) {
                self.held_write = None;
                due += extra;
                escapes = true;
                self.cut(r, now + cut);
            }
        }
        self.in_flight.insert(
            (due, id),
            Message::Request {
                from,
                id,
                req,
                escapes,
            },
        );
        id
    }

    /// Deliver what is due by `now`: requests are applied by the store,
    /// answers are returned as (redirector, request id, answer).
    pub(super) fn deliver(&mut self, now: u64) -> Vec<(usize, u64, Response)> {
        let mut out = Vec::new();
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((at, seq), msg) = entry.remove_entry();
            match msg {
                Message::Request {
                    from,
                    id,
                    req,
                    escapes,
                } => {
                    if !escapes && self.cut_off(from, at) {
                        continue;
                    }
                    let resp = self.store.apply(at, from, req);
                    let due = at + self.latency(at, from);
                    self.in_flight
                        .insert((due, seq), Message::Response { to: from, id, resp });
                }
                Message::Response { to, id, resp } => {
                    if !self.cut_off(to, at) {
                        out.push((to, id, resp));
                    }
                }
            }
        }
        out
    }

    /// When the next message is due.
    pub(super) fn next_due(&self) -> Option<u64> {
        self.in_flight.keys().next().map(|k| k.0)
    }

    /// Cut redirector `r` off the store until `until`.
    pub(super) fn cut(&mut self, r: usize, until: u64) {
        self.cut[r] = self.cut[r].max(until);
    }

    /// Messages sent until `until` (to and from redirector `only`, or
    /// all) take up to `extra` microseconds more.
    pub(super) fn spike(&mut self, until: u64, extra: u64, only: Option<usize>) {
        self.spike = (until, extra, only);
    }

    /// Hold up redirector `r`'s next view write `extra` microseconds in the
    /// network, and cut `r` off the store for `cut` right after it is sent.
    pub(super) fn hold_next_write(&mut self, r: usize, extra: u64, cut: u64) {
        self.held_write = Some((r, extra, cut));
    }

    /// View writes from a redirector no longer holding the authority key.
    pub(super) fn fenced_off(&self) -> u64 {
        self.store.fenced_off
    }

    /// The views written since the last call, in order.
    pub(super) fn take_written(&mut self) -> Vec<StoredView> {
        std::mem::take(&mut self.store.written)
    }

    /// Who holds the authority key now (leases expired by `now` gone).
    #[cfg(test)]
    fn holder(&mut self, now: u64) -> Option<usize> {
        self.store.expire(now);
        self.store.authority.map(|a| a.holder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(net: &mut StoreNet, now: &mut u64, from: usize, req: Request) -> Response {
        let id = net.send(*now, from, req);
        for _ in 0..10_000 {
            *now += 100;
            if let Some((_, _, r)) = net.deliver(*now).into_iter().find(|(_, i, _)| *i == id) {
                return r;
            }
        }
        panic!("no answer");
    }

    fn view(epoch: u64) -> StoredView {
        StoredView {
            epoch,
            members: Vec::new(),
        }
    }

    #[test]
    fn one_holder_at_a_time_and_writes_fenced_by_its_create_revision() {
        let mut net = StoreNet::new(100_000, 2, 1);
        let mut now = 0;
        let Response::Granted { lease: a, .. } = round_trip(&mut net, &mut now, 0, Request::Grant)
        else {
            panic!()
        };
        let Response::Claimed {
            won: true,
            revision: token_a,
        } = round_trip(&mut net, &mut now, 0, Request::Claim(a))
        else {
            panic!()
        };
        let Response::Granted { lease: b, .. } = round_trip(&mut net, &mut now, 1, Request::Grant)
        else {
            panic!()
        };
        assert!(matches!(
            round_trip(&mut net, &mut now, 1, Request::Claim(b)),
            Response::Claimed { won: false, .. }
        ));
        let write = |token, mod_revision, epoch| Request::Write {
            token,
            fenced: true,
            swapped: true,
            mod_revision,
            view: view(epoch),
        };
        let Response::Written {
            ok: true,
            revision: r1,
            ..
        } = round_trip(&mut net, &mut now, 0, write(token_a, 0, 1))
        else {
            panic!()
        };
        // A stale mod_revision is refused.
        assert!(matches!(
            round_trip(&mut net, &mut now, 0, write(token_a, 0, 2)),
            Response::Written { ok: false, .. }
        ));
        // A's lease runs out: B wins and A's writes are fenced off.
        now += 200_000;
        assert_eq!(net.holder(now), None);
        let Response::Granted { lease: b, .. } = round_trip(&mut net, &mut now, 1, Request::Grant)
        else {
            panic!()
        };
        let Response::Claimed {
            won: true,
            revision: token_b,
        } = round_trip(&mut net, &mut now, 1, Request::Claim(b))
        else {
            panic!()
        };
        assert!(token_b > token_a);
        assert!(matches!(
            round_trip(&mut net, &mut now, 0, write(token_a, r1, 2)),
            Response::Written { ok: false, .. }
        ));
        assert!(matches!(
            round_trip(&mut net, &mut now, 1, write(token_b, r1, 2)),
            Response::Written { ok: true, .. }
        ));
        assert_eq!(net.take_written(), vec![view(1), view(2)]);
    }

    #[test]
    fn the_heartbeat_is_fenced_new_at_every_write_and_goes_with_the_lease() {
        let mut net = StoreNet::new(100_000, 2, 1);
        let mut now = 0;
        let Response::Granted { lease, .. } = round_trip(&mut net, &mut now, 0, Request::Grant)
        else {
            panic!()
        };
        let Response::Claimed {
            won: true,
            revision: token,
        } = round_trip(&mut net, &mut now, 0, Request::Claim(lease))
        else {
            panic!()
        };
        let beat = |token| Request::Beat {
            token,
            lease,
            interval: 20_000,
        };
        let read = |net: &mut StoreNet, now: &mut u64| match round_trip(
            net,
            now,
            1,
            Request::GetHeartbeat,
        ) {
            Response::Heartbeat(key) => key,
            other => panic!("{other:?}"),
        };
        assert_eq!(read(&mut net, &mut now), None);
        assert!(matches!(
            round_trip(&mut net, &mut now, 0, beat(token + 1)),
            Response::Beaten { ok: false }
        ));
        assert_eq!(read(&mut net, &mut now), None, "fenced off");
        assert!(matches!(
            round_trip(&mut net, &mut now, 0, beat(token)),
            Response::Beaten { ok: true }
        ));
        let first = read(&mut net, &mut now).expect("written");
        assert_eq!((first.lease, first.interval), (lease, 20_000));
        round_trip(&mut net, &mut now, 0, beat(token));
        let second = read(&mut net, &mut now).expect("written");
        assert!(second.mod_revision > first.mod_revision);
        round_trip(&mut net, &mut now, 1, Request::Revoke(lease));
        assert_eq!(read(&mut net, &mut now), None, "gone with its lease");
        assert_eq!(net.holder(now), None);
    }

    #[test]
    fn a_partition_loses_requests_and_replies() {
        let mut net = StoreNet::new(100_000, 2, 1);
        net.cut(0, 50_000);
        let id = net.send(0, 0, Request::Grant);
        assert!(net.deliver(u64::MAX).iter().all(|(_, i, _)| *i != id));
        assert_eq!(net.next_due(), None);
    }
}
