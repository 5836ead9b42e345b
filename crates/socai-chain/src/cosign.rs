//! Witness cosignatures: C2SP tlog-cosignature (`cosignature/v1`, Ed25519) and the C2SP
//! tlog-witness `add-checkpoint` exchange, without I/O.
//!
//! - [`Cosigner`] / [`CosignatureVerifier`]: a witness's key (signed-note key text with signature
//!   type `0x04`), a cosignature line, and checking one.
//! - [`AddCheckpoint`]: the request body a log sends a witness (`old <size>`, the consistency
//!   proof, a blank line, the checkpoint), built and parsed.
//! - [`decide`]: what a witness does with a request, given the latest checkpoint it cosigned for
//!   that log: cosign, or refuse with the protocol's status (a fork, a rollback, a bad proof).
//! - [`verify_witnessed`]: a checkpoint signed by the log and cosigned by at least k of the n
//!   witnesses a client trusts.

use crate::checkpoint::{CheckpointError, CheckpointVerifier, SignedCheckpoint};
use crate::hash::Hash;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand_core::OsRng;
use std::fmt;

/// The signed-note signature type of an Ed25519 `cosignature/v1` (C2SP tlog-cosignature).
pub const COSIGNATURE_V1_ED25519: u8 = 0x04;

/// The signed-note signature type of a plain Ed25519 note key.
const ED25519: u8 = 0x01;

/// Most consistency proof lines an `add-checkpoint` request may carry (C2SP tlog-witness).
pub const MAX_PROOF_LINES: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignError {
    #[error("malformed witness key: {0}")]
    BadKey(String),
    #[error("malformed add-checkpoint request: {0}")]
    BadRequest(String),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A signature line names a trusted witness key but does not verify: a forged cosignature.
    #[error("the cosignature by witness {name} ({key_id:08x}) does not verify")]
    BadCosignature { name: String, key_id: u32 },
    /// Fewer trusted witnesses cosigned than required.
    #[error(
        "the checkpoint of size {size} is cosigned by {found} of the trusted witnesses ({names}), {required} required"
    )]
    TooFewCosignatures {
        size: u64,
        found: usize,
        required: usize,
        names: String,
    },
}

/// The key id of an Ed25519 cosigner: SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key)[:4].
pub fn cosigner_key_id(name: &str, public: &VerifyingKey) -> u32 {
    let mut key = vec![COSIGNATURE_V1_ED25519];
    key.extend_from_slice(public.as_bytes());
    signed_note::key_id(name, &key)
}

/// The message a `cosignature/v1` signs: two header lines, then the checkpoint's note body.
fn signed_message(body: &str, time: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {time}\n{body}").into_bytes()
}

/// A witness's signing key. Its private key text is the signed-note form with signature type
/// 0x04: `PRIVATE+KEY+<name>+<hex key id>+<base64(0x04 ‖ 32-byte seed)>`.
pub struct Cosigner {
    name: String,
    key: SigningKey,
    key_id: u32,
}

impl Cosigner {
    /// A fresh random key named `name` (by convention a schema-less URL naming the witness).
    /// Returns the cosigner, its private key text and its verifier key text.
    pub fn generate(name: &str) -> Result<(Cosigner, String, String), CosignError> {
        check_name(name)?;
        let key = SigningKey::generate(&mut OsRng);
        let cosigner = Cosigner::new(name, key);
        let skey = format!(
            "PRIVATE+KEY+{name}+{:08x}+{}",
            cosigner.key_id,
            STANDARD.encode([&[COSIGNATURE_V1_ED25519][..], cosigner.key.as_bytes()].concat())
        );
        let vkey = cosigner.vkey();
        Ok((cosigner, skey, vkey))
    }

    fn new(name: &str, key: SigningKey) -> Cosigner {
        let key_id = cosigner_key_id(name, &key.verifying_key());
        Cosigner {
            name: name.to_owned(),
            key,
            key_id,
        }
    }

    /// Reads a private key written by [`Cosigner::generate`].
    pub fn from_skey(skey: &str) -> Result<Cosigner, CosignError> {
        // Never echo the private key in an error.
        let bad = |why: &str| CosignError::BadKey(format!("private key {why}"));
        let rest = skey
            .trim_end()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| bad("does not start with PRIVATE+KEY+"))?;
        let mut fields = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(b64)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(bad("is not PRIVATE+KEY+<name>+<hex id>+<base64 key>"));
        };
        check_name(name)?;
        let raw = STANDARD
            .decode(b64)
            .map_err(|_| bad("has a key that is not base64"))?;
        let Some((&COSIGNATURE_V1_ED25519, seed)) = raw.split_first() else {
            return Err(bad("is not an Ed25519 cosignature/v1 key (type 0x04)"));
        };
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| bad("does not hold a 32-byte Ed25519 seed"))?;
        let cosigner = Cosigner::new(name, SigningKey::from_bytes(&seed));
        if id != format!("{:08x}", cosigner.key_id) {
            return Err(bad("has a key id that does not match its key"));
        }
        Ok(cosigner)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn key_id(&self) -> u32 {
        self.key_id
    }
    /// Verifier key text `<name>+<hex key id>+<base64(0x04 ‖ public key)>`.
    pub fn vkey(&self) -> String {
        vkey_text(&self.name, self.key_id, &self.key.verifying_key())
    }

    /// The cosignature line (`— <name> <base64(key id ‖ time ‖ signature)>\n`) of the checkpoint
    /// whose note body is `body`, made at `time` (seconds since the Unix epoch).
    pub fn cosign(&self, body: &str, time: u64) -> String {
        let signature = self.key.sign(&signed_message(body, time));
        let mut raw = Vec::with_capacity(4 + 8 + 64);
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&time.to_be_bytes());
        raw.extend_from_slice(&signature.to_bytes());
        format!("— {} {}\n", self.name, STANDARD.encode(raw))
    }
}

impl fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cosigner({})", self.vkey())
    }
}

fn vkey_text(name: &str, key_id: u32, public: &VerifyingKey) -> String {
    let key = [&[COSIGNATURE_V1_ED25519][..], public.as_bytes()].concat();
    format!("{name}+{key_id:08x}+{}", STANDARD.encode(key))
}

fn check_name(name: &str) -> Result<(), CosignError> {
    if signed_note::is_key_name_valid(name) {
        Ok(())
    } else {
        Err(CosignError::BadKey(format!(
            "key name {name:?} must be non-empty, without spaces or '+'"
        )))
    }
}

/// A trusted witness key (its verifier key text).
#[derive(Clone)]
pub struct CosignatureVerifier {
    name: String,
    key: VerifyingKey,
    key_id: u32,
    vkey: String,
}

impl CosignatureVerifier {
    pub fn from_vkey(vkey: &str) -> Result<CosignatureVerifier, CosignError> {
        let vkey = vkey.trim();
        let bad = |why: &str| CosignError::BadKey(format!("witness verifier key {vkey:?} {why}"));
        let mut fields = vkey.splitn(3, '+');
        let (Some(name), Some(id), Some(b64)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(bad("is not <name>+<hex id>+<base64 key>"));
        };
        check_name(name)?;
        let raw = STANDARD
            .decode(b64)
            .map_err(|_| bad("has a key that is not base64"))?;
        let Some((&alg, public)) = raw.split_first() else {
            return Err(bad("has an empty key"));
        };
        if alg != COSIGNATURE_V1_ED25519 && alg != ED25519 {
            return Err(bad(&format!(
                "is of signature type {alg:#04x}, not Ed25519 (0x04 for cosignature/v1, or 0x01)"
            )));
        }
        let key = <[u8; 32]>::try_from(public)
            .ok()
            .and_then(|k| VerifyingKey::from_bytes(&k).ok())
            .ok_or_else(|| bad("does not hold an Ed25519 public key"))?;
        // Some witnesses publish their key as a plain Ed25519 note key (type 0x01); it is the
        // same key, and its cosignatures carry the 0x04 key id (as Go's note package does).
        let written_id = signed_note::key_id(name, &raw);
        if id != format!("{written_id:08x}") {
            return Err(bad(&format!(
                "has key id {id:?}, but its key's id is {written_id:08x}"
            )));
        }
        let key_id = cosigner_key_id(name, &key);
        let vkey = vkey_text(name, key_id, &key);
        Ok(CosignatureVerifier {
            name: name.to_owned(),
            key,
            key_id,
            vkey,
        })
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn key_id(&self) -> u32 {
        self.key_id
    }
    /// Its verifier key text, as a cosignature/v1 key (type 0x04) whatever form it was given in.
    pub fn vkey(&self) -> &str {
        &self.vkey
    }

    /// Whether this is the same Ed25519 key as the log's whose verifier key text is `log_vkey`: a
    /// log's own key is no witness of it.
    pub fn is_key_of(&self, log_vkey: &str) -> bool {
        log_vkey
            .splitn(3, '+')
            .nth(2)
            .and_then(|b64| STANDARD.decode(b64.trim()).ok())
            .is_some_and(|raw| raw.get(1..) == Some(self.key.as_bytes().as_slice()))
    }

    /// Checks one signature line against the checkpoint's note body. `Ok(None)`: the line is not
    /// this witness's (another name or key id); `Ok(Some(time))`: a valid cosignature made at
    /// `time`; an error: this witness's name and key id with a signature that does not verify.
    pub fn verify_line(&self, body: &str, line: &str) -> Result<Option<u64>, CosignError> {
        let Ok(sig) = signed_note::Signature::from_bytes(line.trim_end_matches('\n').as_bytes())
        else {
            return Ok(None);
        };
        if sig.name() != self.name || sig.id() != self.key_id {
            return Ok(None);
        }
        let forged = || CosignError::BadCosignature {
            name: self.name.clone(),
            key_id: self.key_id,
        };
        let raw = sig.signature();
        let (Ok(time), Ok(signature)) = (
            <[u8; 8]>::try_from(raw.get(..8).unwrap_or_default()),
            ed25519_dalek::Signature::from_slice(raw.get(8..).unwrap_or_default()),
        ) else {
            return Err(forged());
        };
        let time = u64::from_be_bytes(time);
        if time > i64::MAX as u64 {
            return Err(forged());
        }
        self.key
            .verify_strict(&signed_message(body, time), &signature)
            .map_err(|_| forged())?;
        Ok(Some(time))
    }
}

impl fmt::Debug for CosignatureVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CosignatureVerifier({})", self.vkey)
    }
}

/// The signature lines of a signed note (each without its newline), after the blank line.
pub fn signature_lines(note: &str) -> Vec<&str> {
    note.rsplit_once("\n\n")
        .map(|(_, sigs)| sigs.lines().filter(|l| !l.is_empty()).collect())
        .unwrap_or_default()
}

/// The (key name, key id) a signature line names, if it is one.
pub fn line_key(line: &str) -> Option<(String, u32)> {
    signed_note::Signature::from_bytes(line.trim_end_matches('\n').as_bytes())
        .ok()
        .map(|sig| (sig.name().to_owned(), sig.id()))
}

/// The timestamp a cosignature/v1 line carries (not checked: verify the line first when it
/// matters).
pub fn line_time(line: &str) -> Option<u64> {
    let sig = signed_note::Signature::from_bytes(line.trim_end_matches('\n').as_bytes()).ok()?;
    let time = <[u8; 8]>::try_from(sig.signature().get(..8)?).ok()?;
    Some(u64::from_be_bytes(time))
}

/// The note body of a signed note (its text up to and including the newline before the blank
/// line): what signatures and cosignatures sign.
pub fn note_body(note: &str) -> Option<&str> {
    note.rsplit_once("\n\n")
        .map(|(text, _)| &note[..text.len() + 1])
}

/// A checkpoint with the cosignatures a client trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witnessed {
    pub signed: SignedCheckpoint,
    /// (witness name, cosignature time) of each trusted witness that cosigned, in key order.
    pub cosigned_by: Vec<(String, u64)>,
}

/// Checks `note` is signed by the log and cosigned by at least `required` of `witnesses`.
/// Lines from other keys are ignored; a line from a trusted witness key that does not verify is
/// an error (a forged cosignature), whatever the count.
pub fn verify_witnessed(
    note: &str,
    log: &CheckpointVerifier,
    witnesses: &[CosignatureVerifier],
    required: usize,
) -> Result<Witnessed, CosignError> {
    let signed = log.verify(note)?;
    let body = note_body(note).unwrap_or_default();
    let lines = signature_lines(note);
    let mut cosigned_by = Vec::new();
    for witness in witnesses {
        let mut seen = None;
        for line in &lines {
            if let Some(time) = witness.verify_line(body, line)? {
                seen = Some(seen.map_or(time, |t: u64| t.max(time)));
            }
        }
        if let Some(time) = seen
            && !cosigned_by.iter().any(|(n, _)| n == witness.name())
        {
            cosigned_by.push((witness.name().to_owned(), time));
        }
    }
    if cosigned_by.len() < required {
        return Err(CosignError::TooFewCosignatures {
            size: signed.checkpoint.size,
            found: cosigned_by.len(),
            required,
            names: witnesses
                .iter()
                .map(|w| w.name())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(Witnessed {
        signed,
        cosigned_by,
    })
}

/// A C2SP tlog-witness `add-checkpoint` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the latest checkpoint the witness cosigned for this log, as the log believes.
    pub old_size: u64,
    /// The RFC 6962 consistency proof from `old_size` to the checkpoint's size (empty from 0).
    pub proof: Vec<Hash>,
    /// The checkpoint as a signed note (it may carry other signatures too).
    pub note: String,
}

impl AddCheckpoint {
    /// The request body: `old <size>\n`, one base64 hash per line, a blank line, the note.
    pub fn body(&self) -> String {
        let mut out = format!("old {}\n", self.old_size);
        for hash in &self.proof {
            out.push_str(&STANDARD.encode(hash.0));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.note);
        out
    }

    pub fn parse(body: &str) -> Result<AddCheckpoint, CosignError> {
        let bad = |why: String| CosignError::BadRequest(why);
        let (first, mut rest) = body
            .split_once('\n')
            .ok_or_else(|| bad("no \"old <size>\" line".into()))?;
        let old = first
            .strip_prefix("old ")
            .ok_or_else(|| bad(format!("the first line {first:?} is not \"old <size>\"")))?;
        if old.is_empty()
            || !old.bytes().all(|b| b.is_ascii_digit())
            || (old.len() > 1 && old.starts_with('0'))
        {
            return Err(bad(format!(
                "old size {old:?} is not a decimal without leading zeroes"
            )));
        }
        let old_size: u64 = old
            .parse()
            .map_err(|_| bad(format!("old size {old:?} is not a decimal number")))?;
        let mut proof = Vec::new();
        loop {
            let (line, after) = rest
                .split_once('\n')
                .ok_or_else(|| bad("no blank line before the checkpoint".into()))?;
            rest = after;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(bad(format!(
                    "more than {MAX_PROOF_LINES} consistency proof lines"
                )));
            }
            let hash = STANDARD
                .decode(line)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    bad(format!(
                        "proof line {} is not a base64 SHA-256 hash",
                        proof.len() + 1
                    ))
                })?;
            proof.push(Hash(hash));
        }
        Ok(AddCheckpoint {
            old_size,
            proof,
            note: rest.to_owned(),
        })
    }
}

/// What a witness holds for one log: the latest checkpoint it cosigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessState {
    pub size: u64,
    pub root: Hash,
    /// The checkpoint's note as the log sent it.
    pub note: String,
}

/// A witness's answer to an `add-checkpoint` request, with the HTTP status C2SP tlog-witness
/// gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// 200: cosign, and record this checkpoint (before answering).
    Cosign(WitnessState),
    /// 400: the request is malformed, or its old size exceeds the checkpoint's.
    BadRequest(String),
    /// 403: no signature by a key the witness trusts for the log.
    Forbidden(String),
    /// 404: the witness does not follow a log of this origin.
    UnknownLog(String),
    /// 409: the old size is not the witness's (body: the witness's size), or the same size with
    /// another root (a fork).
    Conflict { size: u64, reason: String },
    /// 422: the consistency proof does not hold (a fork, or a bad proof).
    Unprocessable(String),
}

impl Decision {
    pub fn status(&self) -> u16 {
        match self {
            Decision::Cosign(_) => 200,
            Decision::BadRequest(_) => 400,
            Decision::Forbidden(_) => 403,
            Decision::UnknownLog(_) => 404,
            Decision::Conflict { .. } => 409,
            Decision::Unprocessable(_) => 422,
        }
    }
}

/// The origin line of a note (its first line), for finding which log a request is for.
pub fn note_origin(note: &str) -> Option<&str> {
    note.split_once('\n').map(|(origin, _)| origin)
}

/// Decides an `add-checkpoint` request for the log `log`, given the latest checkpoint the
/// witness cosigned for it (`None`: never). Never cosigns a checkpoint inconsistent with
/// `latest`: a smaller size (rollback) is a 409, the same size with another root (fork) a 409,
/// a larger size needs a consistency proof from `latest` that holds (422 otherwise).
pub fn decide(
    request: &AddCheckpoint,
    log: &CheckpointVerifier,
    latest: Option<&WitnessState>,
) -> Decision {
    let signed = match log.verify(&request.note) {
        Ok(signed) => signed,
        Err(CheckpointError::WrongOrigin { found, .. }) => {
            return Decision::UnknownLog(format!("this witness does not follow log {found:?}"));
        }
        Err(e @ CheckpointError::Malformed(_)) => return Decision::BadRequest(e.to_string()),
        Err(e) => return Decision::Forbidden(e.to_string()),
    };
    let checkpoint = &signed.checkpoint;
    if request.old_size > checkpoint.size {
        return Decision::BadRequest(format!(
            "old size {} is larger than the checkpoint's size {}",
            request.old_size, checkpoint.size
        ));
    }
    let (known_size, known_root) = latest.map_or((0, None), |s| (s.size, Some(s.root)));
    // The empty tree is consistent with every tree: a cosigned size 0 is as good as none.
    let known_root = known_root.filter(|_| known_size > 0);
    if request.old_size != known_size {
        return Decision::Conflict {
            size: known_size,
            reason: format!(
                "old size {} is not the size of the latest checkpoint this witness cosigned ({known_size})",
                request.old_size
            ),
        };
    }
    let record = WitnessState {
        size: checkpoint.size,
        root: checkpoint.root,
        note: request.note.clone(),
    };
    let Some(known_root) = known_root else {
        // Never cosigned for this log: anything is consistent with nothing (and the proof must
        // be empty, as from size 0).
        if !request.proof.is_empty() {
            return Decision::BadRequest("a proof from old size 0 must be empty".into());
        }
        return Decision::Cosign(record);
    };
    if known_size == checkpoint.size {
        if known_root != checkpoint.root {
            return Decision::Conflict {
                size: known_size,
                reason: format!(
                    "the log signed two roots for size {known_size}: {} cosigned before, {} now (a fork)",
                    known_root.to_hex(),
                    checkpoint.root.to_hex()
                ),
            };
        }
        if !request.proof.is_empty() {
            return Decision::BadRequest("a proof between equal sizes must be empty".into());
        }
        return Decision::Cosign(record);
    }
    match crate::merkle::verify_consistency(
        known_size,
        checkpoint.size,
        &known_root,
        &checkpoint.root,
        &request.proof,
    ) {
        Ok(()) => Decision::Cosign(record),
        Err(e) => Decision::Unprocessable(format!(
            "not consistent with the checkpoint of size {known_size} this witness cosigned: {e}"
        )),
    }
}

#[cfg(test)]
mod tests;
