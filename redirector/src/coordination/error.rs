//! What can go wrong when talking to etcd, in words an operator can act on.

use std::fmt;

/// A failed coordination request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinationError {
    /// No configured endpoint accepted a connection.
    Unreachable {
        /// Each endpoint tried, with why it failed.
        detail: String,
    },
    /// An endpoint took the request but did not answer in time. For a
    /// write, whether etcd applied it is unknown.
    TimedOut {
        /// The endpoint that stopped answering.
        endpoint: String,
        /// How long we waited, in milliseconds.
        after_ms: u64,
    },
    /// The answer was not what etcd's v3 JSON gateway sends (wrong
    /// address or port, a proxy, an unsupported etcd version).
    BadResponse {
        /// The endpoint that answered.
        endpoint: String,
        /// What was wrong with it.
        detail: String,
    },
    /// etcd understood the request and refused it.
    Rejected {
        /// The endpoint that refused.
        endpoint: String,
        /// etcd's own message.
        message: String,
    },
    /// This redirector no longer holds the view authority (its lease ran
    /// out, or the authority key is gone or belongs to another election):
    /// it must stop changing views.
    AuthorityLost {
        /// What showed it.
        detail: String,
    },
    /// A compare-and-swap failed: the key changed since we read it.
    Conflict {
        /// The key that changed.
        key: String,
    },
    /// A view with an epoch at or below the stored one, and different from
    /// it: two views for one epoch are never allowed.
    StaleEpoch {
        /// The group.
        group: String,
        /// The epoch etcd holds.
        stored: u64,
        /// The epoch we tried to write.
        offered: u64,
    },
}

impl fmt::Display for CoordinationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable { detail } => write!(f, "no etcd endpoint reachable: {detail}"),
            Self::TimedOut { endpoint, after_ms } => write!(
                f,
                "etcd at {endpoint} did not answer within {after_ms} ms (a write's outcome is unknown)"
            ),
            Self::BadResponse { endpoint, detail } => write!(
                f,
                "unexpected answer from {endpoint} (is it etcd 3.4 or later, client URL and port?): {detail}"
            ),
            Self::Rejected { endpoint, message } => {
                write!(f, "etcd at {endpoint} refused the request: {message}")
            }
            Self::AuthorityLost { detail } => {
                write!(f, "no longer the view authority: {detail}")
            }
            Self::Conflict { key } => write!(
                f,
                "compare failed: {key} changed since it was read (another writer)"
            ),
            Self::StaleEpoch {
                group,
                stored,
                offered,
            } => write!(
                f,
                "group {group}: etcd holds epoch {stored}; refusing a different view for epoch {offered}"
            ),
        }
    }
}

impl std::error::Error for CoordinationError {}

impl CoordinationError {
    /// True when etcd could not be asked (unreachable or silent): the
    /// state in etcd is unknown, not changed.
    pub fn is_connectivity(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::TimedOut { .. })
    }
}
