//! Plays Hydra failure cases with the real binaries on network namespaces.
//!
//! - [`cluster`]: the topology (client, redirector, replicas), config files,
//!   process control and status queries.
//! - [`clients`]: real clients (curl, the Python echo client) run in the
//!   client namespace, with their verdicts.
//! - [`demo`]: the README's main command.
//! - [`spec`] and [`runner`]: scenario files (topology, workload, faults,
//!   checks) and the runner that plays them.
//! - [`status`]: the operator's view of a group from the admin endpoints.
//! - [`relay`]: the userspace link impairer (loss, delay, cuts) scenarios
//!   put between the redirector and a replica, and on its ack channel.

pub mod clients;
pub mod cluster;
pub mod demo;
pub mod relay;
pub mod runner;
pub mod spec;
pub mod status;
