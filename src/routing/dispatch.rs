//! One call to a model across its routes: balancing, fallback, retries, Retry-After, circuit breakers, rate-limit
//! cooling and the retry budget — all before the first chunk reaches the client.
//!
//! A gateway in front of a flaky upstream must make it look better, never worse. The rules:
//! 1. **Pick** a route whose breaker lets calls through, by the model's `balance`: routes not yet tried in
//!    this call first, then routes tried already; routes that are cooling down (see `cooling`) only when no
//!    other route is left, the one that warms up first.
//! 2. **A cooling route is waited for, never refused**: when every usable route is cooling, the call waits
//!    for the first to warm up if that comes before its deadline; otherwise it goes at once and lets the
//!    upstream decide. A model with one route keeps sending calls to it.
//! 3. **A 429 or 503 is about its own request**: the retry on the same route waits for the longer of the
//!    full-jitter backoff and the wait the upstream asked for (`Retry-After`, `retry-after-ms`; on any
//!    retryable status), already clamped to the upstream's `max_retry_after`. Another route is tried at once.
//!    One answer never cools a route for other callers; only a sustained signal does (`cooling`).
//! 4. **Never past the deadline**: a retry that cannot start before the deadline is not made, and the client
//!    gets the upstream's own error (with its Retry-After) rather than DEADLINE_EXCEEDED.
//! 5. **What is retried**: 429, 408, 5xx (not 501/505), connect and reset errors, stalls, and malformed
//!    answers; at most `attempts` tries in all, and only while the model's retry budget allows. The budget
//!    (0.6 of the requests plus ten a second, by default) is far above what an upstream's ordinary error rate
//!    needs and bites only in an outage.
//! 6. **Breakers fail fast**: when every route's breaker is open the call fails at once with UNAVAILABLE
//!    naming the upstreams: holding it would pile calls onto the failing upstream the breaker protects.
//!    Breakers count transport failures, 5xx and stalls only (`GatewayError::route_health`).
//!
//! A stream counts as started when the first piece of its answer (text, reasoning, a tool call's piece, or its
//! end) arrived: an upstream that answers 200 and then fails, stalls or sends a malformed chunk before that is
//! retried like any other failure; signs of life (role-only chunks, pings, comments) restart the wait
//! (`stream.first_event`) but do not start the answer. Once the answer has begun, the call is never retried: a
//! second generation would be billed again. An attempt that was accepted and then lost is counted in the trail
//! (`Trail::lost`) and booked, estimated, with the call. The caller is told when an upstream accepted the stream
//! (`Call::accepted`), so its response can start before the answer does.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    config::Balance,
    error::GatewayError,
    observe::metrics::Metrics,
    observe::telemetry,
    observe::timing::Trail,
    proto::{GenerationConfig, Message},
    routing::deadline::{self, Deadline},
    routing::retry,
    routing::router::{Model, RouteGuard},
    upstream::openai::embeddings::{EmbedAsk, Embeddings},
    upstream::openai::wire::ChatRequest,
    upstream::pass_through::PassThrough,
    upstream::{answer::Completion, answer::StreamEvent, configured::ChunkStream},
};

/// What the dispatcher needs of the gateway: where to count retries and fallbacks, and when the grace period
/// has ended.
#[derive(Clone, Copy)]
pub(crate) struct Handles<'a> {
    pub(crate) metrics: &'a Metrics,
    pub(crate) stop: &'a CancellationToken,
}

impl<'a> Handles<'a> {
    /// Runs `fut` within the call's deadline and the server's lifecycle (see [`deadline::bounded`]). `fut` is
    /// boxed (an upstream's call is most of a call's future, which would otherwise be copied whole at every
    /// level above it), and this is not an `async fn` (one would hold `fut` twice: its argument and the inner
    /// call's).
    fn bounded<T, F>(
        &self,
        deadline: Deadline,
        fut: F,
    ) -> impl std::future::Future<Output = Result<T, GatewayError>> + use<'a, T, F>
    where
        F: std::future::Future<Output = Result<T, GatewayError>>,
    {
        deadline::bounded(self.stop, deadline, Box::pin(fut))
    }
}

/// What is being asked, independent of the route.
pub(crate) struct Call<'a> {
    pub(crate) messages: &'a [Message],
    pub(crate) config: Option<&'a GenerationConfig>,
    /// What goes to the upstream unchanged.
    pub(crate) pass: &'a PassThrough,
    /// Set for embeddings (`messages` and `config` are then empty): the same routes, retries and breakers.
    pub(crate) embed: Option<EmbedAsk<'a>>,
    pub(crate) deadline: Deadline,
    pub(crate) request_id: &'a str,
    /// Told when an upstream accepted a stream (its status is 2xx), so the client's response can start before
    /// the answer's first piece.
    pub(crate) accepted: Option<&'a (dyn Fn() + Sync)>,
    /// The client's API headers, for upstreams of their dialect.
    pub(crate) api_headers: Option<&'a crate::upstream::api_headers::ApiHeaders>,
    /// The model name as the client asked for it: what a route with `model = "*"` sends upstream.
    pub(crate) requested: &'a str,
}

impl Call<'_> {
    /// `gen_ai.operation.name`.
    fn operation(&self) -> &'static str {
        if self.embed.is_some() {
            "embeddings"
        } else {
            "chat"
        }
    }
}

// Lives for one hand-over from the dispatcher to the relay: the size gap costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Answer {
    Whole(Completion),
    Embedded(Embeddings),
    /// A started stream: its first event (a delta, or the end of an empty answer) and the rest.
    Stream {
        first: StreamEvent,
        rest: ChunkStream,
    },
}

pub(crate) struct Dispatched {
    pub(crate) answer: Answer,
    /// The route that answered, counted as in flight until this is dropped.
    pub(crate) route: RouteGuard,
    /// The answering attempt's span: a stream's stays open until its relay ends, which records the answer.
    pub(crate) span: tracing::Span,
}

/// The route to try next, and when it warms up if it is cooling down.
#[derive(Debug, PartialEq, Eq)]
struct Pick {
    route: usize,
    cooling_until: Option<Instant>,
}

/// Chooses a route by the rules above; `None` when every route not `excluded` has its breaker open.
fn pick(model: &Model, tried: u64, excluded: u64, now: Instant) -> Option<Pick> {
    let routes = &model.routes;
    let closed = |i: usize| excluded & (1 << i) == 0 && routes[i].open_until(now).is_none();
    let warm = |i: usize| closed(i) && routes[i].cooling_until(now).is_none();
    let choose = |ok: &dyn Fn(usize) -> bool| -> Option<usize> {
        let mut candidates = (0..routes.len()).filter(|&i| ok(i));
        match model.policy.balance {
            Balance::Fallback => candidates.next(),
            Balance::LeastInFlight => candidates.min_by_key(|&i| routes[i].in_flight()),
            Balance::Weighted => {
                let total: u64 = candidates
                    .clone()
                    .map(|i| u64::from(routes[i].weight))
                    .sum();
                let mut ticket = fastrand::u64(0..total.max(1));
                candidates.find(|&i| {
                    let w = u64::from(routes[i].weight);
                    if ticket < w {
                        return true;
                    }
                    ticket -= w;
                    false
                })
            }
        }
    };
    if let Some(route) = choose(&|i| warm(i) && tried & (1 << i) == 0).or_else(|| choose(&warm)) {
        return Some(Pick {
            route,
            cooling_until: None,
        });
    }
    (0..routes.len())
        .filter(|&i| closed(i))
        .filter_map(|i| routes[i].cooling_until(now).map(|t| (t, i)))
        .min()
        .map(|(until, route)| Pick {
            route,
            cooling_until: Some(until),
        })
}

/// Sleeps until `until` within the call's bounds, counting the time as waited.
async fn wait(
    gw: &Handles<'_>,
    deadline: Deadline,
    until: Instant,
    trail: &mut Trail,
) -> Result<(), GatewayError> {
    let from = Instant::now();
    let slept = gw
        .bounded(deadline, async {
            tokio::time::sleep_until(until).await;
            Ok(())
        })
        .await;
    trail.waited += from.elapsed();
    slept
}

/// Sends `call` to `model`, streamed or not, following the rules above. `trail` records the attempts, the
/// last upstream and the time spent, whatever the outcome.
pub(crate) async fn dispatch(
    gw: &Handles<'_>,
    model: &Arc<Model>,
    call: &Call<'_>,
    stream: bool,
    trail: &mut Trail,
) -> Result<Dispatched, GatewayError> {
    let policy = &model.policy;
    model.budget.record_request(Instant::now());
    let mut tried = 0u64;
    let mut last: Option<GatewayError> = None;
    // Per route that asked for a wait in this call: not before then (empty, no allocation, on the happy path).
    let mut not_before: Vec<(usize, Instant)> = Vec::new();
    // Routes whose upstream asked for a wait as long as the gateway ever takes, or longer: not tried again in
    // this call (the client hears the wait at once rather than after the gateway slept it, twice).
    let mut waited_out = 0u64;
    let mut previous: Option<usize> = None;
    while trail.attempts < policy.retry.attempts {
        let now = Instant::now();
        if trail.attempts > 0 && !model.budget.try_retry(now) {
            tracing::debug!(model = %model.name, "retry budget exhausted");
            break;
        }
        // Claim a route: its breaker may refuse (a half-open probe already out), then try another.
        let mut excluded = waited_out;
        let mut picked = loop {
            let Some(p) = pick(model, tried, excluded, now) else {
                return Err(last.unwrap_or_else(|| breakers_open(model, now)));
            };
            if model.routes[p.route].breaker.allow(now) {
                break p;
            }
            excluded |= 1 << p.route;
        };
        let index = picked.route;
        let mut until = picked.cooling_until.take();
        if tried & (1 << index) != 0 {
            let n = trail.attempts;
            let backoff = now + retry::backoff(&policy.retry, n, fastrand::f64());
            let asked = not_before
                .iter()
                .filter(|(i, _)| *i == index)
                .map(|&(_, t)| t)
                .max();
            let retry_at = backoff.max(asked.unwrap_or(backoff));
            if retry_at >= call.deadline.at {
                break; // fail now with the upstream's error instead of sleeping into the deadline
            }
            until = until.max(Some(retry_at));
        }
        if let Some(until) = until.filter(|&t| t < call.deadline.at) {
            wait(gw, call.deadline, until, trail).await?;
        }
        trail.attempts += 1;
        if trail.attempts > 1 {
            gw.metrics.retries.with_label_values(&[&model.name]).inc();
        }
        if previous.is_some_and(|p| p != index) {
            gw.metrics.fallbacks.with_label_values(&[&model.name]).inc();
        }
        previous = Some(index);
        let guard = RouteGuard::new(model.clone(), index);
        let upstream = guard.route().upstream.name();
        upstream.clone_into(&mut trail.upstream);
        let sent = Instant::now();
        let route = guard.route();
        let span = telemetry::attempt_span(
            upstream,
            trail.attempts,
            route.upstream.provider(),
            &route.model,
            call.operation(),
        );
        let mut accepted = false;
        let result = try_route(gw, &guard, model, call, stream, &mut accepted)
            .instrument(span.clone())
            .await;
        if accepted && result.is_err() {
            trail.lost += 1;
        }
        trail.upstream_time += sent.elapsed();
        match result {
            Ok(answer) => {
                guard.route().report(Ok(()));
                if let Answer::Whole(c) = &answer {
                    telemetry::record_answer(
                        &span,
                        &c.id,
                        &c.model,
                        &c.finish_reason,
                        c.usage.as_ref(),
                    );
                }
                return Ok(Dispatched {
                    answer,
                    route: guard,
                    span,
                });
            }
            Err(e) => {
                span.record("error.type", e.label());
                guard.route().report(Err(&e));
                tracing::debug!(model = %model.name, upstream, attempt = trail.attempts, error = e.label(), "attempt failed");
                if !e.is_retryable() {
                    return Err(e);
                }
                if let Some(asked) = e.retry_after() {
                    let longest = guard.route().upstream.max_retry_after();
                    if longest.is_some_and(|longest| asked >= longest) {
                        waited_out |= 1 << index;
                    } else {
                        not_before.push((index, Instant::now() + asked));
                    }
                }
                tried |= 1 << index;
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| GatewayError::Internal("no attempt was made".into())))
}

/// Every route's breaker is open: UNAVAILABLE, naming the upstreams and when the first lets a probe through.
fn breakers_open(model: &Model, now: Instant) -> GatewayError {
    let next = model
        .routes
        .iter()
        .filter_map(|r| r.open_until(now))
        .min()
        .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
    let names: Vec<&str> = model.routes.iter().map(|r| r.upstream.name()).collect();
    GatewayError::UpstreamUnavailable {
        upstream: names.join("', '"),
        detail: format!(
            "its circuit breaker is open after repeated failures; the next probe in {}s",
            next.as_secs().max(1)
        ),
        retry_after: Some(next),
    }
}

/// One attempt on one route, bounded by the deadline, the grace period and (streams) the first-token limit.
async fn try_route(
    gw: &Handles<'_>,
    guard: &RouteGuard,
    model: &Model,
    call: &Call<'_>,
    stream: bool,
    accepted: &mut bool,
) -> Result<Answer, GatewayError> {
    let route = guard.route();
    let upstream = &route.upstream;
    if let Some(ask) = call.embed {
        return gw
            .bounded(
                call.deadline,
                upstream.embed(route.upstream_model(call.requested), ask, call.request_id),
            )
            .await
            .map(Answer::Embedded);
    }
    let mut req: ChatRequest<'_> = upstream.chat_request(
        route.upstream_model(call.requested),
        call.messages,
        call.config,
        call.pass,
        stream,
        model.default_output_tokens,
    );
    req.api_headers = call.api_headers;
    if route.strict {
        let left_out = req.left_out(upstream.dialect_name());
        if !left_out.is_empty() {
            return Err(GatewayError::InvalidArgument(format!(
                "upstream '{}' does not take {} and its route is strict: send the request without them, \
                 or use a model whose upstream speaks the client's API",
                upstream.name(),
                left_out.join(", ")
            )));
        }
    }
    if !stream {
        return gw
            .bounded(call.deadline, upstream.complete(&req, call.request_id))
            .await
            .map(Answer::Whole);
    }
    let first_event = model.policy.stream.first_event;
    let stalled = || GatewayError::UpstreamUnavailable {
        upstream: upstream.name().to_owned(),
        detail: format!(
            "nothing from the upstream for {} before its answer began",
            humantime::format_duration(first_event)
        ),
        retry_after: None,
    };
    gw.bounded(call.deadline, async {
        let mut rest = tokio::time::timeout(first_event, upstream.stream(&req, call.request_id))
            .await
            .map_err(|_| stalled())??;
        *accepted = true;
        if let Some(tell) = call.accepted {
            tell();
        }
        // Signs of life (a role-only chunk, pings, comments) restart the wait; the first piece of the answer
        // (or its end) starts the stream.
        loop {
            match tokio::time::timeout(first_event, rest.next()).await {
                Err(_) => return Err(stalled()),
                Ok(Some(Ok(first))) if first.is_answer() => {
                    return Ok(Answer::Stream { first, rest })
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => return Err(e),
                Ok(None) => {
                    return Err(GatewayError::Internal(
                        "the upstream stream ended before it began".into(),
                    ))
                }
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests;
