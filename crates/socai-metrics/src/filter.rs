//! Which metric values a reader asks for: metrics, a scope (a kind, or one scope), a window
//! (an id, a kind, or all). Shared by `socai metrics` and the HTTP API.

use crate::metric::{METRICS, Metric, MetricValue};
use crate::scope::{Scope, ScopeKind};
use crate::time::{WINDOW_KINDS, Window};

/// A parameter that does not parse: which one, and what it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param} {value:?}: {expected}")]
pub struct FilterError {
    /// `metric`, `scope` or `window`.
    pub param: &'static str,
    pub value: String,
    pub expected: String,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Filter {
    /// Empty: every metric.
    pub metrics: Vec<Metric>,
    /// A kind, and optionally one code of it.
    pub scope: Option<(ScopeKind, Option<String>)>,
    /// A window id (`month.2026-03`), a kind (`day`), or `all`; `None` is all.
    pub window: Option<String>,
}

impl Filter {
    /// Parses the three parameters (`window` defaults to `default_window`).
    pub fn parse(
        metrics: &[String],
        scope: Option<&str>,
        window: Option<&str>,
        default_window: &str,
    ) -> Result<Filter, FilterError> {
        let metrics = metrics
            .iter()
            .map(|m| {
                Metric::parse(m).ok_or_else(|| FilterError {
                    param: "metric",
                    value: m.clone(),
                    expected: format!(
                        "not a metric; one of: {}",
                        METRICS.map(Metric::name).join(", ")
                    ),
                })
            })
            .collect::<Result<_, _>>()?;
        let scope = match scope {
            None => None,
            Some(text) => match (ScopeKind::parse(text), Scope::parse(text)) {
                (Some(kind), _) => Some((kind, None)),
                // Codes are MaDonVi, MaTTHC and Hnn: letters, digits, dots, dashes. Anything
                // else (spaces, NATS wildcards) could never name a scope.
                (None, Some(s))
                    if !s
                        .code
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) =>
                {
                    return Err(FilterError {
                        param: "scope",
                        value: text.to_owned(),
                        expected: "a scope code has only letters, digits, '.', '-' and '_'".into(),
                    });
                }
                (None, Some(s)) => Some((s.kind, Some(s.code))),
                _ => {
                    return Err(FilterError {
                        param: "scope",
                        value: text.to_owned(),
                        expected: "expected national, province, agency, procedure, or one of them with a code (province:H01, agency:000.00.12.H01, procedure:1.004227)".into(),
                    });
                }
            },
        };
        let window = window.unwrap_or(default_window);
        if !(window == "all" || WINDOW_KINDS.contains(&window) || Window::parse(window).is_some()) {
            return Err(FilterError {
                param: "window",
                value: window.to_owned(),
                expected: format!(
                    "expected all, a kind ({}) or a window (day.2026-03-02, month.2026-03, quarter.2026-Q1, ytd.2026)",
                    WINDOW_KINDS.join(", ")
                ),
            });
        }
        Ok(Filter {
            metrics,
            scope,
            window: Some(window.to_owned()),
        })
    }

    pub fn matches(&self, v: &MetricValue) -> bool {
        let metric = self.metrics.is_empty() || self.metrics.contains(&v.metric);
        let scope = match &self.scope {
            None => true,
            Some((kind, code)) => {
                v.scope.kind == *kind && code.as_ref().is_none_or(|c| *c == v.scope.code)
            }
        };
        let window = match self.window.as_deref() {
            None | Some("all") => true,
            Some(w) if WINDOW_KINDS.contains(&w) => v.window.id.split('.').next() == Some(w),
            Some(w) => v.window.id == w,
        };
        metric && scope && window
    }

    /// Whether a live message's metric and scope token (`dvc.metrics.<metric>.<scope token>`)
    /// can carry values this filter matches (the window is checked per value).
    pub fn matches_subject(&self, metric: &str, scope_token: &str) -> bool {
        let metric_ok = self.metrics.is_empty() || self.metrics.iter().any(|m| m.name() == metric);
        let scope_ok = match &self.scope {
            None => true,
            Some((ScopeKind::National, _)) => scope_token == "national",
            Some((kind, None)) => scope_token
                .strip_prefix(kind.as_str())
                .is_some_and(|rest| rest.starts_with('.')),
            Some((kind, Some(code))) => {
                scope_token
                    == Scope {
                        kind: *kind,
                        code: code.clone(),
                    }
                    .token()
            }
        };
        metric_ok && scope_ok
    }

    /// The narrowest KV key filter (`<metric>.<scope token>.<window>` with NATS wildcards) that
    /// holds every key this filter matches; [`Filter::matches`] checks the rest.
    pub fn key_filter(&self) -> String {
        let metric = match self.metrics.as_slice() {
            [one] => one.name().to_owned(),
            _ => "*".to_owned(),
        };
        let scope = match &self.scope {
            Some((ScopeKind::National, _)) => Some("national".to_owned()),
            Some((kind, Some(code))) => Some(
                Scope {
                    kind: *kind,
                    code: code.clone(),
                }
                .token(),
            ),
            Some((kind, None)) => Some(format!("{}.*", kind.as_str())),
            None => None,
        };
        // A window id (rolling30 is both a kind and the one window of that kind).
        let exact_window = self
            .window
            .as_deref()
            .filter(|w| Window::parse(w).is_some());
        match (scope, exact_window) {
            (Some(scope), Some(window)) => format!("{metric}.{scope}.{window}"),
            (Some(scope), None) => format!("{metric}.{scope}.>"),
            (None, _) if metric != "*" => format!("{metric}.>"),
            (None, _) => ">".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(metrics: &[&str], scope: Option<&str>, window: Option<&str>) -> Filter {
        let metrics: Vec<String> = metrics.iter().map(|m| m.to_string()).collect();
        Filter::parse(&metrics, scope, window, "rolling30").unwrap()
    }

    #[test]
    fn key_filters() {
        for (f, expected) in [
            (filter(&[], None, Some("all")), ">"),
            (filter(&["on_time_rate"], None, None), "on_time_rate.>"),
            (
                filter(
                    &["on_time_rate"],
                    Some("province:H01"),
                    Some("month.2026-03"),
                ),
                "on_time_rate.province.H01.month.2026-03",
            ),
            (
                filter(&[], Some("agency:000.00.12.H01"), Some("day")),
                "*.agency.000-00-12-H01.>",
            ),
            (
                filter(&[], Some("province"), Some("ytd.2026")),
                "*.province.*.ytd.2026",
            ),
            (filter(&[], Some("national"), None), "*.national.rolling30"),
            (
                filter(&["on_time_rate", "backlog"], None, Some("rolling7")),
                ">",
            ),
        ] {
            assert_eq!(f.key_filter(), expected, "{f:?}");
        }
    }

    #[test]
    fn subjects_and_errors() {
        let f = filter(&["on_time_rate"], Some("province"), None);
        assert!(f.matches_subject("on_time_rate", "province.H01"));
        assert!(!f.matches_subject("on_time_rate", "procedure.1-004227"));
        assert!(!f.matches_subject("backlog", "province.H01"));
        let f = filter(&[], Some("province:H01"), None);
        assert!(f.matches_subject("backlog", "province.H01"));
        assert!(!f.matches_subject("backlog", "province.H02"));
        let e = Filter::parse(&["nope".into()], None, None, "all").unwrap_err();
        assert_eq!(e.param, "metric");
        let e = Filter::parse(&[], Some("county:1"), None, "all").unwrap_err();
        assert_eq!(e.param, "scope");
        for bad in [
            "province:>",
            "agency:a.*",
            "province:a b",
            "procedure:x\u{1}",
        ] {
            let e = Filter::parse(&[], Some(bad), None, "all").unwrap_err();
            assert_eq!(e.param, "scope", "{bad}");
        }
        let e = Filter::parse(&[], None, Some("week"), "all").unwrap_err();
        assert_eq!(e.param, "window");
    }
}
