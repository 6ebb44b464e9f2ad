//! Prometheus metrics. Every label comes from a bounded set: configured key and model names, upstream names,
//! gRPC code names, RPC names and a few fixed words — never a raw request value (an unknown model is "").
//!
//! Latency histograms start at 50 µs so the gateway's sub-millisecond overhead is visible.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// gRPC's status codes, 0 (OK) to 16 (UNAUTHENTICATED).
const CODES: usize = 17;

/// The canonical upper-case gRPC code name, as a label.
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

pub(crate) struct Metrics {
    registry: Registry,
    /// Counted through [`Metrics::count_call`], with `calls_by_code`.
    requests: IntCounterVec,
    /// `aigw_requests_total` summed over every label but the code, for the dashboard's history: summing the
    /// family itself every two seconds read every key's series (72 ms at 10,000 keys, on a runtime worker).
    calls_by_code: [std::sync::atomic::AtomicU64; CODES],
    pub(crate) in_flight: IntGaugeVec,
    pub(crate) duration: HistogramVec,
    pub(crate) upstream_duration: HistogramVec,
    pub(crate) overhead: HistogramVec,
    pub(crate) first_token: HistogramVec,
    pub(crate) chunk_gap: HistogramVec,
    pub(crate) tokens: IntCounterVec,
    pub(crate) cost: prometheus::CounterVec,
    pub(crate) retries: IntCounterVec,
    pub(crate) fallbacks: IntCounterVec,
    pub(crate) breaker_state: IntGaugeVec,
    pub(crate) rejections: IntCounterVec,
    pub(crate) cancellations: IntCounterVec,
    pub(crate) cache: IntCounterVec,
    pub(crate) cache_entries: prometheus::IntGauge,
    pub(crate) cache_bytes: prometheus::IntGauge,
    pub(crate) shared_up: prometheus::IntGauge,
    pub(crate) requests_last_minute: prometheus::IntGauge,
    pub(crate) memory_held: prometheus::IntGauge,
    pub(crate) forecast_peak: prometheus::Gauge,
    pub(crate) recommended_replicas: prometheus::IntGauge,
    /// `[scaling] capacity_rpm_per_replica`: summed over replicas, the fleet's capacity (for the alert).
    pub(crate) capacity: prometheus::Gauge,
    /// Per key with a daily budget, read off the usage book when scraped: this replica's spend today and the
    /// budget (sum the spend over replicas, as the budget is the fleet's).
    pub(crate) spend_today: prometheus::GaugeVec,
    pub(crate) daily_budget: prometheus::GaugeVec,
    pub(crate) connections_open: IntGaugeVec,
    pub(crate) connections_closed: IntCounterVec,
    pub(crate) panics: IntCounterVec,
    pub(crate) records_dropped: prometheus::IntCounter,
    pub(crate) context_fallbacks: IntCounterVec,
}

// The metric definitions below are static: names, help and labels are literals that are valid, and registered
// once. Their `expect`s cannot fail at run time (a test builds every one), hence the allows.
#[allow(
    clippy::expect_used,
    reason = "static metric definition, built in every test"
)]
fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

#[allow(
    clippy::expect_used,
    reason = "static metric definition, built in every test"
)]
fn gauge(name: &str, help: &str) -> prometheus::IntGauge {
    prometheus::IntGauge::new(name, help).expect("static metric definition")
}

#[allow(
    clippy::expect_used,
    reason = "static metric definition, built in every test"
)]
fn histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .expect("static metric definition")
}

impl Metrics {
    #[allow(
        clippy::expect_used,
        reason = "static metric definitions, registered once, built in every test"
    )]
    pub(crate) fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::new(),
            requests: counter("aigw_requests_total", "RPCs by outcome.", &["rpc", "model", "key", "code"]),
            calls_by_code: Default::default(),
            in_flight: IntGaugeVec::new(Opts::new("aigw_in_flight", "RPCs in progress."), &["rpc"])
                .expect("static metric definition"),
            duration: histogram("aigw_request_duration_seconds", "End-to-end RPC latency.", &["rpc", "model"]),
            upstream_duration: histogram(
                "aigw_upstream_duration_seconds",
                "Time spent waiting on the upstream within an RPC.",
                &["model", "upstream"],
            ),
            overhead: histogram(
                "aigw_overhead_seconds",
                "Time the gateway itself added: end-to-end minus upstream time minus waiting for the client.",
                &["rpc", "model"],
            ),
            first_token: histogram("aigw_time_to_first_token_seconds", "RPC start to first delta sent.", &["model"]),
            chunk_gap: histogram("aigw_chunk_gap_seconds", "Gap between deltas from the upstream.", &["model"]),
            tokens: counter(
                "aigw_tokens_total",
                "Tokens by kind; estimated when the upstream reported no usage.",
                &["model", "key", "kind", "estimated"],
            ),
            cost: prometheus::CounterVec::new(
                Opts::new("aigw_cost_usd_total", "Spend in US dollars, from the model's price."),
                &["model", "key"],
            )
            .expect("static metric definition"),
            retries: counter("aigw_retries_total", "Upstream attempts after the first.", &["model"]),
            fallbacks: counter("aigw_fallbacks_total", "Attempts sent to another route than the last.", &["model"]),
            breaker_state: IntGaugeVec::new(
                Opts::new("aigw_breaker_state", "Circuit breaker per route: 0 closed, 1 half-open, 2 open."),
                &["model", "upstream"],
            )
            .expect("static metric definition"),
            rejections: counter("aigw_limit_rejections_total", "Calls refused by a limit.", &["key", "limit"]),
            cancellations: counter("aigw_cancellations_total", "RPCs the client cancelled.", &["rpc"]),
            cache: counter(
                "aigw_cache_requests_total",
                "Response cache: lookups by result (hit, miss, bypass) and answers stored.",
                &["model", "result"],
            ),
            cache_entries: gauge("aigw_cache_entries", "Answers in this replica's response cache."),
            cache_bytes: gauge(
                "aigw_cache_bytes",
                "Size of this replica's response cache (answer text plus a fixed allowance per entry and chunk).",
            ),
            shared_up: gauge(
                "aigw_shared_state_up",
                "1 while the shared state (Redis) answers, 0 while it does not (then limits hold per replica, \
                 or calls are refused, as [shared] on_failure says).",
            ),
            requests_last_minute: gauge(
                "aigw_requests_last_minute",
                "Requests this replica received in the last whole minute.",
            ),
            memory_held: gauge(
                "aigw_memory_held_bytes",
                "Bytes of the memory budget ([limits] memory_budget_mib) held now by requests being read, \
                 parsed and answered.",
            ),
            forecast_peak: prometheus::Gauge::new(
                "aigw_forecast_requests_per_minute",
                "The highest per-minute request count forecast for this replica over the scaling horizon; \
                 sum it over replicas and divide by the capacity per replica to size the fleet.",
            )
            .expect("static metric definition"),
            recommended_replicas: gauge(
                "aigw_recommended_replicas",
                "Replicas needed for this replica's forecast peak alone (a single-replica view).",
            ),
            capacity: prometheus::Gauge::new(
                "aigw_capacity_requests_per_minute",
                "The requests per minute one replica serves comfortably ([scaling] capacity_rpm_per_replica).",
            )
            .expect("static metric definition"),
            spend_today: prometheus::GaugeVec::new(
                Opts::new(
                    "aigw_key_spend_today_usd",
                    "Spend through this replica today (UTC), per key with a daily budget.",
                ),
                &["key"],
            )
            .expect("static metric definition"),
            daily_budget: prometheus::GaugeVec::new(
                Opts::new(
                    "aigw_key_daily_budget_usd",
                    "A key's daily budget in US dollars (fleet-wide with [shared]).",
                ),
                &["key"],
            )
            .expect("static metric definition"),
            connections_open: IntGaugeVec::new(
                Opts::new("aigw_connections_open", "Client connections open, by listener."),
                &["listener"],
            )
            .expect("static metric definition"),
            connections_closed: counter(
                "aigw_connections_closed_total",
                "Client connections the gateway closed or refused, by listener and reason \
                 (first_request_timeout, idle_timeout, evicted, refused).",
                &["listener", "reason"],
            ),
            context_fallbacks: counter(
                "aigw_context_fallbacks_total",
                "Requests sent to a larger-window model because they did not fit their own.",
                &["model", "to"],
            ),
            records_dropped: prometheus::IntCounter::new(
                "aigw_usage_records_dropped_total",
                "Usage records not written because the writer fell behind (the queue of 65,536 was full).",
            )
            .expect("static metric definition"),
            panics: counter(
                "aigw_panics_total",
                "Panics caught in request handlers and spawned tasks, by handler or task name; any is a bug.",
                &["where"],
            ),
        };
        let r = &m.registry;
        for c in [
            &m.requests,
            &m.tokens,
            &m.retries,
            &m.fallbacks,
            &m.context_fallbacks,
            &m.rejections,
            &m.cancellations,
            &m.cache,
            &m.connections_closed,
            &m.panics,
        ] {
            r.register(Box::new(c.clone()))
                .expect("unique metric names");
        }
        for h in [
            &m.duration,
            &m.upstream_duration,
            &m.overhead,
            &m.first_token,
            &m.chunk_gap,
        ] {
            r.register(Box::new(h.clone()))
                .expect("unique metric names");
        }
        for g in [&m.in_flight, &m.breaker_state, &m.connections_open] {
            r.register(Box::new(g.clone()))
                .expect("unique metric names");
        }
        r.register(Box::new(m.cost.clone()))
            .expect("unique metric names");
        for g in [
            &m.cache_entries,
            &m.cache_bytes,
            &m.requests_last_minute,
            &m.memory_held,
        ] {
            r.register(Box::new(g.clone()))
                .expect("unique metric names");
        }
        r.register(Box::new(m.forecast_peak.clone()))
            .expect("unique metric names");
        r.register(Box::new(m.recommended_replicas.clone()))
            .expect("unique metric names");
        r.register(Box::new(m.capacity.clone()))
            .expect("unique metric names");
        r.register(Box::new(m.records_dropped.clone()))
            .expect("unique metric names");
        for g in [&m.spend_today, &m.daily_budget] {
            r.register(Box::new(g.clone()))
                .expect("unique metric names");
        }
        #[cfg(target_os = "linux")]
        let _ = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        m
    }

    /// One call ended with `code`: `aigw_requests_total` and the calls by code.
    pub(crate) fn count_call(&self, rpc: &str, model: &str, key: &str, code: tonic::Code) {
        self.requests
            .with_label_values(&[rpc, model, key, code_name(code)])
            .inc();
        self.calls_by_code[code as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The calls counted so far by code (codes with none left out), as `aigw_requests_total` summed over its
    /// other labels would say.
    pub(crate) fn calls_by_code(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        (0..).zip(&self.calls_by_code).filter_map(|(code, n)| {
            let n = n.load(std::sync::atomic::Ordering::Relaxed);
            (n > 0).then(|| (code_name(tonic::Code::from_i32(code)), n))
        })
    }

    /// Every family, for the dashboard's JSON.
    pub(crate) fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.take_in_task_panics();
        self.registry.gather()
    }

    /// Brings `aigw_panics_total` up to the panics caught in spawned tasks (`observe::tasks`).
    fn take_in_task_panics(&self) {
        for (name, count) in super::tasks::panicked() {
            let counter = self.panics.with_label_values(&[name]);
            counter.inc_by(count.saturating_sub(counter.get()));
        }
    }

    /// `aigw_shared_state_up`, exported only by a gateway with `[shared]`: without it there is nothing to be
    /// down, and a 0 would fire the alert.
    pub(crate) fn watch_shared(&self) -> prometheus::IntGauge {
        // Registered once per gateway; a second registration would only fail as a duplicate.
        let _ = self.registry.register(Box::new(self.shared_up.clone()));
        self.shared_up.clone()
    }

    /// The text exposition format.
    pub(crate) fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// A listener's connection metrics: open connections, and closures by reason.
#[derive(Clone)]
pub(crate) struct ConnMetrics {
    /// The listener's label: "grpc" (the gateway's port), "admin".
    pub(crate) listener: &'static str,
    pub(crate) open: prometheus::IntGauge,
    /// By listener and `reason`: first_request_timeout, idle_timeout, evicted, refused.
    pub(crate) closed: IntCounterVec,
}

impl ConnMetrics {
    pub(crate) fn closed(&self, reason: &str) {
        self.closed
            .with_label_values(&[self.listener, reason])
            .inc();
    }
}

impl Metrics {
    /// The connection metrics of one listener.
    pub(crate) fn connections(&self, listener: &'static str) -> ConnMetrics {
        ConnMetrics {
            listener,
            open: self.connections_open.with_label_values(&[listener]),
            closed: self.connections_closed.clone(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
