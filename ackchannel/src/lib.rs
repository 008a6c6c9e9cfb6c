//! The replication protocol of one Hydra group, and the control messages
//! between replicas and the redirector (the group's registrar and view authority).
//!
//! - [`auth`]: HMAC-SHA256 framing with the group key and replay guards.
//! - [`control`]: registration, keepalives and views (replica <-> redirector).
//! - [`replication`]: the sans-IO ack-channel core (delivery log,
//!   confirmations, gating, commit, heartbeats, epochs).
//! - [`transport`]: kernel-TCP full mesh carrying replication frames.
//! - [`admin`], [`signals`], [`logging`]: operator plumbing the binaries
//!   share (the tiny HTTP endpoint for `/metrics` and `/status`,
//!   SIGTERM/SIGINT handling, the log format).

pub mod admin;
pub mod auth;
pub mod control;
pub mod logging;
pub mod replication;
pub mod signals;
pub mod transport;
pub mod udp_offload;
