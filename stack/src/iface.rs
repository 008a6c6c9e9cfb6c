//! The stack core: demultiplexing, listeners, ICMP, and the poll interface.
//!
//! Call order for a driver loop:
//! 1. `handle_packet(now, pkt)` for every packet read from the device;
//! 2. `handle_timeout(now)` when `poll_timeout()` has passed;
//! 3. drain `poll_event()` and let the application `accept`/`recv`/`send`;
//! 4. drain `poll_transmit(now, buf)` into the device;
//! 5. sleep until the device is readable or `poll_timeout()`.

use std::net::SocketAddrV4;

use crate::config::Config;
use crate::stats::Stats;
use crate::tcp::seq::Seq;
use crate::tcp::snapshot::{ConnSnapshot, OpenRecord};
use crate::time::Instant;

/// A connection's identity: the same on every replica of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
}

/// What this stack does with its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// No replication: send freely.
    #[default]
    Standalone,
    /// Replicated primary: send, with ACKs gated by [`Stack::set_gate`].
    Primary,
    /// Replicated backup: process input and application writes, send nothing at all.
    Backup,
}

/// Limits a replicated primary applies to what it acknowledges (DESIGN rule 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    /// Highest ACK number we may send: every live replica holds the bytes below it.
    pub ack: Seq,
    /// Highest right window edge we may advertise.
    pub right_edge: Seq,
}

/// Something the application or the replication layer should look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    pub rcv_nxt: Seq,
    pub snd_una: Seq,
    pub snd_nxt: Seq,
    pub cwnd: u32,
    pub srtt_us: Option<u64>,
}

/// The stack core. See the module docs for the call order.
pub struct Stack {
    _todo: (),
}

#[allow(unused_variables)]
impl Stack {
    pub fn new(config: Config) -> Stack { todo!() }
    pub fn config(&self) -> &Config { todo!() }
    pub fn stats(&self) -> &Stats { todo!() }
    pub fn role(&self) -> Role { todo!() }
    /// Listen on `local` (`0.0.0.0` = any local address).
    pub fn listen(&mut self, local: SocketAddrV4) -> Result<(), ListenError> { todo!() }
    pub fn unlisten(&mut self, local: SocketAddrV4) { todo!() }
    /// Take one established connection from the listener on `local`.
    pub fn accept(&mut self, local: SocketAddrV4) -> Option<ConnKey> { todo!() }
    /// Active open (used by clients in tests and benchmarks).
    pub fn connect(&mut self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4) -> Result<ConnKey, ConnectError> { todo!() }
    /// Queue bytes; returns how many were taken (`WouldBlock` if none fit).
    pub fn send(&mut self, key: ConnKey, data: &[u8]) -> Result<usize, SendError> { todo!() }
    /// Read bytes; `Ok(0)` is end of stream.
    pub fn recv(&mut self, key: ConnKey, buf: &mut [u8]) -> Result<usize, RecvError> { todo!() }
    /// Close our sending side (FIN after queued data).
    pub fn shutdown_write(&mut self, key: ConnKey) { todo!() }
    /// Close: FIN after queued data; the stack frees the connection when done.
    pub fn close(&mut self, key: ConnKey) { todo!() }
    /// Abort with RST.
    pub fn abort(&mut self, key: ConnKey) { todo!() }
    pub fn set_nodelay(&mut self, key: ConnKey, nodelay: bool) { todo!() }
    pub fn conn_info(&self, key: ConnKey) -> Option<ConnInfo> { todo!() }
    pub fn connections(&self) -> Vec<ConnKey> { todo!() }
    pub fn handle_packet(&mut self, now: Instant, packet: &[u8]) { todo!() }
    pub fn handle_timeout(&mut self, now: Instant) { todo!() }
    /// Write the next packet to send into `buf`; returns its length.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> { todo!() }
    pub fn poll_timeout(&self) -> Option<Instant> { todo!() }
    pub fn poll_event(&mut self) -> Option<Event> { todo!() }
    /// Take a connection out of the stack, silently (no RST, no FIN).
    pub fn export(&mut self, key: ConnKey) -> Option<ConnSnapshot> { todo!() }
    /// Copy a connection's state without removing it (state transfer to a rejoining replica).
    pub fn snapshot(&self, key: ConnKey) -> Option<ConnSnapshot> { todo!() }
    /// Put a connection into the stack; it carries on from the snapshot's state.
    pub fn import(&mut self, now: Instant, snapshot: ConnSnapshot) -> Result<ConnKey, ConnectError> { todo!() }
    /// Change role. Backup -> Primary performs takeover: immediate ACK on every
    /// connection, retransmission of unacknowledged output, timers resumed.
    pub fn set_role(&mut self, now: Instant, role: Role) { todo!() }
    /// Gate ACKs and window of one connection (primary only); `None` removes the gate.
    pub fn set_gate(&mut self, key: ConnKey, gate: Option<Gate>) { todo!() }
    /// Limit what the application may read to bytes before `limit` (log commit).
    /// `None` lets it read everything received in order.
    pub fn set_delivery_limit(&mut self, key: ConnKey, limit: Option<Seq>) { todo!() }
    /// In-order receive progress: (rcv_nxt, advertised right edge, FIN received).
    pub fn receive_progress(&self, key: ConnKey) -> Option<(Seq, Seq, bool)> { todo!() }
    /// Negotiated connection parameters, for the replication log's "opened" entry.
    pub fn open_record(&self, key: ConnKey) -> Option<OpenRecord> { todo!() }
    /// Create a connection from a logged "opened" entry (a backup that missed the SYN).
    pub fn import_open(&mut self, now: Instant, record: &OpenRecord) -> Result<ConnKey, ConnectError> { todo!() }
}
