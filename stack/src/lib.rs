//! Hydra's TCP/IPv4 stack: a sans-IO core plus thin adapters.
//!
//! Layers, top to bottom:
//! - [`socket`]: a `std::net`-like blocking API (`TcpListener`, `TcpStream`)
//!   and a driver thread that moves packets between a [`phy::Device`] and the core.
//! - [`Stack`] (`iface`): the core. Packets and the current time go in
//!   (`handle_packet`, `handle_timeout`); packets, the next deadline and
//!   application events come out (`poll_transmit`, `poll_timeout`, `poll_event`).
//!   It demultiplexes to connections, runs listeners (SYN backlog, SYN cookies),
//!   answers ICMP echo and rejects closed ports.
//! - [`tcp`]: one connection's state machine (RFC 9293) split by concern:
//!   sequence arithmetic, options, RTT, congestion control, reassembly,
//!   timers, and state export/import ([`tcp::snapshot`]).
//! - [`wire`]: parse and emit IPv4/TCP/ICMP with `smoltcp::wire`.
//! - [`phy`]: the device boundary (TUN, in-memory links for tests).
//!
//! Nothing in the core reads a clock, sleeps, draws OS randomness or opens a
//! socket; the replication layer drives the same code in the binaries and in
//! the simulator.

pub mod checksum;
pub mod config;
pub mod iface;
pub mod phy;
pub mod socket;
pub mod stats;
pub mod tcp;
pub use hydra_base::time;
pub mod wire;

pub use config::{Config, CongestionKind, FragmentPolicy};
pub use hydra_base::{Duration, Gate, Instant, Seq};
pub use iface::{ConnKey, Event, Role, Stack};
pub use stats::Stats;
