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
//! A stream counts as started when its first delta (or its end) arrived: an upstream that answers 200 and then
//! fails, stalls or sends a malformed chunk before any content is retried like any other failure.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    config::Balance,
    error::GatewayError,
    observe::metrics::Metrics,
    observe::timing::Trail,
    proto::{GenerationConfig, Message},
    routing::deadline::{self, Deadline},
    routing::retry,
    routing::router::{Model, RouteGuard},
    upstream::openai::convert,
    upstream::openai::wire::ChatRequest,
    upstream::{ChunkStream, Completion, StreamEvent},
};

/// What the dispatcher needs of the gateway: where to count retries and fallbacks, and when the grace period
/// has ended.
#[derive(Clone, Copy)]
pub struct Handles<'a> {
    pub metrics: &'a Metrics,
    pub stop: &'a CancellationToken,
}

impl Handles<'_> {
    /// Runs `fut` within the call's deadline and the server's lifecycle (see [`deadline::bounded`]).
    async fn bounded<T>(
        &self,
        deadline: Deadline,
        fut: impl std::future::Future<Output = Result<T, GatewayError>>,
    ) -> Result<T, GatewayError> {
        deadline::bounded(self.stop, deadline, fut).await
    }
}

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
pub async fn dispatch(
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
    let mut previous: Option<usize> = None;
    while trail.attempts < policy.retry.attempts {
        let now = Instant::now();
        if trail.attempts > 0 && !model.budget.try_retry(now) {
            tracing::debug!(model = %model.name, "retry budget exhausted");
            break;
        }
        // Claim a route: its breaker may refuse (a half-open probe already out), then try another.
        let mut excluded = 0u64;
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
        let span = tracing::info_span!("upstream", upstream, attempt = trail.attempts);
        let result = try_route(gw, &guard, model, call, stream)
            .instrument(span)
            .await;
        trail.upstream_time += sent.elapsed();
        match result {
            Ok(answer) => {
                guard.route().report(Ok(()));
                return Ok(Dispatched {
                    answer,
                    route: guard,
                });
            }
            Err(e) => {
                guard.route().report(Err(&e));
                tracing::debug!(model = %model.name, upstream, attempt = trail.attempts, error = e.label(), "attempt failed");
                if !e.is_retryable() {
                    return Err(e);
                }
                if let Some(asked) = e.retry_after() {
                    not_before.push((index, Instant::now() + asked));
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
                    retry_after: None,
                })
            })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::Config, routing::router::Router};

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
            .resolve("m", &crate::admission::auth::tests::anyone())
            .unwrap()
            .clone()
    }

    fn picked(p: Option<Pick>) -> usize {
        match p {
            Some(Pick {
                route,
                cooling_until: None,
            }) => route,
            other => panic!("no warm route picked: {other:?}"),
        }
    }

    /// Cools a route the way a run of 429s does.
    fn cool(route: &crate::routing::router::Route, now: Instant, wait: Duration) {
        for _ in 0..crate::routing::cooling::MIN_LIMITED {
            route.cooling.record(now, Some(Some(wait)));
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
        cool(&m.routes[0], now, Duration::from_secs(5));
        assert_eq!(picked(pick(&m, 0, 0, now)), 1, "a cooling route goes last");
        cool(&m.routes[1], now, Duration::from_secs(2));
        assert_eq!(
            pick(&m, 0, 0, now),
            Some(Pick {
                route: 1,
                cooling_until: Some(now + Duration::from_secs(2))
            }),
            "every route cooling: the first to warm up, with its time"
        );
        assert_eq!(pick(&m, 0, 0b10, now).map(|p| p.route), Some(0));
        assert_eq!(pick(&m, 0, 0b11, now), None, "both excluded");
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

    /// Paused-time tests of the rules in the module comment, against scripted upstreams.
    mod rules {
        use super::*;
        use crate::{
            routing::breaker::State,
            routing::retry::RetryBudget,
            routing::router::Route,
            upstream::{
                scripted::{Scripted, Step},
                Upstream,
            },
        };

        const S: fn(u64) -> Duration = Duration::from_secs;

        fn rate_limited(wait: Option<u64>) -> GatewayError {
            GatewayError::UpstreamRateLimited {
                upstream: "a".into(),
                retry_after: wait.map(S),
            }
        }

        fn unavailable(wait: Option<u64>) -> GatewayError {
            GatewayError::UpstreamUnavailable {
                upstream: "a".into(),
                detail: "HTTP 503".into(),
                retry_after: wait.map(S),
            }
        }

        fn malformed() -> GatewayError {
            GatewayError::UpstreamProtocol {
                upstream: "a".into(),
                detail: "invalid chunk JSON".into(),
            }
        }

        struct Bench {
            gw: Arc<crate::core::gateway::Gateway>,
            model: Arc<Model>,
            ups: Vec<Arc<Upstream>>,
        }

        impl Bench {
            /// Model "m" over one scripted upstream per script, with `[models.policy]` lines.
            fn new(policy: &str, scripts: Vec<Vec<Step>>) -> Bench {
                let text = format!(
                    "[server]\nlisten = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"u\"\nkind = \"mock\"\n\
                     [[models]]\nname = \"m\"\nmax_output_tokens = 10\nroutes = [{{ upstream = \"u\", model = \"x\" }}]\n\
                     [models.policy]\n{policy}\n"
                );
                let cfg = Config::parse(&text, |_| None).unwrap();
                let gw = crate::core::gateway::Gateway::new(&cfg).unwrap();
                let base = Router::new(&cfg).unwrap().models()[0].clone();
                let names = ["a", "b", "c"];
                let ups: Vec<Arc<Upstream>> = scripts
                    .into_iter()
                    .zip(names)
                    .map(|(steps, name)| {
                        Arc::new(Upstream::Scripted(Scripted::new(
                            name,
                            Duration::ZERO,
                            steps,
                        )))
                    })
                    .collect();
                let model = Arc::new(Model {
                    name: "m".into(),
                    max_output_tokens: 10,
                    default_output_tokens: 10,
                    routes: ups
                        .iter()
                        .map(|u| Route::new(u.clone(), "x".into(), 1, &base.policy))
                        .collect(),
                    policy: base.policy,
                    budget: RetryBudget::new(&base.policy.retry),
                    price: base.price,
                    cache: None,
                });
                Bench { gw, model, ups }
            }

            fn calls(&self, i: usize) -> Vec<Instant> {
                match &*self.ups[i] {
                    Upstream::Scripted(s) => s.calls(),
                    _ => unreachable!(),
                }
            }

            /// One call, within `timeout` (else the 600 s request timeout).
            async fn call(
                &self,
                stream: bool,
                timeout: Option<Duration>,
            ) -> (Result<Dispatched, GatewayError>, Trail) {
                let messages = [Message {
                    role: "user".into(),
                    content: "hi".into(),
                    ..Default::default()
                }];
                let call = Call {
                    messages: &messages,
                    config: None,
                    deadline: Deadline::new(Instant::now(), timeout, S(600)),
                    request_id: "r",
                };
                let mut trail = Trail::default();
                let result =
                    dispatch(&self.gw.handles(), &self.model, &call, stream, &mut trail).await;
                (result, trail)
            }
        }

        #[tokio::test(start_paused = true)]
        async fn a_retry_waits_for_the_retry_after_its_own_answer_asked() {
            for first in [rate_limited(Some(2)), unavailable(Some(2))] {
                let b = Bench::new("", vec![vec![Step::Fail(first.clone()), Step::Ok("fine")]]);
                let t0 = Instant::now();
                let (result, trail) = b.call(false, None).await;
                assert!(result.is_ok(), "{first:?}");
                let calls = b.calls(0);
                assert_eq!(calls.len(), 2);
                assert!(
                    calls[1] - t0 >= S(2),
                    "{first:?}: retried after {:?}",
                    calls[1] - t0
                );
                assert_eq!((trail.attempts, trail.upstream.as_str()), (2, "a"));
                assert!(
                    trail.waited >= S(2),
                    "the wait is counted apart from overhead"
                );
            }
        }

        #[tokio::test(start_paused = true)]
        async fn one_429_is_about_its_own_request() {
            let policy = "retry = { attempts = 1 }";
            let b = Bench::new(
                policy,
                vec![vec![Step::Fail(rate_limited(Some(30))), Step::Ok("fine")]],
            );
            let t0 = Instant::now();
            let (result, _) = b.call(false, None).await;
            assert_eq!(result.err().and_then(|e| e.retry_after()), Some(S(30)));
            let (result, _) = b.call(false, None).await;
            assert!(
                result.is_ok(),
                "the next caller is not held by the first one's 429"
            );
            assert_eq!(b.calls(0), vec![t0, t0]);
        }

        #[tokio::test(start_paused = true)]
        async fn a_run_of_429s_cools_the_route_which_is_waited_for_never_refused() {
            let policy = "retry = { attempts = 1 }";
            let limited = Step::Fail(rate_limited(Some(5)));
            let script = vec![limited.clone(), limited.clone(), limited, Step::Ok("fine")];
            let b = Bench::new(policy, vec![script.clone()]);
            let t0 = Instant::now();
            for _ in 0..3 {
                assert!(b.call(false, None).await.0.is_err());
            }
            assert_eq!(b.model.routes[0].cooling_until(t0), Some(t0 + S(5)));
            // The only route is cooling: the call waits for it within its deadline, then goes.
            let (result, trail) = b.call(false, None).await;
            assert!(result.is_ok());
            assert_eq!(b.calls(0)[3], t0 + S(5));
            assert_eq!(trail.waited, S(5));
            // A deadline before the route warms up: the call goes at once rather than being refused.
            let b = Bench::new(policy, vec![script]);
            let t1 = Instant::now();
            for _ in 0..3 {
                assert!(b.call(false, None).await.0.is_err());
            }
            let (result, _) = b.call(false, Some(S(1))).await;
            assert!(result.is_ok());
            assert_eq!(b.calls(0)[3], t1);
        }

        #[tokio::test(start_paused = true)]
        async fn a_retry_after_past_the_deadline_fails_now_with_the_upstreams_wait() {
            let b = Bench::new(
                "",
                vec![vec![Step::Fail(rate_limited(Some(5))), Step::Ok("fine")]],
            );
            let t0 = Instant::now();
            let (result, trail) = b.call(false, Some(S(1))).await;
            let err = result.err().unwrap();
            assert_eq!(
                (err.label(), err.retry_after()),
                ("upstream_rate_limited", Some(S(5)))
            );
            assert_eq!(b.calls(0), vec![t0]);
            assert_eq!(Instant::now(), t0, "no sleeping into the deadline");
            assert_eq!(trail.attempts, 1);
        }

        #[tokio::test(start_paused = true)]
        async fn another_route_is_tried_at_once() {
            let b = Bench::new(
                "",
                vec![
                    vec![Step::Fail(rate_limited(Some(30)))],
                    vec![Step::Ok("fine")],
                ],
            );
            let t0 = Instant::now();
            let (result, trail) = b.call(false, None).await;
            assert!(result.is_ok());
            assert_eq!(b.calls(1), vec![t0]);
            assert_eq!((trail.attempts, trail.upstream.as_str()), (2, "b"));
        }

        #[tokio::test(start_paused = true)]
        async fn malformed_answers_are_retried_and_never_open_the_breaker() {
            let policy = "breaker = { consecutive_failures = 1 }";
            let b = Bench::new(
                policy,
                vec![vec![Step::StreamFails(malformed()), Step::Ok("fine")]],
            );
            let (result, trail) = b.call(true, None).await;
            assert!(result.is_ok(), "retried before the first delta");
            assert_eq!(trail.attempts, 2);
            assert_eq!(b.model.routes[0].breaker.state(), State::Closed);

            // A 5xx is an outage signal: the breaker opens, and then fails calls fast, naming the upstream.
            let b = Bench::new(policy, vec![vec![Step::Fail(unavailable(None))]]);
            assert!(b.call(false, None).await.0.is_err());
            assert_eq!(b.model.routes[0].breaker.state(), State::Open);
            let (result, trail) = b.call(false, None).await;
            let err = result.err().unwrap();
            assert_eq!(trail.attempts, 0);
            assert!(
                err.to_string().contains("upstream 'a'")
                    && err.to_string().contains("circuit breaker"),
                "{err}"
            );
        }
    }
}
