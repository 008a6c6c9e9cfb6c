//! A connection's identity, and what replication asks of a stack.

use std::net::SocketAddr;

use crate::seq::Seq;

/// A connection's identity: the same on every replica of a group.
///
/// Both addresses are of one family: an IPv4 client of a dual-stack
/// listener has an IPv4 key (never an IPv4-mapped IPv6 one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    /// The service's address (the virtual IP and port in a group).
    pub local: SocketAddr,
    /// The client's address.
    pub remote: SocketAddr,
}

/// What a stack does with its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// No replication: send freely.
    #[default]
    Standalone,
    /// Replicated primary: send, with acknowledgements limited by a [`Gate`].
    Primary,
    /// Replicated backup: process input and application writes, send nothing at all.
    Backup,
}

/// Limits a replicated primary applies to what it acknowledges: it never
/// acknowledges bytes some live replica does not hold yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    /// Highest ACK number we may send: every live replica holds the bytes below it.
    pub ack: Seq,
    /// Highest right window edge we may advertise.
    pub right_edge: Seq,
}
