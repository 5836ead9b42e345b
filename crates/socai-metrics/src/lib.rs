//! socai-metrics: the projections. A deterministic fold of the committed ledger, in seq order,
//! into dossier states and per-(scope, day) counts, from which every Decision 766 metric of
//! DESIGN.md is given for any scope (national, province, agency, procedure) and window (day,
//! rolling 7 and 30 days, month, quarter, year to date) on the Asia/Ho_Chi_Minh calendar.
//!
//! Scopes come from the administrative units of `schemas/units/vn.json` (embedded, [`units`]):
//! an agency of a province that has since merged counts toward the province that exists now.
//!
//! No I/O and no clock: the same entries give the same values, whether folded in one pass, in
//! batches, or resumed from a snapshot; "now" is the latest event time applied. Publication
//! (NATS) and reading the ledger belong to the callers.

mod compact;
mod dossier;
mod filter;
mod metric;
mod projection;
mod scope;
mod score;
mod time;
mod units;

pub use compact::DossierMemory;
pub use filter::{Filter, FilterError};
pub use metric::{
    Detail, INDICATORS, Indicator, IndicatorScore, METRICS, Metric, MetricValue,
    SIGNIFICANT_DIGITS, WindowBounds, indicator_points, key,
};
pub use projection::{Anomalies, COMPACT_AFTER_SECS, Changes, Decoded, FoldError, Projection};
pub use scope::{SCOPE_KINDS, Scope, ScopeKind, province_of};
pub use score::{SCORE_766, SCORE_766_JSON, ScoreGroup, ScoreIndicator, ScoreTable, check_table};
pub use time::{Day, VN_OFFSET_SECS, WINDOW_KINDS, Window, parse_timestamp};
pub use units::{FormerName, Level, UNITS_JSON, Unit, Units, UnitsError, units};

/// A fingerprint of the definitions compiled into this crate (the units file and the score
/// table), FNV-1a 64 in hex. A worker whose state or published values came from other
/// definitions folds and publishes again (`socai-projector`).
pub fn definitions() -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in UNITS_JSON
        .bytes()
        .chain(std::iter::once(0))
        .chain(SCORE_766_JSON.bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}
