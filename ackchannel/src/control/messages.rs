//! The control messages and their wire format: each is a kind byte in the
//! authenticated header and a body, sealed with the group key.

use std::net::SocketAddr;

use hydra_base::codec::{DecodeError, Put, Reader};
use hydra_base::{ConnKey, Duration};

use super::{ControlError, View, ViewMember, AUTHORITY, MAX_MEMBERS};
use crate::auth::{self, GroupKey, Header};

pub(super) const DOMAIN: &[u8] = b"hydra control v2";

pub(super) const KIND_REGISTER: u8 = 1;
pub(super) const KIND_KEEPALIVE: u8 = 2;
pub(super) const KIND_FAILURE_REPORT: u8 = 3;
pub(super) const KIND_REPLY: u8 = 4;
pub(super) const KIND_RESIGN: u8 = 5;
pub(super) const KIND_READY: u8 = 6;
pub(super) const KIND_HOLDS: u8 = 7;

/// Connections one message asks or answers about at most (a datagram of
/// IPv6 keys stays under 1,000 bytes).
pub const MAX_KEYS_PER_MESSAGE: usize = 16;

pub(super) const STATUS_DEAD: u8 = 0;
pub(super) const STATUS_ALIVE: u8 = 1;
pub(super) const STATUS_JOINING: u8 = 2;

impl View {
    fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64(self.epoch);
        let n = self.members.len().min(MAX_MEMBERS);
        out.put_u8(n as u8);
        for m in &self.members[..n] {
            out.put_u8(m.id);
            out.put_u8(if m.alive {
                STATUS_ALIVE
            } else if m.joining {
                STATUS_JOINING
            } else {
                STATUS_DEAD
            });
            out.put_addr(m.data_addr);
            out.put_addr(m.ack_addr);
        }
        // 0 is the authority's id, never a member's: no preferred primary.
        out.put_u8(self.preferred.unwrap_or(AUTHORITY));
    }

    fn decode(r: &mut Reader<'_>) -> Result<View, DecodeError> {
        let epoch = r.u64()?;
        let n = r.u8()? as usize;
        if n > MAX_MEMBERS {
            return Err(DecodeError::Invalid);
        }
        let mut members = Vec::with_capacity(n);
        for _ in 0..n {
            let id = r.u8()?;
            let status = r.u8()?;
            if status > STATUS_JOINING {
                return Err(DecodeError::Invalid);
            }
            members.push(ViewMember {
                id,
                alive: status == STATUS_ALIVE,
                joining: status == STATUS_JOINING,
                data_addr: r.addr()?,
                ack_addr: r.addr()?,
            });
        }
        let preferred = match r.u8()? {
            AUTHORITY => None,
            id => Some(id),
        };
        Ok(View {
            epoch,
            members,
            preferred,
        })
    }
}

/// A decoded control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A replica announces itself (first, and again until a view lists it).
    Register {
        /// The group it means to join; the authority checks it against the key's.
        group: String,
        /// Where client packets are to be copied to it.
        data_addr: SocketAddr,
        /// Where its peers reach its ack channel.
        ack_addr: SocketAddr,
        /// Differs for each start of the member's process: a registration
        /// with a new one means the old process is gone, state and all.
        incarnation: u64,
    },
    /// A live member is still there; the answer renews its lease.
    Keepalive,
    /// A member reports a peer it watches as silent or gone.
    FailureReport {
        /// The peer's member id.
        suspect: u8,
    },
    /// The member has stopped sending to clients and gives up its place:
    /// a primary hands its role to the next live member (staying on as a
    /// backup when `stay`), a backup with `stay == false` leaves the group.
    Resign {
        /// Whether it stays on as a backup.
        stay: bool,
    },
    /// From the primary: a joining member holds every connection and may
    /// count in the group from now on.
    Ready {
        /// The joining member's id.
        member: u8,
    },
    /// A member holds these connections: its answer to a reply's
    /// `questions`.
    Holds {
        /// At most [`MAX_KEYS_PER_MESSAGE`].
        connections: Vec<ConnKey>,
    },
    /// The authority's answer to a registration, keepalive or resignation.
    Reply {
        /// Counter of the keepalive or registration being answered.
        echo: u64,
        /// How long after sending the echoed message the member may act on this
        /// view (zero: no lease).
        lease: Duration,
        /// The current view.
        view: View,
        /// Connections the authority looks for a holder of (it saw client
        /// packets of them but does not know their group): a member that
        /// holds one answers with [`Message::Holds`]. At most
        /// [`MAX_KEYS_PER_MESSAGE`].
        questions: Vec<ConnKey>,
    },
}

fn put_keys(body: &mut Vec<u8>, keys: &[ConnKey]) {
    let keys = &keys[..keys.len().min(MAX_KEYS_PER_MESSAGE)];
    body.put_u8(keys.len() as u8);
    for k in keys {
        body.put_key(k);
    }
}

fn keys(r: &mut Reader<'_>) -> Result<Vec<ConnKey>, DecodeError> {
    let n = usize::from(r.u8()?);
    if n > MAX_KEYS_PER_MESSAGE {
        return Err(DecodeError::Invalid);
    }
    (0..n).map(|_| r.key()).collect()
}

/// Encode `msg` as an authenticated datagram.
pub fn encode(key: &GroupKey, sender: u8, epoch: u64, counter: u64, msg: &Message) -> Vec<u8> {
    let mut body = Vec::new();
    let kind = match msg {
        Message::Register {
            group,
            data_addr,
            ack_addr,
            incarnation,
        } => {
            let name = &group.as_bytes()[..group.len().min(255)];
            body.put_u8(name.len() as u8);
            body.put_raw(name);
            body.put_addr(*data_addr);
            body.put_addr(*ack_addr);
            body.put_u64(*incarnation);
            KIND_REGISTER
        }
        Message::Keepalive => KIND_KEEPALIVE,
        Message::FailureReport { suspect } => {
            body.put_u8(*suspect);
            KIND_FAILURE_REPORT
        }
        Message::Resign { stay } => {
            body.put_bool(*stay);
            KIND_RESIGN
        }
        Message::Ready { member } => {
            body.put_u8(*member);
            KIND_READY
        }
        Message::Holds { connections } => {
            put_keys(&mut body, connections);
            KIND_HOLDS
        }
        Message::Reply {
            echo,
            lease,
            view,
            questions,
        } => {
            body.put_u64(*echo);
            body.put_u32(lease.total_millis() as u32);
            view.encode(&mut body);
            put_keys(&mut body, questions);
            KIND_REPLY
        }
    };
    let header = Header {
        kind,
        epoch,
        sender,
        counter,
    };
    auth::seal(key, DOMAIN, header, &body)
}

/// Verify and decode a datagram (no replay check: the receiver does that).
pub fn decode(key: &GroupKey, datagram: &[u8]) -> Result<(Header, Message), ControlError> {
    let (header, body) = auth::open(key, DOMAIN, datagram)?;
    let mut r = Reader::new(body);
    let msg = match header.kind {
        KIND_REGISTER => {
            let len = r.u8()? as usize;
            let group = String::from_utf8_lossy(r.take(len)?).into_owned();
            Message::Register {
                group,
                data_addr: r.addr()?,
                ack_addr: r.addr()?,
                incarnation: r.u64()?,
            }
        }
        KIND_KEEPALIVE => Message::Keepalive,
        KIND_FAILURE_REPORT => Message::FailureReport { suspect: r.u8()? },
        KIND_READY => Message::Ready { member: r.u8()? },
        KIND_RESIGN => Message::Resign { stay: r.bool()? },
        KIND_HOLDS => Message::Holds {
            connections: keys(&mut r)?,
        },
        KIND_REPLY => Message::Reply {
            echo: r.u64()?,
            lease: Duration::from_millis(u64::from(r.u32()?)),
            view: View::decode(&mut r)?,
            questions: keys(&mut r)?,
        },
        other => return Err(ControlError::Kind(other)),
    };
    if !r.is_empty() {
        return Err(DecodeError::Invalid.into());
    }
    Ok((header, msg))
}
