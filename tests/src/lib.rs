//! hydra-tests
