//! hydra-ackchannel
