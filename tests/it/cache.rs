//! The response cache, end to end: a scripted upstream that counts its calls, the gateway in front of it with
//! caching on for model "m". (Expiry and eviction are unit-tested in `src/core/cache/tests.rs` on paused time.)

use crate::common::{upstream::*, *};
use aigw::proto::{GenerationConfig, StreamChunk};
use tonic::{metadata::MetadataValue, Code};

/// Model "m" ($2 in / $8 out per million tokens) caching answers with `cache` (a TOML inline table).
fn cached(up: &Upstream, cache: &str) -> aigw::config::Config {
    config(&priced_config_text(
        &up.base_url(),
        "",
        "",
        &format!("cache = {cache}"),
    ))
}

fn zero() -> GenerationConfig {
    GenerationConfig {
        temperature: Some(0.0),
        ..Default::default()
    }
}

fn with_cache_control<T>(mut req: tonic::Request<T>, value: &'static str) -> tonic::Request<T> {
    req.metadata_mut()
        .insert("cache-control", MetadataValue::from_static(value));
    req
}

fn cache_header<T>(resp: &tonic::Response<T>) -> Option<&str> {
    resp.metadata()
        .get("aigw-cache")
        .map(|v| v.to_str().unwrap())
}

async fn read_all(stream: &mut tonic::Streaming<StreamChunk>) -> Vec<StreamChunk> {
    let mut chunks = Vec::new();
    while let Some(c) = stream.message().await.unwrap() {
        chunks.push(c);
    }
    chunks
}

#[tokio::test]
async fn a_deterministic_answer_is_served_again_without_the_upstream() {
    let up = Upstream::start(vec![Reply::json(200, &completion("Hello!", "stop", 3, 2))]).await;
    let gw = Gateway::start(cached(&up, "{ ttl = \"1m\" }")).await;
    let mut client = gw.client().await;
    let req = || with_config(generate("m", "hi"), zero());

    let first = client.generate(authed(req(), KEY)).await.unwrap();
    assert_eq!(cache_header(&first), Some("miss"));
    // Through the alias: the key is the canonical model, so this is the same request.
    let second = client
        .generate(authed(with_config(generate("m-alias", "hi"), zero()), KEY))
        .await
        .unwrap();
    assert_eq!(cache_header(&second), Some("hit"));
    assert_eq!(
        second.get_ref(),
        first.get_ref(),
        "the same answer, usage and id"
    );
    assert_eq!(up.calls(), 1);

    // Anything else in the request is another question.
    let other = with_config(
        generate("m", "hi"),
        GenerationConfig {
            max_tokens: Some(5),
            ..zero()
        },
    );
    let resp = client.generate(authed(other, KEY)).await.unwrap();
    assert_eq!(cache_header(&resp), Some("miss"));
    assert_eq!(up.calls(), 2);

    let (_, text) = admin_get(&gw, "/metrics", None).await;
    assert_eq!(
        metric(
            &text,
            r#"aigw_cache_requests_total{model="m",result="hit"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"aigw_cache_requests_total{model="m",result="miss"}"#
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            r#"aigw_cache_requests_total{model="m",result="stored"}"#
        ),
        2.0
    );
    assert_eq!(metric(&text, "aigw_cache_entries"), 2.0);
    assert!(metric(&text, "aigw_cache_bytes") > 0.0);
}

#[tokio::test]
async fn only_temperature_zero_is_cached_unless_the_model_widens_it() {
    let answer = || Reply::json(200, &completion("Hi", "stop", 3, 1));
    let up = Upstream::start(vec![answer(), answer(), answer(), answer()]).await;
    let gw = Gateway::start(cached(&up, "{ ttl = \"1m\" }")).await;
    let mut client = gw.client().await;
    for _ in 0..2 {
        let resp = client
            .generate(authed(generate("m", "hi"), KEY))
            .await
            .unwrap();
        assert_eq!(cache_header(&resp), None);
    }
    assert_eq!(up.calls(), 2);

    let gw = Gateway::start(cached(&up, "{ ttl = \"1m\", any_temperature = true }")).await;
    let mut client = gw.client().await;
    for expected in ["miss", "hit"] {
        let resp = client
            .generate(authed(generate("m", "hi"), KEY))
            .await
            .unwrap();
        assert_eq!(cache_header(&resp), Some(expected));
    }
    assert_eq!(up.calls(), 3);
}

#[tokio::test]
async fn clients_bypass_with_cache_control() {
    let answer = |text: &str| Reply::json(200, &completion(text, "stop", 3, 1));
    let up = Upstream::start(vec![answer("one"), answer("two"), answer("three")]).await;
    let gw = Gateway::start(cached(&up, "{ ttl = \"1m\" }")).await;
    let mut client = gw.client().await;
    let req = || authed(with_config(generate("m", "hi"), zero()), KEY);

    assert_eq!(
        client.generate(req()).await.unwrap().get_ref().content,
        "one"
    );
    // no-cache: asked again upstream, and the fresh answer replaces the kept one.
    let fresh = client
        .generate(with_cache_control(req(), "no-cache"))
        .await
        .unwrap();
    assert_eq!(
        (cache_header(&fresh), fresh.get_ref().content.as_str()),
        (Some("bypass"), "two")
    );
    // no-store: asked again upstream, and not kept.
    let unkept = client
        .generate(with_cache_control(req(), "private, no-store"))
        .await
        .unwrap();
    assert_eq!(
        (cache_header(&unkept), unkept.get_ref().content.as_str()),
        (Some("bypass"), "three")
    );
    let hit = client.generate(req()).await.unwrap();
    assert_eq!(
        (cache_header(&hit), hit.get_ref().content.as_str()),
        (Some("hit"), "two")
    );
    assert_eq!(up.calls(), 3);
}

#[tokio::test]
async fn a_stream_is_replayed_chunk_for_chunk_and_serves_unary_calls_too() {
    let up = Upstream::start(vec![Reply::sse(&stream_of(&["Hel", "lo", " there"]))]).await;
    let gw = Gateway::start(cached(&up, "{ ttl = \"1m\" }")).await;
    let mut client = gw.client().await;
    let req = || {
        let mut r = stream_request("m", "hi");
        r.config = Some(zero());
        authed(r, KEY)
    };
    let first = client.stream_generate(req()).await.unwrap();
    assert_eq!(cache_header(&first), Some("miss"));
    let first = read_all(&mut first.into_inner()).await;
    let again = client.stream_generate(req()).await.unwrap();
    assert_eq!(cache_header(&again), Some("hit"));
    let again = read_all(&mut again.into_inner()).await;
    assert_eq!(
        again, first,
        "the same chunks, final usage, finish reason and id"
    );
    assert_eq!(first.len(), 4);
    let last = first.last().unwrap();
    assert!(last.is_complete && last.finish_reason == "stop" && last.id == "chatcmpl-s");
    assert_eq!(last.usage.unwrap().total_tokens, 10);

    let unary = client
        .generate(authed(with_config(generate("m", "hi"), zero()), KEY))
        .await
        .unwrap();
    assert_eq!(cache_header(&unary), Some("hit"));
    assert_eq!(unary.get_ref().content, "Hello there");
    assert_eq!(up.calls(), 1);
}

/// Answers are kept per key: another key asking the same gets its own answer (a hit would tell it what was
/// asked before, and for free), unless the model shares them (`scope = "all"`).
#[tokio::test]
async fn a_kept_answer_is_its_keys_unless_the_model_shares_it() {
    let answer = || Reply::json(200, &completion("Hello!", "stop", 3, 2));
    let up = Upstream::start(vec![answer(), answer(), answer()]).await;
    let second_key = "[[keys]]\nname = \"second\"\nenv = \"TEST_LIMITED_KEY\"";
    for (cache, second_hears) in [
        ("{ ttl = \"1m\" }", "miss"),
        ("{ ttl = \"1m\", scope = \"key\" }", "miss"),
        ("{ ttl = \"1m\", scope = \"all\" }", "hit"),
    ] {
        let gw = Gateway::start(config(&priced_config_text(
            &up.base_url(),
            second_key,
            "",
            &format!("cache = {cache}"),
        )))
        .await;
        let mut client = gw.client().await;
        let req = |key| authed(with_config(generate("m", "hi"), zero()), key);
        let first = client.generate(req(KEY)).await.unwrap();
        assert_eq!(cache_header(&first), Some("miss"), "{cache}");
        let other = client.generate(req(LIMITED_KEY)).await.unwrap();
        assert_eq!(cache_header(&other), Some(second_hears), "{cache}");
        let again = client.generate(req(KEY)).await.unwrap();
        assert_eq!(
            cache_header(&again),
            Some("hit"),
            "{cache}: the key's own answer"
        );
    }
    assert_eq!(up.calls(), 5);
}

#[tokio::test]
async fn a_broken_stream_is_never_kept() {
    let broken = Reply::sse_raw(vec![Part::Bytes(
        format!("data: {}\n\n", chunk("Hel")).into_bytes(),
    )])
    .end(End::Reset);
    let up = Upstream::start(vec![broken, Reply::sse(&stream_of(&["Hello"]))]).await;
    let gw = Gateway::start(cached(&up, "{ ttl = \"1m\" }")).await;
    let mut client = gw.client().await;
    let req = || {
        let mut r = stream_request("m", "hi");
        r.config = Some(zero());
        authed(r, KEY)
    };
    let mut s = client.stream_generate(req()).await.unwrap().into_inner();
    let (chunks, status) = read_to_error(&mut s).await;
    assert_eq!(chunks.len(), 1);
    assert_eq!(status.code(), Code::Unavailable);
    // Not kept: the next call goes upstream, and only its complete answer is kept.
    let next = client.stream_generate(req()).await.unwrap();
    assert_eq!(cache_header(&next), Some("miss"));
    assert!(
        read_all(&mut next.into_inner())
            .await
            .last()
            .unwrap()
            .is_complete
    );
    let hit = client.stream_generate(req()).await.unwrap();
    assert_eq!(cache_header(&hit), Some("hit"));
    assert_eq!(up.calls(), 2);
}

#[tokio::test]
async fn hits_are_free_unless_the_model_charges_them() {
    let answer = || Reply::json(200, &completion("Hi", "stop", 1000, 500));
    let up = Upstream::start(vec![answer(), answer()]).await;
    for (cache, hit_cost) in [
        ("{ ttl = \"1m\" }", None),
        ("{ ttl = \"1m\", hits = \"cost\" }", Some("0.006000")),
    ] {
        let gw = Gateway::start(cached(&up, cache)).await;
        let mut client = gw.client().await;
        let req = || authed(with_config(generate("m", "hi"), zero()), KEY);
        let miss = client.generate(req()).await.unwrap();
        // 1,000 prompt tokens at $2/M + 500 completion tokens at $8/M.
        assert_eq!(miss.metadata().get("aigw-cost-usd").unwrap(), "0.006000");
        let hit = client.generate(req()).await.unwrap();
        assert_eq!(cache_header(&hit), Some("hit"));
        assert_eq!(
            hit.metadata()
                .get("aigw-cost-usd")
                .map(|v| v.to_str().unwrap()),
            hit_cost,
            "{cache}"
        );
        // The answer still says what it cost to make.
        assert_eq!(hit.get_ref().usage.unwrap().total_tokens, 1500);
        let (_, text) = admin_get(&gw, "/metrics", None).await;
        let series = r#"aigw_tokens_total{estimated="false",key="tester",kind="prompt",model="m"}"#;
        let prompt_tokens = metric(&text, series);
        assert_eq!(
            prompt_tokens,
            if hit_cost.is_some() { 2000.0 } else { 1000.0 },
            "{cache}"
        );
    }
    assert_eq!(up.calls(), 2);
}

#[tokio::test]
async fn a_stream_the_client_cancelled_is_never_kept() {
    // The first answer stalls after one chunk; the client leaves. The next identical call must go upstream.
    let stalled = Reply::sse(&[chunk("Hel")]).end(End::Hang);
    let up = Upstream::start(vec![stalled, Reply::sse(&stream_of(&["Hello"]))]).await;
    let gw = Gateway::start(cached(&up, "{ ttl = \"1m\" }")).await;
    let mut client = gw.client().await;
    let req = || {
        let mut r = stream_request("m", "hi");
        r.config = Some(zero());
        authed(r, KEY)
    };
    let mut s = client.stream_generate(req()).await.unwrap().into_inner();
    assert_eq!(s.message().await.unwrap().unwrap().delta, "Hel");
    drop(s);
    up.wait_aborted(1).await;
    let next = client.stream_generate(req()).await.unwrap();
    assert_eq!(cache_header(&next), Some("miss"));
    read_all(&mut next.into_inner()).await;
    assert_eq!(up.calls(), 2);
}

/// A reasoning model's answer is kept with its reasoning: a hit replays the reasoning (a piece per block, before
/// the text) and returns the blocks whole, signatures and all, on both RPCs.
#[tokio::test]
async fn reasoning_is_kept_and_replayed_with_the_answer() {
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        serde_json::json!({"id": "c", "object": "chat.completion.chunk", "model": "up",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        .to_string()
    };
    let events = vec![
        role_chunk(),
        chunk(serde_json::json!({"reasoning_content": "Think"}), None),
        chunk(serde_json::json!({"reasoning_content": "ing."}), None),
        chunk(serde_json::json!({"content": "Done."}), None),
        chunk(serde_json::json!({}), Some("stop")),
        usage_chunk(3, 4),
        "[DONE]".into(),
    ];
    let up = Upstream::start(vec![Reply::sse(&events)]).await;
    let gw = Gateway::start(cached(&up, "{ ttl = \"1m\" }")).await;
    let mut client = gw.client().await;
    let req = || {
        let mut r = stream_request("m", "hi");
        r.config = Some(zero());
        r
    };
    let first = read_all(
        &mut client
            .stream_generate(authed(req(), KEY))
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    let hit = client.stream_generate(authed(req(), KEY)).await.unwrap();
    assert_eq!(cache_header(&hit), Some("hit"));
    let again = read_all(&mut hit.into_inner()).await;
    assert_eq!(up.calls(), 1);
    let blocks = |chunks: &[StreamChunk]| chunks.last().unwrap().reasoning_blocks.clone();
    assert_eq!(blocks(&again), blocks(&first));
    assert_eq!(blocks(&again)[0].text, "Thinking.");
    // Replayed in order: the reasoning, then the text.
    assert_eq!(again[0].reasoning.as_ref().unwrap().text, "Thinking.");
    assert_eq!(again[1].delta, "Done.");
    let unary = client
        .generate(authed(with_config(generate("m", "hi"), zero()), KEY))
        .await
        .unwrap();
    assert_eq!(cache_header(&unary), Some("hit"));
    assert_eq!(unary.into_inner().reasoning, blocks(&first));
}

/// What a REST door passes through unmodelled is part of the question, in one order of keys: the same Responses
/// request, whose unmodelled fields are kept for two dialects, is a hit every time after the first. (Kept as a
/// protobuf map, their order changed from one request to the next and so did the key.)
#[tokio::test]
async fn fields_passed_through_are_one_question_whatever_their_order() {
    let up = Upstream::start(vec![Reply::json(200, &completion("Hello!", "stop", 3, 2))]).await;
    let gw = Gateway::start(cached(&up, "{ ttl = \"1m\" }")).await;
    let body = serde_json::json!({"model": "m", "input": "hi", "temperature": 0, "store": false,
        "service_tier": "priority", "prompt_cache_key": "s-1", "include": ["reasoning.encrypted_content"]});
    for i in 0..8 {
        let (status, text) = post_json(&gw, "/v1/responses", KEY, &body).await;
        assert_eq!(status, 200, "request {i}: {text}");
    }
    assert_eq!(up.calls(), 1, "one question, asked once");
    let sent = &up.requests()[0].body;
    assert_eq!(sent["service_tier"], "priority");
    assert!(sent.get("include").is_none(), "a Responses-only field");

    // Another value of a passed-through field is another question.
    let mut other = body.clone();
    other["service_tier"] = "flex".into();
    let (status, text) = post_json(&gw, "/v1/responses", KEY, &other).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(up.calls(), 2);
}
