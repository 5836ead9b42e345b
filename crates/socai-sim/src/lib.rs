//! socai-sim: a deterministic generator of realistic dossier lifecycles.

use socai_model::Event;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    /// Number of provinces (each with a few agencies).
    pub provinces: usize,
    /// Procedures per agency.
    pub procedures_per_agency: usize,
    /// First event time (RFC 3339, +07:00).
    pub start: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig { seed: 1, provinces: 63, procedures_per_agency: 20, start: "2026-01-05T08:00:00+07:00".into() }
    }
}

/// Infinite, deterministic stream of valid events: procedure catalogue first, then interleaved
/// dossier lifecycles. Same config → same events, byte for byte.
pub struct Generator {/* private */}

impl Generator {
    pub fn new(config: SimConfig) -> Generator {
        todo!()
    }
}

impl Iterator for Generator {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        todo!()
    }
}
