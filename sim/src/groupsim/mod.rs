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
//! - `run`: the simulated group ([`Sim`]) and its run loop.

mod apps;
mod checker;
mod config;
mod faults;
mod node;
mod run;

pub use crate::simclient::ClientKind;
pub use apps::SharedState;
pub use config::{SimConfig, Verdict};
pub use run::{run_seed, Sim};

const PORT: u16 = 7;
const HEARTBEAT_MS: u64 = 10;
const TIMEOUT_MS: u64 = 100;
const LEASE_MS: u64 = 60;

fn us(ms: u64) -> u64 {
    ms * 1000
}
