//! The record of one RPC: when it ends (however it ends — a dropped handler means the client went away) it
//! writes one structured log line and its metrics, and fills the response trailers. Key name, model, upstream,
//! status, latency, tokens, cost; never the client key, the upstream key or any prompt or answer text.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use prometheus::Histogram;
use tokio::time::Instant;

use crate::{
    admission::auth::Identity, core::gateway::Gateway, error::GatewayError, proto::Usage,
    routing::router::Model, transport::trailers::TrailerSlot,
};

/// What the dispatcher did for a call, whether it succeeded or not: for its log line and metrics.
#[derive(Debug, Default)]
pub struct Trail {
    /// The upstream of the last attempt ("" when none was made).
    pub upstream: String,
    pub attempts: u32,
    /// Waiting on upstream answers, every attempt's.
    pub upstream_time: Duration,
    /// Waiting for a retry: backoff, an upstream's Retry-After, a route cooling down.
    pub waited: Duration,
}

/// Where an RPC's time went. Overhead is what is left: end-to-end minus upstream, client and retry waits.
#[derive(Debug)]
pub struct Timing {
    pub start: Instant,
    /// Waiting on upstream answers (every attempt, and every read of a stream).
    pub upstream: Duration,
    /// Blocked on a slow client (a full response channel).
    pub client_wait: Duration,
    /// Waiting between attempts (see [`Trail::waited`]).
    pub retry_wait: Duration,
    first_token: Option<Duration>,
    last_delta: Option<Instant>,
    gap: Option<Histogram>,
    /// False for InteractiveStream: a session's wall time includes waiting for the user, so "overhead"
    /// would be meaningless there.
    pub overhead_applies: bool,
}

impl Default for Timing {
    fn default() -> Self {
        Timing::new()
    }
}

impl Timing {
    pub fn new() -> Timing {
        Timing {
            start: Instant::now(),
            upstream: Duration::ZERO,
            client_wait: Duration::ZERO,
            retry_wait: Duration::ZERO,
            first_token: None,
            last_delta: None,
            gap: None,
            overhead_applies: true,
        }
    }

    /// A delta went to the client now.
    pub fn delta_sent(&mut self) {
        let now = Instant::now();
        if self.first_token.is_none() {
            self.first_token = Some(now - self.start);
        }
        if let (Some(last), Some(gap)) = (self.last_delta, &self.gap) {
            gap.observe((now - last).as_secs_f64());
        }
        self.last_delta = Some(now);
    }

    pub fn overhead(&self) -> Duration {
        self.start
            .elapsed()
            .saturating_sub(self.upstream + self.client_wait + self.retry_wait)
    }
}

/// Dollars per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

impl Price {
    pub fn cost(&self, usage: &Usage) -> f64 {
        (f64::from(usage.prompt_tokens.max(0)) * self.input
            + f64::from(usage.completion_tokens.max(0)) * self.output)
            / 1e6
    }
}

pub struct RpcLog {
    rpc: &'static str,
    key: String,
    request_id: String,
    model: String,
    price: Price,
    upstream: String,
    usage: Usage,
    /// Some usage was counted by the gateway because the upstream sent none.
    estimated: bool,
    cost: f64,
    /// Turns answered, for InteractiveStream.
    turns: u32,
    /// Upstream attempts (more than one: retries or fallbacks).
    attempts: u32,
    /// The response cache's part: "hit", "miss", "bypass", or "" when the model does not cache.
    cache: &'static str,
    pub timing: Timing,
    gw: Arc<Gateway>,
    who: Arc<Identity>,
    trailers: Option<Arc<TrailerSlot>>,
    /// Set by `finish`; a log dropped unfinished means the client went away (the handler future was dropped).
    outcome: Option<(tonic::Code, &'static str)>,
}

impl RpcLog {
    pub fn new(
        rpc: &'static str,
        gw: Arc<Gateway>,
        who: Arc<Identity>,
        request_id: &str,
        trailers: Option<Arc<TrailerSlot>>,
    ) -> RpcLog {
        gw.metrics.in_flight.with_label_values(&[rpc]).inc();
        gw.signal.count();
        RpcLog {
            rpc,
            key: who.name.clone(),
            request_id: request_id.to_owned(),
            model: String::new(),
            price: Price::default(),
            upstream: String::new(),
            usage: Usage::default(),
            estimated: false,
            cost: 0.0,
            turns: 0,
            attempts: 0,
            cache: "",
            timing: Timing::new(),
            gw,
            who,
            trailers,
            outcome: None,
        }
    }

    /// The request is for this model: from here it counts in the model's usage.
    pub fn model(&mut self, model: &Model) {
        model.name.clone_into(&mut self.model);
        self.price = model.price;
        self.timing.gap = Some(self.gw.metrics.chunk_gap.with_label_values(&[&model.name]));
        self.gw.usage.request(&self.key, &self.model);
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// What the response cache did for this call (see [`crate::core::cache::Plan`]).
    pub fn cache(&mut self, label: &'static str) {
        self.cache = label;
    }

    /// What the dispatcher did: the upstream of its last attempt, how many attempts in all, how long it
    /// waited between them. Called whether the call succeeded or not.
    pub fn dispatched(&mut self, trail: &Trail) {
        if !trail.upstream.is_empty() {
            trail.upstream.clone_into(&mut self.upstream);
        }
        self.attempts += trail.attempts;
        self.timing.upstream += trail.upstream_time;
        self.timing.retry_wait += trail.waited;
    }

    /// Adds a completed answer's usage (one per turn for InteractiveStream); returns its cost.
    pub fn add_usage(&mut self, usage: Option<&Usage>, estimated: bool) -> f64 {
        self.turns += 1;
        let Some(u) = usage else { return 0.0 };
        self.usage.prompt_tokens = self.usage.prompt_tokens.saturating_add(u.prompt_tokens);
        self.usage.completion_tokens = self
            .usage
            .completion_tokens
            .saturating_add(u.completion_tokens);
        self.usage.total_tokens = self.usage.total_tokens.saturating_add(u.total_tokens);
        self.estimated |= estimated;
        let cost = self.price.cost(u);
        self.cost += cost;
        // Booked as it happens, so a budget or the usage API sees a session's turns one by one.
        self.gw
            .usage
            .usage(&self.key, &self.model, u.total_tokens.max(0) as u64, cost);
        if cost > 0.0 {
            self.who.limiter.add_spend(cost, SystemTime::now());
            if let Some(shared) = &self.gw.shared {
                shared.add_spend(&self.key, cost);
            }
        }
        cost
    }

    /// Records the outcome and fills the trailers; the line and the metrics are written when the log is
    /// dropped. Errors are logged by code and label only: their messages can quote the upstream.
    pub fn finish(mut self, outcome: Result<(), &GatewayError>) {
        self.outcome = Some(match outcome {
            Ok(()) => (tonic::Code::Ok, ""),
            Err(e) => (e.code(), e.label()),
        });
        if let Some(slot) = &self.trailers {
            let overhead = self.timing.overhead_applies.then(|| self.timing.overhead());
            slot.set(overhead, (self.cost > 0.0).then_some(self.cost));
        }
    }

    fn record_metrics(&self, code: tonic::Code) {
        let m = &self.gw.metrics;
        let elapsed = self.timing.start.elapsed().as_secs_f64();
        m.in_flight.with_label_values(&[self.rpc]).dec();
        m.requests
            .with_label_values(&[self.rpc, &self.model, &self.key, code_name(code)])
            .inc();
        m.duration
            .with_label_values(&[self.rpc, &self.model])
            .observe(elapsed);
        if self.timing.overhead_applies {
            m.overhead
                .with_label_values(&[self.rpc, &self.model])
                .observe(self.timing.overhead().as_secs_f64());
        }
        if !self.upstream.is_empty() {
            m.upstream_duration
                .with_label_values(&[&self.model, &self.upstream])
                .observe(self.timing.upstream.as_secs_f64());
        }
        if let Some(ttft) = self.timing.first_token {
            m.first_token
                .with_label_values(&[&self.model])
                .observe(ttft.as_secs_f64());
        }
        let estimated = if self.estimated { "true" } else { "false" };
        for (kind, n) in [
            ("prompt", self.usage.prompt_tokens),
            ("completion", self.usage.completion_tokens),
        ] {
            if n > 0 {
                m.tokens
                    .with_label_values(&[&self.model, &self.key, kind, estimated])
                    .inc_by(n as u64);
            }
        }
        if self.cost > 0.0 {
            m.cost
                .with_label_values(&[&self.model, &self.key])
                .inc_by(self.cost);
        }
        if code == tonic::Code::Cancelled {
            m.cancellations.with_label_values(&[self.rpc]).inc();
        }
    }
}

/// The canonical upper-case gRPC code name, as a label.
pub fn code_name(code: tonic::Code) -> &'static str {
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

impl Drop for RpcLog {
    fn drop(&mut self) {
        let latency_ms = self.timing.start.elapsed().as_secs_f64() * 1000.0;
        // Left out for sessions, whose wall time includes waiting for the user.
        let overhead_us = self
            .timing
            .overhead_applies
            .then(|| self.timing.overhead().as_micros() as u64);
        let (code, error) = self
            .outcome
            .unwrap_or((tonic::Code::Cancelled, "client_gone"));
        self.record_metrics(code);
        tracing::info!(
            target: "aigw::rpc",
            rpc = self.rpc,
            key = %self.key,
            request_id = %self.request_id,
            model = %self.model,
            upstream = %self.upstream,
            code = code_name(code),
            error,
            latency_ms = format_args!("{latency_ms:.2}"),
            overhead_us,
            prompt_tokens = self.usage.prompt_tokens,
            completion_tokens = self.usage.completion_tokens,
            usage_estimated = self.estimated,
            cost_usd = format_args!("{:.6}", self.cost),
            turns = self.turns,
            attempts = self.attempts,
            cache = self.cache,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_between_attempts_are_not_overhead() {
        let mut timing = Timing::new();
        tokio::time::advance(Duration::from_millis(1500)).await;
        timing.upstream = Duration::from_millis(400);
        let trail = Trail {
            upstream: "a".into(),
            attempts: 2,
            upstream_time: Duration::from_millis(100),
            waited: Duration::from_secs(1),
        };
        timing.upstream += trail.upstream_time;
        timing.retry_wait += trail.waited;
        assert_eq!(timing.overhead(), Duration::ZERO);
    }
}
