//! Hydra's bottom layer: the vocabulary every other crate speaks, with no
//! I/O and no dependency on the stack.
//!
//! - [`time`]: [`Instant`] and [`Duration`] as values (the core never reads
//!   a clock; callers pass time in).
//! - [`seq`]: [`Seq`], TCP sequence numbers modulo 2^32.
//! - [`conn`]: [`ConnKey`], a connection's identity, the same on every
//!   replica; [`Role`] and [`Gate`], what replication asks of a stack.
//! - [`codec`]: the one big-endian byte codec ([`codec::Put`],
//!   [`codec::Reader`]) used by connection snapshots, checkpoints and the
//!   ack channel's frames.
//! - [`rng`]: [`rng::SplitMix64`], the one seeded generator (simulation,
//!   load spreading, test data): the same sequence on every platform.
//! - [`poll`]: [`poll::wait_readable`], the one wrapper around `poll(2)`.
//!
//! Layers above, each pointing only down: `hydra-stack` (TCP/IP core,
//! sockets, devices), `hydra-ackchannel` (ordered replication among
//! replicas, the view protocol), `hydra-ops` (admin endpoint, signals,
//! logging), then `hydra-redirector` and `hydra-replica`.

#![warn(missing_docs)]

pub mod codec;
pub mod conn;
pub mod poll;
pub mod rng;
pub mod seq;
pub mod time;

pub use conn::{intersect_held, ConnKey, Gate, HeldBeyond, Role};
pub use seq::Seq;
pub use time::{Duration, Instant};
