//! The redirector: owns the virtual IPs through a TUN device, copies each
//! client packet (UDP-encapsulated, unchanged) to every live replica of the
//! group that serves it, and is each group's registrar and view authority.

#![forbid(unsafe_code)]

pub mod adoption;
pub mod config;
pub mod coordination;
pub mod copies;
pub mod pool;
pub mod services;
pub mod state;
pub mod status;

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ackchannel::control::ViewAuthority;
use anyhow::Context;
use hydra_ops::signals::Signals;
use hydra_ops::socket_buffer::{size_socket_buffer, SocketBuffer};
use stack::phy::tun::Tun;
use stack::phy::Device;
use stack::Instant;

use adoption::Adoption;
use config::RedirectorConfig;
use copies::{CopySender, Inbox};
use pool::{Placement, Pool};
use services::{ServiceMap, Verdict};
use status::{Counters, DrainRequest, Snapshot};

/// Packets and datagrams handled per loop turn at most, per source.
const BATCH: usize = 64;
/// Longest the loop sleeps (it also checks for shutdown this often).
const MAX_WAIT: Duration = Duration::from_millis(50);

/// What the loop does with the members' control datagrams.
#[derive(Clone, Copy)]
enum Control {
    /// Everything: this redirector acts.
    Handle,
    /// Answer keepalives only: the role holds, the acting margin does not.
    KeepalivesOnly,
}

struct Redirector {
    tun: Tun,
    control: UdpSocket,
    copies: CopySender,
    inbox: Inbox,
    services: ServiceMap,
    groups: Vec<ViewAuthority>,
    pools: Vec<Pool>,
    /// Per group: the operator stopped new connections to it.
    draining: Vec<bool>,
    /// Per group: it takes new connections (serving and not draining).
    available: Vec<bool>,
    drain_requests: Receiver<DrainRequest>,
    /// Per group, the newest epoch its replies may carry (with
    /// `[coordination]`: the newest etcd holds).
    announce_limit: Vec<u64>,
    /// Live members' data addresses per group, refreshed on view change.
    destinations: Vec<(u64, Vec<SocketAddr>)>,
    /// Pooled connections the flow table does not know, being asked about.
    adoption: Adoption,
    /// Packets of connections a group claimed, to copy before new input:
    /// (group, packet), oldest first.
    released: VecDeque<(usize, Vec<u8>)>,
    counters: Counters,
    clock: std::time::Instant,
}

pub fn run(cfg: RedirectorConfig, signals: Signals) -> anyhow::Result<()> {
    // Receive offload: a local or GRO-merged client stream arrives in
    // segments of up to 64 KiB, copied and parsed once instead of 45 times.
    let tun = if cfg.receive_offload {
        Tun::open_offload(&cfg.tun, cfg.mtu)
    } else {
        Tun::open(&cfg.tun, cfg.mtu)
    }
    .with_context(|| format!("opening TUN device {}", cfg.tun))?;
    let packet_slot = tun.max_packet_in();
    let control = UdpSocket::bind(cfg.control_listen)
        .with_context(|| format!("binding control socket {}", cfg.control_listen))?;
    control.set_nonblocking(true)?;
    let data = UdpSocket::bind(cfg.data_bind)
        .with_context(|| format!("binding data socket {}", cfg.data_bind))?;
    data.set_nonblocking(true)?;
    size_socket_buffer(&data, SocketBuffer::Send, 8 << 20)?;
    // Replicas check the source address of copies, not the port.
    let singles = UdpSocket::bind(SocketAddr::new(cfg.data_bind.ip(), 0))
        .with_context(|| format!("binding data socket {}:0", cfg.data_bind.ip()))?;
    singles.set_nonblocking(true)?;
    size_socket_buffer(&singles, SocketBuffer::Send, 8 << 20)?;
    let groups: Vec<ViewAuthority> = cfg.policies().into_iter().map(ViewAuthority::new).collect();
    let mut services = ServiceMap::default();
    for (s, target) in cfg.services.iter().zip(cfg.targets()) {
        services.add(s.vip, s.ports.clone(), target);
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let (drain_tx, drain_requests) = mpsc::channel();
    let mut r = Redirector {
        tun,
        control,
        copies: CopySender::new(data, singles),
        // One slot more than a turn reads: a segment cut in two takes two.
        inbox: Inbox::new(packet_slot, BATCH + 1, cfg.mtu),
        services,
        pools: cfg.build_pools(seed),
        draining: vec![false; groups.len()],
        available: vec![false; groups.len()],
        drain_requests,
        announce_limit: vec![u64::MAX; groups.len()],
        destinations: vec![(0, Vec::new()); groups.len()],
        adoption: Adoption::default(),
        released: VecDeque::new(),
        groups,
        counters: Counters::default(),
        clock: std::time::Instant::now(),
    };
    if let Some(path) = &cfg.state_file {
        let restored = state::load(path, r.now(), &mut r.groups, &mut r.draining)?;
        tracing::info!(file = %path.display(), restored, "views restored from the state file");
    }
    let mut saved_epochs: Vec<u64> = r.groups.iter().map(|g| g.view().epoch).collect();
    // With [coordination], views change only while this redirector is the
    // elected authority, starting from what etcd holds.
    let mut coordinator = match &cfg.coordination {
        Some(c) => {
            let names = r.groups.iter().map(|g| g.name().to_string()).collect();
            Some(coordination::Agent::start(c, names).map_err(anyhow::Error::msg)?)
        }
        None => None,
    };
    let snapshot = Arc::new(Mutex::new(Snapshot::default()));
    if let Some(addr) = cfg.admin {
        status::serve(addr, snapshot.clone(), Mutex::new(drain_tx))?;
    }
    tracing::info!(tun = %cfg.tun, control = %cfg.control_listen, groups = r.groups.len(), "redirector running");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_flag = stop.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            if let Some(sig) = signals.wait(Duration::from_secs(1)) {
                tracing::info!(signal = sig, "shutting down");
                stop_flag.store(true, std::sync::atomic::Ordering::SeqCst);
                return;
            }
        })?;

    let mut last_publish = std::time::Instant::now();
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        r.wait();
        let now = r.now();
        let acting = coordinator
            .as_mut()
            .is_none_or(|a| a.steer(now, &mut r.groups, &mut r.draining));
        if let Some(a) = &coordinator {
            a.announce_limits(&r.groups, &mut r.announce_limit);
        }
        if acting {
            r.ask_about_unknown_flows();
            r.read_control(now, Control::Handle);
            r.adopt_claimed_flows(now);
            for g in &mut r.groups {
                g.handle_timeout(now);
            }
        } else if coordinator.as_ref().is_some_and(|a| a.answering()) {
            // A late etcd answer: the members keep their leases meanwhile.
            r.read_control(now, Control::KeepalivesOnly);
        } else {
            r.discard_control();
        }
        r.adoption.expire(now);
        let drain_changed = r.apply_drain_requests(acting);
        if drain_changed {
            if let Some(a) = &coordinator {
                a.save_drained(state::drained_names(&r.groups, &r.draining));
            }
        }
        r.refresh_destinations(now);
        if let Some(path) = &cfg.state_file {
            let epochs: Vec<u64> = r.groups.iter().map(|g| g.view().epoch).collect();
            if epochs != saved_epochs || drain_changed {
                match state::save(path, &r.groups, &r.draining) {
                    Ok(()) => saved_epochs = epochs,
                    Err(e) => {
                        r.counters.state_save_errors += 1;
                        tracing::warn!("cannot save the views: {e:#}");
                    }
                }
            }
        }
        if let Some(a) = coordinator.as_ref().filter(|_| acting) {
            a.save_changed(&r.groups, &mut saved_epochs);
        }
        r.forward(now);
        if last_publish.elapsed() >= Duration::from_millis(20) {
            last_publish = std::time::Instant::now();
            if let Ok(mut s) = snapshot.lock() {
                *s = Snapshot::take(now, &r.groups, &r.draining, &r.pools, &r.counters);
                s.unknown_flows = status::UnknownFlows {
                    pending: r.adoption.pending(),
                    counters: r.adoption.counters.clone(),
                };
                s.coordination = coordinator.as_ref().map(|a| a.status());
            }
        }
    }
    Ok(())
}

impl Redirector {
    fn now(&self) -> Instant {
        Instant::from_micros(self.clock.elapsed().as_micros() as u64)
    }

    fn wait(&self) {
        if !self.released.is_empty() {
            return;
        }
        let now = self.now();
        let deadline = self.groups.iter().filter_map(|g| g.poll_timeout()).min();
        let wait = deadline.map_or(MAX_WAIT, |d| {
            std::time::Duration::from(d.saturating_since(now)).min(MAX_WAIT)
        });
        let fds = [self.tun.as_raw_fd(), self.control.as_raw_fd()];
        // An error here shows again at the next round's reads.
        let _ = hydra_base::poll::wait_readable(&fds, Some(wait));
    }

    fn read_control(&mut self, now: Instant, mode: Control) {
        let mut buf = [0u8; 2048];
        for _ in 0..BATCH {
            let (n, from) = match self.control.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let datagram = &buf[..n];
            let Some(i) = self.groups.iter().position(|g| g.accepts_key_of(datagram)) else {
                self.counters.control_unauthenticated += 1;
                if self.counters.control_unauthenticated <= 10
                    || self.counters.control_unauthenticated.is_multiple_of(1000)
                {
                    tracing::warn!(%from, total = self.counters.control_unauthenticated, "control datagram refused: no group key authenticates it");
                }
                continue;
            };
            let group = &mut self.groups[i];
            let handled = match mode {
                Control::Handle => group.handle_datagram(now, datagram),
                Control::KeepalivesOnly => group.handle_keepalive(now, datagram),
            };
            match handled {
                Ok(Some(_)) if group.view().epoch > self.announce_limit[i] => {
                    tracing::debug!(group = %group.name(), epoch = group.view().epoch, "reply held back until etcd holds the view");
                }
                Ok(Some(reply)) => {
                    if let Err(e) = self.control.send_to(&reply, from) {
                        tracing::debug!(%from, "control reply failed: {e}");
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(%from, group = %group.name(), "control message refused: {e}")
                }
            }
        }
    }

    /// Not the authority: control datagrams are read and dropped, so none
    /// is handled late once this redirector acts.
    fn discard_control(&mut self) {
        let mut buf = [0u8; 2048];
        for _ in 0..BATCH {
            if self.control.recv_from(&mut buf).is_err() {
                return;
            }
        }
    }

    /// Hand each group's authority the connections to ask its members
    /// about (when they changed).
    fn ask_about_unknown_flows(&mut self) {
        if let Some(questions) = self.adoption.questions(&self.pools, self.groups.len()) {
            for (g, q) in self.groups.iter_mut().zip(questions) {
                g.ask(q);
            }
        }
    }

    /// Connections the groups said they hold: into their pool's table, and
    /// their parked packets on to the group.
    fn adopt_claimed_flows(&mut self, now: Instant) {
        for g in 0..self.groups.len() {
            for key in self.groups[g].take_holds() {
                let Some((pool, packets)) = self.adoption.claim(&self.pools, g, key) else {
                    continue; // a late or repeated answer
                };
                let flow = pool::FlowKey::from_conn_key(key);
                if self.pools[pool].adopt(now, flow, g) {
                    tracing::debug!(group = %self.groups[g].name(), client = %key.remote, "connection claimed");
                    self.released.extend(packets.into_iter().map(|p| (g, p)));
                }
            }
        }
    }

    /// The operator's drain requests; true when one changed a group. A
    /// redirector that does not act keeps none (the acting one's, in etcd,
    /// replace its own when it is elected).
    fn apply_drain_requests(&mut self, acting: bool) -> bool {
        let mut changed = false;
        while let Ok((name, on)) = self.drain_requests.try_recv() {
            if !acting {
                tracing::warn!(group = %name, draining = on, "operator request ignored: this redirector does not act; send it to the acting one");
                continue;
            }
            if let Some(i) = self.groups.iter().position(|g| g.name() == name) {
                tracing::info!(group = %name, draining = on, "operator request");
                changed |= self.draining[i] != on;
                self.draining[i] = on;
            }
        }
        changed
    }

    fn refresh_destinations(&mut self, now: Instant) {
        for (i, g) in self.groups.iter().enumerate() {
            let dest = &mut self.destinations[i];
            if g.view().epoch != dest.0 {
                // The primary (first in the view) last: its gate waits for
                // the backups' confirmations of each copy, not for its own.
                let mut addrs = g.live_data_addrs();
                if !addrs.is_empty() {
                    addrs.rotate_left(1);
                }
                *dest = (g.view().epoch, addrs);
            }
            self.available[i] = g.serving(now) && !self.draining[i];
        }
    }

    fn forward(&mut self, now: Instant) {
        self.inbox.clear();
        if !self.released.is_empty() {
            // Claimed connections' parked packets go first, and nothing new
            // is read until they are gone, so no connection's packets pass
            // each other.
            self.forward_released();
            return;
        }
        // Bounded in reads, not only in packets kept: a flood of packets
        // for no service must not keep the loop from its control work.
        for _ in 0..BATCH {
            if self.inbox.room() < 2 {
                break;
            }
            let n = match self.tun.recv(self.inbox.next_slot()) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let Some(group) = self.route(now, n) else {
                continue;
            };
            if !self.inbox.push(n, group) {
                self.counters.dropped_oversized += 1;
                continue;
            }
            self.counters.packets_in += 1;
        }
        self.copies
            .send(&self.inbox, &self.destinations, &mut self.counters);
    }

    fn forward_released(&mut self) {
        while self.inbox.room() >= 2 {
            let Some((group, packet)) = self.released.pop_front() else {
                break;
            };
            let slot = self.inbox.next_slot();
            if packet.len() > slot.len() {
                self.counters.dropped_oversized += 1;
                continue;
            }
            slot[..packet.len()].copy_from_slice(&packet);
            if self.inbox.push(packet.len(), group) {
                self.counters.packets_in += 1;
            } else {
                self.counters.dropped_oversized += 1;
            }
        }
        self.copies
            .send(&self.inbox, &self.destinations, &mut self.counters);
    }

    /// The group that takes the packet just read, or None (counted) when
    /// none does.
    fn route(&mut self, now: Instant, len: usize) -> Option<usize> {
        let packet = &self.inbox.next_slot()[..len];
        match self.services.classify(packet) {
            Verdict::Group(g) => Some(g),
            Verdict::Pool(p, Some(flow)) => {
                if flow.syn {
                    self.adoption.forget(&flow.key);
                }
                match self.pools[p].place(now, &flow, &self.available) {
                    Placement::Group(g) => Some(g),
                    Placement::Unknown => {
                        // Opened before a restart or through another
                        // redirector: kept until one of the pool's groups
                        // claims it.
                        let packet = packet.to_vec();
                        self.adoption.park(now, p, flow.key, &packet);
                        None
                    }
                    Placement::Dropped => {
                        // Counted by the pool, by reason.
                        self.counters.dropped_by_pool += 1;
                        None
                    }
                }
            }
            Verdict::Pool(p, None) => {
                let group = self.pools[p].any_group(&self.available);
                if group.is_none() {
                    self.counters.dropped_by_pool += 1;
                }
                group
            }
            Verdict::NoService => {
                self.counters.dropped_no_service += 1;
                None
            }
            Verdict::NotIp | Verdict::Malformed => {
                self.counters.dropped_malformed += 1;
                None
            }
        }
    }
}
