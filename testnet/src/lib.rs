//! Helpers for Hydra's tests on a real network: the replica's and the
//! scenarios' end-to-end tests start the real binaries in network
//! namespaces made for the test.
//!
//! - [`netns`]: network namespaces, veth links and processes made by a test
//!   and removed again, also when the test fails.
//! - [`hostile`]: the hostile-input probe (scapy) and a kernel reference
//!   listener to compare Hydra's answers with.
//!
//! The Python clients the tests run (`clients/`) and the probe script
//! (`hostile/probe.py`) live beside this crate.

pub mod hostile;
pub mod netns;
