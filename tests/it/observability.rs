//! Metrics, trailers, usage accounting, cost and budgets, and the admin API — read back after scripted
//! traffic and asserted exactly.

use crate::common::{upstream::*, *};
use serde_json::{json, Value};
use tonic::Code;

/// Model "m" ($2 in / $8 out per million tokens) on a scripted upstream; the admin API on, with key limits.
fn observed(up: &Upstream, key_limits: &str) -> aigw::config::Config {
    let admin = "[admin]\nkey_env = \"TEST_ADMIN_KEY\"";
    config(&priced_config_text(&up.base_url(), admin, key_limits, ""))
}

async fn usage(gw: &Gateway) -> Value {
    let (status, body) = admin_get(gw, "/v1/usage", Some(ADMIN_KEY)).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let up = Upstream::start(vec![
        Reply::json(200, &completion("fine", "stop", 1000, 500)),
        Reply::json(200, &completion("fine", "stop", 1000, 500)),
        Reply::sse(&stream_of(&["a", "b"])), // usage 7 + 2
    ])
    .await;
    let gw = Gateway::start(observed(&up, "")).await;
    let mut client = gw.client().await;
    for _ in 0..2 {
        client
            .generate(authed(generate("m", "hi"), KEY))
            .await
            .unwrap();
    }
    assert!(client
        .generate(authed(generate("unknown", "hi"), KEY))
        .await
        .is_err());
    let mut s = client
        .stream_generate(authed(stream_request("m", "hi"), KEY))
        .await
        .unwrap()
        .into_inner();
    while s.message().await.unwrap().is_some() {}
    let trailers = s.trailers().await.unwrap().unwrap();

    let (status, text) = admin_get(&gw, "/metrics", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        metric(
            &text,
            r#"aigw_requests_total{code="OK",key="tester",model="m",rpc="Generate"}"#
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            r#"aigw_requests_total{code="INVALID_ARGUMENT",key="tester",model="",rpc="Generate"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"aigw_requests_total{code="OK",key="tester",model="m",rpc="StreamGenerate"}"#
        ),
        1.0
    );
    let tokens = |kind: &str| {
        metric(
            &text,
            &format!(
                r#"aigw_tokens_total{{estimated="false",key="tester",kind="{kind}",model="m"}}"#
            ),
        )
    };
    assert_eq!(tokens("prompt"), 2000.0 + 7.0);
    assert_eq!(tokens("completion"), 1000.0 + 2.0);
    // Cost to the cent (and below): 2 × (1000 × $2 + 500 × $8) / 1e6 + (7 × 2 + 2 × 8) / 1e6.
    let cost = metric(&text, r#"aigw_cost_usd_total{key="tester",model="m"}"#);
    assert!((cost - 0.012_03).abs() < 1e-9, "cost {cost}");
    assert_eq!(
        metric(
            &text,
            r#"aigw_overhead_seconds_count{model="m",rpc="Generate"}"#
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            r#"aigw_time_to_first_token_seconds_count{model="m"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&text, r#"aigw_chunk_gap_seconds_count{model="m"}"#),
        1.0,
        "two deltas, one gap"
    );
    assert_eq!(metric(&text, r#"aigw_in_flight{rpc="Generate"}"#), 0.0);
    assert_eq!(
        metric(&text, r#"aigw_breaker_state{model="m",upstream="a"}"#),
        0.0
    );
    // The histogram resolves sub-millisecond overhead.
    assert!(text.contains(r#"aigw_overhead_seconds_bucket{model="m",rpc="Generate",le="0.0001"}"#));
    // The stream's trailers carry the gateway's own time and the cost.
    let overhead: u64 = trailers
        .get("aigw-overhead-us")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(overhead < 60_000_000);
    assert_eq!(trailers.get("aigw-cost-usd").unwrap(), "0.000030");
}

#[tokio::test]
async fn unary_trailers_carry_overhead_and_cost() {
    let up = Upstream::start(vec![Reply::json(
        200,
        &completion("fine", "stop", 1000, 500),
    )])
    .await;
    let gw = Gateway::start(observed(&up, "")).await;
    let resp = gw
        .client()
        .await
        .generate(authed(generate("m", "hi"), KEY))
        .await
        .unwrap();
    // tonic merges a unary call's trailers into its metadata.
    assert_eq!(resp.metadata().get("aigw-cost-usd").unwrap(), "0.006000");
    let overhead: u64 = resp
        .metadata()
        .get("aigw-overhead-us")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(overhead > 0);
}

#[tokio::test]
async fn streams_without_usage_are_estimated_and_marked() {
    // No usage chunk: the gateway counts (bytes / 4, rounded up), says so, and labels the metric.
    let events = vec![
        chunk("abcdefgh"),
        chunk("ij"),
        finish_chunk("stop"),
        "[DONE]".to_owned(),
    ];
    let up = Upstream::start(vec![Reply::sse(&events)]).await;
    let gw = Gateway::start(observed(&up, "")).await;
    let mut s = gw
        .client()
        .await
        .stream_generate(authed(stream_request("m", "12345678"), KEY))
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(c) = s.message().await.unwrap() {
        last = Some(c);
    }
    let last = last.unwrap();
    assert!(last.is_complete && last.usage_estimated);
    let u = last.usage.unwrap();
    assert_eq!((u.prompt_tokens, u.completion_tokens), (2 + 4, 3));
    let (_, text) = admin_get(&gw, "/metrics", None).await;
    assert_eq!(
        metric(
            &text,
            r#"aigw_tokens_total{estimated="true",key="tester",kind="completion",model="m"}"#
        ),
        3.0
    );
}

#[tokio::test]
async fn a_cancelled_stream_is_charged_for_the_prompt_and_what_was_delivered() {
    let up = Upstream::start(vec![
        Reply::sse(&[chunk("abcd"), chunk("efgh")]).end(End::Hang)
    ])
    .await;
    let gw = Gateway::start(observed(&up, "")).await;
    let mut s = gw
        .client()
        .await
        .stream_generate(authed(stream_request("m", "12345678"), KEY))
        .await
        .unwrap()
        .into_inner();
    s.message().await.unwrap();
    s.message().await.unwrap();
    drop(s);
    up.wait_aborted(1).await;
    // The record is written as the relay task ends, right after it dropped the upstream.
    let gwr = &gw;
    let text = eventually("the cancelled stream is counted", || async move {
        let text = admin_get(gwr, "/metrics", None).await.1;
        text.contains("aigw_cancellations_total{rpc=\"StreamGenerate\"} 1")
            .then_some(text)
    })
    .await;
    assert_eq!(
        metric(&text, r#"aigw_cancellations_total{rpc="StreamGenerate"}"#),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"aigw_tokens_total{estimated="true",key="tester",kind="prompt",model="m"}"#
        ),
        6.0
    );
    assert_eq!(
        metric(
            &text,
            r#"aigw_tokens_total{estimated="true",key="tester",kind="completion",model="m"}"#
        ),
        2.0
    );
    let report = usage(&gw).await;
    assert_eq!(report["keys"]["tester"]["today"]["tokens"], 8);
}

#[tokio::test]
async fn a_daily_budget_stops_a_key_once_spent() {
    // $0.006 a call; a $0.01 budget admits two calls, then refuses until midnight UTC.
    let up = Upstream::start(vec![Reply::json(
        200,
        &completion("fine", "stop", 1000, 500),
    )])
    .await;
    let gw = Gateway::start(observed(&up, "daily_budget_usd = 0.01")).await;
    let mut client = gw.client().await;
    client
        .generate(authed(generate("m", "hi"), KEY))
        .await
        .unwrap();
    client
        .generate(authed(generate("m", "hi"), KEY))
        .await
        .unwrap();
    let status = client
        .generate(authed(generate("m", "hi"), KEY))
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::ResourceExhausted,
        "daily budget of $0.01 spent",
    );
    assert!(retry_after_secs(&status) <= 86_400);
    assert_eq!(up.calls(), 2);
    let report = usage(&gw).await;
    let today = &report["keys"]["tester"]["today"];
    assert_eq!(today["requests"], 3);
    assert!(
        (today["cost_usd"].as_f64().unwrap() - 0.012).abs() < 1e-9,
        "{today}"
    );
    let (_, text) = admin_get(&gw, "/metrics", None).await;
    assert_eq!(
        metric(
            &text,
            r#"aigw_limit_rejections_total{key="tester",limit="budget"}"#
        ),
        1.0
    );

    // Raised at run time through the admin API: admitted again.
    let (put, _) = put_limits(&gw, "tester", json!({"daily_budget_usd": 1.0})).await;
    assert_eq!(put, 200);
    client
        .generate(authed(generate("m", "hi"), KEY))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_usage_api_reports_and_changes_limits() {
    let up = Upstream::start(vec![Reply::json(200, &completion("fine", "stop", 3, 1))]).await;
    let gw = Gateway::start(observed(&up, "rpm = 100")).await;
    let mut client = gw.client().await;
    for _ in 0..3 {
        client
            .generate(authed(generate("m", "hi"), KEY))
            .await
            .unwrap();
    }
    assert_eq!(admin_get(&gw, "/v1/usage", None).await.0, 401);
    assert_eq!(
        admin_get(&gw, "/v1/usage", Some("wrong-admin-key-000"))
            .await
            .0,
        401
    );
    let report = usage(&gw).await;
    let key = &report["keys"]["tester"];
    assert_eq!(key["requests_last_minute"], 3);
    assert_eq!(key["tokens_last_minute"], 12);
    assert_eq!(key["limits"]["rpm"], 100);
    assert_eq!(report["models"]["m"]["today"]["tokens"], 12);

    // Lower the key's rpm to 3 at run time: the next call is refused.
    let (put, body) = put_limits(&gw, "tester", json!({"rpm": 3, "tpm": 50000})).await;
    assert_eq!(put, 200);
    let view: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["rpm"], 3);
    let status = client
        .generate(authed(generate("m", "hi"), KEY))
        .await
        .unwrap_err();
    assert_status(&status, Code::ResourceExhausted, "3 requests per minute");
    assert_eq!(put_limits(&gw, "tester", json!({"rpm": 0})).await.0, 400);
    assert_eq!(
        put_limits(&gw, "tester", json!({"surprise": 1})).await.0,
        400
    );
    assert_eq!(put_limits(&gw, "nobody", json!({})).await.0, 404);
}

#[tokio::test]
async fn probes_follow_the_lifecycle() {
    let up = Upstream::start(vec![Reply::sse(&[chunk("a")]).end(End::Hang)]).await;
    let mut gw = Gateway::start(observed(&up, "")).await;
    assert_eq!(
        admin_get(&gw, "/healthz", None).await,
        (200, "ok\n".to_owned())
    );
    assert_eq!(
        admin_get(&gw, "/readyz", None).await,
        (200, "ready\n".to_owned())
    );
    // A stream in flight keeps the drain going; meanwhile the replica reports not ready.
    let mut s = gw
        .client()
        .await
        .stream_generate(authed(stream_request("m", "hi"), KEY))
        .await
        .unwrap()
        .into_inner();
    s.message().await.unwrap();
    gw.shutdown();
    let gwr = &gw;
    let ready = eventually("readiness turns 503", || async move {
        let ready = admin_get(gwr, "/readyz", None).await;
        (ready.0 == 503).then_some(ready)
    })
    .await;
    assert_eq!(ready, (503, "draining\n".to_owned()));
    assert_eq!(
        admin_get(&gw, "/healthz", None).await.0,
        200,
        "alive while draining"
    );
    drop(s);
}

#[tokio::test]
async fn the_scaling_signal_follows_the_minutes() {
    let up = Upstream::start(vec![Reply::json(200, &completion("fine", "stop", 3, 1))]).await;
    let mut cfg = observed(&up, "");
    cfg.scaling.capacity_rpm_per_replica = 2.0;
    cfg.scaling.headroom = 0.0;
    let gw = Gateway::start(cfg).await;
    let mut client = gw.client().await;
    for _ in 0..5 {
        client
            .generate(authed(generate("m", "hi"), KEY))
            .await
            .unwrap();
    }
    let outlook = gw.core.scaling_tick(); // what the server's ticker does every minute
    assert_eq!(outlook.last_minute, 5);
    assert!(outlook.forecast_peak_per_minute >= 5.0);
    assert_eq!(
        outlook.recommended_replicas, 3,
        "5 a minute at 2 per replica"
    );
    let (status, body) = admin_get(&gw, "/v1/scaling", Some(ADMIN_KEY)).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            v["last_minute"].as_u64(),
            v["recommended_replicas"].as_u64()
        ),
        (Some(5), Some(3))
    );
    let (_, text) = admin_get(&gw, "/metrics", None).await;
    assert_eq!(metric(&text, "aigw_requests_last_minute"), 5.0);
    assert_eq!(metric(&text, "aigw_recommended_replicas"), 3.0);
    assert_eq!(gw.core.scaling_tick().last_minute, 0, "a quiet minute");
}

#[tokio::test]
async fn retries_and_fallbacks_are_counted() {
    let flaky = Upstream::start(vec![Reply::json(503, r#"{"error":{"message":"busy"}}"#)]).await;
    let good = Upstream::start(vec![Reply::json(200, &completion("fine", "stop", 3, 1))]).await;
    let text = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [[keys]]
        name = "tester"
        env = "TEST_KEY"
        [[upstreams]]
        name = "flaky"
        kind = "openai"
        base_url = "{}"
        [[upstreams]]
        name = "good"
        kind = "openai"
        base_url = "{}"
        [[models]]
        name = "m"
        max_output_tokens = 100
        routes = [{{ upstream = "flaky", model = "x" }}, {{ upstream = "good", model = "y" }}]
        [[models]]
        name = "f"
        max_output_tokens = 100
        routes = [{{ upstream = "flaky", model = "x" }}]
        [models.policy]
        retry = {{ attempts = 2, backoff = "1ms" }}
        "#,
        flaky.base_url(),
        good.base_url()
    );
    let gw = Gateway::start(config(&text)).await;
    gw.client()
        .await
        .generate(authed(generate("m", "hi"), KEY))
        .await
        .unwrap();
    let (_, text) = admin_get(&gw, "/metrics", None).await;
    assert_eq!(metric(&text, r#"aigw_retries_total{model="m"}"#), 1.0);
    assert_eq!(metric(&text, r#"aigw_fallbacks_total{model="m"}"#), 1.0);
    assert_eq!(
        metric(
            &text,
            r#"aigw_upstream_duration_seconds_count{model="m",upstream="good"}"#
        ),
        1.0
    );
    // A call that failed after reaching the upstream is timed too, under the upstream it last tried.
    let status = gw
        .client()
        .await
        .generate(authed(generate("f", "hi"), KEY))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    let (_, text) = admin_get(&gw, "/metrics", None).await;
    assert_eq!(
        metric(
            &text,
            r#"aigw_upstream_duration_seconds_count{model="f",upstream="flaky"}"#
        ),
        1.0
    );
    assert_eq!(metric(&text, r#"aigw_retries_total{model="f"}"#), 1.0);
}

/// A limit set at run time counts the calls already in its window: after 3 calls, rpm = 4 admits exactly one
/// more.
#[tokio::test]
async fn a_limit_set_at_run_time_counts_the_calls_already_made() {
    let up = Upstream::start(vec![Reply::json(200, &completion("ok", "stop", 3, 2))]).await;
    let gw = Gateway::start(observed(&up, "")).await;
    let mut client = gw.client().await;
    for _ in 0..3 {
        client
            .generate(authed(generate("m", "hi"), KEY))
            .await
            .unwrap();
    }
    assert_eq!(put_limits(&gw, "tester", json!({"rpm": 4})).await.0, 200);
    client
        .generate(authed(generate("m", "hi"), KEY))
        .await
        .unwrap();
    let refused = client
        .generate(authed(generate("m", "hi"), KEY))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert_eq!(up.calls(), 4);
}

/// `[usage_records]`: one JSON line per call with what billing needs, the refused call included, written out
/// by the time the gateway has shut down.
#[tokio::test]
async fn each_call_leaves_a_usage_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.jsonl");
    let up = Upstream::start(vec![Reply::json(200, &completion("ok", "stop", 1000, 500))]).await;
    let top = format!("[usage_records]\npath = \"{}\"", path.display());
    let mut gw = Gateway::start(config(&priced_config_text(
        &up.base_url(),
        &top,
        "rpm = 1",
        "",
    )))
    .await;
    let mut client = gw.client().await;
    let mut req = authed(generate("m", "hi"), KEY);
    req.metadata_mut()
        .insert("x-request-id", "bill-me-1".parse().unwrap());
    client.generate(req).await.unwrap();
    let refused = client
        .generate(authed(generate("m", "hi"), KEY))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    gw.shutdown();
    gw.task.await.unwrap();
    let lines: Vec<Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let first = &lines[0];
    assert_eq!(first["request_id"], "bill-me-1");
    assert_eq!(
        (first["key"].as_str(), first["model"].as_str()),
        (Some("tester"), Some("m"))
    );
    assert_eq!(
        (first["upstream"].as_str(), first["code"].as_str()),
        (Some("a"), Some("OK"))
    );
    assert_eq!(
        (
            first["prompt_tokens"].as_i64(),
            first["completion_tokens"].as_i64()
        ),
        (Some(1000), Some(500))
    );
    assert!((first["cost_usd"].as_f64().unwrap() - 0.006).abs() < 1e-9);
    assert!(first["time_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(lines[1]["code"], "RESOURCE_EXHAUSTED");
    assert_eq!(lines[1]["cost_usd"], 0.0);
}

/// The dashboard's charts are kept in the gateway (`GET /dashboard/history`, a snapshot every two seconds), so a
/// page drawn anew starts with the calls made before it: here, the snapshots come to count the calls just made.
#[tokio::test]
async fn the_dashboard_history_keeps_what_the_charts_draw() {
    let gw = Gateway::start(config(&mock_config_text("", 10_000))).await;
    let mut client = gw.client().await;
    for _ in 0..2 {
        client
            .generate(authed(generate("big", "hi"), KEY))
            .await
            .unwrap();
    }
    let kept: Value = eventually("a snapshot with both calls", || async {
        let (status, body) = admin_get(&gw, "/dashboard/history", None).await;
        assert_eq!(status, 200);
        let kept: Value = serde_json::from_str(&body).unwrap();
        let ok = &kept.as_array()?.last()?["metrics"]["aigw_requests_total"];
        let calls = ok
            .as_array()?
            .iter()
            .find(|s| s["labels"]["code"] == "OK")?;
        (calls["value"].as_f64()? >= 2.0).then_some(kept)
    })
    .await;
    let last = kept.as_array().unwrap().last().unwrap();
    // Reduced to what the charts read: the latency histogram summed over its series, the outlook.
    let latency = &last["metrics"]["aigw_request_duration_seconds"];
    assert_eq!(latency.as_array().unwrap().len(), 1);
    assert!(latency[0]["count"].as_u64().unwrap() >= 2);
    assert!(last["outlook"].is_object());
    assert!(last["metrics"].get("aigw_tokens_total").is_none());
}
