//! socai-model: what an event is. The envelope, the catalogue of event types, validation against
//! the JSON Schemas in the repository's `schemas/` (embedded at build time: the schema files are the
//! single source of truth, no rule is written twice), and the error codes a rejection carries.
//!
//! Knows nothing of storage or transport.

pub mod code;
pub mod event;
pub mod schema;
pub mod validate;

pub use code::ErrorCode;
pub use event::{EVENT_TYPES, Event, REDACTION_ID_PREFIX, REDACTION_TYPE, SCHEMA_VERSION};
pub use validate::{Limits, Rejection, Validator};
