//! Deterministic simulation of a whole replica group: a client
//! stack, the redirector's view authority and copy logic, and replicas
//! running the real stack, ack channel and control code (`ReplicaLogic`, the
//! same glue the binary uses), joined by seeded lossy links, under seeded
//! crashes, pauses and partitions. After every step an invariant checker
//! looks at the whole system; a failing seed replays exactly.
//!
//! - `config`: what to simulate ([`SimConfig`]) and how a run ended
//!   ([`Verdict`]).
//! - `faults`: the seeded fault plan and its injection.
//! - `node`: one simulated replica process and its step.
//! - `apps`: the applications the replicas run and the client's streams
//!   they check.
//! - `checker`: the invariants checked after every step.
//! - `store`: the coordination store two or more redirectors share (a
//!   model of etcd) and the network to it.
//! - `agent`: a model of a redirector's coordination agent.
//! - `heartbeat`: the authority's heartbeat rules and a standby's watch.
//! - `redirectors`: the redirectors, their view authorities and control
//!   traffic, and the views recorded for the one-view-per-epoch check.
//! - `run`: the simulated group ([`Sim`]) and its run loop.

mod agent;
mod apps;
mod checker;
mod config;
mod faults;
mod heartbeat;
mod node;
mod redirectors;
mod run;
mod store;

pub use crate::simclient::ClientKind;
pub use apps::SharedState;
pub use config::{CoordinationBug, SimConfig, Verdict};
pub use run::{run_seed, Sim};

const PORT: u16 = 7;
const HEARTBEAT_MS: u64 = 10;
const TIMEOUT_MS: u64 = 100;
const LEASE_MS: u64 = 60;

const fn us(ms: u64) -> u64 {
    ms * 1000
}
