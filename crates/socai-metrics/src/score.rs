//! The score_766 table: Decision 766's five groups and their indicators, with points,
//! thresholds and the source of each, read from `schemas/score-766.json` (data, not code).
//! Indicators with a metric are covered (the projection scores them); the others are reported
//! as not covered, never guessed.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::metric::Metric;

/// The table as written in `schemas/score-766.json`.
pub const SCORE_766_JSON: &str = include_str!("../../../schemas/score-766.json");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreTable {
    pub about: String,
    pub decision: String,
    pub total_points: f64,
    pub groups: Vec<ScoreGroup>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreGroup {
    pub id: String,
    pub key: String,
    pub points: f64,
    pub name_vi: String,
    pub name_en: String,
    pub source: String,
    pub indicators: Vec<ScoreIndicator>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreIndicator {
    pub id: String,
    pub points: f64,
    /// The metric that measures it; `None`: not covered.
    pub metric: Option<Metric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    pub name_vi: String,
    pub name_en: String,
    pub source: String,
    /// Why the ledger cannot derive it (only for indicators without a metric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_covered: Option<String>,
}

/// Checks what the scoring relies on: group points add up to the total, each group's
/// indicators to the group, ids unique, a covered indicator has a threshold in (0, 1] and no
/// `not_covered`, an uncovered one says why, and no metric is scored twice or scores itself.
pub fn check_table(table: &ScoreTable) -> Result<(), String> {
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    let groups: f64 = table.groups.iter().map(|g| g.points).sum();
    if !close(groups, table.total_points) {
        return Err(format!(
            "the groups' points add up to {groups}, not {}",
            table.total_points
        ));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut metrics = std::collections::BTreeSet::new();
    for group in &table.groups {
        let sum: f64 = group.indicators.iter().map(|i| i.points).sum();
        if !close(sum, group.points) {
            return Err(format!(
                "group {}: its indicators' points add up to {sum}, not {}",
                group.id, group.points
            ));
        }
        for indicator in &group.indicators {
            let at = format!("indicator {}", indicator.id);
            if !ids.insert(indicator.id.clone()) {
                return Err(format!("{at} is listed twice"));
            }
            if indicator.points <= 0.0 {
                return Err(format!("{at}: points must be positive"));
            }
            match (
                indicator.metric,
                indicator.threshold,
                &indicator.not_covered,
            ) {
                (Some(Metric::Score766), ..) => {
                    return Err(format!("{at}: score_766 cannot score itself"));
                }
                (Some(metric), Some(t), None) if t > 0.0 && t <= 1.0 => {
                    if !metrics.insert(metric) {
                        return Err(format!("{at}: {} is scored twice", metric.name()));
                    }
                }
                (Some(_), _, None) => {
                    return Err(format!(
                        "{at}: a covered indicator needs a threshold in (0, 1]"
                    ));
                }
                (Some(_), _, Some(_)) => {
                    return Err(format!("{at}: has a metric, so it cannot be not_covered"));
                }
                (None, None, Some(_)) => {}
                (None, _, _) => {
                    return Err(format!(
                        "{at}: without a metric it needs not_covered (why) and no threshold"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The table, parsed and checked once.
pub static SCORE_766: LazyLock<ScoreTable> = LazyLock::new(|| {
    let table: ScoreTable = serde_json::from_str(SCORE_766_JSON)
        .unwrap_or_else(|e| panic!("schemas/score-766.json does not parse: {e}"));
    if let Err(e) = check_table(&table) {
        panic!("schemas/score-766.json: {e}");
    }
    table
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_is_whole() {
        assert_eq!(SCORE_766.groups.len(), 5);
        assert_eq!(SCORE_766.total_points, 100.0);
        let covered: Vec<&str> = SCORE_766
            .groups
            .iter()
            .flat_map(|g| &g.indicators)
            .filter(|i| i.metric.is_some())
            .map(|i| i.id.as_str())
            .collect();
        assert_eq!(covered, ["2.1", "3.1", "3.3", "3.6", "4.1", "4.2", "5.4"]);
    }

    #[test]
    fn a_broken_table_is_refused_with_its_reason() {
        let mut table = SCORE_766.clone();
        table.groups[0].points = 17.0;
        assert!(check_table(&table).unwrap_err().contains("add up to 99"));
        let mut table = SCORE_766.clone();
        table.groups[1].indicators[0].threshold = None;
        assert!(
            check_table(&table)
                .unwrap_err()
                .contains("2.1: a covered indicator needs a threshold")
        );
        let mut table = SCORE_766.clone();
        table.groups[1].indicators[1].metric = Some(Metric::OnTimeRate);
        table.groups[1].indicators[1].threshold = Some(0.5);
        table.groups[1].indicators[1].not_covered = None;
        assert!(
            check_table(&table)
                .unwrap_err()
                .contains("on_time_rate is scored twice")
        );
        let mut table = SCORE_766.clone();
        table.groups[0].indicators[0].not_covered = None;
        assert!(
            check_table(&table)
                .unwrap_err()
                .contains("1.1: without a metric")
        );
    }
}
