//! Deterministic simulation of a whole replica group (the `run` module).

mod run;

pub use run::*;
