//! Keyed initial sequence numbers (RFC 6528) and timestamp offsets.
//!
//! RFC 6528 sets ISN = M + F(4-tuple, secret), M a 4 µs clock. A replica
//! group needs every member to pick the *same* server ISN for a SYN without
//! sharing a clock, so the server side replaces M by the client's own ISN:
//! the client's ISN already advances with its clock (it is itself chosen by
//! RFC 6528 on any modern host), so a new incarnation of the same 4-tuple
//! still gets a fresh, unguessable ISN, and an off-path attacker who does not
//! hold the key cannot predict it.

use std::net::{IpAddr, SocketAddr};

use siphasher::sip::SipHasher24;

use hydra_base::time::Instant;

/// Domain separators so the three derived values never coincide.
const SERVER: u8 = 1;
const CLIENT: u8 = 2;
const TIMESTAMP: u8 = 3;

fn keyed_hash(
    key: &[u8; 16],
    domain: u8,
    local: SocketAddr,
    remote: SocketAddr,
    extra: u32,
) -> u32 {
    use core::hash::Hasher;
    let mut h = SipHasher24::new_with_key(key);
    h.write_u8(domain);
    write_endpoints(&mut h, local, remote);
    h.write_u32(extra);
    let v = h.finish();
    (v ^ (v >> 32)) as u32
}

/// Feed a 4-tuple to a keyed hash: each address's bytes (4 for IPv4, 16
/// for IPv6) and port, local first.
pub(crate) fn write_endpoints(
    h: &mut impl core::hash::Hasher,
    local: SocketAddr,
    remote: SocketAddr,
) {
    for end in [local, remote] {
        match end.ip() {
            IpAddr::V4(ip) => h.write(&ip.octets()),
            IpAddr::V6(ip) => h.write(&ip.octets()),
        }
        h.write_u16(end.port());
    }
}

/// ISN for a passive open; a pure function of key, 4-tuple and the SYN's ISN.
pub fn server_isn(key: &[u8; 16], local: SocketAddr, remote: SocketAddr, peer_isn: u32) -> u32 {
    keyed_hash(key, SERVER, local, remote, peer_isn)
}

/// ISN for an active open: F(4-tuple, key) plus a 4 µs clock, as in RFC 6528.
pub fn client_isn(key: &[u8; 16], local: SocketAddr, remote: SocketAddr, now: Instant) -> u32 {
    let m = (now.total_micros() / 4) as u32;
    keyed_hash(key, CLIENT, local, remote, 0).wrapping_add(m)
}

/// Per-connection offset added to TSval (RFC 7323 section 7.1 recommends a
/// random offset per connection so timestamps do not leak uptime).
pub fn ts_offset(key: &[u8; 16], local: SocketAddr, remote: SocketAddr) -> u32 {
    keyed_hash(key, TIMESTAMP, local, remote, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 16] = [7; 16];
    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([198, 18, 0, 1], port))
    }
    fn a6(port: u16) -> SocketAddr {
        SocketAddr::new("fd00::1".parse().unwrap(), port)
    }

    #[test]
    fn ipv6_tuples_get_their_own_deterministic_isns() {
        let v6 = server_isn(&KEY, a6(80), a6(5000), 42);
        assert_eq!(v6, server_isn(&KEY, a6(80), a6(5000), 42));
        assert_ne!(v6, server_isn(&KEY, a(80), a(5000), 42));
        let other = SocketAddr::new("fd00::1:0:0:1".parse().unwrap(), 5000);
        assert_ne!(v6, server_isn(&KEY, a6(80), other, 42));
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
