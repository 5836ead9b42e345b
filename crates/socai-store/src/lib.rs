//! socai-store: the ledger on sled 0.34.
//!
//! - [`storage`]: the engine boundary ([`Storage`]) and its sled implementation: one tree, every
//!   commit a single atomic `apply_batch` followed by one blocking `flush` (fsync).
//! - [`idfilter`]: the in-memory new-id filter that spares the writer an index read per new id.
//! - [`ledger`]: the single writer (append with group commit, dedup by id forever, Merkle state,
//!   checkpoints, redaction) and the readers (entries, history, proofs, export).
//! - [`reader`]: readers of a ledger being appended to (entries, proofs, export, tiles), which
//!   see each commit once it is durable and never block the writer.
//! - [`runs`]: sorted runs of (fingerprint, seq) pairs in pages, merged in the background: an
//!   index that costs a commit one run instead of one random-key insert per entry.
//! - [`verify`]: full parallel verification of a stored ledger.
//! - [`datadir`]: the on-disk layout of a data directory (store, keys) and `init`.
//!
//! Knows nothing of NATS or HTTP.

pub mod datadir;
pub mod idfilter;
pub mod keystore;
pub mod ledger;
pub mod reader;
pub mod runs;
pub mod storage;
pub mod verify;

pub use datadir::DataDir;
pub use ledger::{AppendOutcome, Ledger, LedgerConfig, LedgerError, SourceCursor};
pub use reader::{LedgerReader, View};
pub use storage::{EventKey, Head, SledStorage, Storage, StorageError};
pub use verify::{VerifyError, VerifyOptions, VerifyReport, verify_ledger};

/// Tries `attempt` until it succeeds, fails otherwise than `busy` says, or `wait` has passed
/// (every 20 ms): how the store and its key file wait for a lock a closing store still holds.
pub(crate) fn retry_while<T, E>(
    wait: std::time::Duration,
    busy: impl Fn(&E) -> bool,
    mut attempt: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match attempt() {
            Err(e) if busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}
