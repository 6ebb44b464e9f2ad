//! The caller's standing against its rate limits on every admitted answer: OpenAI's `x-ratelimit-*` headers on
//! the OpenAI doors, Anthropic's `anthropic-ratelimit-*` on the Messages door, `x-ratelimit-*` trailers on gRPC;
//! across replicas sharing Redis, the fleet's figures.

use serde_json::json;

use crate::common::{redis::Redis, *};

fn text(top: &str) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        {top}
        [[groups]]
        name = "team"
        limits = {{ rpm = 3 }}
        [[keys]]
        name = "tester"
        env = "TEST_KEY"
        limits = {{ rpm = 5, tpm = 10000 }}
        [[keys]]
        name = "free"
        env = "TEST_LIMITED_KEY"
        limits = {{ concurrency = 4 }}
        [[keys]]
        name = "member"
        env = "TEST_UPSTREAM_KEY"
        group = "team"
        limits = {{ rpm = 100 }}
        [[upstreams]]
        name = "mock"
        kind = "mock"
        first_token_latency = "0s"
        tokens_per_second = 100000
        [[models]]
        name = "big"
        max_output_tokens = 100
        routes = [{{ upstream = "mock", model = "big" }}]
        "#
    )
}

fn chat(stream: bool) -> serde_json::Value {
    json!({"model": "big", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

async fn post(gw: &Gateway, path: &str, key: &str, body: &serde_json::Value) -> reqwest::Response {
    let resp = http()
        .post(format!("http://{}{path}", gw.addr))
        .bearer_auth(key)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn number(resp: &reqwest::Response, name: &str) -> u64 {
    header(resp, name)
        .unwrap_or_else(|| panic!("no {name}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_openai_doors_say_what_is_left_as_openai_does() {
    let gw = Gateway::start(config(&text(""))).await;
    let first = post(&gw, "/v1/chat/completions", KEY, &chat(false)).await;
    assert_eq!(number(&first, "x-ratelimit-limit-requests"), 5);
    assert_eq!(number(&first, "x-ratelimit-remaining-requests"), 4);
    assert_eq!(number(&first, "x-ratelimit-limit-tokens"), 10000);
    let tokens_left = number(&first, "x-ratelimit-remaining-tokens");
    assert!((9000..10000).contains(&tokens_left), "{tokens_left}");
    // Go's duration form, under the minute the window spans.
    let reset = header(&first, "x-ratelimit-reset-requests").unwrap();
    assert!(
        reset.ends_with('s') && !reset.contains('m') || reset == "1m0s",
        "{reset}"
    );
    assert!(header(&first, "x-ratelimit-reset-tokens").is_some());
    // A stream says it in its headers, before the first event.
    let streamed = post(&gw, "/v1/chat/completions", KEY, &chat(true)).await;
    assert_eq!(number(&streamed, "x-ratelimit-remaining-requests"), 3);
    assert!(number(&streamed, "x-ratelimit-remaining-tokens") < tokens_left);
    let responses = json!({"model": "big", "input": "hi"});
    let third = post(&gw, "/v1/responses", KEY, &responses).await;
    assert_eq!(number(&third, "x-ratelimit-remaining-requests"), 2);
    // A key without rate limits has nothing to say.
    let free = post(&gw, "/v1/chat/completions", LIMITED_KEY, &chat(false)).await;
    assert!(header(&free, "x-ratelimit-limit-requests").is_none());
}

#[tokio::test]
async fn the_messages_door_says_it_as_anthropic_does() {
    let gw = Gateway::start(config(&text(""))).await;
    let body =
        json!({"model": "big", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    for (stream, left) in [(false, 4), (true, 3)] {
        let mut body = body.clone();
        body["stream"] = json!(stream);
        let resp = post(&gw, "/v1/messages", KEY, &body).await;
        assert_eq!(number(&resp, "anthropic-ratelimit-requests-limit"), 5);
        assert_eq!(
            number(&resp, "anthropic-ratelimit-requests-remaining"),
            left
        );
        assert_eq!(number(&resp, "anthropic-ratelimit-tokens-limit"), 10000);
        let reset = header(&resp, "anthropic-ratelimit-tokens-reset").unwrap();
        assert!(humantime::parse_rfc3339(&reset).is_ok(), "{reset}");
        assert!(header(&resp, "x-ratelimit-remaining-requests").is_none());
    }
}

#[tokio::test]
async fn grpc_answers_carry_it_in_their_trailers_and_a_group_tells_its_tighter_figure() {
    let gw = Gateway::start(config(&text(""))).await;
    let resp = gw
        .client()
        .await
        .generate(authed(generate("big", "hi"), KEY))
        .await
        .unwrap();
    assert_eq!(
        resp.metadata()
            .get("x-ratelimit-remaining-requests")
            .unwrap(),
        "4"
    );
    assert_eq!(
        resp.metadata().get("x-ratelimit-limit-tokens").unwrap(),
        "10000"
    );
    let mut stream = gw
        .client()
        .await
        .stream_generate(authed(stream_request("big", "hi"), KEY))
        .await
        .unwrap()
        .into_inner();
    while stream.message().await.unwrap().is_some() {}
    let trailers = stream.trailers().await.unwrap().unwrap();
    assert_eq!(trailers.get("x-ratelimit-remaining-requests").unwrap(), "3");
    // The member's own rpm is 100, its group's 3: the group's is the one that will refuse first.
    let resp = gw
        .client()
        .await
        .generate(authed(generate("big", "hi"), UPSTREAM_KEY))
        .await
        .unwrap();
    assert_eq!(
        resp.metadata().get("x-ratelimit-limit-requests").unwrap(),
        "3"
    );
    assert_eq!(
        resp.metadata()
            .get("x-ratelimit-remaining-requests")
            .unwrap(),
        "2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_replicas_sharing_redis_the_figures_are_the_fleets() {
    let redis = Redis::start();
    let shared = format!(
        "[shared]\nredis_url = \"{}\"\ntimeout = \"5s\"",
        redis.url()
    );
    let fleet = replicas(&text(&shared), 3).await;
    for (i, left) in [4, 3, 2, 1, 0].into_iter().enumerate() {
        let resp = post(&fleet[i % 3], "/v1/chat/completions", KEY, &chat(false)).await;
        assert_eq!(
            number(&resp, "x-ratelimit-remaining-requests"),
            left,
            "call {i}"
        );
        assert_eq!(number(&resp, "x-ratelimit-limit-requests"), 5);
        let reset = header(&resp, "x-ratelimit-reset-requests").unwrap();
        assert!(!reset.is_empty());
    }
}

#[tokio::test]
async fn a_refusal_by_a_window_says_none_is_left_until_its_reset() {
    let gw = Gateway::start(config(&text(""))).await;
    for _ in 0..5 {
        post(&gw, "/v1/chat/completions", KEY, &chat(false)).await;
    }
    let refused = http()
        .post(format!("http://{}/v1/chat/completions", gw.addr))
        .bearer_auth(KEY)
        .body(chat(false).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(
        header(&refused, "x-ratelimit-remaining-requests").as_deref(),
        Some("0")
    );
    let reset = header(&refused, "x-ratelimit-reset-requests").unwrap();
    assert!(reset.ends_with('s'), "{reset}");
    assert!(header(&refused, "retry-after").is_some());
    // The Messages door, in Anthropic's names.
    let body =
        json!({"model": "big", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let refused = http()
        .post(format!("http://{}/v1/messages", gw.addr))
        .bearer_auth(KEY)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(
        header(&refused, "anthropic-ratelimit-requests-remaining").as_deref(),
        Some("0")
    );
    let reset = header(&refused, "anthropic-ratelimit-requests-reset").unwrap();
    assert!(humantime::parse_rfc3339(&reset).is_ok(), "{reset}");
    // gRPC: in the status's metadata.
    let status = gw
        .client()
        .await
        .generate(authed(generate("big", "hi"), KEY))
        .await
        .unwrap_err();
    assert_eq!(
        status
            .metadata()
            .get("x-ratelimit-remaining-requests")
            .unwrap(),
        "0"
    );
}
