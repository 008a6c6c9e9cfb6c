//! What to simulate ([`SimConfig`]) and how a run ended ([`Verdict`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::ClientKind;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seeds everything random in the run: links, faults, streams.
    pub seed: u64,
    /// Replicas in the group.
    pub replicas: usize,
    /// Client connections, opened one after another.
    pub connections: usize,
    /// Bytes each connection sends (and must get back).
    pub bytes_per_connection: usize,
    /// Crashes, pauses, partitions and lossy links.
    pub faults: bool,
    /// A known bug to show the checker works: the primary acknowledges
    /// without waiting for the backups (no ACK gating).
    pub inject_no_gating: bool,
    /// Print every event.
    pub trace: bool,
    /// Passive replication: the echo runs only on the primary, chunked
    /// differently on every replica, keeping its position in a state block
    /// that must always match the stream it consumed.
    pub passive: bool,
    /// The client's TCP: ours or smoltcp's.
    pub client: ClientKind,
    /// Request/response: each connection sends this many bytes, waits for
    /// all of them to come back, then sends the next request. None: it
    /// streams (bulk both ways at once).
    pub request: Option<usize>,
    /// Replicas write segments of up to 64 KiB and the simulated device
    /// cuts them into wire segments (segmentation offload, as over a TUN).
    pub segmentation_offload: bool,
    /// The listener is ordered (`Stack::listen_ordered`): besides the echo,
    /// every replica keeps state shared by all connections, built from the
    /// ordered deliveries, and replicas must agree on it.
    pub ordered: bool,
    /// A known bug to show that check works: the shared-state application
    /// reads past each delivery, up to whatever the replica has received.
    pub inject_overread: bool,
    /// The group's preferred primary: after it rejoins, the primary hands
    /// the role back to it by a deliberate handover.
    pub preferred_primary: Option<u8>,
    /// The client and the service talk IPv6 (the VIP is `fd00:100::1`).
    pub ipv6: bool,
    /// Fault injection: the copies of each connection's handshake ACK and
    /// of the client's first data segment (its first two segments after the
    /// SYN) never reach this member.
    pub lose_handshake_ack_to: Option<u8>,
    /// Lose the copy of each connection's first SYN to this member (its
    /// retransmission gets through).
    pub lose_syn_to: Option<u8>,
    /// Redirectors. One always acts (no store). Two or more coordinate
    /// through a simulated store (a model of etcd): one acts at a time,
    /// and the fault plan kills and cuts off the acting one and slows the
    /// store.
    pub redirectors: usize,
    /// A known bug in the coordination rules, to show the checker catches
    /// what it lets through (with two or more redirectors).
    pub inject_coordination: Option<CoordinationBug>,
    /// With two or more redirectors: the acting one writes a heartbeat to
    /// the store every this many milliseconds of virtual time and acts only
    /// while they get through, and a standby revokes its lease once the
    /// heartbeat has stopped (`[coordination] heartbeat_ms`). None: no
    /// heartbeat, the lease alone deposes an authority.
    pub heartbeat_ms: Option<u64>,
}

/// A coordination rule broken on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoordinationBug {
    /// View writes do not compare the authority key's `create_revision`:
    /// a deposed authority's write lands while the view key is as it last
    /// read it.
    NoFence,
    /// View writes compare nothing (neither the authority key's
    /// `create_revision` nor the view key's `mod_revision`): any write lands.
    NoCompare,
    /// The lease is counted from the renewal's reply, not from when it was
    /// sent, and the loop acts until that end, with no margin.
    LeaseFromReply,
    /// Replies carry the authority's newest view before the store holds it.
    NoAnnounceLimit,
    /// With a heartbeat: the authority acts until its lease runs out, not
    /// only until a few heartbeats after the last one the store took,
    /// while a standby still revokes it once its heartbeat has stopped.
    NoBeatDeadline,
}

impl SimConfig {
    /// The service's address: the VIP and the echo's port.
    pub(super) fn service(&self) -> SocketAddr {
        let vip: IpAddr = if self.ipv6 {
            Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 1).into()
        } else {
            Ipv4Addr::new(198, 18, 100, 1).into()
        };
        SocketAddr::new(vip, super::PORT)
    }

    /// The client's address for its connection from `port`.
    pub(super) fn client(&self, port: u16) -> SocketAddr {
        let ip: IpAddr = if self.ipv6 {
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).into()
        } else {
            Ipv4Addr::new(198, 18, 0, 1).into()
        };
        SocketAddr::new(ip, port)
    }

    /// The default run of `seed`: three replicas, four connections of
    /// 48 KiB, with faults.
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            replicas: 3,
            connections: 4,
            bytes_per_connection: 48 * 1024,
            faults: true,
            inject_no_gating: false,
            trace: false,
            passive: false,
            client: ClientKind::Hydra,
            request: None,
            segmentation_offload: false,
            ordered: false,
            inject_overread: false,
            preferred_primary: None,
            ipv6: false,
            lose_handshake_ack_to: None,
            lose_syn_to: None,
            redirectors: 1,
            inject_coordination: None,
            heartbeat_ms: None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every transfer finished and no invariant was violated.
    Pass {
        /// Simulated time the run took.
        sim_ms: u64,
        /// Replicas crashed.
        crashes: usize,
        /// Takeovers by backups.
        failovers: u64,
        /// Deliberate handovers by the primary that started.
        handovers: usize,
        /// Crashed replicas restarted with a fresh process.
        restarts: usize,
        /// Restarted replicas that caught up and rejoined the view.
        rejoins: u64,
        /// Handbacks to the preferred primary started by the replicas
        /// running at the end.
        handbacks: u64,
        /// Passive checkpoints applied by backups or released by primaries.
        checkpoints: u64,
        /// Deliveries at the gate, ahead of the log's commit, by the
        /// replicas running at the end (plain listeners only).
        gate_deliveries: u64,
        /// With two or more redirectors: elections won.
        elections: u64,
        /// With two or more redirectors: view writes that reached the store
        /// from a redirector no longer holding the authority.
        deposed_writes: u64,
        /// With a heartbeat: authorities whose lease a standby revoked
        /// because their heartbeat had stopped.
        heartbeat_depositions: u64,
    },
    /// The faults left no replica both running, in the view and holding
    /// the group's state: no liveness is owed.
    GroupLost {
        /// Simulated time when the group was lost.
        at_ms: u64,
    },
    /// An invariant failed, or the transfers did not finish in time.
    Violation {
        /// Simulated time of the violation.
        at_ms: u64,
        /// What was violated, with the values that show it.
        what: String,
    },
}
