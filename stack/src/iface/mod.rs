//! The stack core: demultiplexing, listeners, ICMP, and the poll interface.
//!
//! Call order for a driver loop:
//! 1. `handle_packet(now, pkt)` for every packet read from the device;
//! 2. `handle_timeout(now)` when `poll_timeout()` has passed;
//! 3. drain `poll_event()` and let the application `accept`/`recv`/`send`;
//! 4. drain `poll_transmit(now, buf)` into the device;
//! 5. sleep until the device is readable or `poll_timeout()`.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};

/// Tables looked up on every packet: ahash keeps SipHash's protection
/// against keys chosen to collide (random keys per table) at a fraction of
/// its cost (SipHash was about 8% of the driver's time moving bulk data).
type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;
type FastSet<K> = HashSet<K, ahash::RandomState>;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::{Config, FragmentPolicy};
use crate::stats::Stats;
use crate::tcp::conn::Tcb;
use hydra_base::time::Instant;
use hydra_base::Seq;

mod app;
mod changes;
mod checkpoints;
mod fragments;
mod handshake;
mod input;
mod ordered;
mod output;
mod replication;
mod transfer;
pub use checkpoints::ApplyError;
pub use ordered::Delivery;

pub use hydra_base::{ConnKey, Gate, Role};

/// Something the application or the replication layer should look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// A listener has an established connection waiting in `accept`.
    Acceptable {
        /// The listener's address.
        local: SocketAddr,
    },
    /// New bytes or end of stream can be read.
    Readable(ConnKey),
    /// Send buffer space became free.
    Writable(ConnKey),
    /// In-order receive progress changed (rcv_nxt, FIN or right edge): replicas
    /// confirm what they hold. Emitted only when the role is not `Standalone`.
    Progress(ConnKey),
    /// A connection entered ESTABLISHED (replication logs it as opened).
    Established(ConnKey),
    /// The connection is gone; `recv`/`send` now return its error.
    Closed(ConnKey),
}

/// Why `listen` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ListenError {
    /// Something already listens on this address and port.
    #[error("address already in use")]
    AddrInUse,
    /// A stack has one ordered listener: its records are one sequence.
    #[error("this stack already has an ordered listener")]
    OrderedTaken,
}

/// Why `connect` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// A connection with this 4-tuple exists.
    #[error("connection already exists")]
    AddrInUse,
    /// The stack holds `max_connections` already.
    #[error("too many connections")]
    TooMany,
    /// This very connection (same 4-tuple and initial sequence number)
    /// ended here already: a late "opened" log entry must not bring it back.
    #[error("the connection already ended here")]
    Finished,
    /// No listener takes the connection's local address.
    #[error("no listener for the connection's address")]
    NoListener,
}

/// Why `send` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No such connection.
    #[error("not connected")]
    NotConnected,
    /// The send buffer is full; wait for `Event::Writable`.
    #[error("send buffer full")]
    WouldBlock,
    /// We shut down our side already.
    #[error("connection closed for writing")]
    Closed,
    /// The peer reset the connection.
    #[error("connection reset by peer")]
    Reset,
    /// Retransmissions or keepalives ran out.
    #[error("connection timed out")]
    TimedOut,
}

/// Why `recv` failed. End of stream is `Ok(0)`, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// No such connection.
    #[error("not connected")]
    NotConnected,
    /// Nothing to read yet; wait for `Event::Readable`.
    #[error("no data available")]
    WouldBlock,
    /// The peer reset the connection.
    #[error("connection reset by peer")]
    Reset,
    /// Retransmissions or keepalives ran out.
    #[error("connection timed out")]
    TimedOut,
}

impl From<SendError> for std::io::Error {
    fn from(e: SendError) -> Self {
        use std::io::ErrorKind as K;
        let kind = match e {
            SendError::NotConnected => K::NotConnected,
            SendError::WouldBlock => K::WouldBlock,
            SendError::Closed => K::BrokenPipe,
            SendError::Reset => K::ConnectionReset,
            SendError::TimedOut => K::TimedOut,
        };
        std::io::Error::new(kind, e)
    }
}

impl From<RecvError> for std::io::Error {
    fn from(e: RecvError) -> Self {
        use std::io::ErrorKind as K;
        let kind = match e {
            RecvError::NotConnected => K::NotConnected,
            RecvError::WouldBlock => K::WouldBlock,
            RecvError::Reset => K::ConnectionReset,
            RecvError::TimedOut => K::TimedOut,
        };
        std::io::Error::new(kind, e)
    }
}

/// An application's saved state of one connection (see
/// [`Stack::set_app_state`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppState {
    /// The application's opaque state bytes.
    pub state: Vec<u8>,
    /// Bytes the application had written when it set `state`.
    pub set_at: u64,
    /// Bytes it has written so far.
    pub written: u64,
}

/// A read-only view of one connection, for status pages and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// The connection's addresses (local and remote endpoints).
    pub key: ConnKey,
    /// Its RFC 9293 state.
    pub state: crate::tcp::State,
    /// Bytes the application can read now.
    pub recv_ready: usize,
    /// Bytes written by the application and not yet acknowledged by the peer.
    pub send_queued: usize,
    /// Free space in the send buffer.
    pub send_space: usize,
    /// The next byte the application's read returns (a passive primary
    /// reads ahead of what its backups have released).
    pub read_from: Seq,
    /// RCV.NXT: next sequence number expected from the peer.
    pub rcv_nxt: Seq,
    /// SND.UNA: oldest unacknowledged sequence number.
    pub snd_una: Seq,
    /// SND.NXT: next sequence number to send.
    pub snd_nxt: Seq,
    /// Congestion window (cwnd) in bytes.
    pub cwnd: u32,
    /// Smoothed round-trip time (SRTT) in microseconds, once measured.
    pub srtt_us: Option<u64>,
}

/// A passive-open endpoint.
#[derive(Debug)]
struct Listener {
    /// Established connections not yet taken by `accept`.
    accept_queue: VecDeque<ConnKey>,
    /// Connections in SYN-RECEIVED created from this listener.
    half_open: usize,
    /// Passive replication: only the primary's application accepts.
    passive: bool,
}

/// Whether a packet from `src` to `dst` can be part of a connection or be
/// answered: RFC 1122 3.2.1.3 forbids 0.0.0.0, broadcast, multicast,
/// loopback (from outside) and class E as an IPv4 source; RFC 4291 the
/// unspecified, loopback and multicast IPv6 sources (and an IPv4-mapped
/// one, which no IPv6 host sends from). A connection never has a broadcast,
/// multicast or unspecified destination.
fn plausible(src: IpAddr, dst: IpAddr) -> bool {
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let bad_source = src.is_unspecified()
                || src.is_broadcast()
                || src.is_multicast()
                || src.is_loopback()
                || src.octets()[0] >= 240;
            let bad_destination = dst.is_broadcast() || dst.is_multicast() || dst.is_unspecified();
            !bad_source && !bad_destination
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let bad_source = src.is_unspecified()
                || src.is_loopback()
                || src.is_multicast()
                || src.to_ipv4_mapped().is_some();
            let bad_destination = dst.is_multicast() || dst.is_unspecified();
            !bad_source && !bad_destination
        }
        _ => false,
    }
}

/// The wildcard listeners that take a connection to `local` when no
/// listener is bound to `local` itself, in order: `0.0.0.0:port` (IPv4
/// only), then `[::]:port`, which takes IPv4 and IPv6 alike as a Linux
/// socket does by default (`net.ipv6.bindv6only = 0`).
pub(crate) fn wildcards(local: SocketAddr) -> impl Iterator<Item = SocketAddr> {
    let port = local.port();
    let v4 = local
        .is_ipv4()
        .then(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
    v4.into_iter().chain(std::iter::once(SocketAddr::from((
        Ipv6Addr::UNSPECIFIED,
        port,
    ))))
}

/// Control packets (RSTs, ICMP) queued at most; beyond this they are dropped.
const MAX_CONTROL_QUEUE: usize = 1024;
/// Largest IPv4 packet we build.
pub const MAX_PACKET: usize = 65535;

/// The stack core. See the module docs for the call order.
pub struct Stack {
    cfg: Config,
    stats: Stats,
    role: Role,
    conns: FastMap<ConnKey, Tcb>,
    listeners: FastMap<SocketAddr, Listener>,
    /// Connections that may have something to send, in round-robin order.
    ready: VecDeque<ConnKey>,
    in_ready: FastSet<ConnKey>,
    /// (deadline, connection); stale entries are skipped when popped.
    timers: BinaryHeap<Reverse<(Instant, ConnKey)>>,
    events: VecDeque<Event>,
    queued_events: FastSet<Event>,
    control: VecDeque<Vec<u8>>,
    /// Joining replica: packets of connections it does not hold yet, replayed
    /// when their snapshot is imported (see [`Stack::set_parking`]).
    parking: Option<usize>,
    parked: FastMap<ConnKey, Vec<Vec<u8>>>,
    parked_bytes: usize,
    /// The group's current view epoch (replicated roles).
    epoch: u64,
    /// Passive connections changed since the last checkpoint (primary).
    passive_dirty: BTreeSet<ConnKey>,
    /// Connections that ended, with their peer's ISN, newest last (bounded).
    ended: FastMap<ConnKey, Seq>,
    ended_order: VecDeque<ConnKey>,
    /// Deliveries of ordered listeners' connections (see [`Delivery`]).
    ordered: ordered::OrderedLog,
    /// Out-of-order bytes held over all connections, kept as segments
    /// arrive and connections go (and recounted now and then).
    ooo_total: usize,
    /// Packets since `ooo_total` was last recounted.
    packets_since_recount: u32,
    /// Incomplete IPv4 datagrams (`FragmentPolicy::Reassemble`).
    reassembly: Option<fragments::Reassembly>,
}

/// Ended connections remembered (so late log entries cannot revive them).
const ENDED_REMEMBERED: usize = 4096;

impl Stack {
    /// Create a stack with no listeners and no connections, in role
    /// [`Role::Standalone`] (see [`set_role`](Self::set_role)).
    ///
    /// `config` is kept as given (read it back with [`config`](Self::config));
    /// IPv4 fragment reassembly is set up if `config.fragments` is
    /// [`FragmentPolicy::Reassemble`]. The stack reads no clock and does no
    /// I/O: drive it with [`handle_packet`](Self::handle_packet),
    /// [`handle_timeout`](Self::handle_timeout) and the `poll_*` methods.
    pub fn new(config: Config) -> Stack {
        let reassembly = match config.fragments {
            FragmentPolicy::Drop => None,
            FragmentPolicy::Reassemble { max_bytes, timeout } => {
                Some(fragments::Reassembly::new(max_bytes, timeout))
            }
        };
        Stack {
            cfg: config,
            stats: Stats::default(),
            role: Role::Standalone,
            conns: FastMap::default(),
            listeners: FastMap::default(),
            ready: VecDeque::new(),
            in_ready: FastSet::default(),
            timers: BinaryHeap::new(),
            events: VecDeque::new(),
            queued_events: FastSet::default(),
            control: VecDeque::new(),
            parking: None,
            parked: FastMap::default(),
            parked_bytes: 0,
            epoch: 0,
            passive_dirty: BTreeSet::new(),
            ended: FastMap::default(),
            ended_order: VecDeque::new(),
            ordered: ordered::OrderedLog::default(),
            ooo_total: 0,
            packets_since_recount: 0,
            reassembly,
        }
    }

    /// The configuration the stack was created with (as changed since by
    /// [`set_segmentation_offload`](Self::set_segmentation_offload)).
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The stack's counters (see [`Stats`]).
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Count packets from `poll_transmit` that never reached the wire.
    pub fn count_dropped_output(&mut self, no_lease: usize, device: usize) {
        self.stats.drop_output_no_lease += no_lease as u64;
        self.stats.drop_output_device += device as u64;
    }

    /// The stack's current role: [`Role::Standalone`] until
    /// [`set_role`](Self::set_role) changes it.
    pub fn role(&self) -> Role {
        self.role
    }
}
