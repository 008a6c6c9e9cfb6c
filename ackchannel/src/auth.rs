//! Authenticated framing shared by the control and replication messages.
//!
//! Every frame is `header | body | tag`, where the tag is HMAC-SHA256 over a
//! domain label and everything before it, keyed with the group key and
//! truncated to 16 bytes. The header carries the sender, the epoch the
//! sender believes in, and a per-sender counter that only grows (it starts
//! from the wall clock, so a restarted process continues upwards); a
//! [`ReplayGuard`] refuses any counter it has already passed.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The group's pre-shared key (32 bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct GroupKey(pub [u8; 32]);

impl std::fmt::Debug for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupKey(..)")
    }
}

impl GroupKey {
    /// Parse 64 hexadecimal characters.
    pub fn from_hex(text: &str) -> Result<GroupKey, KeyError> {
        let text = text.trim();
        if !text.is_ascii() {
            return Err(KeyError::NotHex);
        }
        if text.len() != 64 {
            return Err(KeyError::Length(text.len()));
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte =
                u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| KeyError::NotHex)?;
        }
        Ok(GroupKey(key))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("group key must be 64 hex characters, got {0}")]
    Length(usize),
    #[error("group key is not hexadecimal")]
    NotHex,
}

/// Why a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("frame too short")]
    Truncated,
    #[error("unknown frame version {0}")]
    Version(u8),
    #[error("authentication tag does not match (wrong key or altered frame)")]
    BadTag,
    #[error("replayed or reordered frame (counter {counter} after {last})")]
    Replay { counter: u64, last: u64 },
}

const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 1 + 1 + 8 + 1 + 8;
pub const TAG_LEN: usize = 16;

/// The authenticated header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: u8,
    pub epoch: u64,
    pub sender: u8,
    pub counter: u64,
}

fn tag(key: &GroupKey, domain: &[u8], bytes: &[u8]) -> [u8; TAG_LEN] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("any key length");
    mac.update(domain);
    mac.update(bytes);
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&full[..TAG_LEN]);
    out
}

/// Build a frame. `domain` separates message families that share a key.
pub fn seal(key: &GroupKey, domain: &[u8], header: Header, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + TAG_LEN);
    out.push(VERSION);
    out.push(header.kind);
    out.extend_from_slice(&header.epoch.to_be_bytes());
    out.push(header.sender);
    out.extend_from_slice(&header.counter.to_be_bytes());
    out.extend_from_slice(body);
    let t = tag(key, domain, &out);
    out.extend_from_slice(&t);
    out
}

/// Verify a frame and split it into header and body.
pub fn open<'a>(
    key: &GroupKey,
    domain: &[u8],
    frame: &'a [u8],
) -> Result<(Header, &'a [u8]), AuthError> {
    if frame.len() < HEADER_LEN + TAG_LEN {
        return Err(AuthError::Truncated);
    }
    if frame[0] != VERSION {
        return Err(AuthError::Version(frame[0]));
    }
    let (signed, got) = frame.split_at(frame.len() - TAG_LEN);
    let want = tag(key, domain, signed);
    // Constant-time comparison: no early exit on the first differing byte.
    let diff = want.iter().zip(got).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff != 0 {
        return Err(AuthError::BadTag);
    }
    let header = Header {
        kind: signed[1],
        epoch: u64::from_be_bytes(signed[2..10].try_into().expect("8 bytes")),
        sender: signed[10],
        counter: u64::from_be_bytes(signed[11..19].try_into().expect("8 bytes")),
    };
    Ok((header, &signed[HEADER_LEN..]))
}

/// A sender's frame counter: starts at the wall clock in microseconds, so a
/// restarted sender never reuses a counter its receivers have seen.
#[derive(Debug)]
pub struct Counter(u64);

impl Counter {
    pub fn from_clock() -> Counter {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        Counter(micros)
    }

    /// Start at a fixed value (deterministic simulation).
    pub fn starting_at(value: u64) -> Counter {
        Counter(value)
    }

    pub fn next_value(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

/// Refuses frames whose counter is not above the last accepted one from the
/// same sender. Bounded: one entry per sender id (a `u8`).
#[derive(Debug, Default)]
pub struct ReplayGuard {
    last: HashMap<u8, u64>,
}

impl ReplayGuard {
    pub fn check(&mut self, header: &Header) -> Result<(), AuthError> {
        let last = self.last.entry(header.sender).or_insert(0);
        if header.counter <= *last {
            return Err(AuthError::Replay {
                counter: header.counter,
                last: *last,
            });
        }
        *last = header.counter;
        Ok(())
    }
}

/// Little helpers to read a body without panicking on short input.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("message body truncated or malformed")]
pub struct Malformed;

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.bytes.len() < n {
            return Err(Malformed);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
    pub fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, Malformed> {
        Ok(u16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    pub fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    pub fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    pub fn addr(&mut self) -> Result<std::net::SocketAddrV4, Malformed> {
        let ip: [u8; 4] = self.take(4)?.try_into().expect("4 bytes");
        Ok(std::net::SocketAddrV4::new(ip.into(), self.u16()?))
    }
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

pub(crate) fn put_addr(out: &mut Vec<u8>, addr: std::net::SocketAddrV4) {
    out.extend_from_slice(&addr.ip().octets());
    out.extend_from_slice(&addr.port().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> GroupKey {
        GroupKey([b; 32])
    }

    fn header(counter: u64) -> Header {
        Header {
            kind: 7,
            epoch: 3,
            sender: 2,
            counter,
        }
    }

    #[test]
    fn sealed_frame_opens_with_the_same_key_and_domain() {
        let frame = seal(&key(1), b"d", header(5), b"body");
        let (h, body) = open(&key(1), b"d", &frame).unwrap();
        assert_eq!(h, header(5));
        assert_eq!(body, b"body");
    }

    #[test]
    fn wrong_key_domain_or_any_flipped_bit_is_refused() {
        let frame = seal(&key(1), b"d", header(5), b"body");
        assert_eq!(open(&key(2), b"d", &frame), Err(AuthError::BadTag));
        assert_eq!(open(&key(1), b"e", &frame), Err(AuthError::BadTag));
        for i in 1..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                open(&key(1), b"d", &bad),
                Err(AuthError::BadTag),
                "bit in byte {i}"
            );
        }
        let mut bad = frame.clone();
        bad[0] = 9;
        assert_eq!(open(&key(1), b"d", &bad), Err(AuthError::Version(9)));
        for n in 0..HEADER_LEN + TAG_LEN {
            assert_eq!(open(&key(1), b"d", &frame[..n]), Err(AuthError::Truncated));
        }
    }

    #[test]
    fn replay_guard_refuses_repeated_and_older_counters_per_sender() {
        let mut guard = ReplayGuard::default();
        assert!(guard.check(&header(10)).is_ok());
        assert!(guard.check(&header(10)).is_err());
        assert!(guard.check(&header(9)).is_err());
        assert!(guard.check(&header(11)).is_ok());
        let other = Header {
            sender: 3,
            ..header(1)
        };
        assert!(guard.check(&other).is_ok());
    }

    #[test]
    fn keys_parse_from_hex_only() {
        let hex = "00".repeat(31) + "ff";
        assert_eq!(GroupKey::from_hex(&hex).unwrap().0[31], 0xff);
        assert_eq!(GroupKey::from_hex("abc"), Err(KeyError::Length(3)));
        assert_eq!(GroupKey::from_hex(&"zz".repeat(32)), Err(KeyError::NotHex));
    }

    #[test]
    fn reader_never_panics_on_short_input() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Ok(0x0102));
        assert_eq!(r.u16(), Err(Malformed));
        assert_eq!(r.u8(), Ok(3));
        assert!(r.u64().is_err());
        assert!(r.addr().is_err());
    }
}
