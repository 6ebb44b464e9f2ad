//! The OpenAI-compatible REST door and gRPC-Web on the gRPC port: a real HTTP client (reqwest, HTTP/1.1 and
//! h2c) against the in-process gateway in front of the scripted upstream. (The official `openai` SDK and a
//! gRPC-Web client library are run against the built binary by the e2e tests.)

use crate::common::{upstream::*, *};
use serde_json::{json, Value};

fn url(gw: &Gateway, path: &str) -> String {
    format!("http://{}{path}", gw.addr)
}

async fn post(gw: &Gateway, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = http()
        .post(url(gw, "/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send().await.unwrap()
}

async fn json_of(resp: reqwest::Response) -> Value {
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
}

/// The `data:` payloads of an SSE body, in order.
fn events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .expect("every event is data")
                .to_owned()
        })
        .collect()
}

fn ask(model: &str, extra: Value) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hello"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[tokio::test]
async fn unary_answer_is_an_openai_completion() {
    let up = Upstream::start(vec![Reply::json(200, &completion("Hi!", "stop", 5, 2))]).await;
    let gw = Gateway::in_front_of(&up).await;
    let resp = http()
        .post(url(&gw, "/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-request-id", "rest-req-1")
        .body(
            ask(
                "big-alias",
                json!({"max_tokens": 9, "stop": "END", "temperature": 0.2}),
            )
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.headers()["x-request-id"], "rest-req-1");
    // What gRPC sends as trailers comes as headers.
    let overhead = resp.headers()["aigw-overhead-us"].to_str().unwrap();
    assert!(overhead.parse::<u64>().is_ok(), "{overhead}");
    let body = json_of(resp).await;
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["id"], "chatcmpl-test");
    assert_eq!(body["model"], "up-model-2025");
    assert!(body["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(
        body["choices"],
        json!([{"index": 0, "message": {"role": "assistant", "content": "Hi!", "refusal": null},
                "logprobs": null, "finish_reason": "stop"}])
    );
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7,
               "prompt_tokens_details": {"cached_tokens": 0},
               "completion_tokens_details": {"reasoning_tokens": 0}})
    );
    // The upstream got the same request a gRPC call would have sent.
    let sent = &up.requests()[0].body;
    assert_eq!(sent["model"], "up-big");
    assert_eq!(sent["max_tokens"], 9);
    assert_eq!(sent["stop"], json!(["END"]));
    assert_eq!(up.requests()[0].header("x-request-id"), Some("rest-req-1"));
}

#[tokio::test]
async fn stream_is_openai_sse_over_http1_and_h2() {
    let up = Upstream::start(vec![Reply::sse(&stream_of(&["Hel", "lo"]))]).await;
    let gw = Gateway::in_front_of(&up).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for (client, version) in [
        (http(), reqwest::Version::HTTP_11),
        (h2, reqwest::Version::HTTP_2),
    ] {
        let with_usage = json!({"stream": true, "stream_options": {"include_usage": true}});
        let resp = client
            .post(url(&gw, "/v1/chat/completions"))
            .bearer_auth(KEY)
            .body(ask("big", with_usage).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), version);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let events = events(&resp.text().await.unwrap());
        assert_eq!(events.last().unwrap(), "[DONE]", "{events:?}");
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        let id = &chunks[0]["id"];
        assert!(id.as_str().unwrap().starts_with("chatcmpl-"));
        for c in &chunks {
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(&c["id"], id, "one id for the whole stream");
            assert_eq!(c["model"], "big");
        }
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hello");
        let n = chunks.len();
        assert_eq!(chunks[n - 2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[n - 1]["choices"], json!([]));
        assert_eq!(
            chunks[n - 1]["usage"],
            json!({"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9,
                   "prompt_tokens_details": {"cached_tokens": 0},
                   "completion_tokens_details": {"reasoning_tokens": 0}})
        );
        assert!(chunks[..n - 1].iter().all(|c| c["usage"].is_null()));
    }
    // Without include_usage there is no usage chunk and no usage field.
    let resp = post(&gw, Some(KEY), &ask("big", json!({"stream": true}))).await;
    let events = events(&resp.text().await.unwrap());
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(last.get("usage").is_none(), "{last}");
}

#[tokio::test]
async fn refusals_have_http_statuses_and_openai_bodies() {
    let up = Upstream::start(vec![Reply::json(200, &completion("x", "stop", 1, 1))]).await;
    let gw = Gateway::in_front_of(&up).await;
    let big = ask("big", json!({}));
    // (key, body, HTTP status, error type, error code)
    type Case<'a> = (Option<&'a str>, Value, u16, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            None,
            big.clone(),
            401,
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        (
            Some("sk-wrong"),
            big.clone(),
            401,
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        (
            Some(LIMITED_KEY),
            big.clone(),
            403,
            "permission_error",
            Some("model_not_allowed"),
        ),
        (
            Some(KEY),
            ask("nope", json!({})),
            404,
            "invalid_request_error",
            Some("model_not_found"),
        ),
        (
            Some(KEY),
            ask("big", json!({"max_tokens": 5000})),
            400,
            "invalid_request_error",
            None,
        ),
        (
            Some(KEY),
            ask("big", json!({"functions": []})),
            400,
            "invalid_request_error",
            None,
        ),
        (
            Some(KEY),
            json!({"messages": []}),
            400,
            "invalid_request_error",
            None,
        ),
        (
            Some(KEY),
            ask(
                "big",
                json!({"messages": [{"role": "robot", "content": "x"}]}),
            ),
            400,
            "invalid_request_error",
            None,
        ),
    ];
    for (key, body, status, kind, code) in cases {
        let resp = post(&gw, key, &body).await;
        assert_eq!(resp.status(), status, "{body}");
        assert!(resp.headers().contains_key("x-request-id"), "{body}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let err = json_of(resp).await;
        assert_eq!(err["error"]["type"], kind, "{err}");
        assert_eq!(err["error"]["code"].as_str(), code, "{err}");
        assert!(!err["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(up.calls(), 0, "nothing refused reached the upstream");
    let client = http();
    let bad_json = client
        .post(url(&gw, "/v1/chat/completions"))
        .bearer_auth(KEY)
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_json.status(), 400);
    let wrong_method = client
        .get(url(&gw, "/v1/chat/completions"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "POST");
    let unknown = client.get(url(&gw, "/v2/things")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    // Every answer names its request, refusals before any handler too.
    assert_eq!(unknown.headers()["x-request-id"].len(), 32);
    assert_eq!(json_of(unknown).await["error"]["code"], "unknown_url");
    let huge = vec![b' '; aigw::rest::MAX_BODY + 1];
    let too_large = client
        .post(url(&gw, "/v1/chat/completions"))
        .bearer_auth(KEY)
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), 413);
}

#[tokio::test]
async fn models_are_the_ones_the_key_may_use() {
    let up = Upstream::start(vec![]).await;
    let gw = Gateway::in_front_of(&up).await;
    let get = |key: &'static str, path: &'static str| {
        let url = url(&gw, path);
        async move { http().get(url).bearer_auth(key).send().await.unwrap() }
    };
    let all = json_of(get(KEY, "/v1/models").await).await;
    assert_eq!(all["object"], "list");
    let ids: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["big", "small"]);
    assert_eq!(all["data"][0]["object"], "model");
    let limited = json_of(get(LIMITED_KEY, "/v1/models").await).await;
    assert_eq!(limited["data"].as_array().unwrap().len(), 1);
    assert_eq!(limited["data"][0]["id"], "small");
    let alias = get(KEY, "/v1/models/big-alias").await;
    assert_eq!(alias.status(), 200);
    assert_eq!(json_of(alias).await["id"], "big");
    assert_eq!(get(LIMITED_KEY, "/v1/models/big").await.status(), 403);
    assert_eq!(get(KEY, "/v1/models/nope").await.status(), 404);
    assert_eq!(get("sk-wrong", "/v1/models").await.status(), 401);
}

#[tokio::test]
async fn limits_and_metrics_are_shared_with_grpc() {
    let up = Upstream::start(vec![Reply::json(200, &completion("x", "stop", 1, 1))]).await;
    let gw = Gateway::start(config(&priced_config_text(
        &up.base_url(),
        "",
        "rpm = 2",
        "",
    )))
    .await;
    let mut grpc = gw.client().await;
    grpc.generate(authed(generate("m", "hi"), KEY))
        .await
        .unwrap();
    assert_eq!(
        post(&gw, Some(KEY), &ask("m", json!({}))).await.status(),
        200
    );
    let refused = post(&gw, Some(KEY), &ask("m", json!({}))).await;
    assert_eq!(refused.status(), 429);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let err = json_of(refused).await;
    assert_eq!(err["error"]["type"], "requests");
    assert_eq!(err["error"]["code"], "rate_limit_exceeded");
    // The window counts both doors: gRPC is refused now too.
    let status = grpc
        .generate(authed(generate("m", "hi"), KEY))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    let (_, metrics) = admin_get(&gw, "/metrics", None).await;
    let series = |code: &str| {
        format!(
            r#"aigw_requests_total{{code="{code}",key="tester",model="m",rpc="ChatCompletions"}}"#
        )
    };
    assert_eq!(metric(&metrics, &series("OK")), 1.0);
    assert_eq!(metric(&metrics, &series("RESOURCE_EXHAUSTED")), 1.0);
}

#[tokio::test]
async fn a_stream_that_breaks_ends_with_an_error_event_not_done() {
    // Two deltas, then the upstream resets the connection: no finish, no [DONE].
    let events_sent = [role_chunk(), chunk("par"), chunk("tial")];
    let broken = Reply::sse(&events_sent).end(End::Reset);
    let up = Upstream::start(vec![broken]).await;
    let gw = Gateway::without_retries(&up).await;
    let resp = post(&gw, Some(KEY), &ask("big", json!({"stream": true}))).await;
    assert_eq!(resp.status(), 200, "the stream had started");
    let events = events(&resp.text().await.unwrap());
    assert!(!events.contains(&"[DONE]".to_owned()), "{events:?}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "server_error", "{last}");
    assert_eq!(last["error"]["code"], "upstream_unavailable");
    let text: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "partial");
}

#[tokio::test]
async fn a_client_that_leaves_a_stream_cancels_the_upstream_call() {
    let hang = Reply::sse(&[role_chunk(), chunk("first")]).end(End::Hang);
    let up = Upstream::start(vec![hang]).await;
    let gw = Gateway::in_front_of(&up).await;
    let mut resp = post(&gw, Some(KEY), &ask("big", json!({"stream": true}))).await;
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(std::str::from_utf8(&first).unwrap().starts_with("data: "));
    drop(resp);
    up.wait_aborted(1).await;
}

fn cors_config(up: &Upstream, cors: &str) -> aigw::config::Config {
    config(&priced_config_text(&up.base_url(), cors, "", ""))
}

async fn preflight(gw: &Gateway, origin: &str) -> reqwest::Response {
    http()
        .request(
            reqwest::Method::OPTIONS,
            url(gw, "/holysheepai.AIService/Generate"),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-grpc-web",
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn cors_allows_the_configured_origins_only() {
    let up = Upstream::start(vec![Reply::json(200, &completion("x", "stop", 1, 1))]).await;
    let gw = Gateway::start(cors_config(
        &up,
        "[cors]\nallow_origins = [\"https://app.example\"]\nmax_age = \"10m\"",
    ))
    .await;
    let ok = preflight(&gw, "https://app.example").await;
    assert_eq!(ok.status(), 200);
    let h = ok.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert_eq!(h["access-control-max-age"], "600");
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    assert!(
        allowed.contains("authorization") && allowed.contains("x-grpc-web"),
        "{allowed}"
    );
    let other = preflight(&gw, "https://evil.example").await;
    assert!(other.headers().get("access-control-allow-origin").is_none());
    // The answer itself carries the headers a page may read.
    let resp = http()
        .post(url(&gw, "/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("origin", "https://app.example")
        .body(ask("m", json!({})).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let exposed = resp.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(
        exposed.contains("grpc-status")
            && exposed.contains("x-request-id")
            && exposed.contains("x-ratelimit-remaining-requests")
            && exposed.contains("anthropic-ratelimit-tokens-reset"),
        "{exposed}"
    );
    // Without [cors], no CORS headers at all.
    let plain = Gateway::start(cors_config(&up, "")).await;
    let none = preflight(&plain, "https://app.example").await;
    assert!(none.headers().get("access-control-allow-origin").is_none());
}

/// A gRPC-Web call by hand over HTTP/1.1: a length-prefixed message in, data frame plus trailer frame out.
#[tokio::test]
async fn grpc_web_calls_reach_the_same_service() {
    use prost::Message;
    let up = Upstream::start(vec![Reply::json(200, &completion("web hi", "stop", 3, 2))]).await;
    let gw = Gateway::in_front_of(&up).await;
    let call = |key: &'static str| {
        let msg = generate("big", "hello").encode_to_vec();
        let mut framed = vec![0u8];
        framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        framed.extend_from_slice(&msg);
        let url = url(&gw, "/holysheepai.AIService/Generate");
        async move {
            http()
                .post(url)
                .header("content-type", "application/grpc-web+proto")
                .header("x-grpc-web", "1")
                .header("authorization", format!("Bearer {key}"))
                .body(framed)
                .send()
                .await
                .unwrap()
        }
    };
    let resp = call(KEY).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.headers()["content-type"], "application/grpc-web+proto");
    let body = resp.bytes().await.unwrap();
    // Frame 1: the message (flag 0). Frame 2: the trailers (flag 0x80), as HTTP header lines.
    assert_eq!(body[0], 0);
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    let answer = aigw::proto::GenerateResponse::decode(&body[5..5 + len]).unwrap();
    assert_eq!(answer.content, "web hi");
    let trailers = &body[5 + len..];
    assert_eq!(trailers[0], 0x80);
    let text = std::str::from_utf8(&trailers[5..]).unwrap();
    assert!(text.contains("grpc-status:0"), "{text}");
    assert!(text.contains("aigw-overhead-us:"), "{text}");
    // A bad key: the status comes in the headers (a trailers-only answer).
    let refused = call("sk-wrong").await;
    assert_eq!(refused.headers()["grpc-status"], "16");
}

#[tokio::test]
async fn a_client_that_leaves_a_unary_call_cancels_the_upstream_call() {
    let up = Upstream::start(vec![Reply::never()]).await;
    let gw = Gateway::in_front_of(&up).await;
    for client in [
        http(),
        reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap(),
    ] {
        let seen = up.calls();
        let call = client
            .post(url(&gw, "/v1/chat/completions"))
            .bearer_auth(KEY)
            .body(ask("big", json!({})).to_string())
            .send();
        // Leave once the upstream has the request.
        let left = eventually("the upstream has the request", || async {
            (up.calls() != seen).then_some(())
        });
        tokio::select! {
            _ = call => panic!("the upstream never answers"),
            _ = left => {}
        }
        up.wait_aborted(seen + 1).await;
    }
}

#[tokio::test]
async fn upstream_failures_limits_and_budgets_have_their_http_statuses() {
    // An upstream 503 (one attempt): 502 with OpenAI's server_error body.
    let up = Upstream::start(vec![Reply::json(503, r#"{"error":{"message":"busy"}}"#)]).await;
    let gw = Gateway::start(config(&priced_config_text(
        &up.base_url(),
        "",
        "tpm = 1000",
        "",
    )))
    .await;
    let resp = post(&gw, Some(KEY), &ask("m", json!({"max_tokens": 10}))).await;
    assert_eq!(resp.status(), 502);
    let body = json_of(resp).await;
    assert_eq!(body["error"]["type"], "server_error");
    assert_eq!(body["error"]["code"], "upstream_unavailable");
    // More tokens than the key's whole minute: 429 of type "tokens".
    let refused = post(&gw, Some(KEY), &ask("m", json!({"max_tokens": 1900}))).await;
    assert_eq!(refused.status(), 429);
    let body = json_of(refused).await;
    assert_eq!(body["error"]["type"], "tokens");

    // A spent daily budget: 429 insufficient_quota.
    let up = Upstream::start(vec![Reply::json(
        200,
        &completion("x", "stop", 100_000, 100_000),
    )])
    .await;
    let gw = Gateway::start(config(&priced_config_text(
        &up.base_url(),
        "",
        "daily_budget_usd = 0.5",
        "",
    )))
    .await;
    assert_eq!(
        post(&gw, Some(KEY), &ask("m", json!({}))).await.status(),
        200
    );
    // The call's cost is booked as its answer ends: wait for the booking (its metric), then the next call is
    // refused, the first time.
    cost_booked(&gw, "tester", "m").await;
    let refused = post(&gw, Some(KEY), &ask("m", json!({}))).await;
    assert_eq!(refused.status(), 429);
    let body = json_of(refused).await;
    assert_eq!(body["error"]["type"], "insufficient_quota");
    assert_eq!(up.calls(), 1);

    // The upstream's request_timeout passed: 504.
    let up = Upstream::start(vec![Reply::never()]).await;
    let text = priced_config_text(&up.base_url(), "", "", "").replace(
        "api_key_env = \"TEST_UPSTREAM_KEY\"",
        "api_key_env = \"TEST_UPSTREAM_KEY\"\nrequest_timeout = \"1s\"",
    );
    let gw = Gateway::start(config(&text)).await;
    let resp = post(&gw, Some(KEY), &ask("m", json!({}))).await;
    assert_eq!(resp.status(), 504);
    assert_eq!(json_of(resp).await["error"]["code"], "deadline_exceeded");
}

/// A request that cannot fit the model's context window is refused before any upstream call: INVALID_ARGUMENT
/// over gRPC, 400 `context_length_exceeded` at the REST door, naming the window and the estimate.
#[tokio::test]
async fn a_request_over_the_context_window_is_refused_before_the_upstream() {
    let up = Upstream::start(vec![Reply::json(200, &completion("ok", "stop", 3, 1))]).await;
    let gw = Gateway::start(config(&priced_config_text(
        &up.base_url(),
        "",
        "",
        "context_window = 2000",
    )))
    .await;
    // 5,000 bytes, about 1,254 tokens, plus the default output budget of 1,024.
    let long = "word ".repeat(1000);
    let status = gw
        .client()
        .await
        .generate(authed(generate("m", &long), KEY))
        .await
        .unwrap_err();
    assert_status(
        &status,
        tonic::Code::InvalidArgument,
        "model 'm''s context window of 2000",
    );
    let resp = http()
        .post(format!("http://{}/v1/chat/completions", gw.addr))
        .bearer_auth(KEY)
        .body(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1999}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1999 to generate"),
        "{body}"
    );
    assert_eq!(up.calls(), 0, "nothing went upstream");
    // One that fits goes through.
    gw.client()
        .await
        .generate(authed(generate("m", "a short question"), KEY))
        .await
        .unwrap();
    assert_eq!(up.calls(), 1);
}

/// A model may name larger-window `context_fallbacks`: a request too large for it goes to the first that fits
/// (and that the key may use), counted in `aigw_context_fallbacks_total`; one that fits none is refused.
#[tokio::test]
async fn a_request_too_large_for_its_model_goes_to_a_larger_window() {
    let up = Upstream::start(vec![Reply::json(200, &completion("ok", "stop", 3, 1))]).await;
    let text = with_fallback(&up, 2000, 10000);
    let gw = Gateway::start(config(&text)).await;
    let long = "word ".repeat(1000); // about 1,254 tokens + 1,024 of output: over 2,000, under 10,000
    let resp = gw
        .client()
        .await
        .generate(authed(generate("m", &long), KEY))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.content, "ok");
    assert_eq!(up.requests()[0].body["model"], "up-large");
    assert_eq!(fallbacks_to_large(&gw).await, 1.0);
    // Too large for every window: refused, nothing upstream.
    let huge = "word ".repeat(10_000);
    let status = gw
        .client()
        .await
        .generate(authed(generate("m", &huge), KEY))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(up.calls(), 1);
}

/// The upstream refuses a prompt as too long for its window (the estimate let it through): the call goes on to
/// the model's context fallback, once, and is counted like a pre-checked one.
#[tokio::test]
async fn a_prompt_the_upstream_finds_too_long_goes_to_the_fallback() {
    let too_long = Reply::json(
        400,
        &serde_json::json!({"error": {"message": "This model's maximum context length is 2048 tokens. However, your messages resulted in 4100 tokens.", "type": "invalid_request_error", "code": "context_length_exceeded"}}).to_string(),
    );
    let up = Upstream::start(vec![
        too_long,
        Reply::json(200, &completion("ok", "stop", 3, 1)),
    ])
    .await;
    let text = with_fallback(&up, 100_000, 200_000);
    let gw = Gateway::start(config(&text)).await;
    let resp = gw
        .client()
        .await
        .generate(authed(generate("m", "hi"), KEY))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.content, "ok");
    let sent = up.requests();
    assert_eq!(
        (
            sent[0].body["model"].as_str(),
            sent[1].body["model"].as_str()
        ),
        (Some("up"), Some("up-large"))
    );
    assert_eq!(fallbacks_to_large(&gw).await, 1.0);
}

/// Model "m" with a `context_window` of `window` falling back to "m-large" (upstream id "up-large") of `larger`.
fn with_fallback(up: &Upstream, window: u32, larger: u32) -> String {
    priced_config_text(
        &up.base_url(),
        "[admin]\nkey_env = \"TEST_ADMIN_KEY\"",
        "",
        &format!("context_window = {window}\ncontext_fallbacks = [\"m-large\"]"),
    ) + &format!(
        r#"
        [[models]]
        name = "m-large"
        max_output_tokens = 2000
        context_window = {larger}
        routes = [{{ upstream = "a", model = "up-large" }}]
        "#
    )
}

async fn fallbacks_to_large(gw: &Gateway) -> f64 {
    let (_, metrics) = admin_get(gw, "/metrics", None).await;
    metric(
        &metrics,
        r#"aigw_context_fallbacks_total{model="m",to="m-large"}"#,
    )
}

/// A field the chat door does not model reaches the upstream as the client wrote it: `2.0` stays a float and
/// an integer past 2^53 stays exact (a protobuf Struct, all doubles, changed both on the way).
#[tokio::test]
async fn unmodelled_fields_keep_their_numbers_as_written() {
    let up = Upstream::start(vec![Reply::json(200, &completion("Hi", "stop", 3, 1))]).await;
    let gw = Gateway::in_front_of(&up).await;
    let body = r#"{"model": "big", "messages": [{"role": "user", "content": "hi"}],
        "top_k": 40, "vendor": {"scale": 2.0, "id": 9007199254740993, "tiny": 1e-300}}"#;
    let resp = http()
        .post(format!("http://{}/v1/chat/completions", gw.addr))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let sent = &up.requests()[0].body;
    assert_eq!(sent["top_k"].as_u64(), Some(40));
    assert!(sent["vendor"]["scale"].is_f64(), "{}", sent["vendor"]);
    assert_eq!(sent["vendor"]["id"].as_u64(), Some(9_007_199_254_740_993));
    assert_eq!(sent["vendor"]["tiny"].as_f64(), Some(1e-300));
}
