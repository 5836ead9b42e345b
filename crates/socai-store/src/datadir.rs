//! A data directory: the sled store and the keys beside it.
//!
//! ```text
//! <dir>/ledger/           the sled store
//! <dir>/checkpoint.key    checkpoint signing key, C2SP signed-note private key text (mode 0600)
//! <dir>/checkpoint.vkey   its verifier key text: hand this to auditors
//! <dir>/salt.key          the ledger salt key for personal-data commitments, hex (mode 0600)
//! <dir>/replica-of        only on a ledger replica: the origin of the primary it copies
//! <dir>/replica-diverged  only on a replica found to differ from its primary: the first
//!                         differing size and why (refuses promotion)
//! <dir>/promoting         only on a replica being promoted, until COMMITTED was found to
//!                         continue it
//! ```

use crate::ledger::{Ledger, LedgerConfig, LedgerError};
use crate::storage::SledStorage;
use rand_core::{OsRng, RngCore};
use socai_chain::checkpoint::{CheckpointError, CheckpointSigner, CheckpointVerifier};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{0} is already initialised (it has a checkpoint.key); choose another --data-dir or remove it"
    )]
    AlreadyInitialised(PathBuf),
    #[error(
        "{0} is not an initialised socai data dir (no checkpoint.key); run `socai init --data-dir {0}` first"
    )]
    NotInitialised(PathBuf),
    #[error("{path}: {source}")]
    Key {
        path: PathBuf,
        source: CheckpointError,
    },
    #[error("{0}: salt key must be 64 hex digits")]
    BadSalt(PathBuf),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), DataDirError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(io(path))?;
    f.write_all(text.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn store_path(&self) -> PathBuf {
        self.root.join("ledger")
    }
    pub fn key_path(&self) -> PathBuf {
        self.root.join("checkpoint.key")
    }
    pub fn vkey_path(&self) -> PathBuf {
        self.root.join("checkpoint.vkey")
    }
    pub fn salt_path(&self) -> PathBuf {
        self.root.join("salt.key")
    }
    pub fn is_initialised(&self) -> bool {
        self.key_path().exists()
    }

    /// Creates the directory, a fresh Ed25519 checkpoint key named `origin`, the verifier key text
    /// and a random salt key. Refuses to overwrite an initialised directory.
    pub fn init(&self, origin: &str) -> Result<String, DataDirError> {
        if self.is_initialised() {
            return Err(DataDirError::AlreadyInitialised(self.root.clone()));
        }
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let (_, skey, vkey) =
            CheckpointSigner::generate(origin).map_err(|source| DataDirError::Key {
                path: self.key_path(),
                source,
            })?;
        let mut salt = [0u8; 32];
        OsRng.fill_bytes(&mut salt);
        write_private(&self.salt_path(), &hex::encode(salt))?;
        std::fs::write(self.vkey_path(), format!("{vkey}\n")).map_err(io(&self.vkey_path()))?;
        // The signing key last: its presence marks the directory as initialised.
        write_private(&self.key_path(), &format!("{skey}\n"))?;
        Ok(vkey)
    }

    /// Creates the directory with a copy of `primary`'s keys (signing key, verifier key, salt
    /// key), for a ledger replica: the same salt key gives the same entries, the same signing
    /// key lets the replica be promoted. Refuses to overwrite an initialised directory.
    pub fn init_from(&self, primary: &DataDir) -> Result<String, DataDirError> {
        if self.is_initialised() {
            return Err(DataDirError::AlreadyInitialised(self.root.clone()));
        }
        // Both keys must read before anything is written.
        let signer = primary.signer()?;
        primary.salt_key()?;
        let salt = primary.read(&primary.salt_path())?;
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        write_private(&self.salt_path(), &salt)?;
        std::fs::write(self.vkey_path(), format!("{}\n", signer.vkey()))
            .map_err(io(&self.vkey_path()))?;
        let skey = primary.read(&primary.key_path())?;
        write_private(&self.key_path(), &format!("{skey}\n"))?;
        Ok(signer.vkey())
    }

    /// On a replica: the file naming the primary's origin.
    pub fn replica_marker_path(&self) -> PathBuf {
        self.root.join("replica-of")
    }

    /// On a replica being promoted to primary, until COMMITTED was found to continue it.
    pub fn promoting_marker_path(&self) -> PathBuf {
        self.root.join("promoting")
    }

    /// On a replica found to differ from its primary: the file saying where.
    pub fn diverged_marker_path(&self) -> PathBuf {
        self.root.join("replica-diverged")
    }

    fn read(&self, path: &Path) -> Result<String, DataDirError> {
        if !self.is_initialised() {
            return Err(DataDirError::NotInitialised(self.root.clone()));
        }
        Ok(std::fs::read_to_string(path)
            .map_err(io(path))?
            .trim()
            .to_string())
    }

    pub fn signer(&self) -> Result<CheckpointSigner, DataDirError> {
        let path = self.key_path();
        CheckpointSigner::from_skey(&self.read(&path)?)
            .map_err(|source| DataDirError::Key { path, source })
    }

    /// The verifier key in `checkpoint.vkey` (what auditors are given).
    pub fn verifier(&self) -> Result<CheckpointVerifier, DataDirError> {
        let path = self.vkey_path();
        CheckpointVerifier::from_vkey(&self.read(&path)?)
            .map_err(|source| DataDirError::Key { path, source })
    }

    pub fn salt_key(&self) -> Result<Vec<u8>, DataDirError> {
        let path = self.salt_path();
        let text = self.read(&path)?;
        match hex::decode(&text) {
            Ok(key) if key.len() == 32 => Ok(key),
            _ => Err(DataDirError::BadSalt(path)),
        }
    }

    /// Opens the store alone (read paths, verification).
    pub fn open_storage(&self) -> Result<SledStorage, DataDirError> {
        if !self.is_initialised() {
            return Err(DataDirError::NotInitialised(self.root.clone()));
        }
        Ok(SledStorage::open(&self.store_path()).map_err(LedgerError::from)?)
    }

    pub fn open_ledger(&self, config: LedgerConfig) -> Result<Ledger<SledStorage>, DataDirError> {
        let signer = self.signer()?;
        let salt = self.salt_key()?;
        let storage = self.open_storage()?;
        Ok(Ledger::open(storage, signer, salt, config)?)
    }
}
