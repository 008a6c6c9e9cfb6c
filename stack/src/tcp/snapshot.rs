//! Export and import of a connection's full state (the CGL takeover
//! primitive: stop / get / set / restart), and the smaller "opened" record
//! the replication log carries.

use crate::iface::ConnKey;

/// Everything needed to continue a connection in another stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnSnapshot {
    pub key: ConnKey,
}

/// Negotiated parameters of a new connection, identical on every replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRecord {
    pub key: ConnKey,
}
