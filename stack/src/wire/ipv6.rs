//! The IPv6 header and its extension header chain (RFC 8200 section 4),
//! walked to the upper-layer header a host acts on.
//!
//! The walk is bounded: at most [`MAX_EXTENSION_HEADERS`] headers, each
//! inside the packet's payload length. What a host must not process is
//! refused here and counted by the caller as a bad IP packet: a Hop-by-Hop
//! header anywhere but first, a Routing header with segments left (the
//! packet is not for us yet), an option whose type says "discard", a header
//! that runs past the payload.

use std::net::Ipv6Addr;

use super::ParseError;

/// Length of the fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;

/// Extension headers a packet may carry before its upper-layer header.
/// RFC 8504 section 5.3 lets a host bound the chain; real traffic carries
/// one or two.
pub const MAX_EXTENSION_HEADERS: usize = 8;

const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DESTINATION_OPTIONS: u8 = 60;

/// Where an IPv6 packet's upper-layer data lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Header {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// The upper-layer protocol (after every extension header).
    pub protocol: u8,
    /// Offset of the upper-layer header in the packet.
    pub upper: usize,
    /// End of the packet as its payload length gives it (bytes past it are
    /// link padding).
    pub end: usize,
}

/// Parse the fixed header and walk the extension headers. A fragment that
/// is a whole datagram (offset 0, no more fragments: RFC 6946's atomic
/// fragment) is read as unfragmented; any other is [`ParseError::Fragment`].
pub fn parse(bytes: &[u8]) -> Result<Ipv6Header, ParseError> {
    if bytes.len() < IPV6_HEADER_LEN || bytes[0] >> 4 != 6 {
        return Err(ParseError::BadIp);
    }
    let payload_len = usize::from(u16::from_be_bytes([bytes[4], bytes[5]]));
    let end = IPV6_HEADER_LEN + payload_len;
    if end > bytes.len() {
        return Err(ParseError::BadIp);
    }
    let address = |at: usize| {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&bytes[at..at + 16]);
        Ipv6Addr::from(octets)
    };
    let mut protocol = bytes[6];
    let mut at = IPV6_HEADER_LEN;
    for seen in 0..=MAX_EXTENSION_HEADERS {
        let header_len = match protocol {
            HOP_BY_HOP if seen > 0 => return Err(ParseError::BadIp),
            HOP_BY_HOP | DESTINATION_OPTIONS => {
                let len = options_header_len(bytes, at, end)?;
                check_options(&bytes[at + 2..at + len])?;
                len
            }
            ROUTING => {
                let len = options_header_len(bytes, at, end)?;
                //= RFC 8200 section 4.4
                //# If Segments Left is zero, the node must ignore the
                //# Routing header and proceed to process the next header
                // A non-zero Segments Left names a further hop: a host is
                // not it, and does not forward.
                if bytes[at + 3] != 0 {
                    return Err(ParseError::BadIp);
                }
                len
            }
            FRAGMENT => {
                if at + 8 > end {
                    return Err(ParseError::BadIp);
                }
                let offset_and_more = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]);
                if offset_and_more & !0b110 != 0 {
                    return Err(ParseError::Fragment);
                }
                8
            }
            _ => {
                return Ok(Ipv6Header {
                    src: address(8),
                    dst: address(24),
                    protocol,
                    upper: at,
                    end,
                })
            }
        };
        protocol = bytes[at];
        at += header_len;
    }
    Err(ParseError::BadIp)
}

/// Length of a Hop-by-Hop, Routing or Destination Options header at `at`
/// (its second byte counts 8-byte units beyond the first).
fn options_header_len(bytes: &[u8], at: usize, end: usize) -> Result<usize, ParseError> {
    if at + 2 > end {
        return Err(ParseError::BadIp);
    }
    let len = (usize::from(bytes[at + 1]) + 1) * 8;
    if at + len > end {
        return Err(ParseError::BadIp);
    }
    Ok(len)
}

//= RFC 8200 section 4.2
//# The Option Type identifiers are internally encoded such that their
//# highest-order 2 bits specify the action that must be taken if the
//# processing IPv6 node does not recognize the Option Type
/// The options of a Hop-by-Hop or Destination Options header: padding is
/// skipped, and so is any option whose type says "skip over this option";
/// the others (which this host does not implement) discard the packet. The
/// ICMP Parameter Problem RFC 8200 asks for in two of the three discard
/// cases is not sent.
fn check_options(mut options: &[u8]) -> Result<(), ParseError> {
    const PAD1: u8 = 0;
    while let Some(&kind) = options.first() {
        if kind == PAD1 {
            options = &options[1..];
            continue;
        }
        let len = usize::from(*options.get(1).ok_or(ParseError::BadIp)?);
        if options.len() < 2 + len {
            return Err(ParseError::BadIp);
        }
        if kind >> 6 != 0 {
            return Err(ParseError::BadIp);
        }
        options = &options[2 + len..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "fd00::1";
    const DST: &str = "fd00::2";

    /// A fixed header followed by `chain` (extension headers and payload),
    /// whose first header is `first`.
    fn packet(first: u8, chain: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(chain.len() as u16).to_be_bytes());
        p.extend_from_slice(&[first, 64]);
        p.extend_from_slice(&SRC.parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&DST.parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(chain);
        p
    }

    /// An 8-byte options header: next header, then `options` (6 bytes).
    fn options_header(next: u8, options: [u8; 6]) -> Vec<u8> {
        let mut h = vec![next, 0];
        h.extend_from_slice(&options);
        h
    }

    const PADN: [u8; 6] = [1, 4, 0, 0, 0, 0];

    #[test]
    fn a_plain_header_gives_its_addresses_and_upper_layer() {
        let p = packet(6, &[0u8; 20]);
        let h = parse(&p).unwrap();
        assert_eq!(h.src, SRC.parse::<Ipv6Addr>().unwrap());
        assert_eq!(h.dst, DST.parse::<Ipv6Addr>().unwrap());
        assert_eq!((h.protocol, h.upper, h.end), (6, 40, 60));
        // Link padding past the payload length is not part of the packet.
        let mut padded = p.clone();
        padded.extend_from_slice(&[0xee; 6]);
        assert_eq!(parse(&padded).unwrap().end, 60);
    }

    #[test]
    fn extension_headers_are_walked_to_the_upper_layer() {
        let mut chain = options_header(DESTINATION_OPTIONS, PADN);
        chain.extend(options_header(ROUTING, [1, 2, 0, 0, 0, 0]));
        chain.extend([FRAGMENT, 0, 0, 0, 0, 0, 0, 0]); // routing, segments left 0
        chain.extend([6, 0, 0, 0, 0, 0, 0, 9]); // an atomic fragment
        chain.extend([0u8; 20]);
        let h = parse(&packet(HOP_BY_HOP, &chain)).unwrap();
        assert_eq!((h.protocol, h.upper), (6, 40 + 32));
    }

    #[test]
    fn a_skippable_option_is_skipped_and_others_discard_the_packet() {
        // Router Alert (type 5, action 00) is skipped.
        let ok = [options_header(6, [5, 2, 0, 0, 1, 0]), vec![0u8; 20]].concat();
        assert!(parse(&packet(HOP_BY_HOP, &ok)).is_ok());
        for kind in [0x42, 0x82, 0xc2] {
            let bad = [options_header(6, [kind, 4, 0, 0, 0, 0]), vec![0u8; 20]].concat();
            assert_eq!(
                parse(&packet(DESTINATION_OPTIONS, &bad)),
                Err(ParseError::BadIp)
            );
        }
        // An option whose length runs past its header.
        let long = [options_header(6, [1, 9, 0, 0, 0, 0]), vec![0u8; 20]].concat();
        assert_eq!(parse(&packet(HOP_BY_HOP, &long)), Err(ParseError::BadIp));
    }

    #[test]
    fn bad_chains_are_refused() {
        // Hop-by-Hop after another header.
        let late = [options_header(HOP_BY_HOP, PADN), options_header(6, PADN)].concat();
        assert_eq!(
            parse(&packet(DESTINATION_OPTIONS, &late)),
            Err(ParseError::BadIp)
        );
        // A routing header with segments left: not for this host.
        let routed = options_header(6, [0, 1, 0, 0, 0, 0]);
        assert_eq!(parse(&packet(ROUTING, &routed)), Err(ParseError::BadIp));
        // Too many headers.
        let many: Vec<u8> = (0..=MAX_EXTENSION_HEADERS)
            .flat_map(|_| options_header(DESTINATION_OPTIONS, PADN))
            .collect();
        assert_eq!(
            parse(&packet(DESTINATION_OPTIONS, &many)),
            Err(ParseError::BadIp)
        );
        // A header longer than the payload.
        let mut cut = options_header(6, PADN);
        cut[1] = 3;
        assert_eq!(
            parse(&packet(DESTINATION_OPTIONS, &cut)),
            Err(ParseError::BadIp)
        );
        // A real fragment.
        let frag = [fragment_header(6, 0x0001), vec![0u8; 20]].concat();
        assert_eq!(parse(&packet(FRAGMENT, &frag)), Err(ParseError::Fragment));
        let later = [fragment_header(6, 0x0100), vec![0u8; 20]].concat();
        assert_eq!(parse(&packet(FRAGMENT, &later)), Err(ParseError::Fragment));
    }

    fn fragment_header(next: u8, offset_and_more: u16) -> Vec<u8> {
        let [a, b] = offset_and_more.to_be_bytes();
        vec![next, 0, a, b, 0, 0, 0, 1]
    }

    #[test]
    fn truncated_or_wrong_headers_are_refused() {
        let p = packet(6, &[0u8; 20]);
        for len in 0..40 {
            assert_eq!(parse(&p[..len]), Err(ParseError::BadIp), "len {len}");
        }
        // A payload length past the bytes received.
        assert_eq!(parse(&p[..50]), Err(ParseError::BadIp));
        let mut v4 = p.clone();
        v4[0] = 0x45;
        assert_eq!(parse(&v4), Err(ParseError::BadIp));
    }

    #[test]
    fn random_chains_never_panic() {
        let mut rng = hydra_base::rng::SplitMix64::new(7);
        for _ in 0..20_000 {
            let len = (rng.next_u64() % 120) as usize;
            let mut chain: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            for b in chain.iter_mut().step_by(8) {
                *b = [0, 43, 44, 60, 6, 58][(*b % 6) as usize];
            }
            let first = [0, 43, 44, 60, 6][(rng.next_u64() % 5) as usize];
            if let Ok(h) = parse(&packet(first, &chain)) {
                assert!(h.upper <= h.end);
            }
        }
    }
}
