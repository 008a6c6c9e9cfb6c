//! `std::net`-like blocking API over a [`crate::Stack`] driven by a thread.
