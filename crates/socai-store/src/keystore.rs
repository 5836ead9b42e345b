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
//! - Slot `n` is at byte `32 n`; an all-zero slot is a destroyed key. A slot gets a new random
//!   key when it is drawn ([`KeyReserve`]: ahead of the commits that will use it), and again if a
//!   commit that took it failed; once a commit that refers to it is durable, it is only zeroed.
//! - Keys are fsynced before the sled commit that refers to them. Slots past the count the store
//!   committed hold keys no durable record uses: the reserve of the open store, or orphans of a
//!   store that was not closed (a crash), which the next open zeroes and cuts off. A key never
//!   seals two records: a commit that took keys and failed leaves the reserve out of step, and
//!   the next commit draws new keys over those slots.
//! - One open store at a time holds the file (an exclusive `flock` for as long as it is open,
//!   since another open would take the reserve for orphans); its writer draws, appends and
//!   destroys, readers only read (`pread`).

use rand_core::{OsRng, RngCore};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
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
    /// This key as read from `slot`: an error if it was destroyed.
    fn live(self, slot: u64) -> Result<RecordKey, KeyStoreError> {
        if self.is_destroyed() {
            return Err(KeyStoreError::Destroyed { slot });
        }
        Ok(self)
    }
    /// Encrypts `plain`, bound to `aad` (the record's seq): RFC 8439 ChaCha20-Poly1305, the
    /// ciphertext followed by the 16-byte tag. Each key encrypts exactly one record, so the fixed
    /// nonce is never reused under a key.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        seal_with(&self.0, [0u8; 12], aad, plain)
    }
    /// Decrypts what [`RecordKey::seal`] gave under this key and `aad`; `None` if it does not
    /// authenticate (another key, another seq, or altered bytes).
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        open_with(&self.0, [0u8; 12], aad, sealed)
    }
}

/// ring's ChaCha20-Poly1305 (assembly). The RustCrypto crate used before was several times
/// slower per record here (ARCHITECTURE.md, "Real erasure"); the format is the same RFC 8439
/// AEAD, so records sealed by either open with the other.
fn cipher(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(
        UnboundKey::new(&CHACHA20_POLY1305, key).expect("a 32-byte key is a ChaCha20 key"),
    )
}

fn seal_with(key: &[u8; 32], nonce: [u8; 12], aad: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(plain.len() + CHACHA20_POLY1305.tag_len());
    out.extend_from_slice(plain);
    cipher(key)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out,
        )
        .expect("ChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
    out
}

fn open_with(key: &[u8; 32], nonce: [u8; 12], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let mut buf = sealed.to_vec();
    match cipher(key).open_in_place(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut buf,
    ) {
        Ok(plain) => {
            let len = plain.len();
            buf.truncate(len);
            Some(buf)
        }
        Err(_) => {
            // ring 0.17 zeroes the plaintext when the tag does not match (it decrypts before it
            // compares); wipe the whole buffer anyway, whatever a later version does.
            buf.zeroize();
            None
        }
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
    #[error("personal-data key file {path} is held by another open store")]
    Locked { path: PathBuf },
}

/// Where `slot` starts in the file; `None` past any offset `pread` takes (a slot number from a
/// damaged record may be beyond any file).
fn offset(slot: u64) -> Option<u64> {
    slot.checked_mul(SLOT).filter(|&at| at <= i64::MAX as u64)
}

/// The key file (see the module docs).
pub struct KeyStore {
    file: File,
    path: PathBuf,
}

impl KeyStore {
    /// Opens (or creates, mode 0600) the key file at `path` and locks it for as long as this
    /// `KeyStore` lives, waiting up to `wait` for a lock held by a store being closed.
    pub fn open(path: &Path, wait: std::time::Duration) -> Result<KeyStore, KeyStoreError> {
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
        crate::retry_while(
            wait,
            |e| matches!(e, std::fs::TryLockError::WouldBlock),
            || file.try_lock(),
        )
        .map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => KeyStoreError::Locked {
                path: path.to_path_buf(),
            },
            std::fs::TryLockError::Error(source) => KeyStoreError::Io {
                path: path.to_path_buf(),
                source,
            },
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
        let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(keys.len() * SLOT as usize));
        for k in keys {
            bytes.extend_from_slice(&k.0);
        }
        self.write_slots(first, &bytes)
    }

    /// Writes whole slots of key bytes at slot `first` and fsyncs.
    fn write_slots(&self, first: u64, bytes: &[u8]) -> Result<(), KeyStoreError> {
        self.file
            .write_all_at(bytes, first * SLOT)
            .map_err(self.io())?;
        self.file.sync_data().map_err(self.io())
    }

    /// Draws `n` new random keys, writes them at slots `first..` and fsyncs; returns their bytes.
    fn append_random(
        &self,
        first: u64,
        n: usize,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyStoreError> {
        let mut bytes = zeroize::Zeroizing::new(vec![0u8; n * SLOT as usize]);
        OsRng.fill_bytes(&mut bytes);
        self.write_slots(first, &bytes)?;
        Ok(bytes)
    }

    /// The key in `slot`.
    pub fn read(&self, slot: u64) -> Result<RecordKey, KeyStoreError> {
        let missing = || -> Result<RecordKey, KeyStoreError> {
            Err(KeyStoreError::Missing {
                path: self.path.clone(),
                slot,
                slots: self.slots()?,
            })
        };
        let Some(at) = offset(slot) else {
            return missing();
        };
        let mut k = RecordKey([0u8; 32]);
        match self.file.read_exact_at(&mut k.0, at) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return missing(),
            Err(e) => return Err(self.io()(e)),
        }
        k.live(slot)
    }

    /// [`KeyStore::read`] of each of `slots`, given to `each` with its index in `slots`, reading
    /// slots that lie within 64 KiB of each other with one `pread` (verify opens a range's
    /// records together: a read each was a system call per record). A slot its window does not
    /// cover (past the end of the file, or the window's read failed) is read on its own, so each
    /// answer is what `read` gives. Keys are handed over one by one, never gathered in a heap
    /// buffer that would be freed unwiped; the windows' bytes are wiped.
    pub fn read_each(
        &self,
        slots: &[u64],
        mut each: impl FnMut(usize, Result<RecordKey, KeyStoreError>),
    ) {
        const WINDOW: u64 = 2048;
        let mut order: Vec<usize> = (0..slots.len()).collect();
        order.sort_by_key(|&i| slots[i]);
        // Sized once for the widest window, so it is never reallocated (a reallocation would
        // free a copy of the keys unwiped); wiped when dropped.
        let mut window = zeroize::Zeroizing::new(Vec::with_capacity((WINDOW * SLOT) as usize));
        let mut rest = &order[..];
        while let Some(&first) = rest.first() {
            let lo = slots[first];
            let n = rest.partition_point(|&i| slots[i] - lo < WINDOW);
            let (these, after) = rest.split_at(n);
            rest = after;
            let hi = slots[these[n - 1]];
            window.clear();
            window.resize(((hi - lo + 1) * SLOT) as usize, 0);
            let mut got = 0;
            if let Some(at) = offset(lo) {
                while got < window.len() {
                    match self.file.read_at(&mut window[got..], at + got as u64) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            got = 0;
                            break;
                        }
                    }
                }
            }
            let whole = got - got % SLOT as usize;
            for &i in these {
                let at = ((slots[i] - lo) * SLOT) as usize;
                match window[..whole].get(at..at + SLOT as usize) {
                    Some(bytes) => {
                        let mut k = RecordKey([0u8; 32]);
                        k.0.copy_from_slice(bytes);
                        each(i, k.live(slots[i]));
                    }
                    None => each(i, self.read(slots[i])),
                }
            }
        }
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

/// Keys drawn ahead of the commits that will use them, already durable in the key file, so a
/// commit with personal records does not wait for an fsync of its own: the file grows by
/// [`KeyReserve::AHEAD`] keys (or more, for a larger commit) with one fsync, and the commits
/// take them in slot order. Dropped, it zeroes and cuts off the slots it still holds, so a store
/// closed cleanly keeps only the keys its records use (and, after a commit that took keys and
/// failed, those slots, which the next open discards: it alone knows what became durable). The
/// keys are held in one buffer, each wiped as it is taken, and every buffer is wiped when
/// replaced or dropped.
pub struct KeyReserve {
    store: std::sync::Arc<KeyStore>,
    /// The slot of the first key held.
    first: u64,
    /// The keys, from byte `at` on.
    bytes: zeroize::Zeroizing<Vec<u8>>,
    at: usize,
}

impl KeyReserve {
    /// Keys drawn at once: 128 KiB of the key file, one fsync for as many personal records.
    pub const AHEAD: usize = 4096;

    pub fn new(store: std::sync::Arc<KeyStore>) -> KeyReserve {
        KeyReserve {
            store,
            first: 0,
            bytes: zeroize::Zeroizing::new(Vec::new()),
            at: 0,
        }
    }

    fn held(&self) -> usize {
        (self.bytes.len() - self.at) / SLOT as usize
    }

    /// The durable keys of slots `first..first + n`, drawing more (and fsyncing the file) when
    /// the reserve holds too few. A reserve that does not start at `first` (a commit that took
    /// keys failed, or slots were written another way) is dropped: its slots get new keys.
    pub fn take(&mut self, first: u64, n: usize) -> Result<Vec<RecordKey>, KeyStoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        if self.first != first {
            self.bytes.zeroize();
            self.bytes.clear();
            self.at = 0;
            self.first = first;
        }
        let held = self.held();
        if held < n {
            let more = (n - held).max(Self::AHEAD);
            let drawn = self.store.append_random(first + held as u64, more)?;
            let mut bytes =
                zeroize::Zeroizing::new(Vec::with_capacity((held + more) * SLOT as usize));
            bytes.extend_from_slice(&self.bytes[self.at..]);
            bytes.extend_from_slice(&drawn);
            self.bytes = bytes;
            self.at = 0;
        }
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            let slot = &mut self.bytes[self.at..self.at + SLOT as usize];
            // Copied in place, never through a key on the stack.
            keys.push(RecordKey([0u8; 32]));
            if let Some(k) = keys.last_mut() {
                k.0.copy_from_slice(slot);
            }
            slot.zeroize();
            self.at += SLOT as usize;
        }
        self.first += n as u64;
        Ok(keys)
    }
}

impl Drop for KeyReserve {
    fn drop(&mut self) {
        if self.held() == 0 {
            return;
        }
        if let Err(e) = self.store.discard_from(self.first) {
            tracing::warn!(error = %e, "cannot discard the personal-data keys drawn ahead; the next open discards them");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: std::time::Duration = std::time::Duration::from_millis(100);

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

    /// RFC 8439 section 2.8.2: the AEAD's own test vector, so the stored format does not
    /// depend on which library computes it.
    #[test]
    fn the_cipher_is_rfc_8439_chacha20_poly1305() {
        let key: [u8; 32] = std::array::from_fn(|i| 0x80 + i as u8);
        let nonce = [
            0x07, 0, 0, 0, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
        ];
        let aad = hex::decode("50515253c0c1c2c3c4c5c6c7").unwrap();
        let plain: &[u8] = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let expected = hex::decode(concat!(
            "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6",
            "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36",
            "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc",
            "3ff4def08e4b7a9de576d26586cec64b6116",
            "1ae10b594f09e26a7e902ecbd0600691",
        ))
        .unwrap();
        let sealed = seal_with(&key, nonce, &aad, plain);
        assert_eq!(hex::encode(&sealed), hex::encode(&expected));
        assert_eq!(open_with(&key, nonce, &aad, &expected).unwrap(), plain);
        let mut altered = expected.clone();
        altered[0] ^= 1;
        assert!(open_with(&key, nonce, &aad, &altered).is_none());
        assert!(open_with(&key, nonce, &aad, &expected[..expected.len() - 1]).is_none());
        assert!(
            open_with(&key, nonce, &aad, &[]).is_none(),
            "shorter than a tag"
        );
    }

    /// Records sealed by the RustCrypto crate (every store written before ring) open, and the
    /// other way round, for every length around the cipher's block and tag sizes.
    #[test]
    fn records_sealed_by_the_rustcrypto_crate_open_and_the_other_way_round() {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
        for len in (0..300).chain([1000, 4096, 4097]) {
            let k = RecordKey::random();
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let aad = (len as u64).to_be_bytes();
            let theirs = ChaCha20Poly1305::new(Key::from_slice(&k.0));
            let old = theirs
                .encrypt(
                    Nonce::from_slice(&[0u8; 12]),
                    Payload {
                        msg: &plain,
                        aad: &aad,
                    },
                )
                .unwrap();
            assert_eq!(k.open(&aad, &old).unwrap(), plain, "len {len}");
            let new = k.seal(&aad, &plain);
            assert_eq!(new, old, "len {len}");
            let back = theirs
                .decrypt(
                    Nonce::from_slice(&[0u8; 12]),
                    Payload {
                        msg: &new,
                        aad: &aad,
                    },
                )
                .unwrap();
            assert_eq!(back, plain, "len {len}");
        }
    }

    /// A record as stores written before ring hold it (sealed by the RustCrypto crate), pinned as
    /// bytes so the check outlives that crate's place among the dev-dependencies.
    #[test]
    fn a_record_sealed_before_ring_still_opens() {
        let k = RecordKey(std::array::from_fn(|i| {
            (i as u8).wrapping_mul(7).wrapping_add(3)
        }));
        let sealed = hex::decode(concat!(
            "a7559e032f690365e4ef917d0e72e33216176da2f8c7dab9361c15126d1bf08f",
            "eda8f0ce92e43dc6e4a5f79c6f82d32de8fbcad7b30c552b853b80498a09510d",
            "e44eec7016fb5d4869a275cd",
        ))
        .unwrap();
        let plain = r#"{"citizen_id":"052177244425","full_name":"Nguyễn Thu Hoa"}"#;
        assert_eq!(
            k.open(&41u64.to_be_bytes(), &sealed).unwrap(),
            plain.as_bytes()
        );
        assert_eq!(k.seal(&41u64.to_be_bytes(), plain.as_bytes()), sealed);
        assert!(
            k.open(&42u64.to_be_bytes(), &sealed).is_none(),
            "another seq"
        );
        assert!(
            RecordKey::random()
                .open(&41u64.to_be_bytes(), &sealed)
                .is_none()
        );
    }

    #[test]
    fn destroyed_keys_are_zeros_on_disk_and_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.keys");
        let ks = KeyStore::open(&path, WAIT).unwrap();
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

    #[test]
    fn reserved_keys_are_in_the_file_before_they_are_taken_and_taken_in_slot_order() {
        let dir = tempfile::tempdir().unwrap();
        let ks =
            std::sync::Arc::new(KeyStore::open(&dir.path().join("ledger.keys"), WAIT).unwrap());
        let mut reserve = KeyReserve::new(ks.clone());
        assert!(reserve.take(0, 0).unwrap().is_empty());
        assert_eq!(ks.slots().unwrap(), 0, "nothing drawn for no records");
        let first = reserve.take(0, 3).unwrap();
        assert_eq!(ks.slots().unwrap(), KeyReserve::AHEAD as u64, "drawn ahead");
        for (i, k) in first.iter().enumerate() {
            assert_eq!(ks.read(i as u64).unwrap().0, k.0);
        }
        let next = reserve.take(3, 2).unwrap();
        assert_eq!(ks.read(3).unwrap().0, next[0].0);
        assert_eq!(ks.read(4).unwrap().0, next[1].0);
        assert_eq!(ks.slots().unwrap(), KeyReserve::AHEAD as u64, "no new draw");
        // More than the reserve holds: one draw covers the rest of the commit.
        let big = reserve.take(5, KeyReserve::AHEAD).unwrap();
        assert_eq!(big.len(), KeyReserve::AHEAD);
        let last = 5 + KeyReserve::AHEAD as u64 - 1;
        assert_eq!(ks.read(last).unwrap().0, big[KeyReserve::AHEAD - 1].0);
        assert_eq!(ks.slots().unwrap(), 2 * KeyReserve::AHEAD as u64);
        // A commit that took keys and failed: slots 9000.. were never used; the next commit
        // at the same slot gets new keys, not the ones the failed commit may have sealed with.
        let failed = reserve.take(9000, 2).unwrap();
        let again = reserve.take(9000, 2).unwrap();
        assert_ne!(failed[0].0, again[0].0);
        assert_eq!(ks.read(9000).unwrap().0, again[0].0);
        assert_eq!(ks.read(9001).unwrap().0, again[1].0);
        // Dropped, it zeroes and cuts off what it still held.
        let held = ks.slots().unwrap();
        assert!(held > 9002);
        drop(reserve);
        assert_eq!(ks.slots().unwrap(), 9002);
        assert_eq!(ks.read(9001).unwrap().0, again[1].0);
    }

    #[test]
    fn one_open_key_store_at_a_time_holds_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.keys");
        let first = KeyStore::open(&path, WAIT).unwrap();
        let started = std::time::Instant::now();
        let err = KeyStore::open(&path, WAIT)
            .err()
            .expect("the second open is refused");
        assert!(matches!(err, KeyStoreError::Locked { .. }), "{err}");
        assert!(started.elapsed() >= WAIT, "it waited for the lock first");
        drop(first);
        KeyStore::open(&path, WAIT).expect("free once the first is closed");
    }

    #[test]
    fn reading_many_slots_at_once_answers_each_as_reading_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.keys");
        let ks = KeyStore::open(&path, WAIT).unwrap();
        let keys: Vec<RecordKey> = (0..5000).map(|_| RecordKey::random()).collect();
        ks.write(0, &keys.iter().collect::<Vec<_>>()).unwrap();
        ks.destroy(&[7, 4999]).unwrap();
        // Half a slot past the last whole one: a torn tail, which `read` calls missing.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(5000 * SLOT + 16)
            .unwrap();
        let same = |got: &Result<RecordKey, KeyStoreError>,
                    alone: Result<RecordKey, KeyStoreError>| {
            match (got, alone) {
                (Ok(a), Ok(b)) => a.0 == b.0,
                (Err(a), Err(b)) => a.to_string() == b.to_string(),
                _ => false,
            }
        };
        for slots in [
            vec![],
            vec![5],
            vec![3, 4, 7, 8, 100],        // one window, a destroyed slot inside
            vec![4990, 4999, 5000, 5001], // a destroyed last slot, the torn one, past the end
            vec![2500, 10, 11, 4000, 12], // several windows, not in order
            vec![0, 2047, 2048],          // exactly the widest window, then another
            vec![4999, 9000, 1 << 58, u64::MAX / 16, u64::MAX], // far; offsets past i64, past u64
            vec![6, 6, 7],                // a slot asked twice
        ] {
            let mut got: Vec<Option<Result<RecordKey, KeyStoreError>>> =
                (0..slots.len()).map(|_| None).collect();
            ks.read_each(&slots, |i, key| {
                assert!(got[i].is_none(), "index {i} answered twice");
                got[i] = Some(key);
            });
            for (g, &slot) in got.iter().zip(&slots) {
                let g = g.as_ref().expect("every slot answered");
                assert!(
                    same(g, ks.read(slot)),
                    "slot {slot} of {slots:?}: {:?}",
                    g.as_ref().err()
                );
            }
        }
        let mut five = None;
        ks.read_each(&[4, 5], |i, k| {
            if i == 1 {
                five = Some(k.unwrap().0);
            }
        });
        assert_eq!(five, Some(keys[5].0));
        assert!(matches!(
            ks.read(1 << 58),
            Err(KeyStoreError::Missing { slots: 5000, .. })
        ));
        assert!(matches!(
            ks.read(u64::MAX),
            Err(KeyStoreError::Missing { slots: 5000, .. })
        ));
        assert!(matches!(
            ks.read(5000),
            Err(KeyStoreError::Missing {
                slot: 5000,
                slots: 5000,
                ..
            })
        ));
    }
}
