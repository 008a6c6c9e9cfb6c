//! The one byte codec: big-endian integers, length-prefixed byte strings,
//! socket addresses and connection keys. Connection snapshots,
//! passive-replication checkpoints and the ack channel's frames are all
//! written with [`Put`] and read with [`Reader`], so a [`ConnKey`] has one
//! encoding everywhere: a family byte (4 or 6), then the local address and
//! port, then the remote ones (13 bytes for IPv4, 37 for IPv6).
//!
//! Reading never panics on short or hostile input: every read returns
//! [`DecodeError`] when the bytes run out or a value is impossible.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::conn::ConnKey;
use crate::seq::Seq;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before the value did.
    #[error("input truncated")]
    Truncated,
    /// A format version this build does not know.
    #[error("unknown format version {0}")]
    Version(u8),
    /// A field holds a value it cannot have.
    #[error("invalid field value")]
    Invalid,
}

/// Appending values to a byte buffer, in the codec's encoding.
pub trait Put {
    /// One byte.
    fn put_u8(&mut self, v: u8);
    /// Two bytes, big-endian.
    fn put_u16(&mut self, v: u16);
    /// Four bytes, big-endian.
    fn put_u32(&mut self, v: u32);
    /// Eight bytes, big-endian.
    fn put_u64(&mut self, v: u64);
    /// Bytes as they are, without a length.
    fn put_raw(&mut self, v: &[u8]);

    /// One byte, 0 or 1.
    fn put_bool(&mut self, v: bool) {
        self.put_u8(u8::from(v));
    }
    /// A sequence number, four bytes.
    fn put_seq(&mut self, v: Seq) {
        self.put_u32(v.0);
    }
    /// A presence byte, then eight bytes (zero when absent).
    fn put_opt_u64(&mut self, v: Option<u64>) {
        self.put_bool(v.is_some());
        self.put_u64(v.unwrap_or(0));
    }
    /// A four-byte length, then the bytes.
    fn put_bytes(&mut self, v: &[u8]) {
        self.put_u32(v.len() as u32);
        self.put_raw(v);
    }
    /// A socket address: its family byte (4 or 6), the address, the port.
    fn put_addr(&mut self, a: SocketAddr) {
        self.put_u8(family(&a));
        self.put_addr_bytes(a);
    }
    /// A connection key: the family byte once (both ends share it), the
    /// local address and port, then the remote ones.
    fn put_key(&mut self, k: &ConnKey) {
        self.put_u8(family(&k.local));
        self.put_addr_bytes(k.local);
        self.put_addr_bytes(k.remote);
    }
    /// An address and port without the family byte.
    fn put_addr_bytes(&mut self, a: SocketAddr) {
        match a {
            SocketAddr::V4(a) => self.put_raw(&a.ip().octets()),
            SocketAddr::V6(a) => self.put_raw(&a.ip().octets()),
        }
        self.put_u16(a.port());
    }
}

/// The family byte of an address: 4 or 6.
fn family(a: &SocketAddr) -> u8 {
    match a {
        SocketAddr::V4(_) => 4,
        SocketAddr::V6(_) => 6,
    }
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_raw(&mut self, v: &[u8]) {
        self.extend_from_slice(v);
    }
}

/// Reads values off the front of a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    /// Two bytes, big-endian.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    /// Four bytes, big-endian.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    /// Eight bytes, big-endian.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    /// One byte that must be 0 or 1.
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid),
        }
    }
    /// A sequence number.
    pub fn seq(&mut self) -> Result<Seq, DecodeError> {
        Ok(Seq(self.u32()?))
    }
    /// A presence byte and eight bytes.
    pub fn opt_u64(&mut self) -> Result<Option<u64>, DecodeError> {
        let some = self.bool()?;
        let v = self.u64()?;
        Ok(some.then_some(v))
    }
    /// A four-byte length and that many bytes.
    pub fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    /// A family byte, an address and a port.
    pub fn addr(&mut self) -> Result<SocketAddr, DecodeError> {
        let family = self.u8()?;
        self.addr_of(family)
    }
    /// A connection key: one family byte for both of its addresses.
    pub fn key(&mut self) -> Result<ConnKey, DecodeError> {
        let family = self.u8()?;
        Ok(ConnKey {
            local: self.addr_of(family)?,
            remote: self.addr_of(family)?,
        })
    }
    fn addr_of(&mut self, family: u8) -> Result<SocketAddr, DecodeError> {
        match family {
            4 => {
                let ip = Ipv4Addr::from(self.array::<4>()?);
                Ok(SocketAddrV4::new(ip, self.u16()?).into())
            }
            6 => {
                let ip = Ipv6Addr::from(self.array::<16>()?);
                Ok(SocketAddrV6::new(ip, self.u16()?, 0, 0).into())
            }
            _ => Err(DecodeError::Invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_reads_back_as_written() {
        let key = ConnKey {
            local: "198.18.0.1:80".parse().unwrap(),
            remote: "198.18.0.2:40000".parse().unwrap(),
        };
        let mut out = Vec::new();
        out.put_u8(7);
        out.put_u16(0x1234);
        out.put_u32(0xdead_beef);
        out.put_u64(u64::MAX - 1);
        out.put_bool(true);
        out.put_seq(Seq(u32::MAX));
        out.put_opt_u64(None);
        out.put_opt_u64(Some(9));
        out.put_bytes(b"abc");
        out.put_key(&key);
        let mut r = Reader::new(&out);
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.u16(), Ok(0x1234));
        assert_eq!(r.u32(), Ok(0xdead_beef));
        assert_eq!(r.u64(), Ok(u64::MAX - 1));
        assert_eq!(r.bool(), Ok(true));
        assert_eq!(r.seq(), Ok(Seq(u32::MAX)));
        assert_eq!(r.opt_u64(), Ok(None));
        assert_eq!(r.opt_u64(), Ok(Some(9)));
        assert_eq!(r.bytes(), Ok(b"abc".to_vec()));
        assert_eq!(r.key(), Ok(key));
        assert!(r.is_empty());
    }

    #[test]
    fn a_key_is_its_family_then_both_addresses_in_network_order() {
        let key = ConnKey {
            local: "1.2.3.4:258".parse().unwrap(),
            remote: "5.6.7.8:1".parse().unwrap(),
        };
        let mut out = Vec::new();
        out.put_key(&key);
        assert_eq!(out, [4, 1, 2, 3, 4, 1, 2, 5, 6, 7, 8, 0, 1]);
        let v6 = ConnKey {
            local: "[fd00::1]:80".parse().unwrap(),
            remote: "[fd00::2:3]:40000".parse().unwrap(),
        };
        let mut out = Vec::new();
        out.put_key(&v6);
        assert_eq!(out.len(), 37);
        assert_eq!(out[0], 6);
        assert_eq!(out[1..17], "fd00::1".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(out[17..19], [0, 80]);
        assert_eq!(Reader::new(&out).key(), Ok(v6));
    }

    #[test]
    fn an_unknown_address_family_is_invalid() {
        let mut out = Vec::new();
        out.put_addr("[fd00::9]:7".parse().unwrap());
        assert_eq!(Reader::new(&out).addr(), Ok("[fd00::9]:7".parse().unwrap()));
        out[0] = 5;
        assert_eq!(Reader::new(&out).addr(), Err(DecodeError::Invalid));
        assert_eq!(Reader::new(&out[..10]).key(), Err(DecodeError::Invalid));
        assert_eq!(Reader::new(&[6, 0, 0]).key(), Err(DecodeError::Truncated));
    }

    #[test]
    fn short_or_impossible_input_is_an_error_not_a_panic() {
        assert_eq!(Reader::new(&[1, 2, 3]).u32(), Err(DecodeError::Truncated));
        assert_eq!(Reader::new(&[2]).bool(), Err(DecodeError::Invalid));
        assert_eq!(
            Reader::new(&[0, 0, 0, 9, 1]).bytes(),
            Err(DecodeError::Truncated)
        );
        assert_eq!(Reader::new(&[4; 12]).key(), Err(DecodeError::Truncated));
    }
}
