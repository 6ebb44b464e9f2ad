//! Traffic control against scripted upstreams: retries and Retry-After, fallback, breakers, the retry budget,
//! stream limits, and the request id. Waits are asserted as lower bounds only (never "fast enough").

use std::time::Duration;

use crate::common::{upstream::*, *};
use aigw::proto::GenerationConfig;
use futures_util::StreamExt;
use tonic::Code;

/// Model "m" over the given upstreams (name, base URL), with `routes`, `[models.policy]` and key limits.
fn traffic(
    upstreams: &[(&str, String)],
    routes: &str,
    policy: &str,
    key_limits: &str,
    limits: &str,
) -> aigw::config::Config {
    let ups: String = upstreams
        .iter()
        .map(|(name, url)| {
            format!(
                "[[upstreams]]\nname = \"{name}\"\nkind = \"openai\"\nbase_url = \"{url}\"\napi_key_env = \"TEST_UPSTREAM_KEY\"\nconnect_timeout = \"2s\"\n"
            )
        })
        .collect();
    config(&format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [limits]
        {limits}
        [[keys]]
        name = "tester"
        env = "TEST_KEY"
        limits = {{ {key_limits} }}
        {ups}
        [[models]]
        name = "m"
        max_output_tokens = 2000
        routes = [{routes}]
        [models.policy]
        {policy}
        "#
    ))
}

/// One upstream "a" behind model "m".
async fn one(script: Vec<Reply>, policy: &str) -> (Upstream, Gateway) {
    let up = Upstream::start(script).await;
    let gw = Gateway::start(traffic(
        &[("a", up.base_url())],
        r#"{ upstream = "a", model = "up" }"#,
        policy,
        "",
        "",
    ))
    .await;
    (up, gw)
}

fn ok_reply() -> Reply {
    Reply::json(200, &completion("fine", "stop", 3, 1))
}

fn err_reply(status: u16) -> Reply {
    Reply::json(status, r#"{"error":{"message":"trouble"}}"#)
}

/// A Generate call to model "m" on a fresh connection.
async fn gen(gw: &Gateway) -> Result<aigw::proto::GenerateResponse, tonic::Status> {
    let resp = gw
        .client()
        .await
        .generate(authed(generate("m", "hi"), KEY))
        .await;
    resp.map(tonic::Response::into_inner)
}

/// A StreamGenerate call to model "m" on a fresh connection.
async fn open(gw: &Gateway) -> Result<tonic::Streaming<aigw::proto::StreamChunk>, tonic::Status> {
    let resp = gw
        .client()
        .await
        .stream_generate(authed(stream_request("m", "hi"), KEY))
        .await;
    resp.map(tonic::Response::into_inner)
}

/// The status of a stream that fails after its upstream accepted it: the response has started (its headers went
/// out at once), so the status ends the stream, before any piece of an answer.
async fn failed_after_accept(gw: &Gateway) -> tonic::Status {
    let mut s = open(gw)
        .await
        .expect("the response starts once the upstream accepted");
    let (chunks, status) = read_to_error(&mut s).await;
    assert!(chunks.iter().all(|c| c.heartbeat), "{chunks:?}");
    status
}

fn gap(up: &Upstream, i: usize) -> Duration {
    let r = up.requests();
    r[i + 1].at.duration_since(r[i].at)
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_then_retried() {
    let (up, gw) = one(
        vec![err_reply(429).header("retry-after", "2"), ok_reply()],
        "",
    )
    .await;
    let resp = gen(&gw).await.unwrap();
    assert_eq!(resp.content, "fine");
    assert_eq!(up.calls(), 2);
    assert!(
        gap(&up, 0) >= Duration::from_secs(2),
        "retried after {:?}, before Retry-After",
        gap(&up, 0)
    );
}

#[tokio::test]
async fn a_retry_after_past_the_deadline_goes_back_to_the_client_and_cools_nothing() {
    // The wait does not fit in the client's deadline: the client gets the upstream's answer and its wait at
    // once, rather than a gateway that sleeps into DEADLINE_EXCEEDED.
    let (up, gw) = one(
        vec![err_reply(429).header("retry-after", "30"), ok_reply()],
        "",
    )
    .await;
    let req = authed_with_timeout(generate("m", "hi"), KEY, Duration::from_secs(5));
    let status = gw.raw_client().generate(req).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(status.metadata().get("retry-after").unwrap(), "30");
    let info = tonic_types::StatusExt::get_error_details(&status)
        .retry_info()
        .cloned()
        .unwrap();
    assert_eq!(info.retry_delay, Some(Duration::from_secs(30)));
    assert_eq!(up.calls(), 1);
    // One 429 is about its own request: the next caller is sent to the upstream as usual.
    assert_eq!(gen(&gw).await.unwrap().content, "fine");
    assert_eq!(up.calls(), 2);
}

/// Model "m" on one upstream whose waits are clamped to 3 s (`max_retry_after`), with `attempts` per call.
fn waits_at_most_3s(up: &Upstream, attempts: u32) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [[keys]]
        name = "tester"
        env = "TEST_KEY"
        [[upstreams]]
        name = "a"
        kind = "openai"
        base_url = "{}"
        max_retry_after = "3s"
        [[models]]
        name = "m"
        max_output_tokens = 100
        routes = [{{ upstream = "a", model = "x" }}]
        [models.policy]
        retry = {{ attempts = {attempts} }}
        "#,
        up.base_url()
    )
}

#[tokio::test]
async fn hostile_retry_after_headers_are_clamped_never_a_panic() {
    let up = Upstream::start(vec![
        err_reply(429).header("retry-after", "18446744073709551615"),
        err_reply(429).header("retry-after-ms", "1e30"),
        err_reply(503).header("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT"),
        err_reply(429).header("retry-after", "999999"),
        ok_reply(),
    ])
    .await;
    let gw = Gateway::start(config(&waits_at_most_3s(&up, 1))).await;
    for code in [
        Code::ResourceExhausted,
        Code::ResourceExhausted,
        Code::Unavailable,
        Code::ResourceExhausted,
    ] {
        let status = gen(&gw).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert_eq!(
            status.metadata().get("retry-after").unwrap(),
            "3",
            "clamped to max_retry_after"
        );
    }
    // No panic took the route with it, and no header parked it for days: the next call is answered.
    assert_eq!(gen(&gw).await.unwrap().content, "fine");
    assert_eq!(up.calls(), 5);
}

/// A JavaScript upstream's stream: the emoji's two UTF-16 halves in two events, as raw JSON escapes.
fn split_emoji_stream() -> Reply {
    let piece = |text: &str| {
        format!(
            r#"{{"id":"s","model":"up","choices":[{{"index":0,"delta":{{"content":"{text}"}},"finish_reason":null}}]}}"#
        )
    };
    Reply::sse(&[
        role_chunk(),
        piece(r"smile \ud83d"),
        piece(r"\ude00 and a lone \udbff"),
        piece(r"!"),
        finish_chunk("stop"),
        usage_chunk(5, 4),
        "[DONE]".into(),
    ])
}

#[tokio::test]
async fn an_emoji_split_across_events_arrives_whole_and_the_route_stays_usable() {
    let (up, gw) = one(
        vec![split_emoji_stream()],
        r#"breaker = { consecutive_failures = 2 }"#,
    )
    .await;
    for _ in 0..10 {
        let mut s = open(&gw).await.unwrap();
        let mut text = String::new();
        let mut complete = false;
        while let Some(c) = s.message().await.unwrap() {
            text.push_str(&c.delta);
            complete |= c.is_complete;
        }
        assert!(complete);
        assert_eq!(text, "smile 😀 and a lone \u{FFFD}!");
    }
    assert_eq!(up.calls(), 10, "every stream answered on its first attempt");
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let (up, gw) = one(
        vec![err_reply(503), err_reply(503), ok_reply()],
        r#"retry = { attempts = 3, backoff = "20ms" }"#,
    )
    .await;
    let resp = gen(&gw).await.unwrap();
    assert_eq!(resp.content, "fine");
    assert_eq!(up.calls(), 3);

    // Attempts are capped, and client errors are never retried.
    let (up, gw) = one(
        vec![err_reply(500)],
        r#"retry = { attempts = 2, backoff = "1ms" }"#,
    )
    .await;
    let status = gen(&gw).await.unwrap_err();
    assert_eq!((status.code(), up.calls()), (Code::Unavailable, 2));
    for client_error in [400, 401, 403, 404, 422] {
        let (up, gw) = one(vec![err_reply(client_error)], "").await;
        assert!(gen(&gw).await.is_err());
        assert_eq!(up.calls(), 1, "HTTP {client_error} was retried");
    }
}

#[tokio::test]
async fn a_refused_connection_falls_back_to_the_next_route() {
    let (_held, dead) = refusing_port();
    let up = Upstream::start(vec![ok_reply()]).await;
    let cfg = traffic(
        &[
            ("dead", format!("http://127.0.0.1:{dead}/v1")),
            ("live", up.base_url()),
        ],
        r#"{ upstream = "dead", model = "up" }, { upstream = "live", model = "up-2" }"#,
        "",
        "",
        "",
    );
    let gw = Gateway::start(cfg).await;
    let resp = gen(&gw).await.unwrap();
    assert_eq!(resp.content, "fine");
    assert_eq!(up.calls(), 1);
    assert_eq!(up.requests()[0].body["model"], "up-2");
}

/// An upstream that says its quota is spent (`x-ratelimit-remaining-requests: 0`) on a successful answer is
/// skipped by the next call while its quota resets: the call goes to the next route.
#[tokio::test]
async fn a_route_whose_quota_is_spent_is_skipped_until_it_resets() {
    let spent = ok_reply()
        .header("x-ratelimit-remaining-requests", "0")
        .header("x-ratelimit-reset-requests", "30s");
    let first = Upstream::start(vec![spent, ok_reply()]).await;
    let second = Upstream::start(vec![ok_reply()]).await;
    let cfg = traffic(
        &[("first", first.base_url()), ("second", second.base_url())],
        r#"{ upstream = "first", model = "up" }, { upstream = "second", model = "up-2" }"#,
        "",
        "",
        "",
    );
    let gw = Gateway::start(cfg).await;
    gen(&gw).await.unwrap();
    gen(&gw).await.unwrap();
    assert_eq!(
        (first.calls(), second.calls()),
        (1, 1),
        "the second call skipped the spent route"
    );
}

#[tokio::test]
async fn streams_are_retried_before_the_first_chunk_and_never_after() {
    // 200, then reset before any content: nothing reached the client, so the next attempt may answer.
    let reset_early = Reply::sse(&[role_chunk()]).end(End::Reset);
    let (up, gw) = one(
        vec![reset_early, Reply::sse(&stream_of(&["ok"]))],
        r#"retry = { backoff = "1ms" }"#,
    )
    .await;
    let mut s = open(&gw).await.unwrap();
    assert_eq!(s.message().await.unwrap().unwrap().delta, "ok");
    assert_eq!(up.calls(), 2);

    // Reset after a chunk was relayed: the error goes to the client; no second call.
    let reset_late = Reply::sse(&[chunk("half")]).end(End::Reset);
    let (up, gw) = one(
        vec![reset_late, Reply::sse(&stream_of(&["ok"]))],
        r#"retry = { backoff = "1ms" }"#,
    )
    .await;
    let mut s = open(&gw).await.unwrap();
    let (chunks, status) = read_to_error(&mut s).await;
    assert_eq!((chunks.len(), status.code()), (1, Code::Unavailable));
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn a_stall_before_the_first_token_is_retried() {
    // The timing is tested on paused time (routing::dispatch::tests::rules); here, that the stalled connection
    // is really dropped. The limit leaves the good attempt seconds to answer, however busy the machine.
    let policy = r#"stream = { first_token = "2s" }
        retry = { backoff = "1ms" }"#;
    let stall = Reply::sse(&[role_chunk()]).end(End::Hang);
    let (up, gw) = one(
        vec![stall, Reply::sse(&stream_of(&["late", " but", " fine"]))],
        policy,
    )
    .await;
    let mut s = open(&gw).await.unwrap();
    assert_eq!(s.message().await.unwrap().unwrap().delta, "late");
    up.wait_aborted(1).await; // the stalled attempt's connection was dropped
    assert_eq!(up.calls(), 2);

    let policy = r#"stream = { first_token = "200ms" }
        retry = { attempts = 1 }"#;
    let (_up, gw) = one(vec![Reply::sse(&[role_chunk()]).end(End::Hang)], policy).await;
    let status = failed_after_accept(&gw).await;
    assert_status(
        &status,
        Code::Unavailable,
        "nothing from the upstream for 200ms before its answer began",
    );
}

#[tokio::test]
async fn a_stall_in_the_middle_ends_the_stream_with_unavailable() {
    let (up, gw) = one(
        vec![Reply::sse(&[chunk("a")]).end(End::Hang)],
        r#"stream = { idle = "300ms" }"#,
    )
    .await;
    let mut s = open(&gw).await.unwrap();
    let (chunks, status) = read_to_error(&mut s).await;
    assert_eq!(chunks.len(), 1);
    assert_status(
        &status,
        Code::Unavailable,
        "stalled: nothing from the upstream for 300ms",
    );
    up.wait_aborted(1).await;
}

#[tokio::test]
async fn the_total_stream_limit_is_deadline_exceeded() {
    let mut parts = vec![];
    for i in 0..100 {
        parts.push(Part::Bytes(
            format!("data: {}\n\n", chunk(&format!("{i} "))).into_bytes(),
        ));
        parts.push(Part::Delay(Duration::from_millis(50)));
    }
    let (_up, gw) = one(
        vec![Reply::sse_raw(parts)],
        r#"stream = { total = "400ms" }"#,
    )
    .await;
    let mut s = open(&gw).await.unwrap();
    let (chunks, status) = read_to_error(&mut s).await;
    assert!(!chunks.is_empty());
    assert_status(&status, Code::DeadlineExceeded, "total limit of 400ms");
}

#[tokio::test]
async fn malformed_sse_is_retried_and_never_trips_the_breaker() {
    // Before the first delta a malformed chunk is retried like any failure ...
    let (up, gw) = one(
        vec![
            Reply::sse(&["{not json".into()]),
            Reply::sse(&stream_of(&["ok"])),
        ],
        r#"retry = { backoff = "1ms" }"#,
    )
    .await;
    let mut s = open(&gw).await.unwrap();
    assert_eq!(s.message().await.unwrap().unwrap().delta, "ok");
    assert_eq!(up.calls(), 2);

    // ... and it fails that call, never the route: five of them leave a two-failure breaker closed.
    let malformed = Reply::sse(&["{not json".into()]);
    let (up, gw) = one(
        vec![
            malformed.clone(),
            malformed.clone(),
            malformed.clone(),
            malformed.clone(),
            malformed,
            Reply::sse(&stream_of(&["ok"])),
        ],
        r#"retry = { attempts = 1 }
        breaker = { consecutive_failures = 2 }"#,
    )
    .await;
    for _ in 0..5 {
        let status = failed_after_accept(&gw).await;
        assert_status(&status, Code::Unavailable, "malformed");
    }
    let mut s = open(&gw).await.unwrap();
    assert_eq!(s.message().await.unwrap().unwrap().delta, "ok");
    assert_eq!(up.calls(), 6);
}

#[tokio::test]
async fn an_open_breaker_refuses_without_calling_the_upstream() {
    // The half-open probe after the cooldown is tested on paused time (routing::dispatch::tests::rules); here
    // the cooldown is long enough that no machine is slow enough to reach it.
    let policy = r#"retry = { attempts = 1 }
        breaker = { consecutive_failures = 2, cooldown = "60s" }"#;
    let (up, gw) = one(vec![err_reply(503), err_reply(503), ok_reply()], policy).await;
    let mut client = gw.client().await;
    for _ in 0..2 {
        assert_eq!(
            client
                .generate(authed(generate("m", "hi"), KEY))
                .await
                .unwrap_err()
                .code(),
            Code::Unavailable
        );
    }
    let status = client
        .generate(authed(generate("m", "hi"), KEY))
        .await
        .unwrap_err();
    assert_status(&status, Code::Unavailable, "circuit breaker is open");
    assert_eq!(up.calls(), 2);
}

#[tokio::test]
async fn the_retry_budget_caps_retries_in_an_outage() {
    // Retries may be half the requests, with no floor: an outage cannot triple the upstream's load.
    let policy = r#"retry = { attempts = 3, backoff = "1ms", budget_ratio = 0.5, budget_min_per_second = 0.0 }
        breaker = { consecutive_failures = 100, min_requests = 100 }"#;
    let (up, gw) = one(vec![err_reply(503)], policy).await;
    let mut client = gw.client().await;
    for _ in 0..4 {
        assert_eq!(
            client
                .generate(authed(generate("m", "hi"), KEY))
                .await
                .unwrap_err()
                .code(),
            Code::Unavailable
        );
    }
    // Without a budget 4 requests would make 12 calls; with it, retries <= half the requests.
    assert_eq!(up.calls(), 4 + 2, "calls: {}", up.calls());
}

#[tokio::test]
async fn the_request_id_travels_upstream_and_back() {
    let (up, gw) = one(vec![ok_reply()], "").await;
    let mut req = authed(generate("m", "hi"), KEY);
    req.metadata_mut()
        .insert("x-request-id", "trace-42".parse().unwrap());
    let resp = gw.client().await.generate(req).await.unwrap();
    assert_eq!(resp.metadata().get("x-request-id").unwrap(), "trace-42");
    assert_eq!(up.requests()[0].header("x-request-id"), Some("trace-42"));

    // None given: one is made, and it is the same on both sides; errors carry it too.
    let resp = gw
        .client()
        .await
        .generate(authed(generate("m", "hi"), KEY))
        .await
        .unwrap();
    let id = resp
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(up.requests()[1].header("x-request-id"), Some(id.as_str()));
    let status = gw
        .client()
        .await
        .generate(authed(generate("nope", "hi"), KEY))
        .await
        .unwrap_err();
    assert!(status.metadata().get("x-request-id").is_some());
}

// ---- limits ------------------------------------------------------------------------------------------------

fn limited(up: &Upstream, key_limits: &str, limits: &str) -> aigw::config::Config {
    traffic(
        &[("a", up.base_url())],
        r#"{ upstream = "a", model = "up" }"#,
        "",
        key_limits,
        limits,
    )
}

#[tokio::test]
async fn requests_per_minute_are_enforced_with_the_wait() {
    let up = Upstream::start(vec![ok_reply()]).await;
    let gw = Gateway::start(limited(&up, "rpm = 3", "")).await;
    let mut client = gw.client().await;
    for _ in 0..3 {
        client
            .generate(authed(generate("m", "hi"), KEY))
            .await
            .unwrap();
    }
    let status = client
        .generate(authed(generate("m", "hi"), KEY))
        .await
        .unwrap_err();
    assert_status(&status, Code::ResourceExhausted, "3 requests per minute");
    // The wait: until the first of the three leaves the minute — at most 60 s. (Its exact value is unit-tested
    // on constructed time in admission::limits; here the calls may take any time.)
    let secs = retry_after_secs(&status);
    assert!((1..=60).contains(&secs), "retry-after {secs}");
    let info = tonic_types::StatusExt::get_error_details(&status)
        .retry_info()
        .cloned()
        .unwrap();
    assert!(info.retry_delay.unwrap() <= Duration::from_secs(60));
    assert_eq!(up.calls(), 3);
}

#[tokio::test]
async fn tokens_are_reserved_and_reconciled() {
    // The upstream reports 4 tokens per call (3 prompt + 1 completion).
    let up = Upstream::start(vec![ok_reply()]).await;
    let gw = Gateway::start(limited(&up, "tpm = 2000", "")).await;
    let mut client = gw.client().await;
    let big = |n| {
        with_config(
            generate("m", "hi"),
            GenerationConfig {
                max_tokens: Some(n),
                ..Default::default()
            },
        )
    };
    // 1500 reserved, 4 used: reconciled, so another 1500 fits.
    client.generate(authed(big(1500), KEY)).await.unwrap();
    client.generate(authed(big(1500), KEY)).await.unwrap();
    // 8 used in all; 1995 more would not fit under 2000 if the reservations had stayed.
    client.generate(authed(big(1980), KEY)).await.unwrap();
    let status = client.generate(authed(big(1990), KEY)).await.unwrap_err();
    assert_status(&status, Code::ResourceExhausted, "tokens per minute");
    // A request that can never fit says so, with no wait to offer.
    let gw = Gateway::start(limited(&up, "tpm = 100", "")).await;
    let status = gw
        .client()
        .await
        .generate(authed(big(500), KEY))
        .await
        .unwrap_err();
    assert!(
        status.message().contains("lower max_tokens"),
        "{}",
        status.message()
    );
    assert!(status.metadata().get("retry-after").is_none());
}

/// Opens a stream that stays open (its upstream hangs after one chunk), then makes a second call that the
/// limit under test must refuse; returns the open stream and the refusal.
async fn hold_one_and_refuse_the_next(
    gw: &Gateway,
    needle: &str,
) -> (tonic::Streaming<aigw::proto::StreamChunk>, tonic::Status) {
    let mut client = gw.client().await;
    let mut s = client
        .stream_generate(authed(stream_request("m", "hi"), KEY))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.message().await.unwrap().unwrap().delta, "a");
    let status = client
        .generate(authed(generate("m", "hi"), KEY))
        .await
        .unwrap_err();
    assert_status(&status, Code::ResourceExhausted, needle);
    (s, status)
}

#[tokio::test]
async fn concurrency_counts_a_stream_until_it_ends_even_cancelled() {
    let up = Upstream::start(vec![Reply::sse(&[chunk("a")]).end(End::Hang)]).await;
    let gw = Gateway::start(limited(&up, "concurrency = 1", "")).await;
    let (s, _) = hold_one_and_refuse_the_next(&gw, "concurrency").await;
    drop(s); // cancelled: the slot comes back once the gateway has dropped the upstream call
    up.wait_aborted(1).await;
    let mut s = open(&gw).await.unwrap();
    assert_eq!(s.message().await.unwrap().unwrap().delta, "a");
}

#[tokio::test]
async fn the_global_in_flight_cap_sheds_load() {
    let up = Upstream::start(vec![Reply::sse(&[chunk("a")]).end(End::Hang)]).await;
    let gw = Gateway::start(limited(&up, "", "max_in_flight = 1")).await;
    let (_s, status) = hold_one_and_refuse_the_next(&gw, "gateway is at its limit").await;
    assert_eq!(status.metadata().get("retry-after").unwrap(), "1");
}

/// The fault mix of the resilience issue, from `aigw mock-upstream`'s chaos mode: 10% 503 and 10% 429 with
/// Retry-After 1 s, 5% of streams each disconnected, truncated, stalled (2 s here) and given a malformed chunk,
/// and every answer carrying an emoji split across stream events. 400 calls, half unary and half streams, 16
/// in flight, three attempts: at least 90% end OK, none ends wrong, no retry comes before its Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_upstream_looks_better_through_the_gateway() {
    use aigw::tools::chaos::{ChaosConfig, StreamFault};
    use aigw::tools::mock_server::{serve_with_chaos, MockServerConfig};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let chaos = ChaosConfig {
        errors: vec![(503, 0.1), (429, 0.1)],
        retry_after: Some(Duration::from_secs(1)),
        stream_faults: vec![
            (StreamFault::Disconnect, 0.05),
            (StreamFault::Truncate, 0.05),
            (StreamFault::Stall, 0.05),
            (StreamFault::Malformed, 0.05),
        ],
        stall: Duration::from_secs(2),
        split_surrogates: true,
        seed: 12,
    };
    let mock = MockServerConfig {
        dialect: Default::default(),
        shape: Default::default(),
        first_token_latency: Duration::ZERO,
        tokens_per_second: 1e6,
        tokens: Some(12),
    };
    tokio::spawn(serve_with_chaos(
        listener,
        mock,
        chaos,
        std::future::pending(),
    ));
    let gw = Gateway::start(traffic(
        &[("a", format!("http://{addr}/v1"))],
        r#"{ upstream = "a", model = "up" }"#,
        "retry = { attempts = 3 }",
        "",
        "",
    ))
    .await;
    let client = gw.client().await;
    let calls = futures_util::stream::iter(0..400).map(|i| {
        let mut client = client.clone();
        async move {
            if i % 2 == 0 {
                let resp = client.generate(authed(generate("m", "hi"), KEY)).await;
                return match resp {
                    Ok(r) if r.get_ref().content.contains('😀') => Ok(()),
                    Ok(r) => Err(format!(
                        "unary answer without its emoji: {:?}",
                        r.get_ref().content
                    )),
                    Err(s) => Err(format!("{:?}", s.code())),
                };
            }
            let mut stream = match client
                .stream_generate(authed(stream_request("m", "hi"), KEY))
                .await
            {
                Ok(s) => s.into_inner(),
                Err(s) => return Err(format!("{:?}", s.code())),
            };
            let (mut text, mut complete) = (String::new(), false);
            loop {
                match stream.message().await {
                    Ok(Some(c)) => {
                        text.push_str(&c.delta);
                        complete |= c.is_complete;
                    }
                    Ok(None) if complete && text.contains('😀') => return Ok(()),
                    Ok(None) => {
                        return Err(format!(
                            "WRONG: ended OK, complete={complete}, text {text:?}"
                        ))
                    }
                    Err(s) => return Err(format!("{:?}", s.code())),
                }
            }
        }
    });
    let outcomes: Vec<Result<(), String>> = calls.buffer_unordered(16).collect().await;
    let ok = outcomes.iter().filter(|o| o.is_ok()).count();
    let mut failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    failures.sort();
    assert!(ok >= 360, "{ok} of 400 OK; failures: {failures:?}");
    assert!(
        failures
            .iter()
            .all(|f| *f == "Unavailable" || *f == "ResourceExhausted"),
        "a call ended wrong: {failures:?}"
    );
    let stats = http()
        .get(format!("http://{addr}/stats"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["early_retries"], 0, "{stats}");
    assert!(stats["injected_errors"].as_u64().unwrap() > 40, "{stats}");
    // Still healthy: the readiness probe answers and the route takes calls.
    let (status, _) = admin_get(&gw, "/readyz", None).await;
    assert_eq!(status, 200);
    eprintln!("chaos: {ok} of 400 OK; upstream saw {stats}; failures {failures:?}");
}

/// An upstream that asks for as long as the gateway ever waits (`max_retry_after`), or longer, is not waited
/// out and retried: the client hears the wait at once (here 120 s asked, 3 s the most the gateway takes), and
/// the upstream is asked once, not three times.
#[tokio::test]
async fn a_retry_after_beyond_max_retry_after_is_answered_at_once() {
    let up = Upstream::start(vec![
        err_reply(429).header("retry-after", "120"),
        ok_reply(),
    ])
    .await;
    let gw = Gateway::start(config(&waits_at_most_3s(&up, 3))).await;
    let status = gen(&gw).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(status.metadata().get("retry-after").unwrap(), "3");
    assert_eq!(up.calls(), 1);
}
