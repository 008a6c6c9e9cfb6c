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
use std::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::wire::{
    Icmpv4DstUnreachable, Icmpv4Repr, Ipv4Repr, TcpControl, TcpRepr, TcpSeqNumber,
};

use crate::config::{Config, FragmentPolicy};
use crate::stats::Stats;
use crate::tcp::conn::{ConnError, Options, Signals, Tcb};
use crate::tcp::snapshot::{ConnSnapshot, OpenRecord};
use crate::tcp::{congestion::Congestion, isn, syncookie, State};
use crate::wire::{self, ParseError};
use hydra_base::time::Instant;
use hydra_base::Seq;

mod fragments;
mod ordered;
mod passive;
pub use ordered::Delivery;
pub use passive::ApplyError;

pub use hydra_base::{ConnKey, Gate, Role};

/// Something the application or the replication layer should look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// A listener has an established connection waiting in `accept`.
    Acceptable { local: SocketAddrV4 },
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
    #[error("not connected")]
    NotConnected,
    /// Nothing to read yet; wait for `Event::Readable`.
    #[error("no data available")]
    WouldBlock,
    #[error("connection reset by peer")]
    Reset,
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
    pub state: Vec<u8>,
    /// Bytes the application had written when it set `state`.
    pub set_at: u64,
    /// Bytes it has written so far.
    pub written: u64,
}

/// A read-only view of one connection, for status pages and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    pub key: ConnKey,
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
    pub rcv_nxt: Seq,
    pub snd_una: Seq,
    pub snd_nxt: Seq,
    pub cwnd: u32,
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

/// Whether a TCP segment from `src` to `dst` can be part of a connection:
/// RFC 1122 3.2.1.3 forbids 0.0.0.0, broadcast, multicast, loopback (from
/// outside) and class E as a source, and a connection never has a
/// broadcast or multicast destination.
fn plausible(src: Ipv4Addr, dst: Ipv4Addr) -> bool {
    let bad_source = src.is_unspecified()
        || src.is_broadcast()
        || src.is_multicast()
        || src.is_loopback()
        || src.octets()[0] >= 240;
    let bad_destination = dst.is_broadcast() || dst.is_multicast() || dst.is_unspecified();
    !bad_source && !bad_destination
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
    listeners: FastMap<SocketAddrV4, Listener>,
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

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Count packets from `poll_transmit` that never reached the wire.
    pub fn count_dropped_output(&mut self, no_lease: usize, device: usize) {
        self.stats.drop_output_no_lease += no_lease as u64;
        self.stats.drop_output_device += device as u64;
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Listen on `local` (`0.0.0.0` = any local address).
    pub fn listen(&mut self, local: SocketAddrV4) -> Result<(), ListenError> {
        if self.listeners.contains_key(&local) {
            return Err(ListenError::AddrInUse);
        }
        self.listeners.insert(
            local,
            Listener {
                accept_queue: VecDeque::new(),
                half_open: 0,
                passive: false,
            },
        );
        Ok(())
    }

    pub fn unlisten(&mut self, local: SocketAddrV4) {
        if let Some(l) = self.listeners.remove(&local) {
            for key in l.accept_queue {
                self.abort(key);
            }
        }
    }

    /// Take one established connection from the listener on `local`.
    pub fn accept(&mut self, local: SocketAddrV4) -> Option<ConnKey> {
        if self.accept_blocked(local) {
            return None;
        }
        let l = self.listeners.get_mut(&local)?;
        while let Some(key) = l.accept_queue.pop_front() {
            if let Some(tcb) = self.conns.get_mut(&key) {
                tcb.listener = None;
                return Some(key);
            }
        }
        None
    }

    /// Active open (used by clients in tests and benchmarks).
    pub fn connect(
        &mut self,
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
    ) -> Result<ConnKey, ConnectError> {
        let key = ConnKey { local, remote };
        if self.conns.contains_key(&key) {
            return Err(ConnectError::AddrInUse);
        }
        if self.conns.len() >= self.cfg.max_connections {
            return Err(ConnectError::TooMany);
        }
        let iss = Seq(isn::client_isn(&self.cfg.isn_key, local, remote, now));
        let opts = Options {
            send_mss: self.cfg.mss,
            snd_wscale: 0,
            rcv_wscale: if self.cfg.window_scaling {
                self.wscale_for_buffer()
            } else {
                0
            },
            sack: self.cfg.sack,
            timestamps: self.cfg.timestamps,
            ts_offset: isn::ts_offset(&self.cfg.isn_key, local, remote),
            window_scale_ok: false,
        };
        let mut tcb = Tcb::new(
            now,
            &self.cfg,
            key,
            self.role,
            State::SynSent,
            iss,
            Seq(0),
            opts,
        );
        tcb.opened_epoch = self.epoch;
        self.conns.insert(key, tcb);
        self.stats.connections_opened += 1;
        self.schedule(key);
        Ok(key)
    }

    /// Queue bytes; returns how many were taken (`WouldBlock` if none fit).
    pub fn send(&mut self, key: ConnKey, data: &[u8]) -> Result<usize, SendError> {
        let tcb = self.conns.get_mut(&key).ok_or(SendError::NotConnected)?;
        match tcb.error {
            Some(ConnError::Reset) | Some(ConnError::Refused) => return Err(SendError::Reset),
            Some(ConnError::TimedOut) => return Err(SendError::TimedOut),
            None => {}
        }
        if tcb.fin_queued || matches!(tcb.state, State::Closed | State::TimeWait) {
            return Err(SendError::Closed);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let n = tcb.app_send(data);
        if n == 0 {
            return Err(SendError::WouldBlock);
        }
        tcb.app_written += n as u64;
        self.passive_touched(key);
        self.schedule(key);
        Ok(n)
    }

    /// Read bytes; `Ok(0)` is end of stream.
    pub fn recv(&mut self, key: ConnKey, buf: &mut [u8]) -> Result<usize, RecvError> {
        let tcb = self.conns.get_mut(&key).ok_or(RecvError::NotConnected)?;
        if tcb.readable() > 0 {
            let n = tcb.app_recv(buf);
            self.after_read(key);
            return Ok(n);
        }
        Self::recv_status(tcb)
    }

    fn after_read(&mut self, key: ConnKey) {
        self.passive_touched(key);
        if self.conns.get(&key).is_some_and(|t| t.ack_now) {
            self.schedule(key);
        }
        if self.role != Role::Standalone {
            // Reading moved the right edge: replicas report it, or the
            // group's window would lag behind the buffers.
            self.push_event(Event::Progress(key));
        }
    }

    /// What a read finds when nothing is readable.
    fn recv_status(tcb: &Tcb) -> Result<usize, RecvError> {
        if tcb.at_eof() {
            return Ok(0);
        }
        match tcb.error {
            Some(ConnError::Reset) | Some(ConnError::Refused) => Err(RecvError::Reset),
            Some(ConnError::TimedOut) => Err(RecvError::TimedOut),
            None if tcb.state == State::Closed => Ok(0),
            None => Err(RecvError::WouldBlock),
        }
    }

    /// Close our sending side (FIN after queued data).
    pub fn shutdown_write(&mut self, key: ConnKey) {
        let now = self.now_of(key);
        if let Some(tcb) = self.conns.get_mut(&key) {
            let mut sig = Signals::default();
            tcb.app_shutdown_write(now, &self.cfg, &mut sig);
            self.passive_touched(key);
            self.after_change(key, sig);
        }
    }

    /// Close: FIN after queued data; the stack frees the connection when done.
    /// Unread received data makes it a reset, as RFC 2525 section 2.17 advises.
    pub fn close(&mut self, key: ConnKey) {
        let Some(tcb) = self.conns.get_mut(&key) else {
            return;
        };
        tcb.app_closed = true;
        if tcb.readable() > 0 && tcb.role == Role::Standalone {
            self.abort(key);
            return;
        }
        if tcb.state == State::Closed {
            self.remove(key);
            return;
        }
        self.shutdown_write(key);
    }

    /// Abort with RST.
    pub fn abort(&mut self, key: ConnKey) {
        let Some(tcb) = self.conns.get(&key) else {
            return;
        };
        if tcb.is_synchronized() || tcb.state == State::SynReceived {
            let (local, remote, seq, ack) =
                (tcb.key.local, tcb.key.remote, tcb.snd_nxt, tcb.rcv_nxt);
            if tcb.role != Role::Backup
                && tcb.state != State::Closed
                && tcb.state != State::TimeWait
            {
                self.queue_rst(local, remote, seq, Some(ack));
            }
        }
        self.remove(key);
    }

    pub fn set_nodelay(&mut self, key: ConnKey, nodelay: bool) {
        if let Some(tcb) = self.conns.get_mut(&key) {
            tcb.nodelay = nodelay;
            self.schedule(key);
        }
    }

    pub fn conn_info(&self, key: ConnKey) -> Option<ConnInfo> {
        let t = self.conns.get(&key)?;
        Some(ConnInfo {
            key,
            state: t.state,
            recv_ready: t.readable(),
            send_queued: t.send.data.len(),
            send_space: t.send.space(),
            read_from: t.recv.start + t.read_ahead(),
            rcv_nxt: t.rcv_nxt,
            snd_una: t.snd_una,
            snd_nxt: t.snd_nxt,
            cwnd: t.cc.window(),
            srtt_us: t.rtt.srtt().map(|d| d.total_micros()),
        })
    }

    pub fn connections(&self) -> Vec<ConnKey> {
        let mut v: Vec<ConnKey> = self.conns.keys().copied().collect();
        v.sort();
        v
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Bytes held for incomplete IPv4 datagrams (`FragmentPolicy::Reassemble`).
    pub fn fragment_bytes(&self) -> usize {
        self.reassembly
            .as_ref()
            .map_or(0, fragments::Reassembly::held_bytes)
    }

    /// Bytes held out of order (waiting for a hole to fill), over all
    /// connections.
    pub fn out_of_order_bytes(&self) -> usize {
        self.conns.values().map(|t| t.recv.ooo_bytes).sum()
    }

    /// Free space in a connection's send buffer.
    pub fn send_space(&self, key: ConnKey) -> usize {
        self.conns.get(&key).map_or(0, |t| t.send.space())
    }

    // ---- input ----

    pub fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        self.stats.packets_in += 1;
        self.packets_since_recount += 1;
        if self.packets_since_recount >= 4096 {
            // Paths other than input (repairs, imports) change what
            // connections hold out of order too: recount, amortised.
            self.packets_since_recount = 0;
            self.ooo_total = self.out_of_order_bytes();
        }
        self.stats.bytes_in += packet.len() as u64;
        self.ip_input(now, packet);
    }

    /// One IPv4 packet off the device, or reassembled from fragments.
    fn ip_input(&mut self, now: Instant, packet: &[u8]) {
        match wire::parse(packet) {
            Err(ParseError::BadIp) | Err(ParseError::BadOther) => self.stats.drop_bad_ip += 1,
            Err(ParseError::BadTcp) => self.stats.drop_bad_tcp += 1,
            Err(ParseError::Fragment) => self.fragment_input(now, packet),
            Ok(wire::Packet::Tcp(seg)) if !plausible(*seg.src.ip(), *seg.dst.ip()) => {
                //= RFC 9293 section 3.10.7.2
                //# If the SYN bit is set ... An incoming SYN segment with a
                //# broadcast or multicast destination address ... SHOULD be
                //# silently discarded
                // Nor is anything from an address no host owns answered: a
                // SYN-ACK to 0.0.0.0 or a broadcast address helps nobody.
                self.stats.drop_bad_address += 1;
            }
            Ok(wire::Packet::Tcp(seg)) => {
                let key = ConnKey {
                    local: seg.dst,
                    remote: seg.src,
                };
                // A joining replica takes every connection by snapshot, new
                // ones too: one it opened from the SYN itself may miss copies
                // the group acknowledged before it first confirmed, which the
                // primary's application may have read (seed 62064).
                if self.parking.is_some() && !self.conns.contains_key(&key) {
                    self.park(key, packet);
                } else {
                    self.tcp_input(now, seg.dst, seg.src, &seg.tcp)
                }
            }
            Ok(wire::Packet::Icmp { src, dst, repr }) => self.icmp_input(now, src, dst, &repr),
            Ok(wire::Packet::Udp { src, dst, quote }) => {
                self.stats.drop_no_socket += 1;
                //= RFC 1122 section 3.2.2.1
                //# A host SHOULD generate Destination Unreachable messages with code: 3 (Port
                //# Unreachable), if the designated transport protocol (e.g., UDP) is unable to
                //# demultiplex the datagram
                if self.role != Role::Backup {
                    self.queue_port_unreachable(dst, src, quote);
                }
            }
            Ok(wire::Packet::Other { .. }) => self.stats.drop_unknown_protocol += 1,
        }
    }

    /// A valid IPv4 fragment: dropped or reassembled, per `Config::fragments`.
    fn fragment_input(&mut self, now: Instant, packet: &[u8]) {
        let Some(reassembly) = self.reassembly.as_mut() else {
            self.stats.drop_fragment += 1;
            return;
        };
        // Fragments from or to addresses no host owns get no memory.
        if let Some((src, dst)) = wire::ipv4_addresses(packet) {
            if !plausible(src, dst) {
                self.stats.drop_bad_address += 1;
                return;
            }
        }
        let outcome = reassembly.insert(now, packet);
        self.stats.drop_fragment += outcome.dropped;
        if let Some(whole) = outcome.complete {
            self.stats.fragments_reassembled += 1;
            self.ip_input(now, &whole);
        }
    }

    fn tcp_input(
        &mut self,
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        seg: &TcpRepr<'_>,
    ) {
        let key = ConnKey { local, remote };
        if let Some(tcb) = self.conns.get_mut(&key) {
            // RFC 6191: a new SYN may reuse a 4-tuple in TIME-WAIT if its sequence number is higher.
            let reuse = tcb.state == State::TimeWait
                && seg.control == TcpControl::Syn
                && seg.ack_number.is_none()
                && Seq(seg.seq_number.0 as u32) > tcb.rcv_nxt;
            if !reuse {
                // The stack-wide budget for out-of-order bytes: this
                // connection may hold what the others leave of it.
                let held = tcb.recv.ooo_bytes;
                let others = self.ooo_total.saturating_sub(held);
                let room = self.cfg.ooo_budget.saturating_sub(others);
                tcb.recv.ooo_limit = self.cfg.ooo_limit.min(room);
                let clamped = room < self.cfg.ooo_limit;
                let drops = self.stats.drop_ooo_limit;
                let sig = tcb.input(now, &self.cfg, seg, &mut self.stats);
                self.ooo_total = others + tcb.recv.ooo_bytes;
                if clamped {
                    self.stats.drop_ooo_budget += self.stats.drop_ooo_limit - drops;
                }
                if let Some(seq) = tcb.reply_rst.take() {
                    self.queue_rst(local, remote, seq, None);
                }
                self.after_change(key, sig);
                return;
            }
            self.remove(key);
        }
        match self.listener_for(local) {
            Some(l) => self.listen_input(now, l, key, seg),
            None => {
                self.stats.drop_no_socket += 1;
                self.reset_for(key, seg);
            }
        }
    }

    //= RFC 9293 section 3.10.7.1
    //# If the state is CLOSED ... An incoming segment not containing a RST causes a RST to be
    //# sent in response. If the ACK bit is off, sequence number zero is used,
    //# <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
    //# If the ACK bit is on, <SEQ=SEG.ACK><CTL=RST>
    fn reset_for(&mut self, key: ConnKey, seg: &TcpRepr<'_>) {
        if seg.control == TcpControl::Rst || self.role == Role::Backup {
            return;
        }
        match seg.ack_number {
            Some(ack) => self.queue_rst(key.local, key.remote, Seq(ack.0 as u32), None),
            None => {
                let ack = Seq(seg.seq_number.0 as u32) + seg.segment_len();
                self.queue_rst(key.local, key.remote, Seq(0), Some(ack));
            }
        }
    }

    //= RFC 9293 section 3.10.7.2
    //# If the state is LISTEN, then first check for a RST ... second, check for an ACK ...
    //# third, check for a SYN
    fn listen_input(
        &mut self,
        now: Instant,
        listener: SocketAddrV4,
        key: ConnKey,
        seg: &TcpRepr<'_>,
    ) {
        match (seg.control, seg.ack_number) {
            (TcpControl::Rst, _) => {}
            (TcpControl::Syn, None) => self.syn_input(now, listener, key, seg),
            (_, Some(_)) => {
                if !self.cookie_input(now, listener, key, seg) {
                    self.stats.drop_no_socket += 1;
                    self.reset_for(key, seg);
                }
            }
            _ => self.stats.drop_no_socket += 1,
        }
    }

    /// Our receive window shift: the smallest that lets the buffer be advertised.
    fn wscale_for_buffer(&self) -> u8 {
        let mut shift = 0u8;
        while shift < 14 && (self.cfg.recv_buffer >> shift) > u16::MAX as usize {
            shift += 1;
        }
        shift
    }

    /// Options for a passive open, from the peer's SYN and our configuration.
    fn negotiate_syn(&self, key: ConnKey, seg: &TcpRepr<'_>) -> Options {
        let ws_ok = self.cfg.window_scaling && seg.window_scale.is_some();
        Options {
            //= RFC 9293 section 3.7.1
            //# If an MSS Option is not received at connection setup, TCP implementations MUST
            //# assume a default send MSS of 536 (576 - 40) for IPv4
            send_mss: seg.max_seg_size.unwrap_or(536).clamp(64, self.cfg.mss),
            snd_wscale: if ws_ok {
                seg.window_scale.unwrap_or(0)
            } else {
                0
            },
            rcv_wscale: if ws_ok { self.wscale_for_buffer() } else { 0 },
            sack: self.cfg.sack && seg.sack_permitted,
            timestamps: self.cfg.timestamps && seg.timestamp.is_some(),
            ts_offset: isn::ts_offset(&self.cfg.isn_key, key.local, key.remote),
            window_scale_ok: ws_ok,
        }
    }

    fn syn_input(&mut self, now: Instant, listener: SocketAddrV4, key: ConnKey, seg: &TcpRepr<'_>) {
        let peer_isn = seg.seq_number.0 as u32;
        let Some(l) = self.listeners.get(&listener) else {
            return;
        };
        let (half_open, mut queued) = (l.half_open, l.accept_queue.len());
        if self.accept_blocked(listener) {
            queued = 0; // no application takes them here: they wait for a takeover
        }
        if self.conns.len() >= self.cfg.max_connections || queued >= self.cfg.accept_backlog {
            self.stats.drop_syn_overflow += 1;
            return;
        }
        let opts = self.negotiate_syn(key, seg);
        // Half-open connections over every listener: a flood spread over
        // many ports or addresses meets the same bound as one on one.
        let half_open_total: usize = self.listeners.values().map(|l| l.half_open).sum();
        if half_open >= self.cfg.syn_backlog || half_open_total >= self.cfg.max_half_open {
            //= RFC 4987 section 3.6
            //# SYN cookies ... the server does not need to allocate state for the half-open
            //# connection; the state is encoded in the initial sequence number.
            // Replicas must agree on every connection's state, so only a standalone stack uses cookies.
            if self.role != Role::Standalone {
                self.stats.drop_syn_overflow += 1;
                return;
            }
            self.send_cookie_synack(now, key, seg, opts);
            return;
        }
        let iss = Seq(isn::server_isn(
            &self.cfg.isn_key,
            key.local,
            key.remote,
            peer_isn,
        ));
        let mut tcb = Tcb::new(
            now,
            &self.cfg,
            key,
            self.role,
            State::SynReceived,
            iss,
            Seq(peer_isn),
            opts,
        );
        tcb.listener = Some(listener);
        tcb.snd_wnd = seg.window_len as u32;
        if let Some(ts) = seg.timestamp {
            tcb.ts_recent = ts.tsval;
        }
        tcb.opened_epoch = self.epoch;
        self.conns.insert(key, tcb);
        if let Some(l) = self.listeners.get_mut(&listener) {
            l.half_open += 1;
        }
        self.stats.connections_opened += 1;
        if self.role != Role::Standalone {
            // Replicas confirm they hold the SYN: the primary answers it only then.
            self.push_event(Event::Progress(key));
        }
        self.schedule(key);
        self.update_timer(key);
    }

    fn cookie_counter(now: Instant) -> u32 {
        (now.total_micros() / 64_000_000) as u32
    }

    fn send_cookie_synack(&mut self, now: Instant, key: ConnKey, seg: &TcpRepr<'_>, opts: Options) {
        let peer_isn = seg.seq_number.0 as u32;
        let want = syncookie::CookieOptions {
            mss: opts.send_mss,
            window_scale: opts.window_scale_ok.then_some(opts.snd_wscale),
            sack: opts.sack,
        };
        let (cookie, _) = syncookie::make_cookie(
            &self.cfg.isn_key,
            key.local,
            key.remote,
            peer_isn,
            Self::cookie_counter(now),
            want,
        );
        // Reply from a throwaway control block: nothing is kept.
        let mut opts = opts;
        opts.timestamps = false; // the cookie cannot carry TS.Recent
        let mut tcb = Tcb::new(
            now,
            &self.cfg,
            key,
            self.role,
            State::SynReceived,
            Seq(cookie),
            Seq(peer_isn),
            opts,
        );
        if let Some(out) = tcb.poll_output(now, &self.cfg, 0, &mut self.stats) {
            let mut buf = vec![0u8; 128];
            if let Some(n) = wire::emit_tcp(
                &mut buf,
                key.local,
                key.remote,
                self.cfg.ttl,
                &out.header,
                (&[], &[]),
            ) {
                buf.truncate(n);
                self.stats.syn_cookies_sent += 1;
                self.push_control(buf);
            }
        }
    }

    /// An ACK for a listener: maybe the completion of a SYN-cookie handshake.
    fn cookie_input(
        &mut self,
        now: Instant,
        listener: SocketAddrV4,
        key: ConnKey,
        seg: &TcpRepr<'_>,
    ) -> bool {
        if self.role != Role::Standalone || seg.control == TcpControl::Syn {
            return false;
        }
        let Some(ack) = seg.ack_number else {
            return false;
        };
        let cookie = (ack.0 as u32).wrapping_sub(1);
        let peer_isn = (seg.seq_number.0 as u32).wrapping_sub(1);
        let counter = Self::cookie_counter(now);
        let Some(c) = syncookie::check_cookie(
            &self.cfg.isn_key,
            key.local,
            key.remote,
            peer_isn,
            cookie,
            counter,
        ) else {
            self.stats.syn_cookies_rejected += 1;
            return false;
        };
        if self.conns.len() >= self.cfg.max_connections {
            self.stats.drop_syn_overflow += 1;
            return true;
        }
        let ws_ok = c.window_scale.is_some() && self.cfg.window_scaling;
        let opts = Options {
            send_mss: c.mss.min(self.cfg.mss),
            snd_wscale: c.window_scale.unwrap_or(0),
            rcv_wscale: if ws_ok { self.wscale_for_buffer() } else { 0 },
            sack: c.sack,
            timestamps: false,
            ts_offset: isn::ts_offset(&self.cfg.isn_key, key.local, key.remote),
            window_scale_ok: ws_ok,
        };
        let mut tcb = Tcb::new(
            now,
            &self.cfg,
            key,
            self.role,
            State::SynReceived,
            Seq(cookie),
            Seq(peer_isn),
            opts,
        );
        tcb.snd_nxt = tcb.iss + 1u32;
        tcb.snd_max = tcb.snd_nxt;
        tcb.listener = Some(listener);
        self.stats.syn_cookies_accepted += 1;
        self.stats.connections_opened += 1;
        if let Some(l) = self.listeners.get_mut(&listener) {
            l.half_open += 1;
        }
        let sig = tcb.input(now, &self.cfg, seg, &mut self.stats);
        tcb.opened_epoch = self.epoch;
        self.conns.insert(key, tcb);
        self.after_change(key, sig);
        true
    }

    fn icmp_input(&mut self, now: Instant, src: Ipv4Addr, dst: Ipv4Addr, repr: &Icmpv4Repr<'_>) {
        match *repr {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => {
                if !self.cfg.icmp_echo || self.role == Role::Backup {
                    return;
                }
                let reply = Icmpv4Repr::EchoReply {
                    ident,
                    seq_no,
                    data,
                };
                let mut buf = vec![0u8; wire::IPV4_HEADER_LEN + reply.buffer_len()];
                if let Some(n) = wire::emit_icmp(&mut buf, dst, src, self.cfg.ttl, &reply) {
                    buf.truncate(n);
                    self.stats.icmp_echo_replies += 1;
                    self.push_control(buf);
                }
            }
            Icmpv4Repr::DstUnreachable { header, data, .. } => {
                self.stats.icmp_unreachable_received += 1;
                //= RFC 5461 section 4
                //# ... TCP SHOULD abort connections in SYN-SENT state on hard errors (port unreachable);
                //# established connections treat them as soft errors.
                if header.next_header == smoltcp::wire::IpProtocol::Tcp && data.len() >= 4 {
                    let sport = u16::from_be_bytes([data[0], data[1]]);
                    let dport = u16::from_be_bytes([data[2], data[3]]);
                    let key = ConnKey {
                        local: SocketAddrV4::new(header.src_addr, sport),
                        remote: SocketAddrV4::new(header.dst_addr, dport),
                    };
                    if let Some(tcb) = self.conns.get_mut(&key) {
                        if tcb.state == State::SynSent {
                            let mut sig = Signals::default();
                            tcb.close_with(Some(ConnError::Refused), &mut sig);
                            self.after_change(key, sig);
                        }
                    }
                }
                let _ = now;
            }
            _ => {}
        }
    }

    fn queue_port_unreachable(&mut self, local: Ipv4Addr, remote: Ipv4Addr, quote: &[u8]) {
        let Ok(ip) = smoltcp::wire::Ipv4Packet::new_checked(quote) else {
            return;
        };
        let Ok(header) = Ipv4Repr::parse(&ip, &smoltcp::phy::ChecksumCapabilities::ignored())
        else {
            return;
        };
        let data = &quote[ip.header_len() as usize..];
        let repr = Icmpv4Repr::DstUnreachable {
            reason: Icmpv4DstUnreachable::PortUnreachable,
            header,
            data,
        };
        let mut buf = vec![0u8; wire::IPV4_HEADER_LEN + repr.buffer_len()];
        if let Some(n) = wire::emit_icmp(&mut buf, local, remote, self.cfg.ttl, &repr) {
            buf.truncate(n);
            self.push_control(buf);
        }
    }

    fn queue_rst(&mut self, local: SocketAddrV4, remote: SocketAddrV4, seq: Seq, ack: Option<Seq>) {
        let hdr = TcpRepr {
            src_port: local.port(),
            dst_port: remote.port(),
            control: TcpControl::Rst,
            seq_number: TcpSeqNumber(seq.0 as i32),
            ack_number: ack.map(|a| TcpSeqNumber(a.0 as i32)),
            window_len: 0,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        let mut buf = vec![0u8; 64];
        if let Some(n) = wire::emit_tcp(&mut buf, local, remote, self.cfg.ttl, &hdr, (&[], &[])) {
            buf.truncate(n);
            self.stats.resets_sent += 1;
            self.push_control(buf);
        }
    }

    fn push_control(&mut self, pkt: Vec<u8>) {
        if self.control.len() >= MAX_CONTROL_QUEUE {
            self.stats.drop_syn_overflow += 1;
            return;
        }
        self.control.push_back(pkt);
    }

    // ---- bookkeeping after every change to a connection ----

    fn now_of(&self, key: ConnKey) -> Instant {
        self.conns
            .get(&key)
            .map_or(Instant::ZERO, |t| t.last_recv_at.max(t.last_send_at))
    }

    fn schedule(&mut self, key: ConnKey) {
        if self.in_ready.insert(key) {
            self.ready.push_back(key);
        }
    }

    fn push_event(&mut self, ev: Event) {
        if self.queued_events.insert(ev) {
            self.events.push_back(ev);
        }
    }

    /// Keep the timer heap holding this connection's earliest deadline.
    fn update_timer(&mut self, key: ConnKey) {
        let Some(tcb) = self.conns.get_mut(&key) else {
            return;
        };
        let Some(next) = tcb.timers.next() else {
            return;
        };
        if tcb.scheduled_deadline.is_none_or(|s| next < s) {
            tcb.scheduled_deadline = Some(next);
            self.timers.push(Reverse((next, key)));
        }
    }

    fn after_change(&mut self, key: ConnKey, sig: Signals) {
        let replicated = self.role != Role::Standalone;
        let Some(tcb) = self.conns.get_mut(&key) else {
            return;
        };
        if tcb.unacked_segments > 0 && !tcb.ack_now && tcb.timers.delayed_ack.is_none() {
            if let Some(delay) = self.cfg.delayed_ack {
                tcb.timers.delayed_ack = Some(tcb.last_recv_at + delay);
            }
        }
        tcb.arm_keepalive(&self.cfg);
        let listener = tcb.listener;
        let was_half_open = listener.is_some() && (sig.established || sig.closed);
        if sig.established {
            self.adopt_passive(key);
            if let Some(l) = listener.and_then(|l| self.listeners.get_mut(&l)) {
                l.half_open = l.half_open.saturating_sub(1);
                l.accept_queue.push_back(key);
                self.push_event(Event::Acceptable {
                    local: listener.unwrap_or(key.local),
                });
            }
            if replicated {
                self.push_event(Event::Established(key));
            }
        }
        if sig.readable {
            self.push_event(Event::Readable(key));
            self.record_delivery(key);
        }
        if sig.writable {
            self.push_event(Event::Writable(key));
        }
        if sig.progress && replicated {
            self.push_event(Event::Progress(key));
        }
        if sig.closed {
            self.stats.connections_closed += 1;
            let tcb = &self.conns[&key];
            let unaccepted = listener.is_some();
            if unaccepted && was_half_open && !sig.established {
                if let Some(l) = listener.and_then(|l| self.listeners.get_mut(&l)) {
                    l.half_open = l.half_open.saturating_sub(1);
                }
            }
            if unaccepted || tcb.app_closed {
                self.remove(key);
                return;
            }
            self.record_closed(key);
            self.push_event(Event::Closed(key));
        }
        self.schedule(key);
        self.update_timer(key);
    }

    /// Forget a connection. Replication hears of it (`Closed`) however it
    /// ended, or a group would keep tracking it forever.
    fn remove(&mut self, key: ConnKey) {
        let known = self.detach(key);
        if known {
            self.record_closed(key);
        }
        if known && self.role != Role::Standalone {
            self.push_event(Event::Closed(key));
        }
    }

    /// Forget a connection without telling anyone (it moves elsewhere).
    fn detach(&mut self, key: ConnKey) -> bool {
        let Some(tcb) = self.conns.remove(&key) else {
            return false;
        };
        self.ooo_total = self.ooo_total.saturating_sub(tcb.recv.ooo_bytes);
        if let Some(l) = tcb.listener.and_then(|l| self.listeners.get_mut(&l)) {
            if tcb.state == State::SynReceived {
                l.half_open = l.half_open.saturating_sub(1);
            }
            l.accept_queue.retain(|k| *k != key);
        }
        self.in_ready.remove(&key);
        self.passive_dirty.remove(&key);
        if self.ended.insert(key, tcb.irs).is_none() {
            self.ended_order.push_back(key);
            if self.ended_order.len() > ENDED_REMEMBERED {
                if let Some(old) = self.ended_order.pop_front() {
                    self.ended.remove(&old);
                }
            }
        }
        true
    }

    // ---- time and output ----

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, key))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(tcb) = self.conns.get_mut(&key) else {
                continue;
            };
            if tcb.scheduled_deadline != Some(at) {
                continue; // stale entry
            }
            tcb.scheduled_deadline = None;
            if tcb.timers.next().is_some_and(|d| d <= now) {
                let sig = tcb.on_timeout(now, &self.cfg, &mut self.stats);
                self.after_change(key, sig);
            } else {
                self.update_timer(key);
            }
        }
    }

    /// Write the next packet to send into `buf`; returns its length.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.poll_transmit_segmented(now, buf).map(|(n, _)| n)
    }

    /// Let data segments carry up to `max_payload` bytes (whole multiples
    /// of the connection's segment size) for a device that cuts them
    /// (segmentation offload); `None`: one segment's worth, as on the wire.
    pub fn set_segmentation_offload(&mut self, max_payload: Option<usize>) {
        self.cfg.max_segment_payload = max_payload;
    }

    /// Like [`Stack::poll_transmit`]; also returns, for a segment carrying
    /// more data than one wire segment may, the data bytes per wire segment
    /// the device must cut it into.
    pub fn poll_transmit_segmented(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Option<(usize, Option<usize>)> {
        if let Some(pkt) = self.control.pop_front() {
            if buf.len() < pkt.len() {
                return None;
            }
            buf[..pkt.len()].copy_from_slice(&pkt);
            self.count_out(pkt.len());
            return Some((pkt.len(), None));
        }
        while let Some(key) = self.ready.pop_front() {
            let Some(tcb) = self.conns.get_mut(&key) else {
                self.in_ready.remove(&key);
                continue;
            };
            let room = buf.len().saturating_sub(wire::IPV4_HEADER_LEN + 60);
            let max_payload = self.cfg.max_segment_payload.unwrap_or(0).min(room);
            let segment_payload = tcb.effective_mss(&self.cfg);
            match tcb.poll_output(now, &self.cfg, max_payload, &mut self.stats) {
                Some(out) => {
                    let cut = (out.payload_len > segment_payload).then_some(segment_payload);
                    let payload = tcb.send.slices(out.payload_seq, out.payload_len);
                    let written = wire::emit_tcp(
                        buf,
                        tcb.key.local,
                        tcb.key.remote,
                        self.cfg.ttl,
                        &out.header,
                        payload,
                    );
                    // More may follow: keep it scheduled, behind the others (round robin).
                    self.ready.push_back(key);
                    self.update_timer(key);
                    if let Some(n) = written {
                        self.count_out(n);
                        return Some((n, cut));
                    }
                }
                None => {
                    self.in_ready.remove(&key);
                    self.update_timer(key);
                }
            }
        }
        None
    }

    fn count_out(&mut self, n: usize) {
        self.stats.packets_out += 1;
        self.stats.bytes_out += n as u64;
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Something is waiting in `poll_transmit`.
    pub fn has_output(&self) -> bool {
        !self.control.is_empty() || !self.ready.is_empty()
    }

    /// An event is waiting for [`Stack::poll_event`].
    pub fn has_event(&self) -> bool {
        !self.events.is_empty()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        let ev = self.events.pop_front()?;
        self.queued_events.remove(&ev);
        Some(ev)
    }

    // ---- state export / import ----

    /// Take a connection out of the stack, silently (no RST, no FIN).
    pub fn export(&mut self, key: ConnKey) -> Option<ConnSnapshot> {
        let now = self.now_of(key);
        let snap = self.conns.get(&key)?.to_snapshot(now);
        self.detach(key);
        Some(snap)
    }

    /// Copy a connection's state without removing it (state transfer to a rejoining replica).
    pub fn snapshot(&self, key: ConnKey) -> Option<ConnSnapshot> {
        let now = self.now_of(key);
        Some(self.conns.get(&key)?.to_snapshot(now))
    }

    /// Put a connection into the stack; it carries on from the snapshot's
    /// state. A listener on its address offers it to `accept` (the
    /// application resumes it from its app state); packets parked for it
    /// are replayed.
    pub fn import(
        &mut self,
        now: Instant,
        snapshot: ConnSnapshot,
    ) -> Result<ConnKey, ConnectError> {
        let key = snapshot.key;
        if self.conns.contains_key(&key) {
            return Err(ConnectError::AddrInUse);
        }
        if self.conns.len() >= self.cfg.max_connections {
            return Err(ConnectError::TooMany);
        }
        let mut tcb = Tcb::from_snapshot(now, &self.cfg, self.role, &snapshot);
        tcb.ack_now = self.role != Role::Backup && tcb.is_synchronized();
        let synchronized = tcb.is_synchronized();
        tcb.listener = self.listener_for(key.local);
        self.conns.insert(key, tcb);
        self.stats.connections_opened += 1;
        let sig = Signals {
            established: synchronized,
            writable: true,
            readable: true,
            ..Default::default()
        };
        self.after_change(key, sig);
        self.update_timer(key);
        for packet in self.parked.remove(&key).unwrap_or_default() {
            self.parked_bytes -= packet.len();
            self.handle_packet(now, &packet);
        }
        Ok(key)
    }

    /// The listener that accepts connections to `local`, if any.
    fn listener_for(&self, local: SocketAddrV4) -> Option<SocketAddrV4> {
        let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, local.port());
        if self.listeners.contains_key(&local) {
            Some(local)
        } else {
            self.listeners.contains_key(&any).then_some(any)
        }
    }

    /// Joining replica: hold packets of connections not in the stack (up to
    /// `limit` bytes; over it they are dropped and counted) until
    /// [`import`](Self::import) brings the connection. `None` stops and
    /// forgets what is held.
    pub fn set_parking(&mut self, limit: Option<usize>) {
        self.parking = limit;
        if limit.is_none() {
            self.parked.clear();
            self.parked_bytes = 0;
        }
    }

    fn park(&mut self, key: ConnKey, packet: &[u8]) {
        let limit = self.parking.unwrap_or(0);
        if self.parked_bytes + packet.len() > limit {
            self.stats.drop_parking_full += 1;
            return;
        }
        self.parked_bytes += packet.len();
        self.stats.parked_segments += 1;
        self.parked.entry(key).or_default().push(packet.to_vec());
    }

    /// Copy up to `buf.len()` readable bytes without consuming them.
    pub fn peek(&self, key: ConnKey, buf: &mut [u8]) -> Result<usize, RecvError> {
        let tcb = self.conns.get(&key).ok_or(RecvError::NotConnected)?;
        if tcb.readable() > 0 {
            return Ok(tcb.app_peek(buf));
        }
        Self::recv_status(tcb)
    }

    /// No byte beyond those readable now will ever be readable (end of
    /// stream delivered, an error, or no such connection).
    pub fn input_complete(&self, key: ConnKey) -> bool {
        self.conns.get(&key).is_none_or(Tcb::input_complete)
    }

    /// Mark up to `n` readable bytes as read (after [`peek`](Self::peek)).
    pub fn consume(&mut self, key: ConnKey, n: usize) -> usize {
        let Some(tcb) = self.conns.get_mut(&key) else {
            return 0;
        };
        let n = tcb.app_consume(n);
        if n > 0 {
            self.after_read(key);
        }
        n
    }

    /// Replace the application's state blob of a connection (see
    /// [`Tcb::app_state`](crate::tcp::conn::Tcb)); snapshots carry it.
    pub fn set_app_state(&mut self, key: ConnKey, state: &[u8]) {
        if let Some(tcb) = self.conns.get_mut(&key) {
            tcb.app_state.clear();
            tcb.app_state.extend_from_slice(state);
            tcb.app_state_at = tcb.app_written;
        }
    }

    /// The application's state: the blob, the output count when it was
    /// set, and the output count now.
    pub fn app_state(&self, key: ConnKey) -> Option<AppState> {
        self.conns.get(&key).map(|t| AppState {
            state: t.app_state.clone(),
            set_at: t.app_state_at,
            written: t.app_written,
        })
    }

    // ---- replication ----

    /// The group's view epoch: connections record the one they open in,
    /// and a takeover's timestamp floor grows with the epochs since.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = self.epoch.max(epoch);
    }

    /// Change role. Backup -> Primary performs takeover: immediate ACK on every
    /// connection, retransmission of unacknowledged output, timers resumed.
    pub fn set_role(&mut self, now: Instant, role: Role) {
        let takeover = self.role == Role::Backup && role != Role::Backup;
        let demoted = self.role == Role::Primary && role == Role::Backup;
        self.role = role;
        // Sorted: the same input gives the same output order (simulation replays).
        let mut keys: Vec<ConnKey> = self.conns.keys().copied().collect();
        keys.sort_unstable();
        for key in keys {
            let Some(tcb) = self.conns.get_mut(&key) else {
                continue;
            };
            tcb.role = role;
            if takeover {
                Self::take_over(now, &self.cfg, self.epoch, tcb);
            }
            self.schedule(key);
            self.update_timer(key);
        }
        if demoted {
            self.passive_demote();
        } else if takeover {
            self.passive_promote();
        }
    }

    //= DESIGN.md rule 6
    //# for every connection at once sends the current ACK (and duplicate ACKs where that makes
    //# the client retransmit fast), retransmits unacknowledged output, and resumes timers.
    fn take_over(now: Instant, cfg: &Config, epoch: u64, tcb: &mut Tcb) {
        // Acknowledge only what the log committed (held by every replica)
        // until the live backups confirm more; advertise our own edge, which
        // is never left of what the old primary advertised (it was a minimum
        // that included ours). Every connection gets a gate, half-open ones
        // too: without one a promoted backup would acknowledge ungated.
        if !matches!(tcb.state, State::Closed | State::Listen | State::SynSent) {
            let committed = tcb.delivery_limit.unwrap_or(tcb.rcv_nxt).min(tcb.rcv_nxt);
            // A half-open connection's SYN is not known to be held by
            // every backup (nothing is logged for it): its SYN-ACK waits
            // for their confirmations, as on the old primary.
            let committed = if tcb.state == State::SynReceived {
                tcb.irs
            } else {
                committed
            };
            tcb.gate = Some(Gate {
                ack: committed,
                right_edge: tcb.right_edge(),
            });
        }
        match tcb.state {
            State::SynReceived => tcb.snd_nxt = tcb.iss, // resend the SYN-ACK
            State::Closed | State::TimeWait | State::Listen | State::SynSent => {}
            _ => {
                tcb.snd_nxt = tcb.snd_una;
                tcb.inherited_output = true;
                tcb.cc = Congestion::new(tcb.cc.kind(), tcb.mss());
                tcb.recovery = None;
                tcb.scoreboard.clear();
                tcb.dupacks = 0;
                if tcb.snd_max > tcb.snd_una {
                    tcb.timers.rto = Some(now + tcb.rtt.rto());
                }
                tcb.ack_now = true;
                if !tcb.recv.ooo.is_empty() {
                    tcb.dupack_burst = 2;
                }
            }
        }
        // The floor is our newest echo plus the time since, plus a margin:
        // a second per epoch of the group. An earlier primary whose echoes
        // never reached us (a takeover a few ms before ours) computed its
        // floor from the same echoes with a smaller margin, so ours is
        // above it even if our newest echo arrived a little later than its.
        // The margin counts from the group's first epoch, not from when the
        // connection opened: replicas may disagree on that (a SYN the
        // client had to send again reached them in different epochs), and
        // disagreeing margins let a later floor fall below an earlier one
        // (sweep seeds 201087, 301554, 300557). With no echo yet (the
        // client's packets after its SYN never reached us) the group's
        // shared clock stands in for it. Capped at an hour: the clock must
        // not run ahead by more than PAWS tolerates over many takeovers.
        //= DESIGN.md rule 1
        //# a new primary never sends a TSval lower than one the old primary could have sent
        if tcb.opts.timestamps {
            let echo = if tcb.max_tsecr != 0 {
                let elapsed = now.total_millis().saturating_sub(tcb.max_tsecr_at_ms) as u32;
                tcb.max_tsecr.wrapping_add(elapsed)
            } else {
                tcb.tsval(now)
            };
            let epochs = epoch.saturating_sub(1).clamp(1, 3600) as u32;
            let floor = echo.wrapping_add(1000 * epochs);
            let current = tcb.tsval(now);
            if (current.wrapping_sub(floor) as i32) < 0 {
                tcb.opts.ts_offset = tcb.opts.ts_offset.wrapping_add(floor.wrapping_sub(current));
            }
        }
        tcb.last_send_at = now;
        tcb.arm_keepalive(cfg);
    }

    /// Gate ACKs and window of one connection (primary only); `None` removes the gate.
    pub fn set_gate(&mut self, key: ConnKey, gate: Option<Gate>) {
        let Some(tcb) = self.conns.get_mut(&key) else {
            return;
        };
        let before = tcb.gate;
        // The edge we may advertise never moves left: an earlier gate's edge
        // was justified when it was set, and a shrinking window is what
        // RFC 9293 tells senders to expect but receivers not to do.
        let gate = match (before, gate) {
            (Some(b), Some(g)) => Some(Gate {
                ack: g.ack,
                right_edge: g.right_edge.max(b.right_edge),
            }),
            (_, g) => g,
        };
        tcb.gate = gate;
        let raised = match (before, gate) {
            (Some(b), Some(g)) => g.ack > b.ack || g.right_edge > b.right_edge,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => false,
        };
        // A higher gate lets us acknowledge more: tell the client now (rule 2).
        let more_acked = tcb.last_ack_sent < tcb.rcv_nxt.min(gate.map_or(tcb.rcv_nxt, |g| g.ack));
        let wider = gate.is_some_and(|g| g.right_edge > tcb.rcv_adv);
        // A half-open connection whose SYN every backup now holds: SYN-ACK.
        let syn_ready = tcb.state == State::SynReceived && tcb.snd_nxt == tcb.iss;
        if raised && syn_ready {
            self.schedule(key);
        } else if raised && (more_acked || wider) {
            tcb.ack_now = true;
            self.schedule(key);
        }
    }

    /// A new primary's gate from its members' first confirmations, which
    /// replaces the takeover's conservative one: acknowledge what they all
    /// hold, advertise no further than every one of them promised (never
    /// less than the old primary advertised: that was within their
    /// promises too, and promises only grow).
    pub fn adopt_gate(&mut self, key: ConnKey, gate: Gate) {
        let Some(tcb) = self.conns.get_mut(&key) else {
            return;
        };
        if tcb.role != Role::Primary {
            return;
        }
        tcb.gate = Some(gate);
        tcb.rcv_adv = tcb
            .rcv_adv
            .min(gate.right_edge)
            .max(tcb.rcv_nxt.min(gate.ack));
        tcb.ack_now = true;
        self.schedule(key);
    }

    /// Limit what the application may read to bytes before `limit` (log commit).
    /// `None` lets it read everything received in order.
    pub fn set_delivery_limit(&mut self, key: ConnKey, limit: Option<Seq>) {
        let Some(tcb) = self.conns.get_mut(&key) else {
            return;
        };
        let before = tcb.readable();
        let eof_before = tcb.at_eof();
        tcb.delivery_limit = limit;
        if tcb.readable() > before || tcb.at_eof() != eof_before {
            self.push_event(Event::Readable(key));
        }
        self.record_delivery(key);
    }

    /// In-order receive progress: (rcv_nxt, advertised right edge, FIN received).
    ///
    /// A replica confirms its edge to the group, which may advertise up to
    /// it: from then on the edge is a promise and never moves left (out-of-
    /// order data would otherwise shrink it, and a promoted backup would then
    /// advertise less than the old primary did).
    pub fn receive_progress(&mut self, key: ConnKey) -> Option<(Seq, Seq, bool)> {
        let t = self.conns.get_mut(&key)?;
        let edge = t.right_edge();
        if t.role == Role::Backup {
            t.rcv_adv = t.rcv_adv.max(edge);
        }
        Some((t.rcv_nxt, edge, t.fin_received()))
    }

    /// Client bytes held in order from `from` that the application has not
    /// read yet, at most `max`: what a lagging backup is missing.
    pub fn held_bytes(&self, key: ConnKey, from: Seq, max: usize) -> Option<Vec<u8>> {
        self.conns.get(&key)?.recv.copy_from(from, max)
    }

    /// Store client bytes a peer replica supplied for a lost copy (backups).
    pub fn fill_received(&mut self, key: ConnKey, seq: Seq, data: &[u8]) {
        let Some(tcb) = self.conns.get_mut(&key) else {
            return;
        };
        let mut sig = Signals::default();
        tcb.fill_received(&self.cfg, seq, data, &mut self.stats, &mut sig);
        self.after_change(key, sig);
    }

    /// Negotiated connection parameters, for the replication log's "opened" entry.
    pub fn open_record(&self, key: ConnKey) -> Option<OpenRecord> {
        Some(self.conns.get(&key)?.open_record())
    }

    /// Create a connection from a logged "opened" entry (a backup that missed the SYN).
    pub fn import_open(
        &mut self,
        now: Instant,
        record: &OpenRecord,
    ) -> Result<ConnKey, ConnectError> {
        let key = record.key;
        if self.conns.contains_key(&key) {
            return Err(ConnectError::AddrInUse);
        }
        // A primary logs its open connections again in each new view; the
        // entry can commit after the connection ended on this replica.
        if self.ended.get(&key) == Some(&record.irs) {
            return Err(ConnectError::Finished);
        }
        if self.conns.len() >= self.cfg.max_connections {
            return Err(ConnectError::TooMany);
        }
        let mut tcb = Tcb::new(
            now,
            &self.cfg,
            key,
            self.role,
            State::Established,
            record.iss,
            record.irs,
            record.opts,
        );
        tcb.snd_una = record.iss + 1u32;
        tcb.snd_nxt = tcb.snd_una;
        tcb.snd_max = tcb.snd_una;
        tcb.peer_acked = tcb.snd_una;
        tcb.snd_wnd = record.snd_wnd;
        tcb.max_snd_wnd = record.snd_wnd;
        tcb.ts_recent = record.ts_recent;
        tcb.listener = self.listener_for(key.local);
        tcb.opened_epoch = record.opened_epoch;
        self.conns.insert(key, tcb);
        self.stats.connections_opened += 1;
        let sig = Signals {
            established: true,
            writable: true,
            ..Default::default()
        };
        self.after_change(key, sig);
        Ok(key)
    }
}
