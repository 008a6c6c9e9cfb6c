//! Deterministic simulation of Hydra: one thread, a virtual clock and a
//! seed, so any failure replays.
//!
//! - [`groupsim`]: whole replica groups (redirector, replicas, clients) with
//!   faults and invariant checks; the `hydra-sim` binary sweeps seeds.
//! - [`simclient`]: the group simulator's client, our stack or smoltcp's.
//! - [`simnet`]: a seeded simulated network (loss, delay, reordering,
//!   duplication) for deterministic tests of whole stacks.

#![forbid(unsafe_code)]

pub mod groupsim;
pub mod simclient;
pub mod simnet;
