//! Shared helpers of Hydra's workspace-level tests.
//!
//! - [`hostile`]: the hostile-input probe (scapy) and a kernel reference
//!   listener to compare Hydra's answers with.
//! - [`netns`]: network namespaces, veth links and processes made by a test
//!   and removed again, also when the test fails.
//! - [`groupsim`]: deterministic simulation of whole replica groups with
//!   faults and invariant checks (`hydra-sim`).
//! - [`simclient`]: the group simulator's client, our stack or smoltcp's.
//! - [`simnet`]: a seeded simulated network (loss, delay, reordering,
//!   duplication) for deterministic tests of whole stacks.

pub mod groupsim;
pub mod hostile;
pub mod netns;
pub mod simclient;
pub mod simnet;
