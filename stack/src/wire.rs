//! Packet parsing and emission on top of `smoltcp::wire`.
