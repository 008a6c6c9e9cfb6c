//! Keyed initial sequence numbers (RFC 6528) and timestamp offsets.
//!
//! RFC 6528 sets ISN = M + F(4-tuple, secret), M a 4 µs clock. A replica
//! group needs every member to pick the *same* server ISN for a SYN without
//! sharing a clock, so the server side replaces M by the client's own ISN:
//! the client's ISN already advances with its clock (it is itself chosen by
//! RFC 6528 on any modern host), so a new incarnation of the same 4-tuple
//! still gets a fresh, unguessable ISN, and an off-path attacker who does not
//! hold the key cannot predict it.

use std::net::SocketAddrV4;

use siphasher::sip::SipHasher24;

use hydra_base::time::Instant;

/// Domain separators so the three derived values never coincide.
const SERVER: u8 = 1;
const CLIENT: u8 = 2;
const TIMESTAMP: u8 = 3;

fn keyed_hash(
    key: &[u8; 16],
    domain: u8,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    extra: u32,
) -> u32 {
    use core::hash::Hasher;
    let mut h = SipHasher24::new_with_key(key);
    h.write_u8(domain);
    h.write(&local.ip().octets());
    h.write_u16(local.port());
    h.write(&remote.ip().octets());
    h.write_u16(remote.port());
    h.write_u32(extra);
    let v = h.finish();
    (v ^ (v >> 32)) as u32
}

/// ISN for a passive open; a pure function of key, 4-tuple and the SYN's ISN.
pub fn server_isn(key: &[u8; 16], local: SocketAddrV4, remote: SocketAddrV4, peer_isn: u32) -> u32 {
    keyed_hash(key, SERVER, local, remote, peer_isn)
}

/// ISN for an active open: F(4-tuple, key) plus a 4 µs clock, as in RFC 6528.
pub fn client_isn(key: &[u8; 16], local: SocketAddrV4, remote: SocketAddrV4, now: Instant) -> u32 {
    let m = (now.total_micros() / 4) as u32;
    keyed_hash(key, CLIENT, local, remote, 0).wrapping_add(m)
}

/// Per-connection offset added to TSval (RFC 7323 section 7.1 recommends a
/// random offset per connection so timestamps do not leak uptime).
pub fn ts_offset(key: &[u8; 16], local: SocketAddrV4, remote: SocketAddrV4) -> u32 {
    keyed_hash(key, TIMESTAMP, local, remote, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const KEY: [u8; 16] = [7; 16];
    fn a(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), port)
    }

    #[test]
    fn server_isn_is_deterministic_for_replicas_sharing_a_key() {
        assert_eq!(
            server_isn(&KEY, a(80), a(5000), 42),
            server_isn(&KEY, a(80), a(5000), 42)
        );
    }

    #[test]
    fn server_isn_depends_on_key_tuple_and_peer_isn() {
        let base = server_isn(&KEY, a(80), a(5000), 42);
        assert_ne!(base, server_isn(&[8; 16], a(80), a(5000), 42));
        assert_ne!(base, server_isn(&KEY, a(80), a(5001), 42));
        assert_ne!(base, server_isn(&KEY, a(80), a(5000), 43));
    }

    #[test]
    fn client_isn_advances_with_a_four_microsecond_clock() {
        let t0 = client_isn(&KEY, a(5000), a(80), Instant::from_micros(0));
        let t1 = client_isn(&KEY, a(5000), a(80), Instant::from_micros(4_000));
        assert_eq!(t1.wrapping_sub(t0), 1000);
    }

    #[test]
    fn derived_values_are_domain_separated() {
        assert_ne!(
            ts_offset(&KEY, a(80), a(5000)),
            client_isn(&KEY, a(80), a(5000), Instant::ZERO)
        );
    }
}
