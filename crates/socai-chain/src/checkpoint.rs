//! C2SP tlog-checkpoint signed notes with Ed25519 keys (C2SP signed-note key ids and verifier-key
//! text). Wraps `signed_note` / `tlog_tiles` behind this small API.
//!
//! Checkpoint body: `<origin>\n<decimal size>\n<base64 root>\n`, then a blank line and one or more
//! signature lines `— <key name> <base64(key id ‖ signature)>`.

use crate::hash::Hash;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    #[error("malformed key: {0}")]
    BadKey(String),
    /// No signature line from the trusted key (name + key id) is present.
    #[error("checkpoint has no signature by key {name} ({key_id:08x})")]
    NotSignedByKey { name: String, key_id: u32 },
    /// A signature line from the trusted key is present but does not verify.
    #[error("checkpoint signature by key {name} ({key_id:08x}) does not verify")]
    BadSignature { name: String, key_id: u32 },
    #[error("checkpoint origin {found:?} does not match expected {expected:?}")]
    WrongOrigin { expected: String, found: String },
}

/// An unsigned tree head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note text that is signed: `<origin>\n<size>\n<base64 root>\n`.
    pub fn body(&self) -> String {
        todo!()
    }
}

/// A checkpoint and its full signed-note text (body, blank line, signature lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: String,
}

/// An Ed25519 checkpoint signing key (C2SP signed-note private key text
/// `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 ‖ seed)>`).
pub struct CheckpointSigner {/* private */}

impl CheckpointSigner {
    /// A fresh random key named `name` (the checkpoint origin, by convention).
    /// Returns the signer, its private key text and its verifier key text.
    pub fn generate(name: &str) -> Result<(CheckpointSigner, String, String), CheckpointError> {
        todo!()
    }
    pub fn from_skey(skey: &str) -> Result<CheckpointSigner, CheckpointError> {
        todo!()
    }
    pub fn name(&self) -> &str {
        todo!()
    }
    pub fn key_id(&self) -> u32 {
        todo!()
    }
    /// Verifier key text `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.
    pub fn vkey(&self) -> String {
        todo!()
    }
    pub fn sign(&self, checkpoint: &Checkpoint) -> Result<SignedCheckpoint, CheckpointError> {
        todo!()
    }
}

/// A trusted verifier key.
pub struct CheckpointVerifier {/* private */}

impl CheckpointVerifier {
    pub fn from_vkey(vkey: &str) -> Result<CheckpointVerifier, CheckpointError> {
        todo!()
    }
    pub fn name(&self) -> &str {
        todo!()
    }
    pub fn key_id(&self) -> u32 {
        todo!()
    }
    /// Parses a signed note and checks it carries a valid signature by this key (other signatures
    /// are ignored). The origin line must equal the key name.
    pub fn verify(&self, note: &str) -> Result<SignedCheckpoint, CheckpointError> {
        todo!()
    }
}
