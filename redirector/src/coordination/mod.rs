//! Coordination through etcd (`[coordination]`): the groups' views kept in
//! an etcd cluster.
//!
//! Every call blocks for up to the configured request timeout per etcd
//! endpoint tried: run them off the packet-forwarding thread.

mod base64;
pub mod error;
pub mod etcd;
mod http;

pub use error::CoordinationError;
pub use etcd::EtcdClient;
