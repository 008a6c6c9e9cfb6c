//! Operations plumbing Hydra's programs share; none of it is the
//! replication protocol.
//!
//! - [`admin`]: the tiny HTTP endpoint behind `/metrics`, `/status` and
//!   the operator's `POST` actions, and the Prometheus line format.
//! - [`signals`]: SIGTERM/SIGINT as a flag a loop can poll.
//! - [`logging`]: the log format every binary uses.
//! - [`udp_offload`]: the redirector-to-replica copy path's UDP
//!   segmentation (`UDP_SEGMENT`) and receive coalescing (`UDP_GRO`).
//! - [`socket_buffer`]: kernel socket buffers sized past the default limit.
//! - [`child`]: child processes that die with their parent.
//! - [`neighbour_advert`]: unsolicited IPv6 neighbour advertisements for a
//!   floating address.

#![warn(missing_docs)]

pub mod admin;
pub mod child;
pub mod logging;
pub mod neighbour_advert;
pub mod signals;
pub mod socket_buffer;
pub mod udp_offload;
