//! Hydra's TCP/IPv4 stack: a sans-IO core plus thin adapters.
//!
//! Layers, top to bottom (each uses only those below it):
//! - [`socket`]: a `std::net`-like blocking API (`TcpListener`, `TcpStream`,
//!   `OrderedListener`) and a driver thread that moves packets between a
//!   [`phy::Device`] and the core.
//! - [`Stack`] (`iface`): the core. Packets and the current time go in
//!   ([`Stack::handle_packet`], [`Stack::handle_timeout`]); packets, the next
//!   deadline and application events come out ([`Stack::poll_transmit`],
//!   [`Stack::poll_timeout`], [`Stack::poll_event`]). Its files: `input`
//!   (IP checks, fragments, demultiplexing, ICMP), `handshake` (listeners,
//!   SYN backlog, cookies), `app` (the application's calls), `changes`
//!   (bookkeeping after each change), `output` (timers and transmit),
//!   `transfer` (snapshots, export/import, parking), `replication` (roles,
//!   gates, take-over, fill), `checkpoints` and `ordered` (passive
//!   replication and the ordered event loop).
//! - `tcp` (private): one connection's state machine (RFC 9293) split by
//!   concern: options, RTT, congestion control, reassembly, SACK, timers,
//!   output, and the encodings a group exchanges ([`ConnSnapshot`],
//!   [`OpenRecord`], [`Checkpoint`], re-exported here).
//! - [`wire`]: parse and emit IPv4/TCP/ICMP; the only module that names
//!   smoltcp.
//! - [`phy`]: the device boundary (TUN, in-memory links for tests).
//! - `hydra-base` (a crate below): time, sequence numbers, connection keys,
//!   roles, gates, the byte codec.
//!
//! Nothing in the core reads a clock, sleeps, draws OS randomness or opens a
//! socket (the default configuration's key is drawn once, in
//! [`Config::default`]); the replication layer drives the same code in the
//! binaries and in the simulator.

#![warn(missing_docs)]

pub mod checksum;
pub mod config;
pub mod iface;
pub mod phy;
pub mod socket;
pub mod stats;
mod tcp;
pub use hydra_base::time;
pub mod wire;

#[cfg(test)]
mod tests;

pub use config::{Config, CongestionKind, FragmentPolicy};
pub use hydra_base::{Duration, Gate, Instant, Seq};
pub use iface::{ConnKey, Event, Role, Stack};
pub use stats::Stats;
pub use tcp::checkpoint::{BlockChange, Checkpoint, PassiveState, Release, StoreError};
pub use tcp::snapshot::{ConnSnapshot, DecodeError, OpenRecord};
pub use tcp::State;
