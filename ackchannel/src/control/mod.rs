//! Control messages between replicas and the redirector, the group's
//! registrar and view authority (DESIGN rules 5 and 6).
//!
//! A replica ([`MemberAgent`]) registers with its data and ack-channel
//! addresses, then sends a keepalive every heartbeat. The redirector
//! ([`ViewAuthority`]) answers each one with the current view and echoes
//! the keepalive's counter; the answer renews the replica's *lease*: a
//! primary may send to clients only until `sent_at(keepalive) + lease`. The
//! authority declares a member dead when its keepalives stop (or when the
//! primary reports a backup, or a backup reports a primary whose keepalives
//! are already late), stops answering it, and publishes the next view only
//! once the dead member's lease has certainly run out: one writer per epoch.
//!
//! Both sides are sans-IO: datagrams and time in, datagrams and deadlines out.
//!
//! This file holds the vocabulary both sides share (the [`View`] and why a
//! datagram is refused). The layers below it:
//!
//! - `messages`: the control messages and their wire format.
//! - `member`: the replica's side, [`MemberAgent`].
//! - `authority`: the redirector's side, [`ViewAuthority`].

use std::net::SocketAddrV4;

use hydra_base::codec::DecodeError;

use crate::auth::AuthError;
use crate::replication::{MemberId, ReplicationView};

mod authority;
mod member;
mod messages;

pub use authority::{AuthorityStats, GroupPolicy, SavedMember, ViewAuthority};
pub use member::MemberAgent;
pub use messages::{decode, encode, Message};

/// Sender id the redirector uses in its frames (member ids start at 1).
pub const AUTHORITY: u8 = 0;
/// Largest group we describe in one datagram.
pub const MAX_MEMBERS: usize = 32;
/// One member as the view lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewMember {
    pub id: u8,
    pub alive: bool,
    /// Rejoining: it receives client packets and the primary's state
    /// transfer, but is not a live member until it has caught up.
    pub joining: bool,
    pub data_addr: SocketAddrV4,
    pub ack_addr: SocketAddrV4,
}

/// A group view: epoch and ordered members (primary, live backups, dead last).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    pub epoch: u64,
    pub members: Vec<ViewMember>,
}

impl View {
    pub fn primary(&self) -> Option<u8> {
        self.members.iter().find(|m| m.alive).map(|m| m.id)
    }

    pub fn is_alive(&self, id: u8) -> bool {
        self.members.iter().any(|m| m.id == id && m.alive)
    }

    pub fn live(&self) -> impl Iterator<Item = &ViewMember> {
        self.members.iter().filter(|m| m.alive)
    }

    pub fn is_joining(&self, id: u8) -> bool {
        self.members.iter().any(|m| m.id == id && m.joining)
    }

    /// The part the replication core needs: epoch, live members in order,
    /// and the members catching up.
    pub fn to_replication_view(&self) -> ReplicationView {
        ReplicationView {
            epoch: self.epoch,
            members: self.live().map(|m| MemberId(m.id)).collect(),
            joining: self
                .members
                .iter()
                .filter(|m| m.joining)
                .map(|m| MemberId(m.id))
                .collect(),
        }
    }
}

/// Why a control datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Malformed(#[from] DecodeError),
    #[error("unknown control message kind {0}")]
    Kind(u8),
    #[error("member {0} is not configured in this group")]
    UnknownMember(u8),
    #[error("registration for group {0:?}, but this key belongs to another group")]
    WrongGroup(String),
    #[error("member {0} was declared dead; rejoining needs a state transfer")]
    DeadMember(u8),
    #[error("message from member {0}, which has not registered")]
    NotRegistered(u8),
    #[error("unexpected message")]
    Unexpected,
}

#[cfg(test)]
mod tests;
