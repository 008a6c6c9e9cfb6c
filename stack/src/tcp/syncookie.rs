//! SYN cookies (RFC 4987 section 3.6): under SYN flood the listener keeps no
//! state and encodes what it must remember into its ISN.
//!
//! Cookie layout, most significant bit first:
//! `counter (2) | mss index (3) | window scale + 1 or 0 (4) | sack (1) | mac (22)`.
//! The MAC is keyed SipHash over the 4-tuple, the client's ISN, the full
//! counter and the option bits, so neither the options nor the age can be
//! forged. A cookie is valid for the current and the previous counter value
//! (64 to 128 seconds with the caller's 64 s tick).

use std::net::SocketAddr;

use siphasher::sip::SipHasher24;

/// MSS values a cookie can carry; a peer's MSS is rounded down to one of them.
const MSS_TABLE: [u16; 8] = [536, 1220, 1300, 1400, 1440, 1460, 4312, 8960];
const MAC_BITS: u32 = 22;
const MAC_MASK: u32 = (1 << MAC_BITS) - 1;

/// Connection options a cookie remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieOptions {
    pub mss: u16,
    pub window_scale: Option<u8>,
    pub sack: bool,
}

fn mac(
    key: &[u8; 16],
    local: SocketAddr,
    remote: SocketAddr,
    peer_isn: u32,
    counter: u32,
    bits: u32,
) -> u32 {
    use core::hash::Hasher;
    let mut h = SipHasher24::new_with_key(key);
    h.write_u8(0xC0); // domain separation from the ISN hash
    super::isn::write_endpoints(&mut h, local, remote);
    h.write_u32(peer_isn);
    h.write_u32(counter);
    h.write_u32(bits);
    (h.finish() as u32) & MAC_MASK
}

fn encode_options(opts: CookieOptions) -> (u32, CookieOptions) {
    let idx = MSS_TABLE.iter().rposition(|&m| m <= opts.mss).unwrap_or(0);
    let ws = opts.window_scale.map(|w| w.min(14));
    let ws_bits = ws.map_or(0, |w| u32::from(w) + 1);
    let bits = ((idx as u32) << 5) | (ws_bits << 1) | u32::from(opts.sack);
    (
        bits,
        CookieOptions {
            mss: MSS_TABLE[idx],
            window_scale: ws,
            sack: opts.sack,
        },
    )
}

fn decode_options(bits: u32) -> Option<CookieOptions> {
    let ws_bits = (bits >> 1) & 0xF;
    let window_scale = match ws_bits {
        0 => None,
        1..=15 => Some((ws_bits - 1) as u8),
        _ => return None,
    };
    if window_scale.is_some_and(|w| w > 14) {
        return None;
    }
    Some(CookieOptions {
        mss: MSS_TABLE[((bits >> 5) & 7) as usize],
        window_scale,
        sack: bits & 1 == 1,
    })
}

/// Build the cookie to use as our ISN. Returns the options as the cookie
/// will remember them (MSS rounded down).
pub fn make_cookie(
    key: &[u8; 16],
    local: SocketAddr,
    remote: SocketAddr,
    peer_isn: u32,
    counter: u32,
    opts: CookieOptions,
) -> (u32, CookieOptions) {
    let (bits, kept) = encode_options(opts);
    let m = mac(key, local, remote, peer_isn, counter, bits);
    (((counter & 3) << 30) | (bits << MAC_BITS) | m, kept)
}

/// Validate the cookie echoed back in the handshake's final ACK (its ACK
/// number minus one). `counter` is the current tick.
pub fn check_cookie(
    key: &[u8; 16],
    local: SocketAddr,
    remote: SocketAddr,
    peer_isn: u32,
    cookie: u32,
    counter: u32,
) -> Option<CookieOptions> {
    let low = cookie >> 30;
    let bits = (cookie >> MAC_BITS) & 0xFF;
    // Recover the full counter from its two low bits: now or one tick ago.
    let issued = [counter, counter.wrapping_sub(1)]
        .into_iter()
        .find(|c| c & 3 == low)?;
    if mac(key, local, remote, peer_isn, issued, bits) != cookie & MAC_MASK {
        return None;
    }
    decode_options(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 16] = [9; 16];
    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([198, 18, 0, 2], port))
    }
    const OPTS: CookieOptions = CookieOptions {
        mss: 1460,
        window_scale: Some(7),
        sack: true,
    };

    #[test]
    fn an_ipv6_cookie_holds_only_for_its_own_tuple() {
        let (l, r) = (
            SocketAddr::new("fd00::2".parse().unwrap(), 80),
            SocketAddr::new("fd00::9".parse().unwrap(), 4000),
        );
        let (c, kept) = make_cookie(&KEY, l, r, 1234, 100, OPTS);
        assert_eq!(check_cookie(&KEY, l, r, 1234, c, 100), Some(kept));
        let elsewhere = SocketAddr::new("fd00::8".parse().unwrap(), 4000);
        assert_eq!(check_cookie(&KEY, l, elsewhere, 1234, c, 100), None);
    }

    #[test]
    fn cookie_round_trips_options() {
        let (c, kept) = make_cookie(&KEY, a(80), a(4000), 1234, 100, OPTS);
        assert_eq!(kept, OPTS);
        assert_eq!(check_cookie(&KEY, a(80), a(4000), 1234, c, 100), Some(OPTS));
    }

    #[test]
    fn mss_is_rounded_down_to_table() {
        let (c, kept) = make_cookie(
            &KEY,
            a(80),
            a(4000),
            1,
            5,
            CookieOptions {
                mss: 1450,
                window_scale: None,
                sack: false,
            },
        );
        assert_eq!(kept.mss, 1440);
        assert_eq!(
            check_cookie(&KEY, a(80), a(4000), 1, c, 5).map(|o| o.mss),
            Some(1440)
        );
    }

    #[test]
    fn cookie_valid_for_one_previous_tick_only() {
        let (c, _) = make_cookie(&KEY, a(80), a(4000), 1234, 100, OPTS);
        assert!(check_cookie(&KEY, a(80), a(4000), 1234, c, 101).is_some());
        assert!(check_cookie(&KEY, a(80), a(4000), 1234, c, 102).is_none());
    }

    #[test]
    fn forged_or_mismatched_cookies_are_rejected() {
        let (c, _) = make_cookie(&KEY, a(80), a(4000), 1234, 100, OPTS);
        assert!(check_cookie(&KEY, a(80), a(4001), 1234, c, 100).is_none());
        assert!(check_cookie(&KEY, a(80), a(4000), 1235, c, 100).is_none());
        assert!(check_cookie(&[1; 16], a(80), a(4000), 1234, c, 100).is_none());
        // Flipping an option bit (e.g. claiming a larger MSS) breaks the MAC.
        assert!(check_cookie(&KEY, a(80), a(4000), 1234, c ^ (1 << 29), 100).is_none());
        assert!(check_cookie(&KEY, a(80), a(4000), 1234, c ^ 1, 100).is_none());
    }
}
