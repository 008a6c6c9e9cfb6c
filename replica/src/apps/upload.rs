//! SHA-256 of a request body whose progress fits in the connection's app
//! state: the digest's chaining value, the byte count and the unhashed tail
//! serialise in at most 104 bytes, so a replica that receives the
//! connection by snapshot continues the same digest where the donor was.

use sha2::digest::generic_array::GenericArray;

/// FIPS 180-4 initial hash value.
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
const BLOCK: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyDigest {
    h: [u32; 8],
    /// Body bytes hashed so far.
    pub len: u64,
    /// Bytes of the current, incomplete block.
    tail: Vec<u8>,
}

impl Default for BodyDigest {
    fn default() -> Self {
        BodyDigest {
            h: H0,
            len: 0,
            tail: Vec::with_capacity(BLOCK),
        }
    }
}

impl BodyDigest {
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if !self.tail.is_empty() {
            let take = (BLOCK - self.tail.len()).min(data.len());
            self.tail.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.tail.len() < BLOCK {
                return;
            }
            let block = std::mem::take(&mut self.tail);
            self.compress(&block);
        }
        let whole = data.len() / BLOCK * BLOCK;
        self.compress(&data[..whole]);
        self.tail.extend_from_slice(&data[whole..]);
    }

    /// The digest of everything hashed so far (the stream may go on).
    pub fn finish(&self) -> [u8; 32] {
        let mut end = self.clone();
        let mut pad = std::mem::take(&mut end.tail);
        pad.push(0x80);
        while pad.len() % BLOCK != BLOCK - 8 {
            pad.push(0);
        }
        pad.extend_from_slice(&(self.len * 8).to_be_bytes());
        end.compress(&pad);
        let mut out = [0u8; 32];
        for (o, h) in out.chunks_exact_mut(4).zip(end.h) {
            o.copy_from_slice(&h.to_be_bytes());
        }
        out
    }

    fn compress(&mut self, whole_blocks: &[u8]) {
        for block in whole_blocks.chunks_exact(BLOCK) {
            sha2::compress256(
                &mut self.h,
                std::slice::from_ref(GenericArray::from_slice(block)),
            );
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        for h in self.h {
            out.extend_from_slice(&h.to_be_bytes());
        }
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&self.tail);
    }

    /// `None` if `bytes` is not what [`encode`](BodyDigest::encode) wrote.
    pub fn decode(bytes: &[u8]) -> Option<BodyDigest> {
        let (h, rest) = bytes.split_first_chunk::<32>()?;
        let (len, tail) = rest.split_first_chunk::<8>()?;
        let len = u64::from_be_bytes(*len);
        if tail.len() >= BLOCK || tail.len() as u64 != len % BLOCK as u64 {
            return None;
        }
        let mut d = BodyDigest {
            len,
            tail: tail.to_vec(),
            ..BodyDigest::default()
        };
        for (word, b) in d.h.iter_mut().zip(h.chunks_exact(4)) {
            *word = u32::from_be_bytes(b.try_into().expect("4 bytes"));
        }
        Some(d)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn matches_sha256_however_the_body_is_split_and_resumed() {
        let body: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for cut in [0, 1, 55, 56, 63, 64, 65, 127, 128, 1000, 4999, 5000] {
            let mut d = BodyDigest::default();
            d.update(&body[..cut]);
            let mut saved = Vec::new();
            d.encode(&mut saved);
            let mut resumed = BodyDigest::decode(&saved).expect("round trip");
            assert_eq!(resumed, d);
            for piece in body[cut..].chunks(37) {
                resumed.update(piece);
            }
            assert_eq!(
                resumed.finish()[..],
                Sha256::digest(&body)[..],
                "cut at {cut}"
            );
            assert_eq!(d.finish()[..], Sha256::digest(&body[..cut])[..]);
        }
    }

    #[test]
    fn corrupt_state_is_refused() {
        let mut saved = Vec::new();
        let mut d = BodyDigest::default();
        d.update(b"abc");
        d.encode(&mut saved);
        assert!(BodyDigest::decode(&saved[..saved.len() - 1]).is_none());
        assert!(BodyDigest::decode(&saved[..20]).is_none());
        assert_eq!(
            hex(&BodyDigest::default().finish()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
