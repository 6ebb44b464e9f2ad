//! What a benchmark run counts, and the report it prints: latency histograms (HdrHistogram, nanoseconds, three
//! significant digits, so memory stays fixed however long the run), outcomes by status, chunks and bytes.

use std::{collections::BTreeMap, fmt, sync::Mutex, time::Duration};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

/// How one call (or one interactive turn) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// A gRPC status other than OK.
    Grpc(tonic::Code),
    /// An HTTP status other than 200 from a REST target.
    Http(u16),
    /// The call broke without a status: connection lost, body cut short, a reply that breaks the protocol.
    Failed(&'static str),
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok => f.write_str("OK"),
            Self::Grpc(code) => f.write_str(crate::observe::metrics::code_name(*code)),
            Self::Http(status) => write!(f, "HTTP_{status}"),
            Self::Failed(why) => f.write_str(why),
        }
    }
}

/// One finished call, as the client saw it.
#[derive(Debug)]
pub struct Outcome {
    pub(crate) status: Status,
    /// When the first non-empty delta arrived (streams only).
    pub(crate) first_token: Option<Instant>,
    pub(crate) done: Instant,
    /// Non-empty deltas received.
    pub(crate) chunks: u64,
    /// Payload bytes: gRPC messages with their 5-byte frame prefix, or the HTTP body.
    pub(crate) request_bytes: u64,
    pub(crate) response_bytes: u64,
    /// The gateway's own `aigw-overhead-us` trailer, when it sent one.
    pub(crate) overhead_us: Option<u64>,
}

impl Outcome {
    pub(crate) fn failed(status: Status, request_bytes: u64) -> Outcome {
        Outcome {
            status,
            first_token: None,
            done: Instant::now(),
            chunks: 0,
            request_bytes,
            response_bytes: 0,
            overhead_us: None,
        }
    }
}

/// Collects outcomes from every worker. One lock per call: at tens of thousands of calls a second it is never
/// contended enough to show, and it keeps the histograms exact.
pub struct Recorder {
    /// Calls that started before this (the warm-up) are not counted.
    measure_from: Instant,
    tally: Mutex<Tally>,
}

struct Tally {
    /// The second being counted (by when calls ended), folded into `timeline` by `tick`.
    second: Second,
    second_latency: Histogram<u64>,
    timeline: Vec<Second>,
    latency: Histogram<u64>,
    ttft: Histogram<u64>,
    overhead: Histogram<u64>,
    lag: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
    chunks: u64,
    request_bytes: u64,
    response_bytes: u64,
    last_done: Option<Instant>,
}

#[allow(
    clippy::expect_used,
    reason = "constant bounds that hdrhistogram accepts"
)]
fn histogram() -> Histogram<u64> {
    // 1 ns .. 1 hour; the bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

impl Recorder {
    pub(crate) fn new(measure_from: Instant) -> Recorder {
        Recorder {
            measure_from,
            tally: Mutex::new(Tally {
                second: Second::default(),
                second_latency: histogram(),
                timeline: Vec::new(),
                latency: histogram(),
                ttft: histogram(),
                overhead: histogram(),
                lag: histogram(),
                ok: 0,
                errors: BTreeMap::new(),
                chunks: 0,
                request_bytes: 0,
                response_bytes: 0,
                last_done: None,
            }),
        }
    }

    pub(crate) fn measure_from(&self) -> Instant {
        self.measure_from
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a call that was meant to start at `start` (open loop: its slot in the schedule, so time spent
    /// queued in the client counts; closed loop: when it was sent).
    pub(crate) fn record(&self, start: Instant, outcome: Outcome) {
        if start < self.measure_from {
            return;
        }
        let mut t = self.tally();
        if outcome.status == Status::Ok {
            t.ok += 1;
            t.second.ok += 1;
            let took = nanos(outcome.done.saturating_duration_since(start));
            t.latency.saturating_record(took);
            t.second_latency.saturating_record(took);
            if let Some(first) = outcome.first_token {
                t.ttft
                    .saturating_record(nanos(first.saturating_duration_since(start)));
            }
            if let Some(us) = outcome.overhead_us {
                t.overhead.saturating_record(us.saturating_mul(1000).max(1));
            }
        }
        t.chunks += outcome.chunks;
        t.request_bytes += outcome.request_bytes;
        t.response_bytes += outcome.response_bytes;
        if outcome.status != Status::Ok {
            *t.errors.entry(outcome.status.to_string()).or_default() += 1;
            t.second.errors += 1;
        }
        t.last_done = Some(t.last_done.map_or(outcome.done, |d| d.max(outcome.done)));
    }

    /// Closes the second that ends `at_s` seconds after the warm-up: its row goes into the timeline and is
    /// returned with the run's totals so far, for the progress line.
    pub(crate) fn tick(&self, at_s: f64) -> Progress {
        let mut t = self.tally();
        let mut row = std::mem::take(&mut t.second);
        row.t = round3(at_s);
        let h = &mut t.second_latency;
        if !h.is_empty() {
            row.p50_us = Some(round1(h.value_at_quantile(0.5) as f64 / 1000.0));
            row.p99_us = Some(round1(h.value_at_quantile(0.99) as f64 / 1000.0));
        }
        h.reset();
        t.timeline.push(row);
        let errors = t.errors.values().sum::<u64>();
        Progress {
            seconds: at_s,
            calls: t.ok + errors,
            errors,
            last_second: row,
            p99_us: (!t.latency.is_empty())
                .then(|| round1(t.latency.value_at_quantile(0.99) as f64 / 1000.0)),
        }
    }

    /// Open loop: how late the pacer sent a call after its slot.
    pub(crate) fn lag(&self, intended: Instant, sent: Instant) {
        if intended >= self.measure_from {
            self.tally()
                .lag
                .saturating_record(nanos(sent.saturating_duration_since(intended)));
        }
    }

    pub(crate) fn report(&self, setup: Setup, planned: Duration) -> Report {
        let t = self.tally();
        let ok = t.ok;
        let calls = ok + t.errors.values().sum::<u64>();
        // The window runs until the last counted call ended, so calls still in flight at the deadline count.
        let window = t
            .last_done
            .map(|d| d.saturating_duration_since(self.measure_from))
            .filter(|w| !w.is_zero())
            .unwrap_or(planned)
            .as_secs_f64();
        let per_call = |bytes: u64| {
            if calls == 0 {
                0.0
            } else {
                round1(bytes as f64 / calls as f64)
            }
        };
        Report {
            setup,
            seconds: round3(window),
            calls,
            ok,
            errors: t.errors.clone(),
            throughput_per_s: round1(ok as f64 / window),
            latency_us: Summary::of(&t.latency),
            ttft_us: Summary::of(&t.ttft),
            gateway_overhead_us: Summary::of(&t.overhead),
            schedule_lag_us: Summary::of(&t.lag),
            chunks: t.chunks,
            chunks_per_s: round1(t.chunks as f64 / window),
            request_bytes_per_call: per_call(t.request_bytes),
            response_bytes_per_call: per_call(t.response_bytes),
            timeline: t.timeline.clone(),
            latency_curve: curve(&t.latency),
        }
    }
}

/// One second of the run, by when calls ended.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Second {
    /// Seconds after the warm-up at the end of this second.
    pub t: f64,
    pub ok: u64,
    pub errors: u64,
    /// OK calls that ended in this second.
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
}

/// The run so far, once a second.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub seconds: f64,
    pub calls: u64,
    pub errors: u64,
    pub last_second: Second,
    pub p99_us: Option<f64>,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p99 = self
            .p99_us
            .map_or("-".to_owned(), |us| format!("{:.2} ms", us / 1000.0));
        write!(
            f,
            "{:>6.0}s  calls {:>9}  rate {:>8.0}/s  errors {:>6}  p99 so far {p99}",
            self.seconds,
            self.calls,
            (self.last_second.ok + self.last_second.errors) as f64,
            self.errors
        )
    }
}

/// Latency at percentiles from 0 to 99.999, for the percentile plot: `(percentile, µs)`.
fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    // Evenly spaced in "nines": 0, 50, 75, 90, 95, 99, 99.5, 99.9, ... as -log10(1 - q) goes from 0 to 5.
    (0..=50)
        .map(|i| {
            let q = 1.0 - 10f64.powf(-f64::from(i) / 10.0);
            (
                round3(q * 100.0),
                round1(h.value_at_quantile(q) as f64 / 1000.0),
            )
        })
        .collect()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// What was run, echoed in the report so a JSON file explains itself.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub(crate) target: String,
    pub(crate) protocol: &'static str,
    pub(crate) rpc: &'static str,
    /// "closed" (fixed concurrency) or "open" (fixed arrival rate).
    pub load: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) concurrency: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rate_per_s: Option<f64>,
    pub(crate) connections: usize,
    pub(crate) warmup_s: f64,
}

/// Percentiles in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub count: u64,
    pub(crate) mean: f64,
    pub p50: f64,
    pub(crate) p90: f64,
    pub p99: f64,
    pub(crate) p999: f64,
    pub max: f64,
}

impl Summary {
    fn of(h: &Histogram<u64>) -> Option<Summary> {
        let us = |ns: u64| round1(ns as f64 / 1000.0);
        (!h.is_empty()).then(|| Summary {
            count: h.len(),
            mean: round1(h.mean() / 1000.0),
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        })
    }
}

/// The result of one run: printed as a table, or written as JSON (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub setup: Setup,
    /// The measured window: from the end of the warm-up to the last counted call's end.
    pub seconds: f64,
    pub calls: u64,
    pub ok: u64,
    /// Calls by status name ("RESOURCE_EXHAUSTED", "HTTP_503", ...); OK calls are not listed.
    pub errors: BTreeMap<String, u64>,
    pub throughput_per_s: f64,
    /// OK calls only, from the call's start (open loop: its scheduled start) to its last byte.
    pub latency_us: Option<Summary>,
    /// Streams: from the call's start to the first non-empty delta.
    pub ttft_us: Option<Summary>,
    /// The `aigw-overhead-us` trailer: the gateway's own account of the time it added.
    pub gateway_overhead_us: Option<Summary>,
    /// Open loop: how late calls left after their scheduled time (the client's own precision).
    pub schedule_lag_us: Option<Summary>,
    pub chunks: u64,
    pub(crate) chunks_per_s: f64,
    pub request_bytes_per_call: f64,
    pub response_bytes_per_call: f64,
    /// Second by second after the warm-up: calls ended OK and not, and the latency of those that ended.
    pub timeline: Vec<Second>,
    /// Latency (µs) at percentiles from 0 to 99.999: the percentile plot's line.
    pub latency_curve: Vec<(f64, f64)>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.setup;
        let load = match (s.concurrency, s.rate_per_s) {
            (_, Some(rate)) => format!("open loop, {rate}/s"),
            (Some(c), _) => format!("closed loop, concurrency {c}"),
            _ => s.load.to_owned(),
        };
        writeln!(
            f,
            "{} {} -> {} ({load}, {} connection(s))",
            s.protocol, s.rpc, s.target, s.connections
        )?;
        writeln!(
            f,
            "  calls {} ok {} in {:.3}s: {:.1}/s",
            self.calls, self.ok, self.seconds, self.throughput_per_s
        )?;
        for (status, n) in &self.errors {
            writeln!(f, "  error {status}: {n}")?;
        }
        writeln!(
            f,
            "  {:<18} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "(µs)", "mean", "p50", "p90", "p99", "p99.9", "max"
        )?;
        let rows = [
            ("latency", &self.latency_us),
            ("time to 1st token", &self.ttft_us),
            ("gateway overhead", &self.gateway_overhead_us),
            ("schedule lag", &self.schedule_lag_us),
        ];
        for (name, summary) in rows {
            if let Some(m) = summary {
                writeln!(
                    f,
                    "  {name:<18} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                    m.mean, m.p50, m.p90, m.p99, m.p999, m.max
                )?;
            }
        }
        if self.chunks > 0 {
            writeln!(f, "  chunks {} ({:.1}/s)", self.chunks, self.chunks_per_s)?;
        }
        write!(
            f,
            "  payload bytes per call: request {:.1}, response {:.1}",
            self.request_bytes_per_call, self.response_bytes_per_call
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> Setup {
        Setup {
            target: "t".into(),
            protocol: "grpc",
            rpc: "generate",
            load: "closed",
            concurrency: Some(1),
            rate_per_s: None,
            connections: 1,
            warmup_s: 1.0,
        }
    }

    fn ok_after(start: Instant, ms: u64) -> Outcome {
        Outcome {
            status: Status::Ok,
            first_token: Some(start + Duration::from_millis(ms / 2)),
            done: start + Duration::from_millis(ms),
            chunks: 2,
            request_bytes: 10,
            response_bytes: 30,
            overhead_us: Some(7),
        }
    }

    #[test]
    fn counts_only_after_warmup_and_reports_percentiles() {
        let t0 = Instant::now();
        let from = t0 + Duration::from_secs(1);
        let rec = Recorder::new(from);
        rec.record(t0, ok_after(t0, 500)); // warm-up: not counted
        for i in 1..=100 {
            rec.record(from, ok_after(from, i));
        }
        rec.record(
            from,
            Outcome::failed(Status::Grpc(tonic::Code::Unavailable), 10),
        );
        rec.record(from, Outcome::failed(Status::Http(503), 10));
        let r = rec.report(setup(), Duration::from_secs(1));
        assert_eq!((r.calls, r.ok), (102, 100));
        assert_eq!(r.errors.get("UNAVAILABLE"), Some(&1));
        assert_eq!(r.errors.get("HTTP_503"), Some(&1));
        let lat = r.latency_us.unwrap();
        assert_eq!(lat.count, 100);
        // 3 significant digits: within 0.1%.
        assert!((lat.p50 - 50_000.0).abs() <= 50.0, "{lat:?}");
        assert!((lat.p99 - 99_000.0).abs() <= 99.0, "{lat:?}");
        assert!((lat.max - 100_000.0).abs() <= 100.0, "{lat:?}");
        assert_eq!(r.gateway_overhead_us.unwrap().p50, 7.0);
        assert_eq!(r.chunks, 200);
        assert!(r.schedule_lag_us.is_none());
        // The window ends with the last call: 100 ms after the warm-up.
        assert!((r.seconds - 0.1).abs() < 1e-9, "{}", r.seconds);
        assert_eq!(r.throughput_per_s, 1000.0);
        assert_eq!(r.request_bytes_per_call, 10.0);
        assert_eq!(r.latency_curve.first().map(|p| p.0), Some(0.0));
        assert!((r.latency_curve.last().unwrap().0 - 99.999).abs() < 1e-9);
    }

    #[test]
    fn each_second_is_its_own_row() {
        let from = Instant::now();
        let rec = Recorder::new(from);
        for i in 1..=10 {
            rec.record(from, ok_after(from, i));
        }
        rec.record(from, Outcome::failed(Status::Http(503), 10));
        let first = rec.tick(1.0);
        assert_eq!((first.calls, first.errors), (11, 1));
        assert_eq!((first.last_second.ok, first.last_second.errors), (10, 1));
        assert!((first.last_second.p99_us.unwrap() - 10_000.0).abs() <= 10.0);
        // A quiet second: a row of zeros, the totals unchanged.
        let second = rec.tick(2.0);
        assert_eq!((second.calls, second.last_second.ok), (11, 0));
        assert_eq!(second.last_second.p50_us, None);
        let r = rec.report(setup(), Duration::from_secs(2));
        assert_eq!(r.timeline.len(), 2);
        assert_eq!((r.timeline[0].t, r.timeline[1].t), (1.0, 2.0));
        assert!(first.to_string().contains("calls        11"), "{first}");
    }
}
