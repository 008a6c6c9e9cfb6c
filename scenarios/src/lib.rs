//! Plays Hydra failure cases with the real binaries on network namespaces.
//!
//! - [`cluster`]: the topology (client, redirector, replicas), config files,
//!   process control and status queries.
//! - [`clients`]: real clients (curl, the Python echo client) run in the
//!   client namespace, with their verdicts.
//! - [`demo`]: the README's main command.

pub mod clients;
pub mod cluster;
pub mod demo;
