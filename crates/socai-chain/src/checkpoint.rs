//! C2SP tlog-checkpoint signed notes with Ed25519 keys (C2SP signed-note key ids and verifier-key
//! text). Wraps `signed_note` / `tlog_tiles` behind this small API.
//!
//! Checkpoint body: `<origin>\n<decimal size>\n<base64 root>\n`, then a blank line and one or more
//! signature lines `— <key name> <base64(key id ‖ signature)>`.

use crate::hash::Hash;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand_core::OsRng;
use signed_note::{
    Note, NoteError, Signer, StandardSigner, StandardVerifier, VerificationError, Verifier,
    Verifiers,
};
use std::fmt;

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
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root.0)
        )
    }

    /// Parses a checkpoint body (without extension lines, which this log never writes).
    fn parse_body(text: &[u8]) -> Result<Checkpoint, CheckpointError> {
        let parsed = tlog_tiles::Checkpoint::from_bytes(text).map_err(|_| {
            CheckpointError::Malformed(format!(
                "body {:?} is not <origin>, <decimal size>, <base64 root> on three lines",
                short(&String::from_utf8_lossy(text))
            ))
        })?;
        if !parsed.extension().is_empty() {
            let extension = short(parsed.extension());
            return Err(CheckpointError::Malformed(format!(
                "unexpected extension lines {extension:?}"
            )));
        }
        Ok(Checkpoint {
            origin: parsed.origin().to_owned(),
            size: parsed.size(),
            root: Hash(parsed.hash().0),
        })
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
pub struct CheckpointSigner {
    signer: StandardSigner,
    vkey: String,
}

impl CheckpointSigner {
    /// A fresh random key named `name` (the checkpoint origin, by convention).
    /// Returns the signer, its private key text and its verifier key text.
    pub fn generate(name: &str) -> Result<(CheckpointSigner, String, String), CheckpointError> {
        if !signed_note::is_key_name_valid(name) {
            return Err(CheckpointError::BadKey(format!(
                "key name {:?} must be non-empty, without spaces or '+'",
                short(name)
            )));
        }
        let (skey, vkey) = signed_note::generate_key(&mut OsRng, name);
        let signer = CheckpointSigner::from_skey(&skey)?;
        Ok((signer, skey, vkey))
    }
    pub fn from_skey(skey: &str) -> Result<CheckpointSigner, CheckpointError> {
        // Never echo the private key in an error.
        let signer = StandardSigner::new(skey).map_err(|e| {
            CheckpointError::BadKey(
                match e {
                    signed_note::SignerError::Format => {
                        "private key is not PRIVATE+KEY+<name>+<hex id>+<base64 key>"
                    }
                    signed_note::SignerError::Alg => "private key algorithm is not Ed25519",
                    signed_note::SignerError::Id => "private key id does not match its public key",
                }
                .to_owned(),
            )
        })?;
        // StandardSigner keeps the public key to itself: derive it again from the seed, the fifth
        // '+'-separated field (base64 may itself contain '+').
        let key = skey
            .splitn(5, '+')
            .nth(4)
            .and_then(|b64| STANDARD.decode(b64).ok());
        let Some(Ok(seed)) = key
            .as_deref()
            .and_then(|k| k.get(1..))
            .map(<[u8; 32]>::try_from)
        else {
            return Err(CheckpointError::BadKey(
                "private key is not an Ed25519 seed".to_owned(),
            ));
        };
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        let vkey = signed_note::new_ed25519_verifier_key(signer.name(), &public);
        Ok(CheckpointSigner { signer, vkey })
    }
    pub fn name(&self) -> &str {
        self.signer.name()
    }
    pub fn key_id(&self) -> u32 {
        self.signer.key_id()
    }
    /// Verifier key text `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.
    pub fn vkey(&self) -> String {
        self.vkey.clone()
    }
    /// Signs arbitrary bytes with this key (Ed25519). Used for receipts, whose signed bytes
    /// start with a prefix no checkpoint note can start with.
    pub fn sign_bytes(&self, msg: &[u8]) -> Result<Vec<u8>, CheckpointError> {
        self.signer
            .sign(msg)
            .map_err(|e| CheckpointError::BadKey(format!("signing failed: {e}")))
    }
    /// Signs `checkpoint`, whose origin must be this key's name.
    pub fn sign(&self, checkpoint: &Checkpoint) -> Result<SignedCheckpoint, CheckpointError> {
        if checkpoint.origin != self.name() {
            return Err(CheckpointError::WrongOrigin {
                expected: self.name().to_owned(),
                found: checkpoint.origin.clone(),
            });
        }
        let mut note = Note::new(checkpoint.body().as_bytes(), &[])
            .map_err(|e| CheckpointError::Malformed(format!("body of {checkpoint:?}: {e}")))?;
        note.add_sigs(&[&self.signer])
            .map_err(|e| CheckpointError::BadKey(format!("signing failed: {e}")))?;
        let note = String::from_utf8(note.to_bytes())
            .map_err(|e| CheckpointError::Malformed(format!("signed note is not UTF-8: {e}")))?;
        Ok(SignedCheckpoint {
            checkpoint: checkpoint.clone(),
            note,
        })
    }
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckpointSigner({})", self.vkey)
    }
}

/// A trusted verifier key.
#[derive(Clone)]
pub struct CheckpointVerifier {
    verifier: StandardVerifier,
    vkey: String,
}

impl CheckpointVerifier {
    pub fn from_vkey(vkey: &str) -> Result<CheckpointVerifier, CheckpointError> {
        let verifier = StandardVerifier::new(vkey).map_err(|e| {
            let reason = match e {
                signed_note::VerifierError::Format => "is not <name>+<hex id>+<base64 key>",
                signed_note::VerifierError::Alg => "is not an Ed25519 key",
                signed_note::VerifierError::Id => "has a key id that does not match its key",
            };
            CheckpointError::BadKey(format!("verifier key {:?} {reason}", short(vkey)))
        })?;
        // One spelling per key (C2SP signed-note: the id as 8 lowercase hex digits), so a key
        // pinned as text compares equal to the same key written by anyone else.
        let prefix = format!("{}+{:08x}+", verifier.name(), verifier.key_id());
        if !vkey.starts_with(&prefix) {
            return Err(CheckpointError::BadKey(format!(
                "verifier key {:?} spells its key id other than as 8 lowercase hex digits ({:08x})",
                short(vkey),
                verifier.key_id()
            )));
        }
        Ok(CheckpointVerifier {
            verifier,
            vkey: vkey.to_owned(),
        })
    }
    pub fn name(&self) -> &str {
        self.verifier.name()
    }
    pub fn key_id(&self) -> u32 {
        self.verifier.key_id()
    }
    /// The verifier key text this was made from.
    pub fn vkey(&self) -> &str {
        &self.vkey
    }
    /// Whether `signature` is this key's Ed25519 signature of `msg` (see
    /// [`CheckpointSigner::sign_bytes`]).
    pub fn verify_bytes(&self, msg: &[u8], signature: &[u8]) -> bool {
        self.verifier.verify(msg, signature)
    }
    /// Parses a signed note and checks it carries a valid signature by this key (other signatures
    /// are ignored). The origin line must equal the key name.
    pub fn verify(&self, note: &str) -> Result<SignedCheckpoint, CheckpointError> {
        let parsed = Note::from_bytes(note.as_bytes()).map_err(|_| {
            CheckpointError::Malformed(format!(
                "{:?} is not a signed note (text, blank line, signature lines)",
                short(note)
            ))
        })?;
        let checkpoint = Checkpoint::parse_body(parsed.text())?;
        if checkpoint.origin != self.name() {
            return Err(CheckpointError::WrongOrigin {
                expected: self.name().to_owned(),
                found: checkpoint.origin,
            });
        }
        let (name, key_id) = (self.name().to_owned(), self.key_id());
        match parsed.verify(&OneKey(&self.verifier)) {
            Ok(_) => Ok(SignedCheckpoint {
                checkpoint,
                note: note.to_owned(),
            }),
            Err(NoteError::UnverifiedNote) => Err(CheckpointError::NotSignedByKey { name, key_id }),
            Err(NoteError::InvalidSignature { .. }) => {
                Err(CheckpointError::BadSignature { name, key_id })
            }
            Err(e) => Err(CheckpointError::Malformed(e.to_string())),
        }
    }
}

impl fmt::Debug for CheckpointVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckpointVerifier({})", self.vkey)
    }
}

/// The one key a [`CheckpointVerifier`] trusts, as `signed_note` wants to look keys up.
struct OneKey<'a>(&'a StandardVerifier);

impl Verifiers for OneKey<'_> {
    fn verifier(&self, name: &str, id: u32) -> Result<&dyn Verifier, VerificationError> {
        if name == self.0.name() && id == self.0.key_id() {
            Ok(self.0)
        } else {
            Err(VerificationError::UnknownKey {
                name: name.to_owned(),
                id,
            })
        }
    }
}

/// Untrusted text shortened for an error message.
fn short(s: &str) -> String {
    const MAX_CHARS: usize = 120;
    if s.chars().count() <= MAX_CHARS {
        s.to_owned()
    } else {
        s.chars().take(MAX_CHARS).collect::<String>() + "…"
    }
}
