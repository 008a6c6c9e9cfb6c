//! The `hydra-replica` binary's parts: built-in applications, the standalone
//! driver (one stack on one TUN device, no replication) and signal handling.

pub mod apps;
pub mod metrics;
pub mod replicated;
pub use ackchannel::signals;
pub mod standalone;
