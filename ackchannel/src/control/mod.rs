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
//! A redirector that sees packets of a connection its flow table does not
//! know (it restarted, or took over from another redirector) asks in its
//! replies which members hold it ([`ViewAuthority::ask`]); a member that
//! does answers with [`Message::Holds`].
//!
//! Both sides are sans-IO: datagrams and time in, datagrams and deadlines out.
//!
//! This file holds the vocabulary both sides share (the [`View`] and why a
//! datagram is refused). The layers below it:
//!
//! - `messages`: the control messages and their wire format.
//! - `member`: the replica's side, [`MemberAgent`].
//! - `authority`: the redirector's side, [`ViewAuthority`].
//! - `lookup`: the authority's questions about which group holds a
//!   connection (carried in its replies; members that hold one answer).

use std::net::SocketAddr;

use hydra_base::codec::DecodeError;

use crate::auth::AuthError;
use crate::replication::{MemberId, ReplicationView};

mod authority;
mod lookup;
mod member;
mod messages;

pub use authority::{AuthorityStats, GroupPolicy, SavedMember, ViewAuthority};
pub use lookup::MAX_QUESTIONS;
pub use member::MemberAgent;
pub use messages::{decode, encode, Message, MAX_KEYS_PER_MESSAGE};

/// Sender id the redirector uses in its frames (member ids start at 1).
pub const AUTHORITY: u8 = 0;
/// Largest group we describe in one datagram.
pub const MAX_MEMBERS: usize = 32;
/// One member as the view lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewMember {
    /// Its member id (1 and up).
    pub id: u8,
    /// A live member: the primary (the first live one) or a backup.
    pub alive: bool,
    /// Rejoining: it receives client packets and the primary's state
    /// transfer, but is not a live member until it has caught up.
    pub joining: bool,
    /// Where the redirector copies client packets to it.
    pub data_addr: SocketAddr,
    /// Where its peers reach its ack channel.
    pub ack_addr: SocketAddr,
}

/// A group view: epoch and ordered members (primary, live backups, dead last).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    /// The view number; each change of membership or roles raises it.
    pub epoch: u64,
    /// Every member: the primary first, then live backups, the joining and the dead.
    pub members: Vec<ViewMember>,
    /// The member the group hands the primary role back to once it is live
    /// (`GroupPolicy::preferred_primary`).
    pub preferred: Option<u8>,
}

impl View {
    /// The primary: the first live member.
    pub fn primary(&self) -> Option<u8> {
        self.members.iter().find(|m| m.alive).map(|m| m.id)
    }

    /// Whether member `id` is live in this view.
    pub fn is_alive(&self, id: u8) -> bool {
        self.members.iter().any(|m| m.id == id && m.alive)
    }

    /// The live members in order, primary first.
    pub fn live(&self) -> impl Iterator<Item = &ViewMember> {
        self.members.iter().filter(|m| m.alive)
    }

    /// The preferred primary, when it is live in this view but not primary:
    /// the primary should hand its role over to it.
    pub fn handback_due(&self) -> Option<u8> {
        let p = self.preferred?;
        (self.is_alive(p) && self.primary() != Some(p)).then_some(p)
    }

    /// Whether member `id` is catching up in this view.
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
    /// Not sealed with the group key, or replayed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The body does not decode as its kind says.
    #[error(transparent)]
    Malformed(#[from] DecodeError),
    /// A message kind this build does not know.
    #[error("unknown control message kind {0}")]
    Kind(u8),
    /// The sender is not one of the group's configured members.
    #[error("member {0} is not configured in this group")]
    UnknownMember(u8),
    /// A registration naming another group than the key's.
    #[error("registration for group {0:?}, but this key belongs to another group")]
    WrongGroup(String),
    /// A dead member registered while no primary could transfer state to it.
    #[error("member {0} was declared dead; rejoining needs a state transfer")]
    DeadMember(u8),
    /// A keepalive or resignation from a member that never registered.
    #[error("message from member {0}, which has not registered")]
    NotRegistered(u8),
    /// A message the receiving side never takes (a reply at the authority,
    /// a member's message at a member).
    #[error("unexpected message")]
    Unexpected,
}

#[cfg(test)]
mod tests;
