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

    /// Takes the next snapshot (the oldest goes past [`Self::KEEP`]). It reads the calls by code and the three
    /// charted histograms alone, never the whole registry: every key's series made that tens of milliseconds
    /// on a runtime worker at thousands of keys (`cargo bench --bench charts`).
    pub(crate) fn record(&self, registry: &crate::observe::metrics::Metrics, outlook: Outlook) {
        use prometheus::core::Collector;
        let mut metrics = BTreeMap::new();
        let calls: Vec<Series> = registry
            .calls_by_code()
            .map(|(code, n)| Series {
                labels: [("code".to_owned(), code.to_owned())].into(),
                value: Some(n as f64),
                count: None,
                sum: None,
                buckets: Vec::new(),
            })
            .collect();
        if !calls.is_empty() {
            metrics.insert("aigw_requests_total".to_owned(), calls);
        }
        for histogram in [
            &registry.duration,
            &registry.first_token,
            &registry.overhead,
        ] {
            for f in histogram.collect() {
                if !f.get_metric().is_empty() {
                    metrics.insert(f.name().to_owned(), vec![summed_histogram(&series(&f))]);
                }
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

/// For `benches/charts.rs`: a registry where `keys` keys have each made calls (two codes) and used tokens, and
/// what the bench times on it: one history snapshot, and one scrape's text.
#[doc(hidden)]
pub fn bench_registry(keys: usize) -> (impl FnMut(), impl FnMut() -> usize) {
    let metrics = std::sync::Arc::new(crate::observe::metrics::Metrics::new());
    for k in 0..keys {
        let key = format!("key-{k}");
        metrics.count_call("generate", "m", &key, tonic::Code::Ok);
        metrics.count_call("stream_generate", "m", &key, tonic::Code::Unavailable);
        for kind in ["input", "output"] {
            metrics
                .tokens
                .with_label_values(&["m", &key, kind, "false"])
                .inc();
        }
        metrics
            .duration
            .with_label_values(&["generate", "m"])
            .observe(0.01);
    }
    let history = History::default();
    let outlook = Outlook {
        last_minute: 0,
        forecast_peak_per_minute: 0.0,
        recommended_replicas: 1,
    };
    let scraped = metrics.clone();
    (
        move || history.record(&metrics, outlook),
        move || scraped.render().len(),
    )
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

    /// What a snapshot says of the calls (by code, summed over every other label) and of the charted
    /// histograms (summed over their series) is what the whole registry's families say, read without them.
    #[test]
    fn a_snapshot_sums_the_calls_and_histograms_as_the_registry_does() {
        let metrics = crate::observe::metrics::Metrics::new();
        for k in 0..50 {
            let key = format!("key-{k}");
            metrics.count_call("generate", "m", &key, tonic::Code::Ok);
            metrics.count_call("stream_generate", "n", &key, tonic::Code::Ok);
            if k % 10 == 0 {
                metrics.count_call("generate", "m", &key, tonic::Code::Unavailable);
            }
            metrics
                .duration
                .with_label_values(&["generate", if k % 2 == 0 { "m" } else { "n" }])
                .observe(0.001 * k as f64);
        }
        metrics.count_call("", "", "", tonic::Code::Unauthenticated);
        let history = History::default();
        history.record(
            &metrics,
            Outlook {
                last_minute: 0,
                forecast_peak_per_minute: 0.0,
                recommended_replicas: 1,
            },
        );
        let snap = history.snapshots().pop().unwrap();

        let families = metrics.gather();
        let family = |name: &str| families.iter().find(|f| f.name() == name).unwrap();
        let mut want: BTreeMap<String, f64> = BTreeMap::new();
        for s in series(family("aigw_requests_total")) {
            *want.entry(s.labels["code"].clone()).or_default() += s.value.unwrap();
        }
        let got: BTreeMap<String, f64> = snap.metrics["aigw_requests_total"]
            .iter()
            .map(|s| (s.labels["code"].clone(), s.value.unwrap()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(got["OK"], 100.0);
        assert_eq!(got["UNAVAILABLE"], 5.0);
        assert_eq!(got["UNAUTHENTICATED"], 1.0);

        let summed = summed_histogram(&series(family("aigw_request_duration_seconds")));
        let kept = &snap.metrics["aigw_request_duration_seconds"];
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].count, Some(50));
        assert_eq!(kept[0].count, summed.count);
        assert_eq!(kept[0].buckets, summed.buckets);
        // Families with nothing in them and the uncharted ones are left out.
        assert!(!snap
            .metrics
            .contains_key("aigw_time_to_first_token_seconds"));
        assert!(!snap.metrics.contains_key("aigw_tokens_total"));
    }
}
