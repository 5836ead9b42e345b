//! Per-record keys for personal data, in a file that really forgets them.
//!
//! sled (like any log-structured engine) keeps old values in its segment files until it cleans
//! them, so deleting a personal record from sled does not erase its bytes. Personal records are
//! therefore stored encrypted (ChaCha20-Poly1305) under a random key of their own, and the keys
//! live here: a flat file of 32-byte slots beside the sled directory (`<store>.keys`). Redaction
//! overwrites the record's slot with zeros in place and fsyncs: the ciphertext left anywhere
//! (sled's log, backups of the store) can no longer be read by anyone.
//!
//! Invariants:
//! - Slot `n` is at byte `32 n`. A slot is written once (when its record is committed) and then
//!   only zeroed; an all-zero slot is a destroyed key.
//! - Keys are fsynced before the sled commit that refers to them. Slots past the count the store
//!   last committed are orphans of a crashed commit: they are zeroed and cut off at open.
//! - Only the single writer appends or destroys; readers only read (`pread`).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand_core::{OsRng, RngCore};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroize;

/// Bytes per key slot.
pub const SLOT: u64 = 32;

/// A per-record key.
pub struct RecordKey([u8; 32]);

impl RecordKey {
    pub fn random() -> RecordKey {
        let mut k = [0u8; 32];
        OsRng.fill_bytes(&mut k);
        RecordKey(k)
    }
    fn is_destroyed(&self) -> bool {
        self.0.iter().all(|&b| b == 0)
    }
    /// Encrypts `plain`, bound to `aad` (the record's seq). Each key encrypts exactly one
    /// record, so the fixed nonce is never reused under a key.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        ChaCha20Poly1305::new(Key::from_slice(&self.0))
            .encrypt(Nonce::from_slice(&[0u8; 12]), Payload { msg: plain, aad })
            .expect("ChaCha20-Poly1305 encryption of an in-memory buffer cannot fail")
    }
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        ChaCha20Poly1305::new(Key::from_slice(&self.0))
            .decrypt(Nonce::from_slice(&[0u8; 12]), Payload { msg: sealed, aad })
            .ok()
    }
}

impl Drop for RecordKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error(
        "personal-data key file {path}: {source}; check the disk and permissions (the file must stay beside the store)"
    )]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("personal-data key {slot} is missing from {path} (the file holds {slots} keys)")]
    Missing {
        path: PathBuf,
        slot: u64,
        slots: u64,
    },
    #[error("personal-data key {slot} was destroyed (its record was redacted)")]
    Destroyed { slot: u64 },
}

/// The key file (see the module docs).
pub struct KeyStore {
    file: File,
    path: PathBuf,
}

impl KeyStore {
    /// Opens (or creates, mode 0600) the key file at `path`.
    pub fn open(path: &Path) -> Result<KeyStore, KeyStoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|source| KeyStoreError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(KeyStore {
            file,
            path: path.to_path_buf(),
        })
    }

    fn io(&self) -> impl FnOnce(std::io::Error) -> KeyStoreError + '_ {
        move |source| KeyStoreError::Io {
            path: self.path.clone(),
            source,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of slots in the file.
    pub fn slots(&self) -> Result<u64, KeyStoreError> {
        Ok(self.file.metadata().map_err(self.io())?.len() / SLOT)
    }

    /// Writes `keys` at slots `first..` and fsyncs.
    pub fn write(&self, first: u64, keys: &[&RecordKey]) -> Result<(), KeyStoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(keys.len() * SLOT as usize);
        for k in keys {
            bytes.extend_from_slice(&k.0);
        }
        let written = self.file.write_all_at(&bytes, first * SLOT);
        bytes.zeroize();
        written.map_err(self.io())?;
        self.file.sync_data().map_err(self.io())
    }

    /// The key in `slot`.
    pub fn read(&self, slot: u64) -> Result<RecordKey, KeyStoreError> {
        let mut k = RecordKey([0u8; 32]);
        match self.file.read_exact_at(&mut k.0, slot * SLOT) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(KeyStoreError::Missing {
                    path: self.path.clone(),
                    slot,
                    slots: self.slots()?,
                });
            }
            Err(e) => return Err(self.io()(e)),
        }
        if k.is_destroyed() {
            return Err(KeyStoreError::Destroyed { slot });
        }
        Ok(k)
    }

    /// Overwrites `slots` with zeros in place and fsyncs.
    pub fn destroy(&self, slots: &[u64]) -> Result<(), KeyStoreError> {
        let len = self.slots()?;
        for &slot in slots {
            if slot < len {
                self.file
                    .write_all_at(&[0u8; SLOT as usize], slot * SLOT)
                    .map_err(self.io())?;
            }
        }
        self.file.sync_data().map_err(self.io())
    }

    /// Zeroes every slot from `keep` on, then cuts the file there (orphans of a crashed commit).
    pub fn discard_from(&self, keep: u64) -> Result<u64, KeyStoreError> {
        let len = self.slots()?;
        if len <= keep {
            return Ok(0);
        }
        let zeros = vec![0u8; ((len - keep) * SLOT) as usize];
        self.file
            .write_all_at(&zeros, keep * SLOT)
            .map_err(self.io())?;
        self.file.sync_data().map_err(self.io())?;
        self.file.set_len(keep * SLOT).map_err(self.io())?;
        self.file.sync_all().map_err(self.io())?;
        Ok(len - keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_records_open_only_with_their_key_and_seq() {
        let k = RecordKey::random();
        let sealed = k.seal(b"seq7", b"{\"name\":\"Nguyen Van A\"}");
        assert_eq!(
            k.open(b"seq7", &sealed).unwrap(),
            b"{\"name\":\"Nguyen Van A\"}"
        );
        assert!(k.open(b"seq8", &sealed).is_none(), "bound to its seq");
        assert!(RecordKey::random().open(b"seq7", &sealed).is_none());
        assert!(!sealed.windows(6).any(|w| w == b"Nguyen"));
    }

    #[test]
    fn destroyed_keys_are_zeros_on_disk_and_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.keys");
        let ks = KeyStore::open(&path).unwrap();
        let (a, b) = (RecordKey::random(), RecordKey::random());
        let a_bytes = a.0;
        ks.write(0, &[&a, &b]).unwrap();
        assert_eq!(ks.slots().unwrap(), 2);
        assert_eq!(ks.read(0).unwrap().0, a_bytes);
        ks.destroy(&[0]).unwrap();
        assert!(matches!(
            ks.read(0),
            Err(KeyStoreError::Destroyed { slot: 0 })
        ));
        assert_eq!(ks.read(1).unwrap().0, b.0);
        let raw = std::fs::read(&path).unwrap();
        assert!(
            !raw.windows(32).any(|w| w == a_bytes),
            "the key is gone from the file"
        );
        assert!(matches!(
            ks.read(5),
            Err(KeyStoreError::Missing { slot: 5, .. })
        ));
        assert_eq!(ks.discard_from(1).unwrap(), 1);
        assert_eq!(ks.slots().unwrap(), 1);
    }
}
