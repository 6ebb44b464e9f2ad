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
            configured::Upstream,
            scripted::{Scripted, Step},
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
                kind: crate::config::ModelKind::Chat,
                max_output_tokens: 10,
                context_window: None,
                context_fallbacks: Vec::new(),
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
            self.call_told(stream, timeout, None).await
        }

        /// [`Bench::call`], telling `accepted` when an upstream accepted the stream.
        async fn call_told(
            &self,
            stream: bool,
            timeout: Option<Duration>,
            accepted: Option<&(dyn Fn() + Sync)>,
        ) -> (Result<Dispatched, GatewayError>, Trail) {
            let messages = [Message {
                role: "user".into(),
                content: "hi".into(),
                ..Default::default()
            }];
            let call = Call {
                messages: &messages,
                config: None,
                pass: &Default::default(),
                embed: None,
                deadline: Deadline::new(Instant::now(), timeout, S(600)),
                request_id: "r",
                accepted,
                api_headers: None,
                requested: "m",
            };
            let mut trail = Trail::default();
            let result = dispatch(&self.gw.handles(), &self.model, &call, stream, &mut trail).await;
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
            err.to_string().contains("upstream 'a'") && err.to_string().contains("circuit breaker"),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_fails_fast_then_lets_one_probe_through_after_its_cooldown() {
        let policy =
            "retry = { attempts = 1 }\nbreaker = { consecutive_failures = 2, cooldown = \"5s\" }";
        let script = vec![
            Step::Fail(unavailable(None)),
            Step::Fail(unavailable(None)),
            Step::Ok("fine"),
        ];
        let b = Bench::new(policy, vec![script]);
        for _ in 0..2 {
            assert!(b.call(false, None).await.0.is_err());
        }
        let (result, trail) = b.call(false, None).await;
        assert!(
            result.is_err() && trail.attempts == 0,
            "open: refused without a call"
        );
        assert_eq!(b.calls(0).len(), 2);
        tokio::time::advance(S(5)).await;
        let (result, _) = b.call(false, None).await;
        assert!(result.is_ok(), "the probe went through and succeeded");
        assert_eq!(b.model.routes[0].breaker.state(), State::Closed);
        assert!(b.call(false, None).await.0.is_ok());
        assert_eq!(b.calls(0).len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_before_the_first_token_is_retried_at_the_first_token_limit() {
        let policy = "stream = { first_token = \"300ms\" }\nretry = { backoff = \"1ms\" }";
        let b = Bench::new(policy, vec![vec![Step::StreamStalls, Step::Ok("late")]]);
        let t0 = Instant::now();
        let (result, trail) = b.call(true, None).await;
        assert!(result.is_ok());
        assert_eq!(trail.attempts, 2);
        let calls = b.calls(0);
        assert!(
            calls[1] - t0 >= Duration::from_millis(300),
            "retried after {:?}",
            calls[1] - t0
        );
        // With one attempt, the stall is the call's answer.
        let policy = "stream = { first_token = \"300ms\" }\nretry = { attempts = 1 }";
        let b = Bench::new(policy, vec![vec![Step::StreamStalls]]);
        let err = b.call(true, None).await.0.err().unwrap();
        assert!(
            err.to_string()
                .contains("nothing from the upstream for 300ms before its answer began"),
            "{err}"
        );
    }

    fn thinking(text: &str) -> Result<StreamEvent, GatewayError> {
        Ok(StreamEvent::Reasoning(crate::proto::ReasoningDelta {
            text: text.into(),
            ..Default::default()
        }))
    }

    /// A reasoning model that thinks silently for 150 s, with a sign of life (a ping, a comment) every 10 s,
    /// is one upstream call on the default limits: no stall, no second generation.
    #[tokio::test(start_paused = true)]
    async fn a_long_think_with_signs_of_life_is_one_upstream_call() {
        let mut events: Vec<_> = (0..15)
            .map(|_| (S(10), Ok(StreamEvent::Progress)))
            .collect();
        events.push((S(1), thinking("so")));
        events.push((S(1), Ok(StreamEvent::Delta("answer".into()))));
        let b = Bench::new("", vec![vec![Step::Events(events), Step::Ok("second")]]);
        let t0 = Instant::now();
        let (result, trail) = b.call(true, None).await;
        let Ok(Dispatched {
            answer: Answer::Stream { first, .. },
            ..
        }) = result
        else {
            panic!("no stream")
        };
        assert_eq!(first, thinking("so").unwrap());
        assert_eq!((trail.attempts, b.calls(0).len()), (1, 1));
        assert_eq!(Instant::now() - t0, S(151));
    }

    /// Signs of life restart the wait for the answer: a silence shorter than `first_event` between them is
    /// fine however long they go on; a longer one is a stall, retried since nothing reached the client.
    #[tokio::test(start_paused = true)]
    async fn signs_of_life_restart_the_first_event_wait_and_a_longer_silence_is_retried() {
        let policy = "stream = { first_event = \"20s\" }\nretry = { backoff = \"1ms\" }";
        let alive: Vec<_> = (0..10)
            .map(|_| (S(15), Ok(StreamEvent::Progress)))
            .chain([(S(15), thinking("hm"))])
            .collect();
        let b = Bench::new(policy, vec![vec![Step::Events(alive)]]);
        let (result, trail) = b.call(true, None).await;
        assert!(result.is_ok());
        assert_eq!(trail.attempts, 1);

        let silent = vec![(S(5), Ok(StreamEvent::Progress)), (S(30), thinking("late"))];
        let b = Bench::new(policy, vec![vec![Step::Events(silent), Step::Ok("fine")]]);
        let t0 = Instant::now();
        let (result, trail) = b.call(true, None).await;
        assert!(result.is_ok());
        assert_eq!(trail.attempts, 2);
        // The stall was called 20 s after the last sign of life, not after the request.
        let retried = b.calls(0)[1] - t0;
        assert!(retried >= S(25) && retried < S(26), "{retried:?}");
    }

    /// The dispatcher tells the caller when an upstream accepted the stream, before its first piece, so the
    /// response can start at once.
    #[tokio::test(start_paused = true)]
    async fn an_accepted_stream_is_told_before_its_first_piece() {
        let b = Bench::new("", vec![vec![Step::Events(vec![(S(40), thinking("a"))])]]);
        let told = std::sync::Mutex::new(None);
        let accepted = || {
            *told.lock().unwrap() = Some(Instant::now());
        };
        let t0 = Instant::now();
        let (result, _) = b.call_told(true, None, Some(&accepted)).await;
        assert!(result.is_ok());
        assert_eq!(*told.lock().unwrap(), Some(t0));
        assert_eq!(Instant::now() - t0, S(40));
    }
}
