//! What the dashboard draws, as JSON: the metric families in a form the page takes deltas of, and the history
//! of the charts kept in the process, so a page drawn anew starts with the last minutes instead of empty charts.

use std::{collections::BTreeMap, time::SystemTime};

use prometheus::proto::{MetricFamily, MetricType};
use serde::Serialize;

use crate::observe::forecast::Outlook;

#[derive(Serialize, Clone)]
pub(crate) struct Series {
    labels: BTreeMap<String, String>,
    /// Counters and gauges.
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<f64>,
    /// Histograms: the observation count, their sum, and cumulative buckets as `[upper bound, count]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sum: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    buckets: Vec<(f64, u64)>,
}

#[derive(Serialize, Clone)]
pub(crate) struct Snapshot {
    pub(crate) time_ms: u128,
    pub(crate) outlook: crate::observe::forecast::Outlook,
    pub(crate) models: Vec<String>,
    pub(crate) metrics: BTreeMap<String, Vec<Series>>,
}

pub(crate) fn series(family: &MetricFamily) -> Vec<Series> {
    family
        .get_metric()
        .iter()
        .map(|m| {
            let labels = m
                .get_label()
                .iter()
                .map(|l| (l.name().to_owned(), l.value().to_owned()))
                .collect();
            let mut s = Series {
                labels,
                value: None,
                count: None,
                sum: None,
                buckets: Vec::new(),
            };
            match family.get_field_type() {
                MetricType::COUNTER => s.value = Some(m.get_counter().get_value()),
                MetricType::GAUGE => s.value = Some(m.get_gauge().get_value()),
                MetricType::HISTOGRAM => {
                    let h = m.get_histogram();
                    s.count = Some(h.get_sample_count());
                    s.sum = Some(h.get_sample_sum());
                    s.buckets = h
                        .get_bucket()
                        .iter()
                        .map(|b| (b.upper_bound(), b.cumulative_count()))
                        .collect();
                }
                MetricType::SUMMARY | MetricType::UNTYPED => {}
            }
            s
        })
        .collect()
}

/// What the charts draw, kept for a page drawn anew: a snapshot every [`History::EVERY`], the last
/// [`History::KEEP`] of them, reduced to the families the charts read (calls by status; the latency, first-token
/// and overhead histograms summed over their series) and the scaling outlook. A few kilobytes each.
#[derive(Default)]
pub(crate) struct History(std::sync::Mutex<std::collections::VecDeque<Snapshot>>);

impl History {
    pub(crate) const EVERY: std::time::Duration = std::time::Duration::from_secs(2);
    pub(crate) const KEEP: usize = 150;
    const CHARTED: [&'static str; 3] = [
        "aigw_request_duration_seconds",
        "aigw_time_to_first_token_seconds",
        "aigw_overhead_seconds",
    ];

    /// Takes the next snapshot (the oldest goes past [`Self::KEEP`]).
    pub(crate) fn record(&self, registry: &crate::observe::metrics::Metrics, outlook: Outlook) {
        let mut metrics = BTreeMap::new();
        for f in registry.gather() {
            let name = f.name();
            if name == "aigw_requests_total" {
                let mut by_code: BTreeMap<String, f64> = BTreeMap::new();
                for s in series(&f) {
                    let code = s.labels.get("code").cloned().unwrap_or_default();
                    *by_code.entry(code).or_default() += s.value.unwrap_or_default();
                }
                let summed = by_code
                    .into_iter()
                    .map(|(code, n)| Series {
                        labels: [("code".to_owned(), code)].into(),
                        value: Some(n),
                        count: None,
                        sum: None,
                        buckets: Vec::new(),
                    })
                    .collect();
                metrics.insert(name.to_owned(), summed);
            } else if Self::CHARTED.contains(&name) {
                metrics.insert(name.to_owned(), vec![summed_histogram(&series(&f))]);
            }
        }
        let snapshot = Snapshot {
            time_ms: now_ms(),
            outlook,
            models: Vec::new(),
            metrics,
        };
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.push_back(snapshot);
        while kept.len() > Self::KEEP {
            kept.pop_front();
        }
    }

    pub(crate) fn snapshots(&self) -> Vec<Snapshot> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter().cloned().collect()
    }
}

/// One histogram of a family's series: counts, sums and buckets added (the series share their bounds).
fn summed_histogram(all: &[Series]) -> Series {
    let mut out = Series {
        labels: BTreeMap::new(),
        value: None,
        count: Some(0),
        sum: Some(0.0),
        buckets: Vec::new(),
    };
    for s in all {
        out.count = Some(out.count.unwrap_or_default() + s.count.unwrap_or_default());
        out.sum = Some(out.sum.unwrap_or_default() + s.sum.unwrap_or_default());
        if out.buckets.is_empty() {
            out.buckets.clone_from(&s.buckets);
        } else {
            for (mine, theirs) in out.buckets.iter_mut().zip(&s.buckets) {
                mine.1 += theirs.1;
            }
        }
    }
    out
}

pub(crate) fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The history is bounded: past `KEEP` snapshots, the oldest go.
    #[test]
    fn the_history_keeps_the_last_snapshots_only() {
        let metrics = crate::observe::metrics::Metrics::new();
        let history = History::default();
        let outlook = |n: u64| Outlook {
            last_minute: n,
            forecast_peak_per_minute: 0.0,
            recommended_replicas: 1,
        };
        for n in 0..(History::KEEP as u64 + 10) {
            history.record(&metrics, outlook(n));
        }
        let kept = history.snapshots();
        assert_eq!(kept.len(), History::KEEP);
        assert_eq!(kept[0].outlook.last_minute, 10);
        assert_eq!(
            kept.last().unwrap().outlook.last_minute,
            History::KEEP as u64 + 9
        );
    }
}
