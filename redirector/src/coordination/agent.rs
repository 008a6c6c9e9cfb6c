//! The redirector's side of coordination, on a thread of its own so etcd's
//! latency never reaches the packet path: it campaigns for the authority,
//! renews it, hands the forwarding loop the views etcd holds when it wins,
//! and writes the views the loop changes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ackchannel::control::ViewAuthority;

use super::election::{Campaign, Election};
use super::error::CoordinationError;
use super::floating::FloatingAddress;
use super::settings::CoordinationConfig;
use super::views::ViewStore;
use crate::state::GroupState;

/// Longest pause of the agent between two looks at its queue and lease.
const TICK: Duration = Duration::from_millis(100);
/// The loop stops acting this long before the lease surely ends, so a turn
/// under way never outlasts it.
const MARGIN: Duration = Duration::from_millis(100);
/// While the role holds but the margin does not, the loop still answers
/// keepalives until this long before the deadline: a reply goes out within
/// a loop turn.
const ANSWER_MARGIN: Duration = Duration::from_millis(20);
/// A standby looks whether the authority is free this often (a read; it
/// campaigns only when it is): the takeover follows a dead authority's
/// lease by at most this much.
const CAMPAIGN_PERIOD: Duration = Duration::from_millis(100);
/// The acting redirector retries a failed claim of the floating address
/// this often.
const FLOATING_RETRY: Duration = Duration::from_secs(1);

/// What the forwarding loop asks the agent to write.
enum Write {
    View(GroupState),
    Drained(Vec<String>),
}

/// What the agent tells the forwarding loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// We are the authority: carry on from these views (the groups etcd
    /// holds a view for) before changing any.
    Elected(Vec<GroupState>),
    /// Right after [`Event::Elected`]: the groups an operator drained, as
    /// etcd holds them.
    Drained(Vec<String>),
    /// We are no longer the authority: stop changing views.
    Lost(String),
}

/// The agent's state, for `/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AgentStatus {
    /// This redirector's name.
    pub name: String,
    /// This redirector is the authority and may change views.
    pub acting: bool,
    /// The authority's name as last seen in etcd.
    pub authority: Option<String>,
    /// The last etcd error, cleared by the next success.
    pub etcd_error: Option<String>,
    /// View writes that failed.
    pub save_errors: u64,
    /// The floating client-facing address, when one is configured.
    pub floating: Option<FloatingStatus>,
}

/// The floating address as `/status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FloatingStatus {
    /// The address with its prefix length.
    pub address: String,
    /// This redirector holds it now.
    pub held: bool,
    /// The last failure to set or remove it, cleared by the next success.
    pub error: Option<String>,
}

#[derive(Default)]
struct Shared {
    /// While acting, until when the lease surely holds.
    acting_until: Mutex<Option<Instant>>,
    /// Per group, the newest epoch etcd holds as we wrote or read it.
    persisted: Mutex<BTreeMap<String, u64>>,
    status: Mutex<AgentStatus>,
}

/// The handle the forwarding loop keeps; dropping it resigns the authority.
pub struct Agent {
    events: Receiver<Event>,
    /// What the last [`steer`](Agent::steer) said.
    was_acting: bool,
    saves: Option<Sender<Write>>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Agent {
    /// Start campaigning as `cfg.name` for the groups named.
    pub fn start(cfg: &CoordinationConfig, groups: Vec<String>) -> Result<Agent, String> {
        let client = cfg.client()?;
        let election = Election::new(client.clone(), &cfg.prefix, &cfg.name, cfg.lease_ttl())
            .with_heartbeat(cfg.heartbeat());
        let store = ViewStore::new(client, &cfg.prefix);
        let (event_tx, events) = mpsc::channel();
        let (saves, save_rx) = mpsc::channel();
        let floating = cfg
            .floating
            .as_ref()
            .map(FloatingAddress::new)
            .transpose()?;
        let shared = Arc::new(Shared::default());
        if let Ok(mut s) = shared.status.lock() {
            s.name = cfg.name.clone();
            s.floating = floating.as_ref().map(|f| FloatingStatus {
                address: f.address().to_string(),
                ..FloatingStatus::default()
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut worker = Worker {
            election,
            store,
            groups,
            events: event_tx,
            saves: save_rx,
            shared: shared.clone(),
            pending: BTreeMap::new(),
            pending_drained: None,
            acting: false,
            renewed: Instant::now(),
            beaten: Instant::now(),
            floating,
            floating_held: false,
            floating_tried: Instant::now(),
        };
        // A previous run of this redirector may have died holding it.
        worker.release_floating();
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("coordination".into())
            .spawn(move || worker.run(&stop_flag))
            .map_err(|e| format!("cannot start the coordination thread: {e}"))?;
        Ok(Agent {
            events,
            was_acting: false,
            saves: Some(saves),
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// True while this redirector is the authority with a lease that surely
    /// holds: only then may it change views.
    pub fn acting(&self) -> bool {
        let until = self.shared.acting_until.lock().map(|u| *u).unwrap_or(None);
        until.is_some_and(|u| Instant::now() + MARGIN < u)
    }

    /// True while the role surely holds, margin or not: the loop may keep
    /// the members' leases going with the view etcd holds, but change
    /// nothing unless [`acting`](Self::acting). A lease granted now ends
    /// before a successor could change a view: a successor is elected only
    /// after this deadline and waits a member lease from its election before
    /// declaring anyone dead.
    pub fn answering(&self) -> bool {
        let until = self.shared.acting_until.lock().map(|u| *u).unwrap_or(None);
        until.is_some_and(|u| Instant::now() + ANSWER_MARGIN < u)
    }

    /// Apply what the agent learnt (views to carry on from when elected)
    /// and say whether the loop may change views now.
    ///
    /// A loop that does not act reads nothing from the members, so when it
    /// acts again with its role kept (a slow etcd answer held the lease's
    /// renewal past the margin, then came), the groups resume: their
    /// members' silence during the pause is not held against them.
    pub fn steer(
        &mut self,
        now: stack::Instant,
        groups: &mut [ViewAuthority],
        draining: &mut [bool],
    ) -> bool {
        let mut elected = false;
        while let Ok(event) = self.events.try_recv() {
            match event {
                Event::Drained(names) => {
                    for (g, d) in groups.iter().zip(draining.iter_mut()) {
                        *d = names.iter().any(|n| n == g.name());
                    }
                }
                Event::Elected(views) => {
                    for g in groups.iter_mut() {
                        g.restart_counter();
                    }
                    for v in views {
                        if let Some(g) = groups.iter_mut().find(|g| g.name() == v.name) {
                            g.restore(now, v.epoch, &v.members);
                        }
                    }
                    elected = true;
                    tracing::info!("acting as the view authority");
                }
                Event::Lost(why) => tracing::warn!("stopped changing views: {why}"),
            }
        }
        let acting = self.acting();
        if acting && !self.was_acting && !elected {
            for g in groups.iter_mut() {
                g.resume(now);
            }
            tracing::info!(
                "acting again after a pause; every member gets a keepalive timeout to show up"
            );
        }
        // Elected before the lease's deadline was published: the restore
        // counts, not a pause.
        self.was_acting = acting || elected;
        acting
    }

    /// Write this view to etcd soon (a newer one for the same group
    /// replaces it in the queue).
    pub fn save(&self, view: GroupState) {
        if let Some(s) = &self.saves {
            // The worker only ends when the agent is dropped.
            let _ = s.send(Write::View(view));
        }
    }

    /// Write the names of the drained groups to etcd soon (a newer list
    /// replaces it in the queue).
    pub fn save_drained(&self, names: Vec<String>) {
        if let Some(s) = &self.saves {
            let _ = s.send(Write::Drained(names));
        }
    }

    /// Per group, the newest epoch that may be announced to the replicas:
    /// a view goes out only once etcd holds it, so no view another
    /// authority could not read from etcd is ever seen.
    pub fn announce_limits(&self, groups: &[ViewAuthority], limits: &mut Vec<u64>) {
        limits.clear();
        let Ok(persisted) = self.shared.persisted.lock() else {
            limits.resize(groups.len(), 0);
            return;
        };
        limits.extend(
            groups
                .iter()
                .map(|g| persisted.get(g.name()).copied().unwrap_or(0)),
        );
    }

    /// Queue the views whose epoch moved since the last call (`saved`:
    /// one epoch per group, updated).
    pub fn save_changed(&self, groups: &[ViewAuthority], saved: &mut [u64]) {
        for (g, epoch) in groups.iter().zip(saved.iter_mut()) {
            if g.view().epoch != *epoch {
                *epoch = g.view().epoch;
                self.save(GroupState::of(g));
            }
        }
    }

    /// The next event, if any (for callers that do not use `steer`).
    pub fn poll(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// The agent's state.
    pub fn status(&self) -> AgentStatus {
        let mut s = self
            .shared
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        s.acting = self.acting();
        s
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.saves = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    election: Election,
    store: ViewStore,
    groups: Vec<String>,
    events: Sender<Event>,
    saves: Receiver<Write>,
    shared: Arc<Shared>,
    /// The newest view per group not yet written.
    pending: BTreeMap<String, GroupState>,
    /// The drained groups' names not yet written.
    pending_drained: Option<Vec<String>>,
    acting: bool,
    renewed: Instant,
    /// When the last heartbeat was written.
    beaten: Instant,
    /// The client-facing address the acting redirector holds.
    floating: Option<FloatingAddress>,
    /// Set on the link by us (as far as we know).
    floating_held: bool,
    /// The last attempt to claim it.
    floating_tried: Instant,
}

impl Worker {
    fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            let result = if self.acting {
                if !self.floating_held && self.floating_tried.elapsed() >= FLOATING_RETRY {
                    self.claim_floating();
                }
                self.renew()
                    .and_then(|()| self.beat())
                    .and_then(|()| self.write_pending())
            } else {
                self.campaign()
            };
            self.note(result);
            let wait = if self.acting && self.pending.is_empty() && self.pending_drained.is_none() {
                self.election
                    .heartbeat_interval()
                    .map_or(TICK, |i| i.min(TICK))
            } else if self.acting {
                Duration::from_millis(10)
            } else {
                CAMPAIGN_PERIOD
            };
            match self.saves.recv_timeout(wait) {
                Ok(w) => {
                    self.queue(w);
                    while let Ok(w) = self.saves.try_recv() {
                        self.queue(w);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if self.acting {
            if let Ok(mut u) = self.shared.acting_until.lock() {
                *u = None;
            }
            self.release_floating();
            if let Err(e) = self.election.resign() {
                tracing::warn!("resigning the view authority: {e}");
            }
        }
    }

    fn queue(&mut self, w: Write) {
        match w {
            Write::View(v) => {
                self.pending.insert(v.name.clone(), v);
            }
            Write::Drained(names) => self.pending_drained = Some(names),
        }
    }

    fn note(&mut self, result: Result<(), CoordinationError>) {
        if let Err(e) = &result {
            tracing::warn!("coordination: {e}");
            if matches!(
                e,
                CoordinationError::AuthorityLost { .. }
                    | CoordinationError::Conflict { .. }
                    | CoordinationError::StaleEpoch { .. }
            ) {
                self.step_down(e.to_string());
            }
        }
        if self.acting && !self.election.is_authority() {
            self.step_down("the lease could not be renewed in time".into());
        }
        if let Ok(mut u) = self.shared.acting_until.lock() {
            *u = self.election.authority_until().filter(|_| self.acting);
        }
        if let Ok(mut s) = self.shared.status.lock() {
            s.etcd_error = result.err().map(|e| e.to_string());
        }
    }

    fn persisted(&self, epochs: impl IntoIterator<Item = (String, u64)>) {
        if let Ok(mut p) = self.shared.persisted.lock() {
            p.extend(epochs);
        }
    }

    fn step_down(&mut self, why: String) {
        if !self.acting {
            return;
        }
        self.acting = false;
        // The loop stops before the role is freed for another contender.
        if let Ok(mut u) = self.shared.acting_until.lock() {
            *u = None;
        }
        // The clients' next hop leaves before the role is freed: the next
        // authority claims it only once elected.
        self.release_floating();
        // Someone else wrote, or our lease is gone: free the role for a
        // contender that will read what etcd holds.
        let _ = self.election.resign();
        self.pending.clear();
        self.pending_drained = None;
        let _ = self.events.send(Event::Lost(why));
    }

    fn campaign(&mut self) -> Result<(), CoordinationError> {
        let holder = match self.election.campaign()? {
            Campaign::HeldBy(name) => name,
            Campaign::Won(_) => {
                let mut views = Vec::new();
                for g in &self.groups {
                    match self.store.load(g) {
                        Ok(Some(v)) => views.push(v),
                        Ok(None) => {}
                        Err(e) => {
                            // Acting on views we could not read could fork them.
                            let _ = self.election.resign();
                            return Err(e);
                        }
                    }
                }
                let drained = match self.store.load_drained() {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = self.election.resign();
                        return Err(e);
                    }
                };
                self.acting = true;
                self.renewed = Instant::now();
                self.claim_floating();
                self.pending.clear();
                self.pending_drained = None;
                self.persisted(views.iter().map(|v| (v.name.clone(), v.epoch)));
                let _ = self.events.send(Event::Elected(views));
                let _ = self.events.send(Event::Drained(drained));
                self.election.name().to_string()
            }
        };
        if let Ok(mut s) = self.shared.status.lock() {
            s.authority = Some(holder).filter(|h| !h.is_empty());
        }
        Ok(())
    }

    /// Put the floating address on (the next turn retries a failure).
    fn claim_floating(&mut self) {
        let Some(f) = &self.floating else {
            return;
        };
        self.floating_tried = Instant::now();
        let result = f.claim();
        match &result {
            Ok(()) => tracing::info!(address = f.address(), "floating address claimed"),
            Err(e) => tracing::error!("cannot claim the floating address: {e}"),
        }
        self.floating_held = result.is_ok();
        self.floating_status(result.err());
    }

    /// Take the floating address off (also when we may not hold it).
    fn release_floating(&mut self) {
        let Some(f) = &self.floating else {
            return;
        };
        let result = f.release();
        match &result {
            Ok(()) if self.floating_held => {
                tracing::info!(address = f.address(), "floating address released")
            }
            Ok(()) => {}
            Err(e) => tracing::error!("cannot remove the floating address: {e}"),
        }
        self.floating_held = false;
        self.floating_status(result.err());
    }

    fn floating_status(&self, error: Option<String>) {
        if let Ok(mut s) = self.shared.status.lock() {
            if let Some(f) = s.floating.as_mut() {
                f.held = self.floating_held;
                f.error = error;
            }
        }
    }

    fn renew(&mut self) -> Result<(), CoordinationError> {
        if self.renewed.elapsed() < self.election.keepalive_interval() {
            return Ok(());
        }
        self.election.keep_alive()?;
        self.renewed = Instant::now();
        Ok(())
    }

    fn beat(&mut self) -> Result<(), CoordinationError> {
        let Some(interval) = self.election.heartbeat_interval() else {
            return Ok(());
        };
        if self.beaten.elapsed() < interval {
            return Ok(());
        }
        self.beaten = Instant::now();
        self.election.beat()
    }

    fn write_pending(&mut self) -> Result<(), CoordinationError> {
        let Some(token) = self.election.token() else {
            return Ok(());
        };
        if let Some(names) = self.pending_drained.take() {
            if let Err(e) = self.store.save_drained(&token, &names) {
                if e.is_connectivity() {
                    self.pending_drained = Some(names);
                }
                return Err(e);
            }
        }
        while let Some((name, view)) = self.pending.pop_first() {
            let saved = self.store.save(&token, &view);
            if saved.is_ok() {
                self.persisted([(name.clone(), view.epoch)]);
            }
            if let Err(e) = saved {
                if let Ok(mut s) = self.shared.status.lock() {
                    s.save_errors += 1;
                }
                if e.is_connectivity() {
                    self.pending.entry(name).or_insert(view);
                }
                return Err(e);
            }
        }
        Ok(())
    }
}
