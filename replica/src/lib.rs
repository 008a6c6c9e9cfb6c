//! Hydra's group member library and the `hydra-replica` binary's parts.
//!
//! - [`member`]: make any program a member of a replicated group
//!   ([`member::Member::join`]) and bind its own listeners on the stack.
//! - [`apps`]: the built-in applications `hydra-replica` serves, written
//!   on the public socket API only.
//! - [`standalone`]: one stack on one TUN device, no replication.
//! - [`replicated`]: the member's parts (configuration, copy device,
//!   replication hooks, admin endpoint) and its sans-IO core
//!   ([`replicated::logic::ReplicaLogic`]), which the member runtime and the
//!   group simulator (`hydra-sim`) both drive.

#![forbid(unsafe_code)]

pub mod apps;
pub mod member;
pub mod metrics;
pub mod replicated;
pub use hydra_ops::signals;
pub mod standalone;
