//! Limits on one model's calls (`model_limits`) for a key, a group and a token's caller, on top of their own:
//! each refusal names the model; across three replicas sharing Redis the window is the fleet's.

use serde_json::json;
use tonic::Code;

use crate::common::{redis::Redis, signer::Signer, upstream::Upstream, *};

fn text(top: &str, jwks: &str) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        {top}
        [[groups]]
        name = "team"
        model_limits = {{ big = {{ rpm = 3 }} }}
        [[keys]]
        name = "tester"
        env = "TEST_KEY"
        limits = {{ rpm = 100 }}
        model_limits = {{ "big-alias" = {{ rpm = 2, tpm = 100000 }}, slow = {{ concurrency = 1 }} }}
        [[keys]]
        name = "ann"
        env = "TEST_LIMITED_KEY"
        group = "team"
        [[keys]]
        name = "bob"
        env = "TEST_UPSTREAM_KEY"
        group = "team"
        [[auth.jwt]]
        name = "corp"
        issuer = "https://id.test/"
        jwks_url = "{jwks}"
        audiences = ["aigw"]
        model_limits = {{ big = {{ rpm = 1 }} }}
        [[upstreams]]
        name = "mock"
        kind = "mock"
        first_token_latency = "0s"
        tokens_per_second = 100000
        [[upstreams]]
        name = "mock-slow"
        kind = "mock"
        first_token_latency = "0s"
        tokens_per_second = 2
        [[models]]
        name = "big"
        aliases = ["big-alias"]
        max_output_tokens = 100
        routes = [{{ upstream = "mock", model = "big" }}]
        [[models]]
        name = "small"
        max_output_tokens = 100
        routes = [{{ upstream = "mock", model = "small" }}]
        [[models]]
        name = "slow"
        max_output_tokens = 100
        routes = [{{ upstream = "mock-slow", model = "slow" }}]
        "#
    )
}

async fn call(gw: &Gateway, key: &str, model: &str) -> Result<(), tonic::Status> {
    gw.client()
        .await
        .generate(authed(generate(model, "hi"), key))
        .await
        .map(drop)
}

#[tokio::test]
async fn a_keys_limit_on_a_model_holds_beside_its_own_and_names_the_model() {
    let gw = Gateway::start(config(&text("", "https://id.test/keys"))).await;
    call(&gw, KEY, "big").await.unwrap();
    call(&gw, KEY, "big-alias").await.unwrap(); // an alias is the same model
    let refused = call(&gw, KEY, "big").await.unwrap_err();
    assert_status(
        &refused,
        Code::ResourceExhausted,
        "key 'tester' on model 'big': 2 requests per minute",
    );
    // Other models are the key's own limits only.
    for _ in 0..3 {
        call(&gw, KEY, "small").await.unwrap();
    }
    // The rate-limit headers tell the tightest window: the model's.
    let resp = http()
        .post(format!("http://{}/v1/chat/completions", gw.addr))
        .bearer_auth(KEY)
        .body(
            json!({"model": "small", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-ratelimit-limit-requests"], "100");
    let (_, metrics) = admin_get(&gw, "/metrics", None).await;
    assert!(
        metrics.contains("aigw_limit_rejections_total{key=\"tester\",limit=\"rpm\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_models_concurrency_limit_counts_the_streams_in_flight() {
    let gw = Gateway::start(config(&text("", "https://id.test/keys"))).await;
    let mut held = gw
        .client()
        .await
        .stream_generate(authed(stream_request("slow", "a long answer please"), KEY))
        .await
        .unwrap()
        .into_inner();
    held.message().await.unwrap();
    let refused = gw
        .client()
        .await
        .stream_generate(authed(stream_request("slow", "hi"), KEY))
        .await
        .unwrap_err();
    assert_status(
        &refused,
        Code::ResourceExhausted,
        "on model 'slow': 1 calls already in flight",
    );
    call(&gw, KEY, "small").await.unwrap();
    drop(held);
    eventually("the slot is given back when the stream ends", || async {
        let opened = gw
            .client()
            .await
            .stream_generate(authed(stream_request("slow", "hi"), KEY))
            .await;
        opened.ok().map(drop)
    })
    .await;
}

#[tokio::test]
async fn a_groups_limit_on_a_model_is_shared_by_its_keys() {
    let gw = Gateway::start(config(&text("", "https://id.test/keys"))).await;
    call(&gw, LIMITED_KEY, "big").await.unwrap();
    call(&gw, UPSTREAM_KEY, "big").await.unwrap();
    call(&gw, LIMITED_KEY, "big").await.unwrap();
    let refused = call(&gw, UPSTREAM_KEY, "big").await.unwrap_err();
    assert_status(
        &refused,
        Code::ResourceExhausted,
        "group 'team' on model 'big': 3 requests per minute",
    );
    call(&gw, UPSTREAM_KEY, "small").await.unwrap();
}

#[tokio::test]
async fn a_token_callers_limit_on_a_model_is_their_own() {
    let key = Signer::es256();
    let jwks = Upstream::start(vec![upstream::Reply::json(
        200,
        &json!({ "keys": [key.jwk("k1")] }).to_string(),
    )])
    .await;
    let gw = Gateway::start(config(&text("", &format!("{}/keys", jwks.base_url())))).await;
    let token = |sub: &str| {
        let claims =
            json!({"iss": "https://id.test/", "aud": "aigw", "sub": sub, "exp": 4_000_000_000u64});
        key.token(json!({"alg": "ES256", "kid": "k1"}), claims)
    };
    call(&gw, &token("alice"), "big").await.unwrap();
    let refused = call(&gw, &token("alice"), "big").await.unwrap_err();
    assert_status(
        &refused,
        Code::ResourceExhausted,
        "caller 'corp:alice' on model 'big': 1 requests per minute",
    );
    call(&gw, &token("alice"), "small").await.unwrap();
    call(&gw, &token("bob"), "big").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_on_a_model_holds_across_three_replicas_sharing_redis() {
    let redis = Redis::start();
    let shared = format!(
        "[shared]\nredis_url = \"{}\"\ntimeout = \"5s\"",
        redis.url()
    );
    let fleet = replicas(&text(&shared, "https://id.test/keys"), 3).await;
    let mut admitted = 0;
    for i in 0..9 {
        match call(&fleet[i % 3], KEY, "big").await {
            Ok(()) => admitted += 1,
            Err(refused) => assert_status(&refused, Code::ResourceExhausted, "on model 'big'"),
        }
    }
    assert_eq!(
        admitted, 2,
        "the model's limit is the fleet's, not each replica's"
    );
    call(&fleet[2], KEY, "small").await.unwrap();
}
