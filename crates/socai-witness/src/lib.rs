//! Witnesses for the Sổ Cái log, both ends of C2SP tlog-witness (see `socai_chain::cosign` for
//! the formats and the decision itself):
//!
//! - [`witness`]: the witness `socai witness serve` runs. It follows the logs whose keys it is
//!   given, answers `POST /add-checkpoint`, and records the latest checkpoint it cosigned for
//!   each log in a file it fsyncs before answering: it never cosigns two inconsistent
//!   checkpoints of a log, even across restarts.
//! - [`follow`]: a witness that follows a log itself over its HTTP API (`--follow URL`): the
//!   same decision and state file, and the cosignature posted back to the log.
//! - [`collector`]: the log's side, run by `socai serve`. It sends each new signed checkpoint to
//!   every configured witness with a consistency proof from the size that witness cosigned last,
//!   checks the cosignatures it gets back against the witness's key, and keeps them in the
//!   store for the API to serve.

pub mod collector;
pub mod follow;
pub mod witness;

pub use collector::{Collector, WitnessBoard, WitnessTarget};
pub use witness::{Witness, WitnessError};
