//! RFC 6962 §2.1 hashing: leaf = SHA-256(0x00 ‖ entry), node = SHA-256(0x01 ‖ left ‖ right).

use sha2::{Digest, Sha256};
use std::fmt;

/// A SHA-256 digest. Displays and (de)serialises as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// 32 zero bytes: the `prev` of entry 0.
    pub const ZERO: Hash = Hash([0; 32]);

    pub fn to_hex(&self) -> String {
        const_hex::encode(self.0)
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Result<Hash, HashParseError> {
        let err = |reason| HashParseError {
            value: s.chars().take(80).collect(),
            reason,
        };
        if s.len() != 64 {
            return Err(err("expected 64 hex digits"));
        }
        let mut out = [0u8; 32];
        // 64 digits exactly, so const_hex's optional `0x` prefix can never be accepted here.
        const_hex::decode_to_slice(s, &mut out).map_err(|_| err("not hexadecimal"))?;
        Ok(Hash(out))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid hash {value:?}: {reason}")]
pub struct HashParseError {
    pub value: String,
    pub reason: &'static str,
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        // encode_to_slice cannot fail: the buffer is exactly twice the input.
        const_hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 64];
        const_hex::encode_to_slice(self.0, &mut buf).map_err(serde::ser::Error::custom)?;
        s.serialize_str(std::str::from_utf8(&buf).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Hash::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// SHA-256(0x00 ‖ entry).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    Hash(h.finalize().into())
}

/// SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// Plain SHA-256 (used for content digests and as the benchmark baseline).
pub fn sha256(bytes: &[u8]) -> Hash {
    Hash(Sha256::digest(bytes).into())
}
