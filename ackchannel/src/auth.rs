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
use hydra_base::codec::{Put, Reader};
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

/// Why a group key could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not 64 characters long (the length found).
    #[error("group key must be 64 hex characters, got {0}")]
    Length(usize),
    /// A character that is not a hexadecimal digit.
    #[error("group key is not hexadecimal")]
    NotHex,
}

/// Why a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Shorter than a header and a tag.
    #[error("frame too short")]
    Truncated,
    /// A framing version this build does not know.
    #[error("unknown frame version {0}")]
    Version(u8),
    /// The tag does not match: another key or domain, or altered bytes.
    #[error("authentication tag does not match (wrong key or altered frame)")]
    BadTag,
    /// The counter is not above the last one accepted from this sender.
    #[error("replayed or reordered frame (counter {counter} after {last})")]
    Replay {
        /// The frame's counter.
        counter: u64,
        /// The last counter accepted from its sender.
        last: u64,
    },
}

const VERSION: u8 = 2;
/// Bytes of a frame header: version, kind, epoch, sender, counter.
pub const HEADER_LEN: usize = 1 + 1 + 8 + 1 + 8;
/// Bytes of the truncated HMAC-SHA256 tag that ends every frame.
pub const TAG_LEN: usize = 16;

/// The authenticated header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The message kind, in the family its domain names.
    pub kind: u8,
    /// The epoch (view number) the sender believes in.
    pub epoch: u64,
    /// The sender's member id ([`crate::control::AUTHORITY`] for the redirector).
    pub sender: u8,
    /// The sender's frame counter: above every earlier one it sent.
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
    out.put_u8(VERSION);
    out.put_u8(header.kind);
    out.put_u64(header.epoch);
    out.put_u8(header.sender);
    out.put_u64(header.counter);
    out.put_raw(body);
    let t = tag(key, domain, &out);
    out.put_raw(&t);
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
    // After the version byte; the length check above guarantees the fields.
    let mut r = Reader::new(&signed[1..]);
    let (Ok(kind), Ok(epoch), Ok(sender), Ok(counter)) = (r.u8(), r.u64(), r.u8(), r.u64()) else {
        return Err(AuthError::Truncated);
    };
    let header = Header {
        kind,
        epoch,
        sender,
        counter,
    };
    Ok((header, r.rest()))
}

/// A sender's frame counter: starts at the wall clock in microseconds, so a
/// restarted sender never reuses a counter its receivers have seen.
#[derive(Debug)]
pub struct Counter(u64);

impl Counter {
    /// Start at the wall clock in microseconds: above anything an earlier
    /// process of this member sent.
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

    /// The last value handed out (or the start).
    pub fn last(&self) -> u64 {
        self.0
    }

    /// The next counter value (each is used once).
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
    /// Accept `header` if its counter is above the last one accepted from its
    /// sender, and remember it; refuse a replayed or reordered frame.
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
    fn a_frame_is_version_kind_epoch_sender_counter_body_then_tag() {
        let frame = seal(&key(1), b"d", header(0x0102), b"xy");
        let mut want = vec![VERSION, 7, 0, 0, 0, 0, 0, 0, 0, 3, 2];
        want.extend([0, 0, 0, 0, 0, 0, 1, 2]);
        want.extend(b"xy");
        assert_eq!(frame[..HEADER_LEN + 2], want[..]);
        assert_eq!(frame.len(), HEADER_LEN + 2 + TAG_LEN);
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
}
