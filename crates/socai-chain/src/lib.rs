//! socai-chain: everything an auditor needs to check the Sổ Cái ledger, and nothing else.
//!
//! No I/O, no tokio, no sled, no HTTP: an auditor embeds this crate alone.
//!
//! - [`hash`]: RFC 6962 leaf/node hashing and the 32-byte [`Hash`](struct@Hash) type.
//! - [`entry`]: the ledger record, its RFC 8785 (JCS) canonical bytes, personal-data commitments.
//! - [`merkle`]: stored-hash indexing (sumdb/tlog layout), roots, inclusion and consistency proofs,
//!   and [`merkle::CompactRange`] for streaming roots.
//! - [`checkpoint`]: C2SP tlog-checkpoint signed notes with Ed25519 (signed-note key ids).
//! - [`cosign`]: witness cosignatures (C2SP tlog-cosignature) and the tlog-witness exchange.
//! - [`proof`]: the proof JSON objects of the auditors' contract, each able to verify itself.
//! - [`verify`]: a streaming chain verifier (entry → leaf, `prev` links, seq, root).
//! - [`receipt`]: signed receipts (which event ids got which seq, under a signed tree head).
//! - [`tiles`]: C2SP tlog-tiles paths, hash tiles and entry bundles.

pub mod bundle;
pub mod checkpoint;
pub mod cosign;
pub mod entry;
pub mod hash;
pub mod merkle;
pub mod proof;
pub mod receipt;
pub mod tiles;
pub mod verify;

pub use checkpoint::{Checkpoint, CheckpointSigner, CheckpointVerifier, SignedCheckpoint};
pub use entry::{Entry, canonical_json};
pub use hash::{Hash, leaf_hash, node_hash};
pub use merkle::{CompactRange, HashReader};
pub use proof::{ConsistencyProof, InclusionProof};
pub use receipt::{Receipt, ReceiptError, ReceiptEvent, ReceiptRejection, ReceiptSync};
pub use verify::{ChainError, ChainVerifier};
pub use verify::{Chunk, verify_chunk, verify_chunk_parts};
