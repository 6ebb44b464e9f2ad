//! Embeddings: the `Embed` RPC and `POST /v1/embeddings`, against the mock (deterministic vectors) and an
//! OpenAI-style upstream (its request and base64 answer), through the same limits, cache and retries as chat.

use crate::common::{upstream::*, *};
use aigw::proto::{EmbedRequest, EmbedResponse};
use base64::Engine;
use serde_json::{json, Value};

/// Chat model "big" and embedding model "emb" (cached, priced) on the mock; key "tester" with `limits`.
fn mock_embeddings(limits: &str) -> aigw::config::Config {
    config(&format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [[keys]]
        name = "tester"
        env = "TEST_KEY"
        limits = {{ {limits} }}
        [[upstreams]]
        name = "mock"
        kind = "mock"
        first_token_latency = "0s"
        [[models]]
        name = "big"
        max_output_tokens = 100
        routes = [{{ upstream = "mock", model = "big" }}]
        [[models]]
        name = "emb"
        kind = "embedding"
        aliases = ["text-embedding-3-small"]
        price = {{ input_per_million = 1000.0 }}
        cache = {{ ttl = "1m" }}
        routes = [{{ upstream = "mock", model = "text-embedding-3-small" }}]
        "#
    ))
}

fn embed(model: &str, input: &[&str]) -> EmbedRequest {
    EmbedRequest {
        model: model.into(),
        input: input.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

#[tokio::test]
async fn the_mock_embeds_each_text_as_the_same_unit_vector_every_time() {
    let gw = Gateway::start(mock_embeddings("")).await;
    let mut client = gw.client().await;
    let req = EmbedRequest {
        dimensions: Some(64),
        ..embed(
            "text-embedding-3-small",
            &["the gateway streams", "bananas"],
        )
    };
    let first = client.embed(authed(req.clone(), KEY)).await.unwrap();
    assert_eq!(
        first.metadata().get("aigw-cache").unwrap(),
        "miss",
        "the model caches"
    );
    // 4 tokens at $1000/M, priced like a prompt.
    assert_eq!(first.metadata().get("aigw-cost-usd").unwrap(), "0.004000");
    let first = first.into_inner();
    assert_eq!(first.model, "emb");
    assert_eq!(first.embeddings.len(), 2);
    for e in &first.embeddings {
        assert_eq!(e.values.len(), 64);
        assert!((norm(&e.values) - 1.0).abs() < 1e-5);
    }
    assert_ne!(first.embeddings[0], first.embeddings[1]);
    let u = first.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (4, 0, 4)
    );
    let again = client.embed(authed(req, KEY)).await.unwrap();
    assert_eq!(again.metadata().get("aigw-cache").unwrap(), "hit");
    assert_eq!(again.into_inner().embeddings, first.embeddings);
    // One text alone gets the vector it had in the batch.
    let alone = EmbedRequest {
        dimensions: Some(64),
        ..embed("emb", &["bananas"])
    };
    let alone = client.embed(authed(alone, KEY)).await.unwrap().into_inner();
    assert_eq!(alone.embeddings[0], first.embeddings[1]);
    let (_, metrics) = admin_get(&gw, "/metrics", None).await;
    let tokens = metric(
        &metrics,
        r#"aigw_tokens_total{estimated="false",key="tester",kind="prompt",model="emb"}"#,
    );
    assert_eq!(tokens, 5.0, "the hit was free: 4 + 1");
    assert!(
        metrics.contains(r#"aigw_requests_total{code="OK",key="tester",model="emb",rpc="Embed"}"#)
    );
}

#[tokio::test]
async fn bad_embeddings_requests_are_refused_by_name() {
    let gw = Gateway::start(mock_embeddings("")).await;
    let mut client = gw.client().await;
    let too_many: Vec<String> = (0..2049).map(|i| i.to_string()).collect();
    let cases = [
        (embed("emb", &[]), "input: 0 texts"),
        (
            EmbedRequest {
                input: too_many,
                ..embed("emb", &[])
            },
            "input: 2049 texts",
        ),
        (embed("emb", &["a", ""]), "input[1]"),
        (
            EmbedRequest {
                dimensions: Some(0),
                ..embed("emb", &["a"])
            },
            "dimensions",
        ),
        (embed("big", &["a"]), "'big' is a chat model"),
        // One small request must not allocate gigabytes (the hostile review's OOM: 80 bytes, 2 GB in 4 s).
        (
            EmbedRequest {
                dimensions: Some(i32::MAX),
                ..embed("emb", &["a"])
            },
            "dimensions: 2147483647 is more than the 8192",
        ),
        (
            EmbedRequest {
                input: (0..2048).map(|i| i.to_string()).collect(),
                dimensions: Some(8192),
                ..embed("emb", &[])
            },
            "more than the 8388608 one call may ask for",
        ),
    ];
    for (req, says) in cases {
        let err = client.embed(authed(req, KEY)).await.unwrap_err();
        assert_status(&err, tonic::Code::InvalidArgument, says);
    }
    // The REST door refuses it by name too, before any work.
    let (status, text) = post_json(
        &gw,
        "/v1/embeddings",
        KEY,
        &serde_json::json!({"model": "emb", "input": "a", "dimensions": 1_000_000_000_000u64}),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("dimensions"), "{text}");
    let err = client
        .embed(authed(embed("nope", &["a"]), KEY))
        .await
        .unwrap_err();
    assert_status(&err, tonic::Code::InvalidArgument, "unknown model 'nope'");
    // And the other way round: chat calls on an embedding model.
    let err = client
        .generate(authed(generate("emb", "hi"), KEY))
        .await
        .unwrap_err();
    assert_status(
        &err,
        tonic::Code::InvalidArgument,
        "'emb' is an embedding model: call Embed",
    );
}

#[tokio::test]
async fn tokens_per_minute_count_the_input() {
    // The first text is reserved at 4 tokens (13 bytes at about 4 a token) and reconciled to the mock's 3
    // words; the second's 5 (19 bytes) would make 8, over the 7 a minute.
    let gw = Gateway::start(mock_embeddings("tpm = 7")).await;
    let mut client = gw.client().await;
    let no_cache = |req: EmbedRequest| {
        let mut r = authed(req, KEY);
        r.metadata_mut()
            .insert("cache-control", "no-store".parse().unwrap());
        r
    };
    client
        .embed(no_cache(embed("emb", &["one two three"])))
        .await
        .unwrap();
    let err = client
        .embed(no_cache(embed("emb", &["four five six seven"])))
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("tokens"), "{}", err.message());
}

/// Embedding model "emb" on an OpenAI-style upstream, retried once.
fn upstream_embeddings(up: &Upstream) -> aigw::config::Config {
    config(&format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [[keys]]
        name = "tester"
        env = "TEST_KEY"
        [[upstreams]]
        name = "openai"
        kind = "openai"
        base_url = "{}"
        api_key_env = "TEST_UPSTREAM_KEY"
        [[models]]
        name = "emb"
        kind = "embedding"
        routes = [{{ upstream = "openai", model = "text-embedding-3-large" }}]
        [models.policy]
        retry = {{ attempts = 2, backoff = "1ms" }}
        "#,
        up.base_url()
    ))
}

fn b64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn an_openai_upstream_is_asked_in_base64_and_retried_like_chat() {
    let answer = json!({"object": "list", "model": "text-embedding-3-large",
        "data": [{"object": "embedding", "index": 1, "embedding": b64(&[0.0, 1.0])},
                 {"object": "embedding", "index": 0, "embedding": b64(&[0.6, 0.8])}],
        "usage": {"prompt_tokens": 5, "total_tokens": 5}});
    let overloaded = json!({"error": {"message": "overloaded", "type": "server_error"}});
    let one = json!({"object": "list", "model": "text-embedding-3-large",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5]}],
        "usage": {"prompt_tokens": 1, "total_tokens": 1}});
    let up = Upstream::start(vec![
        Reply::json(503, &overloaded.to_string()),
        Reply::json(200, &answer.to_string()),
        Reply::json(200, &answer.to_string()),
        Reply::json(200, &one.to_string()),
    ])
    .await;
    let gw = Gateway::start(upstream_embeddings(&up)).await;
    let mut client = gw.client().await;
    let req = EmbedRequest {
        dimensions: Some(2),
        user: "u-1".into(),
        ..embed("emb", &["first", "second"])
    };
    let resp: EmbedResponse = client.embed(authed(req, KEY)).await.unwrap().into_inner();
    let values: Vec<Vec<f32>> = resp.embeddings.into_iter().map(|e| e.values).collect();
    assert_eq!(values, vec![vec![0.6, 0.8], vec![0.0, 1.0]]);
    assert_eq!(resp.usage.unwrap().prompt_tokens, 5);
    assert!(!resp.usage_estimated);
    let seen = up.requests();
    assert_eq!(seen.len(), 2, "the 503 was retried");
    assert_eq!(seen[1].path, "/v1/embeddings");
    assert_eq!(
        seen[1].header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    assert_eq!(
        seen[1].body,
        json!({"model": "text-embedding-3-large", "input": ["first", "second"], "dimensions": 2,
               "encoding_format": "base64", "user": "u-1"})
    );

    // The REST door: floats by default, base64 when asked, as the openai SDK does.
    let post = |body: Value| {
        http()
            .post(format!("http://{}/v1/embeddings", gw.addr))
            .bearer_auth(KEY)
            .body(body.to_string())
            .send()
    };
    let resp = post(json!({"model": "emb", "input": ["first", "second"]}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "emb");
    assert_eq!(
        body["data"],
        json!([{"object": "embedding", "index": 0, "embedding": [0.6, 0.8]},
               {"object": "embedding", "index": 1, "embedding": [0.0, 1.0]}])
    );
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 5, "total_tokens": 5})
    );
    let resp = post(json!({"model": "emb", "input": "x", "encoding_format": "base64"}))
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(body["data"][0]["embedding"], b64(&[0.25, -0.5]));
    let resp = post(json!({"model": "emb", "input": [1, 2]}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("token arrays"));
}

#[test]
fn embedding_models_are_checked_at_start() {
    let base = |model: &str, upstream_kind: &str| {
        format!(
            r#"
            [server]
            listen = "127.0.0.1:0"
            [[upstreams]]
            name = "u"
            kind = "{upstream_kind}"
            base_url = "https://example.invalid/v1"
            [[models]]
            name = "e"
            kind = "embedding"
            {model}
            routes = [{{ upstream = "u", model = "x" }}]
            "#
        )
    };
    let parse = |text: &str| aigw::config::Config::parse(text, |_| None).map(|_| ());
    assert!(parse(&base("", "openai")).is_ok());
    for (model, kind, says) in [
        (
            "max_output_tokens = 10",
            "openai",
            "takes no max_output_tokens",
        ),
        ("context_window = 8000", "openai", "context_window"),
        ("", "anthropic", "no embeddings"),
        ("kind = \"vision\"", "openai", "kind"),
    ] {
        let text = base(model, kind).replace("kind = \"embedding\"\n            kind", "kind");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains(says), "{model} / {kind}: {err}");
    }
    // A chat model still needs its output limit.
    let chat = base("", "openai").replace("kind = \"embedding\"", "");
    let err = parse(&chat).unwrap_err().to_string();
    assert!(err.contains("max_output_tokens: required"), "{err}");
}
