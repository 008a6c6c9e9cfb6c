//! Which redirector is the view authority: the one whose lease holds the
//! key `<prefix>/authority`. The key's `create_revision` is the fencing
//! token: each win creates the key anew, so a deposed authority's token
//! never matches again. The authority also writes a heartbeat next to the
//! key (`heartbeat`), which lets a standby depose a lost host early.

use std::time::{Duration, Instant};

use super::error::CoordinationError;
use super::etcd::{Compare, EtcdClient, Lease, Op, OpResult};
use super::heartbeat::{self, Beat, Watch, ACTING_BEATS};

/// Proof of having won the authority, checked by etcd in every view write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityToken {
    /// The authority key.
    pub key: Vec<u8>,
    /// Its `create_revision` when we won it.
    pub create_revision: i64,
}

/// What a campaign found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Campaign {
    /// We are the authority.
    Won(AuthorityToken),
    /// Another contender holds the key (its name as it wrote it); it
    /// becomes free when that contender's lease runs out.
    HeldBy(String),
}

#[derive(Debug)]
struct Held {
    lease: Lease,
    token: AuthorityToken,
    /// Our lease surely lasts until then (counted from before each request).
    deadline: Instant,
    /// When the last heartbeat etcd took was sent (the win counts as one).
    beat_sent: Instant,
}

/// One contender for the view authority.
#[derive(Debug)]
pub struct Election {
    client: EtcdClient,
    key: Vec<u8>,
    name: String,
    ttl_s: i64,
    held: Option<Held>,
    /// `<prefix>/authority/heartbeat`.
    heartbeat_key: Vec<u8>,
    /// How often the authority writes its heartbeat (None: never; the
    /// lease alone then bounds a takeover).
    heartbeat: Option<Duration>,
    /// A standby's watch over the authority's heartbeat.
    watch: Watch,
}

impl Election {
    /// A contender called `name` for `<prefix>/authority`, asking for
    /// leases of `ttl` (whole seconds; etcd may grant more).
    pub fn new(client: EtcdClient, prefix: &str, name: &str, ttl: Duration) -> Election {
        Election {
            client,
            key: format!("{prefix}/authority").into_bytes(),
            name: name.to_string(),
            ttl_s: ttl.as_secs().max(1) as i64,
            held: None,
            heartbeat_key: format!("{prefix}/authority/heartbeat").into_bytes(),
            heartbeat: None,
            watch: Watch::default(),
        }
    }

    /// As the authority, write a heartbeat every `interval` and act only
    /// while they get through (see [`heartbeat`]).
    pub fn with_heartbeat(mut self, interval: Option<Duration>) -> Election {
        self.heartbeat = interval;
        self
    }

    /// How often the authority writes its heartbeat, if it does.
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        self.heartbeat
    }

    /// Until when we may act: while the lease surely holds and, with a
    /// heartbeat, a few intervals after the last one etcd took was sent.
    fn acting_deadline(&self, held: &Held) -> Instant {
        match self.heartbeat {
            Some(i) => held.deadline.min(held.beat_sent + i * ACTING_BEATS),
            None => held.deadline,
        }
    }

    /// This contender's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True while our lease surely holds: only then may views change.
    pub fn is_authority(&self) -> bool {
        self.held
            .as_ref()
            .is_some_and(|h| Instant::now() < self.acting_deadline(h))
    }

    /// Until when our lease surely holds, if we won it.
    pub fn authority_until(&self) -> Option<Instant> {
        self.held.as_ref().map(|h| self.acting_deadline(h))
    }

    /// The fencing token, while we are the authority.
    pub fn token(&self) -> Option<AuthorityToken> {
        self.held
            .as_ref()
            .filter(|_| self.is_authority())
            .map(|h| h.token.clone())
    }

    /// How often to call [`Election::keep_alive`]: a third of the lease.
    pub fn keepalive_interval(&self) -> Duration {
        let ttl = self.held.as_ref().map_or(self.ttl_s, |h| h.lease.ttl_s);
        Duration::from_millis(ttl.max(1) as u64 * 1000 / 3)
    }

    /// Try to become the authority (once; call again while another holds
    /// it). When we already hold it, this renews it.
    pub fn campaign(&mut self) -> Result<Campaign, CoordinationError> {
        if self.held.is_some() {
            return self.keep_alive().map(Campaign::Won);
        }
        // A read first: a standby polls often, and a lease is granted only
        // when the role looks free, or its holder's heartbeat has stopped.
        if let (_, Some(kv)) = self.client.get(&self.key)? {
            let holder = String::from_utf8_lossy(&kv.value).into_owned();
            if !self.depose_if_silent(&holder, kv.lease)? {
                return Ok(Campaign::HeldBy(holder));
            }
        }
        let sent = Instant::now();
        let lease = self.client.lease_grant(self.ttl_s)?;
        let result = self.client.txn(
            &[Compare::Created(self.key.clone(), 0)],
            &[Op::Put(
                self.key.clone(),
                self.name.clone().into_bytes(),
                lease.id,
            )],
            &[Op::Range(self.key.clone())],
        );
        let outcome = match result {
            Ok(r) if r.succeeded => {
                let token = AuthorityToken {
                    key: self.key.clone(),
                    create_revision: r.revision,
                };
                self.held = Some(Held {
                    lease,
                    token: token.clone(),
                    deadline: sent + Duration::from_secs(lease.ttl_s as u64),
                    beat_sent: sent,
                });
                self.watch.reset();
                tracing::info!(name = %self.name, revision = r.revision, "won the view authority");
                return Ok(Campaign::Won(token));
            }
            Ok(r) => match r.responses.first() {
                Some(OpResult::Range(Some(kv))) => Ok(Campaign::HeldBy(
                    String::from_utf8_lossy(&kv.value).into_owned(),
                )),
                // Its holder's lease ran out between the compare and the read.
                _ => Ok(Campaign::HeldBy(String::new())),
            },
            Err(e) => Err(e),
        };
        // Not ours: the lease would only linger until it expires.
        if let Err(e) = self.client.lease_revoke(lease.id) {
            tracing::debug!("revoking an unused lease: {e}");
        }
        outcome
    }

    /// Renew the lease and check the authority key is still ours. An
    /// unreachable etcd is an error, but the authority holds until the
    /// lease surely ran out; after that, or when etcd says the lease or
    /// key is gone, it is [`CoordinationError::AuthorityLost`].
    pub fn keep_alive(&mut self) -> Result<AuthorityToken, CoordinationError> {
        let Some(held) = &mut self.held else {
            return Err(CoordinationError::AuthorityLost {
                detail: "not elected".into(),
            });
        };
        let sent = Instant::now();
        let checked = self.client.lease_keepalive(held.lease.id).and_then(|ttl| {
            if ttl == 0 {
                return Err(lost("its lease expired in etcd"));
            }
            held.deadline = sent + Duration::from_secs(ttl as u64);
            match self.client.get(&self.key)? {
                (_, None) => Err(lost("the authority key was deleted")),
                (_, Some(kv)) if kv.create_revision != held.token.create_revision => {
                    Err(lost(&format!(
                        "the authority key was created again (now held by {:?})",
                        String::from_utf8_lossy(&kv.value)
                    )))
                }
                _ => Ok(held.token.clone()),
            }
        });
        match checked {
            Ok(token) => Ok(token),
            Err(e @ CoordinationError::AuthorityLost { .. }) => {
                self.held = None;
                tracing::warn!(name = %self.name, "{e}");
                Err(e)
            }
            Err(e) if Instant::now() >= held.deadline => {
                self.held = None;
                Err(lost(&format!(
                    "its lease ran out while renewing failed: {e}"
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// As the authority: write the heartbeat, fenced by our authority key.
    /// When etcd takes it, we may act [`ACTING_BEATS`] intervals from when
    /// it was sent; a failed compare means the authority is gone
    /// ([`CoordinationError::AuthorityLost`]).
    pub fn beat(&mut self) -> Result<(), CoordinationError> {
        let (Some(interval), Some(held)) = (self.heartbeat, &mut self.held) else {
            return Ok(());
        };
        let sent = Instant::now();
        let r = self.client.txn(
            &[Compare::Created(
                self.key.clone(),
                held.token.create_revision,
            )],
            &[Op::Put(
                self.heartbeat_key.clone(),
                heartbeat::encode(&self.name, interval),
                held.lease.id,
            )],
            &[],
        )?;
        if !r.succeeded {
            self.held = None;
            let e = lost("the authority key is no longer ours (its lease was revoked or ran out)");
            tracing::warn!(name = %self.name, "{e}");
            return Err(e);
        }
        held.beat_sent = sent;
        Ok(())
    }

    /// As a standby facing `holder` (whose authority key is attached to
    /// `lease`): read its heartbeat, and when it has stopped long enough,
    /// revoke that lease so the role is free. True when it was revoked.
    fn depose_if_silent(&mut self, holder: &str, lease: i64) -> Result<bool, CoordinationError> {
        let (_, kv) = self.client.get(&self.heartbeat_key)?;
        // Only a heartbeat written under the holder's lease speaks for it.
        let beat = kv
            .filter(|kv| kv.lease == lease && lease != 0)
            .and_then(|kv| {
                heartbeat::interval_of(&kv.value).map(|interval| Beat {
                    revision: kv.mod_revision,
                    interval,
                })
            });
        if !self.watch.silent(Instant::now(), beat) {
            return Ok(false);
        }
        self.watch.reset();
        tracing::warn!(
            name = %self.name,
            %holder,
            "the authority's heartbeat stopped: revoking its lease"
        );
        self.client.lease_revoke(lease)?;
        Ok(true)
    }

    /// Give the authority up at once (the lease is revoked, so another
    /// contender can win without waiting for it to expire).
    pub fn resign(&mut self) -> Result<(), CoordinationError> {
        match self.held.take() {
            Some(h) => self.client.lease_revoke(h.lease.id),
            None => Ok(()),
        }
    }

    /// After this redirector's process ended (a supervisor's clean-up): if
    /// etcd still names this redirector the authority, revoke that lease so
    /// a standby takes over at once instead of when the lease runs out.
    /// Safe even were the process alive: it loses the authority, and its
    /// view writes are fenced by the authority key it no longer holds.
    /// Returns whether a lease was revoked.
    pub fn release_dead_holder(&self) -> Result<bool, CoordinationError> {
        let (_, kv) = self.client.get(&self.key)?;
        match kv {
            Some(kv) if kv.value == self.name.as_bytes() && kv.lease != 0 => {
                self.client.lease_revoke(kv.lease)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The authority's name as etcd holds it now, if any.
    pub fn holder(&self) -> Result<Option<String>, CoordinationError> {
        let (_, kv) = self.client.get(&self.key)?;
        Ok(kv.map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
    }
}

fn lost(detail: &str) -> CoordinationError {
    CoordinationError::AuthorityLost {
        detail: detail.to_string(),
    }
}
