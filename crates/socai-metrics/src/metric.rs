//! The metrics of DESIGN.md: what each counts, and how a window's value is computed from
//! additive per-day counts.

use std::collections::BTreeMap;
use std::sync::{LazyLock, OnceLock};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::scope::Scope;

/// One additive count kept per (scope, day). Flow counts are added on the day of the event that
/// anchors them; gauge counts (`*Delta`) are +1/-1 changes whose running sum is the gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub(crate) enum Field {
    Submitted,
    SubmittedOnline,
    Resolved,
    FullyOnline,
    ResolvedWithDue,
    OnTime,
    ResolvedDocument,
    ElectronicResult,
    Digitized,
    Signed,
    Timed,
    TimedMinutes,
    Paid,
    PaidOnline,
    Accepted,
    AcceptedResolved,
    Rated,
    Satisfied,
    /// Dossiers entering the backlog: a gauge's presence (a day where dossiers came and went
    /// in equal numbers still shows the backlog).
    BacklogEntered,
    BacklogDelta,
    OverdueDelta,
    OfferedDelta,
    OfferedFullOnlineDelta,
}

pub(crate) const FIELDS: usize = Field::OfferedFullOnlineDelta as usize + 1;

pub(crate) type Counts = [i64; FIELDS];

const fn mask(fields: &[Field]) -> u32 {
    let mut m = 0;
    let mut i = 0;
    while i < fields.len() {
        m |= 1 << fields[i] as u32;
        i += 1;
    }
    m
}

pub(crate) const fn bit(field: Field) -> u32 {
    1 << field as u32
}

pub(crate) const GAUGE_MASK: u32 = mask(&[
    Field::BacklogEntered,
    Field::BacklogDelta,
    Field::OverdueDelta,
    Field::OfferedDelta,
    Field::OfferedFullOnlineDelta,
]);

/// Per (scope, day): the counts and the resolution times (minutes, in HdrHistogram buckets).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Bucket {
    pub counts: Counts,
    pub minutes: BTreeMap<u32, u32>,
}

impl Bucket {
    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|&c| c == 0) && self.minutes.is_empty()
    }
}

fn histogram() -> &'static Histogram<u32> {
    static HIST: OnceLock<Histogram<u32>> = OnceLock::new();
    HIST.get_or_init(|| {
        Histogram::new_with_bounds(1, 1 << 30, SIGNIFICANT_DIGITS).expect("valid bounds")
    })
}

/// Resolution-time quantiles keep 2 significant decimal digits (HdrHistogram's bucketing): a
/// reported p50/p90 is within 1% of the exact nearest-rank value in whole minutes. The mean is
/// exact.
pub const SIGNIFICANT_DIGITS: u8 = 2;

/// The histogram bucket (its lowest value) a resolution time in minutes is counted in.
pub(crate) fn minute_bucket(minutes: u32) -> u32 {
    histogram().lowest_equivalent(u64::from(minutes.max(1))) as u32
}

/// Nearest-rank quantile over bucketed counts, reported as the bucket's highest value (as
/// HdrHistogram does), so it never understates.
fn quantile(merged: &BTreeMap<u32, u64>, total: u64, q: f64) -> u64 {
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (&bucket, &count) in merged {
        seen += count;
        if seen >= rank {
            return histogram().highest_equivalent(u64::from(bucket));
        }
    }
    0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    OnlineSubmissionRate,
    FullyOnlineRate,
    ProceduresFullOnlineShare,
    OnTimeRate,
    OnlinePaymentRate,
    ElectronicResultRate,
    DigitizationRate,
    DigitalSignatureRate,
    ResolutionTime,
    Backlog,
    Overdue,
    CompletionRate,
    SatisfactionRate,
    #[serde(rename = "score_766")]
    Score766,
}

pub const METRICS: [Metric; 14] = [
    Metric::OnlineSubmissionRate,
    Metric::FullyOnlineRate,
    Metric::ProceduresFullOnlineShare,
    Metric::OnTimeRate,
    Metric::OnlinePaymentRate,
    Metric::ElectronicResultRate,
    Metric::DigitizationRate,
    Metric::DigitalSignatureRate,
    Metric::ResolutionTime,
    Metric::Backlog,
    Metric::Overdue,
    Metric::CompletionRate,
    Metric::SatisfactionRate,
    Metric::Score766,
];

/// A Decision 766 indicator that score_766 covers: full points at rate ≥ threshold, else
/// rate × points / threshold.
#[derive(Debug, Clone)]
pub struct Indicator {
    pub id: String,
    pub metric: Metric,
    pub threshold: f64,
    pub points: f64,
}

/// The covered indicators of the score table (`schemas/score-766.json`, [`crate::SCORE_766`]),
/// in table order. The score is reported both in points and as a percentage of the points of
/// the covered indicators that have data.
pub static INDICATORS: LazyLock<Vec<Indicator>> = LazyLock::new(|| {
    crate::score::SCORE_766
        .groups
        .iter()
        .flat_map(|g| &g.indicators)
        .filter_map(|i| {
            Some(Indicator {
                id: i.id.clone(),
                metric: i.metric?,
                threshold: i.threshold?,
                points: i.points,
            })
        })
        .collect()
});

/// Points earned by one indicator at `rate`.
pub fn indicator_points(indicator: &Indicator, rate: f64) -> f64 {
    if rate >= indicator.threshold {
        indicator.points
    } else {
        rate * indicator.points / indicator.threshold
    }
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::OnlineSubmissionRate => "online_submission_rate",
            Metric::FullyOnlineRate => "fully_online_rate",
            Metric::ProceduresFullOnlineShare => "procedures_full_online_share",
            Metric::OnTimeRate => "on_time_rate",
            Metric::OnlinePaymentRate => "online_payment_rate",
            Metric::ElectronicResultRate => "electronic_result_rate",
            Metric::DigitizationRate => "digitization_rate",
            Metric::DigitalSignatureRate => "digital_signature_rate",
            Metric::ResolutionTime => "resolution_time",
            Metric::Backlog => "backlog",
            Metric::Overdue => "overdue",
            Metric::CompletionRate => "completion_rate",
            Metric::SatisfactionRate => "satisfaction_rate",
            Metric::Score766 => "score_766",
        }
    }

    pub fn parse(name: &str) -> Option<Metric> {
        METRICS.into_iter().find(|m| m.name() == name)
    }

    /// Numerator and denominator of a rate.
    pub(crate) fn rate_fields(self) -> Option<(Field, Field)> {
        use Field::*;
        Some(match self {
            Metric::OnlineSubmissionRate => (SubmittedOnline, Submitted),
            Metric::FullyOnlineRate => (FullyOnline, Resolved),
            Metric::ProceduresFullOnlineShare => (OfferedFullOnlineDelta, OfferedDelta),
            Metric::OnTimeRate => (OnTime, ResolvedWithDue),
            Metric::OnlinePaymentRate => (PaidOnline, Paid),
            Metric::ElectronicResultRate => (ElectronicResult, ResolvedDocument),
            Metric::DigitizationRate => (Digitized, Resolved),
            Metric::DigitalSignatureRate => (Signed, Resolved),
            Metric::ResolutionTime => (TimedMinutes, Timed),
            Metric::Backlog => (BacklogDelta, BacklogDelta),
            Metric::Overdue => (OverdueDelta, BacklogDelta),
            Metric::CompletionRate => (AcceptedResolved, Accepted),
            Metric::SatisfactionRate => (Satisfied, Rated),
            Metric::Score766 => return None,
        })
    }

    /// The counts a change to which changes this metric.
    pub(crate) fn mask(self) -> u32 {
        let entered = match self {
            Metric::Backlog | Metric::Overdue => bit(Field::BacklogEntered),
            _ => 0,
        };
        match self.rate_fields() {
            Some((n, d)) => bit(n) | bit(d) | entered,
            None => INDICATORS
                .iter()
                .fold(0, |m, indicator| m | indicator.metric.mask()),
        }
    }

    /// A gauge's value at a window is its level at the window's last day, not a sum over it.
    pub fn is_gauge(self) -> bool {
        self.mask() & GAUGE_MASK != 0 && self != Metric::Score766
    }

    /// Whether the metric is reported for scopes of this kind (score_766 is for agencies and
    /// provinces, as Decision 766 scores them).
    pub fn applies_to(self, scope: &Scope) -> bool {
        use crate::scope::ScopeKind::*;
        self != Metric::Score766 || matches!(scope.kind, Agency | Province)
    }
}

/// What a value adds to its numerator and denominator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Detail {
    ResolutionTime {
        mean_minutes: f64,
        p50_minutes: u64,
        p90_minutes: u64,
    },
    Score {
        points: f64,
        max_points: f64,
        indicators: Vec<IndicatorScore>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndicatorScore {
    pub indicator: String,
    pub metric: String,
    pub rate: f64,
    pub threshold: f64,
    pub points: f64,
    pub earned: f64,
}

/// Window bounds as reported: the window's name and its first and last day (the last is the
/// current day while the window is under way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowBounds {
    pub id: String,
    pub from: String,
    pub to: String,
}

/// A published metric value. Rates have `value = numerator / denominator`, or `null` ("no
/// data") when the denominator is 0; backlog is a count; resolution_time's value is the mean in
/// minutes (numerator = total minutes, denominator = dossiers); score_766's value is the
/// percentage of the covered indicators' points earned (numerator and denominator in
/// thousandths of a point).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricValue {
    pub metric: Metric,
    pub scope: Scope,
    pub window: WindowBounds,
    pub numerator: i64,
    pub denominator: Option<i64>,
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Detail>,
    /// The ledger size and root this value was computed at.
    pub tree_size: u64,
    pub root: String,
}

impl MetricValue {
    /// Key in the METRICS bucket: `<metric>.<scope token>.<window id>`.
    pub fn key(&self) -> String {
        key(self.metric, &self.scope, &self.window.id)
    }

    /// "No data": nothing counted in the window (the publication of a value that went away).
    pub fn is_no_data(&self) -> bool {
        self.numerator == 0 && self.denominator.unwrap_or(0) == 0 && self.value.is_none()
    }

    /// The order values are shown in: by scope, metric, then window start and id.
    pub fn display_order(&self) -> (&Scope, Metric, &str, &str) {
        (&self.scope, self.metric, &self.window.from, &self.window.id)
    }

    /// Equal as numbers and bounds (tree size and root aside).
    pub fn same_figures(&self, other: &MetricValue) -> bool {
        self.metric == other.metric
            && self.scope == other.scope
            && self.window == other.window
            && self.numerator == other.numerator
            && self.denominator == other.denominator
            && self.value == other.value
            && self.detail == other.detail
    }
}

pub fn key(metric: Metric, scope: &Scope, window_id: &str) -> String {
    format!("{}.{}.{}", metric.name(), scope.token(), window_id)
}

/// A window's sums, from which every metric's value is derived.
pub(crate) struct WindowSums<'a> {
    /// Flow counts summed over the window's days.
    pub flows: Counts,
    /// Gauge levels at the window's last day.
    pub levels: Counts,
    /// Whether any gauge count changed on or before the window's last day.
    pub gauge_seen: bool,
    /// The buckets of the window's days, for resolution-time quantiles.
    pub days: Vec<&'a Bucket>,
}

/// numerator, denominator, value, detail.
pub(crate) type Figures = (i64, Option<i64>, Option<f64>, Option<Detail>);

/// The figures of `metric` over a window, or `None` when nothing was counted.
pub(crate) fn figures(metric: Metric, sums: &WindowSums<'_>) -> Option<Figures> {
    let ratio = |n: i64, d: i64| (d > 0).then(|| n as f64 / d as f64);
    match metric {
        Metric::Score766 => {
            let mut indicators = Vec::new();
            for indicator in INDICATORS.iter() {
                if let Some((n, d, Some(rate), _)) = figures(indicator.metric, sums) {
                    debug_assert!(d.is_some() && n >= 0);
                    indicators.push(IndicatorScore {
                        indicator: indicator.id.clone(),
                        metric: indicator.metric.name().into(),
                        rate,
                        threshold: indicator.threshold,
                        points: indicator.points,
                        earned: indicator_points(indicator, rate),
                    });
                }
            }
            if indicators.is_empty() {
                return None;
            }
            let points: f64 = indicators.iter().map(|i| i.earned).sum();
            let max_points: f64 = indicators.iter().map(|i| i.points).sum();
            Some((
                (points * 1000.0).round() as i64,
                Some((max_points * 1000.0).round() as i64),
                Some(100.0 * points / max_points),
                Some(Detail::Score {
                    points,
                    max_points,
                    indicators,
                }),
            ))
        }
        Metric::Backlog => {
            let n = sums.levels[Field::BacklogDelta as usize];
            sums.gauge_seen.then_some((n, None, Some(n as f64), None))
        }
        Metric::Overdue | Metric::ProceduresFullOnlineShare => {
            let (nf, df) = metric.rate_fields().expect("a rate");
            let (n, d) = (sums.levels[nf as usize], sums.levels[df as usize]);
            (sums.gauge_seen && (n != 0 || d != 0)).then(|| (n, Some(d), ratio(n, d), None))
        }
        Metric::ResolutionTime => {
            let (n, d) = (
                sums.flows[Field::TimedMinutes as usize],
                sums.flows[Field::Timed as usize],
            );
            if d <= 0 {
                return None;
            }
            let mut merged: BTreeMap<u32, u64> = BTreeMap::new();
            for bucket in &sums.days {
                for (&b, &c) in &bucket.minutes {
                    *merged.entry(b).or_default() += u64::from(c);
                }
            }
            let total = merged.values().sum();
            Some((
                n,
                Some(d),
                ratio(n, d),
                Some(Detail::ResolutionTime {
                    mean_minutes: n as f64 / d as f64,
                    p50_minutes: quantile(&merged, total, 0.5),
                    p90_minutes: quantile(&merged, total, 0.9),
                }),
            ))
        }
        _ => {
            let (nf, df) = metric.rate_fields().expect("a rate");
            let (n, d) = (sums.flows[nf as usize], sums.flows[df as usize]);
            (n != 0 || d != 0).then(|| (n, Some(d), ratio(n, d), None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_give_full_points_and_scale_below() {
        let online = INDICATORS.iter().find(|i| i.id == "3.3").unwrap();
        assert_eq!((online.threshold, online.points), (0.5, 6.0));
        assert_eq!(indicator_points(online, 0.5), 6.0);
        assert_eq!(indicator_points(online, 0.9), 6.0);
        assert_eq!(indicator_points(online, 0.25), 3.0);
        assert_eq!(indicator_points(online, 0.0), 0.0);
    }

    #[test]
    fn quantiles_stay_within_one_percent() {
        let values: Vec<u32> = (1..=5000).map(|i| i * 37 % 100_000 + 1).collect();
        let mut merged = BTreeMap::new();
        for &v in &values {
            *merged.entry(minute_bucket(v)).or_insert(0u64) += 1;
        }
        let mut sorted = values.clone();
        sorted.sort();
        for q in [0.5, 0.9, 0.99] {
            let exact = sorted[((q * sorted.len() as f64).ceil() as usize) - 1] as f64;
            let got = quantile(&merged, values.len() as u64, q) as f64;
            assert!(
                (got - exact).abs() <= exact * 0.01 + 1.0,
                "q{q}: {got} vs {exact}"
            );
        }
    }

    #[test]
    fn metric_names_round_trip() {
        for metric in METRICS {
            assert_eq!(Metric::parse(metric.name()), Some(metric));
            let json = serde_json::to_string(&metric).unwrap();
            assert_eq!(json, format!("\"{}\"", metric.name()));
        }
        assert!(Metric::Backlog.is_gauge() && Metric::Overdue.is_gauge());
        assert!(Metric::ProceduresFullOnlineShare.is_gauge());
        assert!(!Metric::OnTimeRate.is_gauge() && !Metric::Score766.is_gauge());
    }
}
