//! The Internet checksum (RFC 1071), computed a word at a time.
//!
//! Every byte a replica receives is summed when its TCP checksum is
//! verified, so this is on the hot path of bulk transfers. The one's
//! complement sum does not depend on byte order (RFC 1071 section 2(B)):
//! we add native-endian 32-bit words into a 64-bit accumulator, which the
//! compiler vectorises and which cannot overflow below 2^32 words, fold it
//! to 16 bits and swap to network order once at the end.

use std::net::IpAddr;

/// One's-complement sum of `bytes` read as big-endian 16-bit words (an odd
/// last byte padded with zero), folded to 16 bits, not inverted.
pub fn sum(bytes: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut words = bytes.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc += u64::from(u32::from_ne_bytes(tail));
    u16::from_be(fold(acc))
}

/// Sum of the pseudo-header of a TCP segment `tcp_len` bytes long: IPv4's
/// (RFC 9293 section 3.1) or IPv6's (RFC 8200 section 8.1), by the
/// addresses' family. Addresses of two families make no pseudo-header:
/// their sum matches no segment.
pub fn pseudo_header_tcp(src: IpAddr, dst: IpAddr, tcp_len: usize) -> u16 {
    const TCP: u8 = 6;
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let mut header = [0u8; 12];
            header[..4].copy_from_slice(&src.octets());
            header[4..8].copy_from_slice(&dst.octets());
            header[9] = TCP;
            header[10..].copy_from_slice(&(tcp_len as u16).to_be_bytes());
            sum(&header)
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let mut header = [0u8; 40];
            header[..16].copy_from_slice(&src.octets());
            header[16..32].copy_from_slice(&dst.octets());
            header[32..36].copy_from_slice(&(tcp_len as u32).to_be_bytes());
            header[39] = TCP;
            sum(&header)
        }
        _ => 0x5555,
    }
}

/// One's-complement addition of two folded sums.
pub fn add(a: u16, b: u16) -> u16 {
    fold(u64::from(a) + u64::from(b))
}

/// A TCP segment (header and payload, checksum field included) whose
/// checksum is right: everything summed with the pseudo-header gives 0xffff.
pub fn tcp_is_valid(src: IpAddr, dst: IpAddr, segment: &[u8]) -> bool {
    segment.len() <= usize::from(u16::MAX)
        && src.is_ipv4() == dst.is_ipv4()
        && add(pseudo_header_tcp(src, dst, segment.len()), sum(segment)) == 0xffff
}

/// The checksum to put in a TCP segment whose checksum field is zero.
pub fn tcp_checksum(src: IpAddr, dst: IpAddr, segment: &[u8]) -> u16 {
    !add(pseudo_header_tcp(src, dst, segment.len()), sum(segment))
}

fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// RFC 1071's definition, a 16-bit word at a time.
    fn reference(bytes: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            acc += u32::from(word);
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn matches_the_definition_at_every_length_and_offset() {
        let data: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in (0..40).chain([1499, 1500, 9001, 65_535]) {
            for offset in 0..4 {
                let bytes = &data[offset..offset + len];
                assert_eq!(sum(bytes), reference(bytes), "len {len} offset {offset}");
            }
        }
        assert_eq!(sum(&[0xff; 65_536]), 0xffff);
    }

    #[test]
    fn the_rfc_1071_example() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        assert_eq!(
            sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn a_filled_checksum_verifies_and_a_flipped_bit_does_not() {
        let v4: (IpAddr, IpAddr) = (
            Ipv4Addr::new(198, 18, 0, 1).into(),
            Ipv4Addr::new(198, 18, 0, 2).into(),
        );
        let v6: (IpAddr, IpAddr) = ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
        for (src, dst) in [v4, v6] {
            let mut segment: Vec<u8> = (0..1_001u32).map(|i| i as u8).collect();
            segment[16..18].fill(0);
            let c = tcp_checksum(src, dst, &segment);
            segment[16..18].copy_from_slice(&c.to_be_bytes());
            assert!(tcp_is_valid(src, dst, &segment));
            let other_family = if src.is_ipv4() { v6.1 } else { v4.1 };
            assert!(!tcp_is_valid(src, other_family, &segment));
            segment[500] ^= 0x10;
            assert!(!tcp_is_valid(src, dst, &segment));
        }
    }
}
