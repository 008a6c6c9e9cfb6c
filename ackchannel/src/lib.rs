//! The replication protocol of one Hydra group, and the control messages
//! between replicas and the redirector (the group's registrar and view authority).

pub mod admin;
