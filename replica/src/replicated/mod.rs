//! Replicated mode: this process is one member of a group behind a
//! redirector. Client packets arrive as UDP copies from the redirector; the
//! stack runs as primary or backup as the current view says; the ack channel
//! gates the primary's ACKs and orders delivery to the applications.
//! [`crate::member`] is the public entry point; these are its parts.
//! [`logic`] is the sans-IO core that both the member runtime and the
//! deterministic group simulator (`hydra-sim`) drive.

pub(crate) mod admin;
pub mod config;
pub mod device;
pub mod hooks;
pub mod logic;
