//! Coordination through etcd (`[coordination]`): one redirector at a time
//! is the view authority, elected by a lease on `<prefix>/authority`, and
//! the groups' views live at `<prefix>/groups/<name>/view`, written only by
//! the authority, fenced by its election and compared-and-swapped. The
//! authority's heartbeat key lets a standby take over from a lost host
//! within a few heartbeats (`heartbeat`).
//!
//! Every call blocks for up to the configured request timeout per etcd
//! endpoint tried: run them off the packet-forwarding thread.

pub mod agent;
mod base64;
pub mod election;
pub mod error;
pub mod etcd;
pub mod floating;
pub mod heartbeat;
mod http;
pub mod settings;
pub mod views;

pub use agent::{Agent, AgentStatus, Event};
pub use election::{AuthorityToken, Campaign, Election};
pub use error::CoordinationError;
pub use etcd::EtcdClient;
pub use floating::{Addresses, FloatingAddress, FloatingConfig};
pub use settings::CoordinationConfig;
pub use views::{Saved, ViewStore};
