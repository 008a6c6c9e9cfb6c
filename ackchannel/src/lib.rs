//! The replication protocol of one Hydra group, and the control messages
//! between replicas and the redirector (the group's registrar and view authority).
//!
//! - [`auth`]: HMAC-SHA256 framing with the group key and replay guards.
//! - [`control`]: registration, keepalives and views (replica <-> redirector):
//!   [`control::MemberAgent`] on each replica, [`control::ViewAuthority`] at
//!   the redirector.
//! - [`replication`]: the sans-IO ack-channel core (delivery log,
//!   confirmations, gating, commit, heartbeats, epochs); start at
//!   [`replication::Replicator`].
//! - [`transport`]: kernel-TCP full mesh carrying replication frames.
//!
//! The crate sits on `hydra-base` (time, sequence numbers, connection
//! keys, gates, the byte codec) and knows nothing of the TCP stack.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod control;
pub mod replication;
pub mod transport;
