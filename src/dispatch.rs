//! One call to a model across its routes: balancing, fallback, retries with backoff, circuit breakers,
//! Retry-After parking and the retry budget — all before the first chunk reaches the client.
//!
//! The rules, in order, for each attempt:
//! 1. Pick a route among those not parked (429 + Retry-After) and whose breaker lets calls through, by the
//!    model's `balance`; routes that already failed in this call come last. A route tried for the first time
//!    in this call goes at once (fallback); a route tried again waits a full-jitter backoff first.
//! 2. If no route can take calls because they are rate limited (parked), wait for the first to come back if
//!    that is within `max_backoff` and before the deadline. Otherwise — or when breakers are open — fail now
//!    with the last error (or RESOURCE_EXHAUSTED / UNAVAILABLE saying why no route could be used).
//! 3. Never wait past the deadline: a retry that cannot start in time is not made, and the client gets the
//!    upstream's error rather than DEADLINE_EXCEEDED.
//! 4. Retry only retryable errors (429, 408, 5xx, connect and reset errors, stalls), at most `attempts` tries in
//!    all, and only while the model's retry budget allows.
//!
//! A stream counts as started when its first delta (or its end) arrived: an upstream that answers 200 and then
//! fails or stalls before any content is retried like any other failure.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;
use tracing::Instrument;

use crate::{
    config::Balance,
    convert,
    deadline::Deadline,
    error::GatewayError,
    gateway::Gateway,
    openai::ChatRequest,
    proto::{GenerationConfig, Message},
    retry,
    router::{Model, RouteGuard},
    upstream::{ChunkStream, Completion, StreamEvent},
};

/// What is being asked, independent of the route.
pub struct Call<'a> {
    pub messages: &'a [Message],
    pub config: Option<&'a GenerationConfig>,
    pub deadline: Deadline,
    pub request_id: &'a str,
}

// Lives for one hand-over from the dispatcher to the relay: the size gap costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Answer {
    Whole(Completion),
    /// A started stream: its first event (a delta, or the end of an empty answer) and the rest.
    Stream {
        first: StreamEvent,
        rest: ChunkStream,
    },
}

pub struct Dispatched {
    pub answer: Answer,
    /// The route that answered, counted as in flight until this is dropped.
    pub route: RouteGuard,
    pub attempts: u32,
}

enum Pick {
    Route(usize),
    /// No route can take calls until then; `parked` when the first to return is rate limited.
    Wait {
        until: Instant,
        parked: bool,
    },
}

/// Chooses a route: untried ones first, by the model's balance; `excluded` routes are skipped.
fn pick(model: &Model, tried: u64, excluded: u64, now: Instant) -> Pick {
    let usable =
        |i: usize| excluded & (1 << i) == 0 && model.routes[i].unavailable_until(now).is_none();
    let choose = |ok: &dyn Fn(usize) -> bool| -> Option<usize> {
        let mut candidates = (0..model.routes.len()).filter(|&i| ok(i));
        match model.policy.balance {
            Balance::Fallback => candidates.next(),
            Balance::LeastInFlight => candidates.min_by_key(|&i| model.routes[i].in_flight()),
            Balance::Weighted => {
                let total: u64 = candidates
                    .clone()
                    .map(|i| u64::from(model.routes[i].weight))
                    .sum();
                let mut ticket = fastrand::u64(0..total.max(1));
                candidates.find(|&i| {
                    let w = u64::from(model.routes[i].weight);
                    if ticket < w {
                        return true;
                    }
                    ticket -= w;
                    false
                })
            }
        }
    };
    if let Some(i) = choose(&|i| usable(i) && tried & (1 << i) == 0).or_else(|| choose(&usable)) {
        return Pick::Route(i);
    }
    let (until, parked) = model
        .routes
        .iter()
        .filter_map(|r| r.unavailable_until(now).map(|t| (t, r.is_parked(now))))
        .min_by_key(|&(t, _)| t)
        .unwrap_or((now, false));
    Pick::Wait { until, parked }
}

/// Sends `call` to `model`, streamed or not, following the rules above.
/// Time spent waiting on upstream attempts is added to `upstream_time`.
pub async fn dispatch(
    gw: &Gateway,
    model: &Arc<Model>,
    call: &Call<'_>,
    stream: bool,
    upstream_time: &mut Duration,
) -> Result<Dispatched, GatewayError> {
    let policy = &model.policy;
    model.budget.record_request(Instant::now());
    let mut tried = 0u64;
    let mut last: Option<GatewayError> = None;
    let mut attempt = 0;
    let mut waited = false;
    let mut previous: Option<usize> = None;
    while attempt < policy.retry.attempts {
        let now = Instant::now();
        if attempt > 0 && !model.budget.try_retry(now) {
            tracing::debug!(model = %model.name, "retry budget exhausted");
            break;
        }
        // Claim a route: its breaker may refuse (a half-open probe already out), then try another.
        let mut excluded = 0u64;
        let index = loop {
            match pick(model, tried, excluded, now) {
                Pick::Route(i) if model.routes[i].breaker.allow(now) => break Ok(i),
                Pick::Route(i) => excluded |= 1 << i,
                Pick::Wait { until, parked } => {
                    let wait = until.saturating_duration_since(now);
                    // Only a rate-limit park is waited out; an open breaker fails fast, or it would hold
                    // calls on the failing upstream it exists to protect.
                    if waited
                        || !parked
                        || wait > policy.retry.max_backoff
                        || until >= call.deadline.at
                    {
                        return Err(last.unwrap_or_else(|| no_route(model, wait, parked)));
                    }
                    break Err(until);
                }
            }
        };
        let index = match index {
            Ok(index) => index,
            Err(until) => {
                // Every route is out for a moment: wait once for the first to return, then pick again.
                waited = true;
                gw.bounded(call.deadline, async {
                    tokio::time::sleep_until(until).await;
                    Ok(())
                })
                .await?;
                continue;
            }
        };
        attempt += 1;
        if tried & (1 << index) != 0 {
            let delay = retry::backoff(&policy.retry, attempt - 1, fastrand::f64());
            if Instant::now() + delay >= call.deadline.at {
                break; // fail fast with the upstream's error instead of sleeping into the deadline
            }
            gw.bounded(call.deadline, async {
                tokio::time::sleep(delay).await;
                Ok(())
            })
            .await?;
        }
        if attempt > 1 {
            gw.metrics.retries.with_label_values(&[&model.name]).inc();
        }
        if previous.is_some_and(|p| p != index) {
            gw.metrics.fallbacks.with_label_values(&[&model.name]).inc();
        }
        previous = Some(index);
        let guard = RouteGuard::new(model.clone(), index);
        let sent = Instant::now();
        let span = tracing::info_span!(
            "upstream",
            upstream = guard.route().upstream.name(),
            attempt
        );
        let result = try_route(gw, &guard, model, call, stream)
            .instrument(span)
            .await;
        *upstream_time += sent.elapsed();
        match result {
            Ok(answer) => {
                guard.route().report(Ok(()));
                return Ok(Dispatched {
                    answer,
                    route: guard,
                    attempts: attempt,
                });
            }
            Err(e) => {
                let route = guard.route();
                route.report(Err(&e));
                tracing::debug!(model = %model.name, upstream = route.upstream.name(), attempt, error = e.label(), "attempt failed");
                if !e.is_retryable() {
                    return Err(e);
                }
                tried |= 1 << index;
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| GatewayError::Internal("no attempt was made".into())))
}

fn no_route(model: &Model, wait: Duration, parked: bool) -> GatewayError {
    if parked {
        GatewayError::ResourceExhausted {
            message: format!(
                "every route of model '{}' is rate limited by its upstream",
                model.name
            ),
            retry_after: Some(wait),
            limit: "upstream_rate_limit",
        }
    } else {
        GatewayError::UpstreamUnavailable {
            upstream: model.name.clone(),
            detail: format!(
                "every route's circuit breaker is open; the next probe in {}s",
                wait.as_secs().max(1)
            ),
        }
    }
}

/// One attempt on one route, bounded by the deadline, the grace period and (streams) the first-token limit.
async fn try_route(
    gw: &Gateway,
    guard: &RouteGuard,
    model: &Model,
    call: &Call<'_>,
    stream: bool,
) -> Result<Answer, GatewayError> {
    let route = guard.route();
    let upstream = &route.upstream;
    let mut req: ChatRequest<'_> = convert::chat_request(
        &route.model,
        call.messages,
        call.config,
        upstream.max_tokens_field(),
        stream,
    );
    if upstream.requires_max_tokens() && req.max_output_tokens().is_none() {
        // The same limit the admission reserved tokens for.
        req.max_tokens = Some(model.default_output_tokens);
    }
    if !stream {
        return gw
            .bounded(call.deadline, upstream.complete(&req, call.request_id))
            .await
            .map(Answer::Whole);
    }
    let first_token = model.policy.stream.first_token;
    let started = async {
        let mut rest = upstream.stream(&req, call.request_id).await?;
        match rest.next().await {
            Some(Ok(first)) => Ok(Answer::Stream { first, rest }),
            Some(Err(e)) => Err(e),
            None => Err(GatewayError::Internal(
                "the upstream stream ended before it began".into(),
            )),
        }
    };
    gw.bounded(call.deadline, async {
        tokio::time::timeout(first_token, started)
            .await
            .unwrap_or_else(|_| {
                Err(GatewayError::UpstreamUnavailable {
                    upstream: upstream.name().to_owned(),
                    detail: format!(
                        "no first token within {}",
                        humantime::format_duration(first_token)
                    ),
                })
            })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::Config, router::Router};

    fn model(balance: &str) -> Arc<Model> {
        let text = format!(
            r#"
            [server]
            listen = "127.0.0.1:0"
            [[upstreams]]
            name = "a"
            kind = "mock"
            [[upstreams]]
            name = "b"
            kind = "mock"
            [[models]]
            name = "m"
            max_output_tokens = 10
            routes = [{{ upstream = "a", model = "x", weight = 1 }}, {{ upstream = "b", model = "y", weight = 3 }}]
            [models.policy]
            balance = "{balance}"
            "#
        );
        let router = Router::new(&Config::parse(&text, |_| None).unwrap()).unwrap();
        router
            .resolve("m", &crate::auth::tests::anyone())
            .unwrap()
            .clone()
    }

    fn picked(p: Pick) -> usize {
        match p {
            Pick::Route(i) => i,
            Pick::Wait { .. } => panic!("no route picked"),
        }
    }

    #[test]
    fn fallback_goes_in_order_and_prefers_untried_routes() {
        let m = model("fallback");
        let now = Instant::now();
        assert_eq!(picked(pick(&m, 0, 0, now)), 0);
        assert_eq!(
            picked(pick(&m, 0b01, 0, now)),
            1,
            "route 0 failed in this call"
        );
        assert_eq!(picked(pick(&m, 0b11, 0, now)), 0, "all tried: start over");
        m.routes[0].park(now + Duration::from_secs(5));
        assert_eq!(
            picked(pick(&m, 0, 0, now)),
            1,
            "a parked route is out of rotation"
        );
        m.routes[1].park(now + Duration::from_secs(2));
        match pick(&m, 0, 0, now) {
            Pick::Wait { until, parked } => {
                assert_eq!((until, parked), (now + Duration::from_secs(2), true))
            }
            Pick::Route(i) => panic!("picked parked route {i}"),
        }
    }

    #[test]
    fn weighted_follows_the_weights() {
        let m = model("weighted");
        fastrand::seed(7);
        let now = Instant::now();
        let to_b = (0..10_000)
            .filter(|_| picked(pick(&m, 0, 0, now)) == 1)
            .count();
        assert!(
            (7_200..=7_800).contains(&to_b),
            "weight 3 of 4 got {to_b} of 10000"
        );
    }

    #[test]
    fn least_in_flight_picks_the_idle_route() {
        let m = model("least_in_flight");
        let now = Instant::now();
        assert_eq!(picked(pick(&m, 0, 0, now)), 0, "ties go to config order");
        let _busy = RouteGuard::new(m.clone(), 0);
        assert_eq!(picked(pick(&m, 0, 0, now)), 1);
        let _busy_too = (RouteGuard::new(m.clone(), 1), RouteGuard::new(m.clone(), 1));
        assert_eq!(picked(pick(&m, 0, 0, now)), 0);
    }
}
