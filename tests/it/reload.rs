//! Reloading the config file while serving (`POST /v1/reload`; `SIGHUP` does the same, tested end to end in
//! tests/e2e/test_reload.py): new models, keys, routes and prices at once, calls in flight untouched (their
//! route and price are the ones they started with), rate windows kept, an invalid file refused with the old
//! config kept, and start-only settings named.

use crate::common::*;

/// `big`'s route and price before a reload: the upstream "mock", a tenth of a cent a token.
const BIG: &str = r#"routes = [{ upstream = "mock", model = "big" }]
        price = { input_per_million = 1000.0, output_per_million = 1000.0 }"#;

fn file(models: &str, keys: &str, cache: &str) -> String {
    file_with(BIG, models, keys, cache)
}

fn file_with(big: &str, models: &str, keys: &str, cache: &str) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [admin]
        listen = "127.0.0.1:0"
        key_env = "TEST_ADMIN_KEY"
        [cache]
        max_entries = {cache}
        [[keys]]
        name = "tester"
        env = "TEST_KEY"
        {keys}
        [[upstreams]]
        name = "mock"
        kind = "mock"
        first_token_latency = "0s"
        tokens_per_second = 20
        [[upstreams]]
        name = "other"
        kind = "mock"
        first_token_latency = "0s"
        [[models]]
        name = "big"
        max_output_tokens = 100
        {big}
        {models}
        "#
    )
}

const SMALL: &str = r#"
        [[models]]
        name = "small"
        max_output_tokens = 100
        routes = [{ upstream = "mock", model = "small" }]"#;

async fn reload(gw: &Gateway) -> (u16, serde_json::Value) {
    let resp = http()
        .post(format!("http://{}/v1/reload", gw.admin))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_str(&resp.text().await.unwrap()).unwrap(),
    )
}

async fn generate_as(gw: &Gateway, key: &str, model: &str) -> Result<String, tonic::Status> {
    gw.client()
        .await
        .generate(authed(
            with_config(
                generate(model, "hi"),
                aigw::proto::GenerationConfig {
                    max_tokens: Some(2),
                    ..Default::default()
                },
            ),
            key,
        ))
        .await
        .map(|r| r.into_inner().content)
}

/// Calls `big` has had through each upstream, from the upstream-time histogram's count.
async fn calls_through(gw: &Gateway, upstream: &str) -> f64 {
    let (_, text) = admin_get(gw, "/metrics", None).await;
    let series =
        format!("aigw_upstream_duration_seconds_count{{model=\"big\",upstream=\"{upstream}\"}}");
    if text.lines().any(|l| l.starts_with(&series)) {
        metric(&text, &series)
    } else {
        0.0
    }
}

/// The cost a call was booked at, from its `aigw-cost-usd` trailer, against its tokens.
fn cost_per_token(trailers: &tonic::metadata::MetadataMap, usage: &aigw::proto::Usage) -> f64 {
    let cost: f64 = trailers
        .get("aigw-cost-usd")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    cost / f64::from(usage.total_tokens)
}

#[tokio::test]
async fn a_new_model_key_route_and_price_work_at_once_and_a_stream_in_flight_keeps_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, file("", "", "100")).unwrap();
    let gw = Gateway::start_from_file(&path).await;
    assert_eq!(
        generate_as(&gw, KEY, "small").await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    // A stream that will outlive the reload (20 tokens a second).
    let mut stream = gw
        .client()
        .await
        .stream_generate(authed(stream_request("big", "a long answer"), KEY))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(!first.delta.is_empty());

    // The reload adds a model and a key, moves `big` to the upstream "other" and makes it cost a dollar a token.
    let second_key = "[[keys]]\n        name = \"second\"\n        env = \"TEST_LIMITED_KEY\"";
    let moved = r#"routes = [{ upstream = "other", model = "big" }]
        price = { input_per_million = 1000000.0, output_per_million = 1000000.0 }"#;
    std::fs::write(&path, file_with(moved, SMALL, second_key, "100")).unwrap();
    let (status, body) = reload(&gw).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["summary"], "2 models, 2 keys");
    assert_eq!(body["restart_needed"], serde_json::json!([]));

    assert!(generate_as(&gw, KEY, "small").await.is_ok());
    // A new call to `big` takes the new route at the new price.
    let resp = gw
        .client()
        .await
        .generate(authed(generate("big", "hi"), LIMITED_KEY))
        .await
        .unwrap();
    let usage = resp.get_ref().usage.unwrap();
    assert_eq!(cost_per_token(resp.metadata(), &usage), 1.0);
    assert_eq!(calls_through(&gw, "other").await, 1.0);
    // The stream started before the reload ends as it would have, with its final chunk, on its first route and
    // at the price it started with.
    let mut last = first;
    while let Some(chunk) = stream.message().await.unwrap() {
        last = chunk;
    }
    assert!(last.is_complete);
    let trailers = stream.trailers().await.unwrap().unwrap();
    assert_eq!(
        cost_per_token(&trailers, last.usage.as_ref().unwrap()),
        0.001
    );
    assert_eq!(calls_through(&gw, "mock").await, 1.0);
    assert_eq!(calls_through(&gw, "other").await, 1.0);
    // The usage book knows the new key and model.
    let (_, usage) = admin_get(&gw, "/v1/usage", Some(ADMIN_KEY)).await;
    let usage: serde_json::Value = serde_json::from_str(&usage).unwrap();
    assert_eq!(usage["keys"]["second"]["today"]["requests"], 1);
    assert_eq!(usage["models"]["small"]["today"]["requests"], 1);
}

#[tokio::test]
async fn an_invalid_file_is_refused_and_the_running_config_stays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, file("", "", "100")).unwrap();
    let gw = Gateway::start_from_file(&path).await;
    std::fs::write(&path, file("[[models]]\nname = \"broken\"", "", "100")).unwrap();
    let (status, body) = reload(&gw).await;
    assert_eq!(status, 422);
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("config.toml") && error.contains("missing field `routes`"),
        "{error}"
    );
    assert!(generate_as(&gw, KEY, "big").await.is_ok());
    // Without the admin key, no reload.
    let resp = http()
        .post(format!("http://{}/v1/reload", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test]
async fn a_key_keeps_its_window_and_start_only_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, file("", "limits = { rpm = 2 }", "100")).unwrap();
    let gw = Gateway::start_from_file(&path).await;
    for _ in 0..2 {
        generate_as(&gw, KEY, "big").await.unwrap();
    }
    // rpm 2 -> 3, and a cache bound changed: the window's two calls still count, so one more fits.
    std::fs::write(&path, file("", "limits = { rpm = 3 }", "200")).unwrap();
    let (status, body) = reload(&gw).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["restart_needed"], serde_json::json!(["cache"]));
    generate_as(&gw, KEY, "big").await.unwrap();
    let refused = generate_as(&gw, KEY, "big").await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    // The refusal names a wait within the minute.
    let wait = retry_after_secs(&refused);
    assert!((1..=60).contains(&wait), "{wait}");
    // A changed concurrency limit makes a new limiter: its windows start empty.
    std::fs::write(
        &path,
        file("", "limits = { rpm = 3, concurrency = 4 }", "200"),
    )
    .unwrap();
    assert_eq!(reload(&gw).await.0, 200);
    generate_as(&gw, KEY, "big").await.unwrap();
}
