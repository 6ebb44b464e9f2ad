//! Upstreams of kind "anthropic": the scripted upstream speaks the Messages API (its JSON and its event
//! stream), and gRPC and REST clients see the same answers as from an OpenAI upstream.

use crate::common::{upstream::*, *};
use aigw::proto::{GenerationConfig, Message, StreamChunk, Tool, ToolCall};
use serde_json::{json, Value};

/// Model "claude" (max_output_tokens 1000, default output 300) on an Anthropic upstream, one attempt per call.
fn anthropic_config(up: &Upstream) -> aigw::config::Config {
    config(&anthropic_config_text(up))
}

pub(crate) fn anthropic_config_text(up: &Upstream) -> String {
    anthropic_model_config(up, "claude", 1000, 300, "retry = { attempts = 1 }")
}

/// One Anthropic upstream at `up` and one model on it (Claude Sonnet 4.5 upstream) with these limits and policy.
pub(crate) fn anthropic_model_config(
    up: &Upstream,
    name: &str,
    max_output_tokens: u32,
    default_output_tokens: u32,
    policy: &str,
) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [[keys]]
        name = "tester"
        env = "TEST_KEY"
        [[upstreams]]
        name = "claude-api"
        kind = "anthropic"
        base_url = "{}"
        api_key_env = "TEST_UPSTREAM_KEY"
        [[models]]
        name = "{name}"
        max_output_tokens = {max_output_tokens}
        default_output_tokens = {default_output_tokens}
        routes = [{{ upstream = "claude-api", model = "claude-sonnet-4-5" }}]
        [models.policy]
        {policy}
        "#,
        up.base_url()
    )
}

fn start(id: &str) -> Value {
    json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5-20250929", "content": [], "stop_reason": null,
        "usage": {"input_tokens": 25, "output_tokens": 1}}})
}

fn text_stream(words: &[&str]) -> Vec<Value> {
    let mut events = vec![
        start("msg_text"),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "ping"}),
    ];
    for w in words {
        events.push(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}));
    }
    events.extend([
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 9}}),
        json!({"type": "message_stop"}),
    ]);
    events
}

/// Text, then a tool call whose input arrives in pieces.
fn tool_stream() -> Vec<Value> {
    vec![
        start("msg_tool"),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Se"}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "oul\"}"}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 40}}),
        json!({"type": "message_stop"}),
    ]
}

fn weather_tool() -> GenerationConfig {
    GenerationConfig {
        tools: vec![Tool {
            name: "get_weather".into(),
            parameters_json: r#"{"type":"object","properties":{"city":{"type":"string"}}}"#.into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn collect(
    client: &mut aigw::proto::ai_service_client::AiServiceClient<tonic::transport::Channel>,
    req: aigw::proto::StreamGenerateRequest,
) -> Result<Vec<StreamChunk>, tonic::Status> {
    let mut stream = client.stream_generate(authed(req, KEY)).await?.into_inner();
    let mut chunks = Vec::new();
    while let Some(c) = stream.message().await? {
        chunks.push(c);
    }
    Ok(chunks)
}

#[tokio::test]
async fn unary_calls_speak_the_messages_api() {
    let answer = json!({"id": "msg_u", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "Hello there."}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 12, "cache_read_input_tokens": 4, "output_tokens": 3}});
    let up = Upstream::start(vec![Reply::json(200, &answer.to_string())]).await;
    let gw = Gateway::start(anthropic_config(&up)).await;
    let mut client = gw.client().await;
    let mut req = generate("claude", "hi");
    req.messages.insert(
        0,
        Message {
            role: "system".into(),
            content: "Be brief.".into(),
            ..Default::default()
        },
    );
    let resp = client
        .generate(authed(req, KEY))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.content, "Hello there.");
    assert_eq!(resp.finish_reason, "stop");
    assert_eq!(resp.id, "msg_u");
    let u = resp.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (16, 3, 19)
    );
    let seen = &up.requests()[0];
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.header("x-api-key"), Some(UPSTREAM_KEY));
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        seen.body,
        json!({"model": "claude-sonnet-4-5", "system": "Be brief.", "max_tokens": 300,
               "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
    );
}

#[tokio::test]
async fn streams_translate_event_by_event() {
    let up = Upstream::start(vec![Reply::anthropic_sse(&text_stream(&[
        "Hel", "lo", "!",
    ]))])
    .await;
    let gw = Gateway::start(anthropic_config(&up)).await;
    let mut client = gw.client().await;
    let chunks = collect(&mut client, stream_request("claude", "hi"))
        .await
        .unwrap();
    let deltas: Vec<&str> = chunks
        .iter()
        .filter(|c| !c.is_complete)
        .map(|c| c.delta.as_str())
        .collect();
    assert_eq!(deltas, ["Hel", "lo", "!"]);
    let last = chunks.last().unwrap();
    assert!(last.is_complete && !last.usage_estimated);
    assert_eq!(last.finish_reason, "stop");
    assert_eq!(last.id, "msg_text");
    let u = last.usage.unwrap();
    assert_eq!((u.prompt_tokens, u.completion_tokens), (25, 9));
    assert_eq!(up.requests()[0].body["stream"], true);
}

#[tokio::test]
async fn streamed_tool_calls_survive_the_round_trip() {
    let done = json!({"id": "msg_2", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Sunny in Seoul."}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 50, "output_tokens": 5}});
    let up = Upstream::start(vec![
        Reply::anthropic_sse(&tool_stream()),
        Reply::json(200, &done.to_string()),
    ])
    .await;
    let gw = Gateway::start(anthropic_config(&up)).await;
    let mut client = gw.client().await;
    let mut req = stream_request("claude", "weather in Seoul?");
    req.config = Some(weather_tool());
    let chunks = collect(&mut client, req).await.unwrap();
    assert_eq!(chunks[0].delta, "Checking.");
    let last = chunks.last().unwrap();
    assert_eq!(last.finish_reason, "tool_calls");
    let call = ToolCall {
        id: "toolu_01".into(),
        name: "get_weather".into(),
        arguments: r#"{"city": "Seoul"}"#.into(),
    };
    assert_eq!(last.tool_calls, vec![call.clone()]);
    let sent = &up.requests()[0].body;
    assert_eq!(
        sent["tools"],
        json!([{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}])
    );

    // The result goes back as a tool_result block in a user turn, after the assistant's tool_use.
    let mut next = generate("claude", "weather in Seoul?");
    next.config = Some(weather_tool());
    next.messages.push(assistant_calls("Checking.", vec![call]));
    next.messages.push(tool_result("toolu_01", "sunny, 21°C"));
    let resp = client
        .generate(authed(next, KEY))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.content, "Sunny in Seoul.");
    let sent = &up.requests()[1].body;
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "weather in Seoul?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Seoul"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny, 21°C"}]}])
    );
}

#[tokio::test]
async fn the_rest_door_streams_anthropic_tool_calls_as_openai_chunks() {
    let up = Upstream::start(vec![Reply::anthropic_sse(&tool_stream())]).await;
    let gw = Gateway::start(anthropic_config(&up)).await;
    let body = json!({"model": "claude", "stream": true, "max_tokens": 64,
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]});
    let text = http()
        .post(format!("http://{}/v1/chat/completions", gw.addr))
        .bearer_auth(KEY)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let calls: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array().cloned())
        .flatten()
        .collect();
    // Anthropic's input_json_deltas come through one by one, as OpenAI writes a call's pieces.
    assert_eq!(
        calls,
        vec![
            json!({"index": 0, "id": "toolu_01", "type": "function",
                   "function": {"name": "get_weather", "arguments": ""}}),
            json!({"index": 0, "function": {"arguments": "{\"city\": \"Se"}}),
            json!({"index": 0, "function": {"arguments": "oul\"}"}}),
        ]
    );
    assert_eq!(up.requests()[0].body["max_tokens"], 64);
}

#[tokio::test]
async fn failures_map_like_any_upstream() {
    let overloaded =
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
    let bad = json!({"type": "error", "error": {"type": "invalid_request_error", "message": "messages: roles must alternate"}});
    let mut cut = text_stream(&["par", "tial"]);
    cut.truncate(5); // no message_delta, no message_stop
    let mut mid_error = text_stream(&["a"]);
    mid_error.insert(4, overloaded.clone());
    let up = Upstream::start(vec![
        Reply::json(529, &overloaded.to_string()),
        Reply::json(400, &bad.to_string()),
        Reply::anthropic_sse(&cut),
        Reply::anthropic_sse(&mid_error),
    ])
    .await;
    let gw = Gateway::start(anthropic_config(&up)).await;
    let mut client = gw.client().await;
    let status = client
        .generate(authed(generate("claude", "hi"), KEY))
        .await
        .unwrap_err();
    // Anthropic's 529 is its own failure: UNAVAILABLE over gRPC, saying so.
    assert_status(
        &status,
        tonic::Code::Unavailable,
        "is overloaded: Overloaded",
    );
    let status = client
        .generate(authed(generate("claude", "hi"), KEY))
        .await
        .unwrap_err();
    assert_status(
        &status,
        tonic::Code::InvalidArgument,
        "roles must alternate",
    );
    let status = collect(&mut client, stream_request("claude", "hi"))
        .await
        .unwrap_err();
    assert_status(
        &status,
        tonic::Code::Unavailable,
        "ended before message_stop",
    );
    let status = collect(&mut client, stream_request("claude", "hi"))
        .await
        .unwrap_err();
    assert_status(&status, tonic::Code::Unavailable, "Overloaded");
    // What Anthropic cannot do is refused before any call.
    let calls = up.calls();
    let logprobs = GenerationConfig {
        logprobs: true,
        ..Default::default()
    };
    let status = client
        .generate(authed(with_config(generate("claude", "hi"), logprobs), KEY))
        .await
        .unwrap_err();
    assert_status(&status, tonic::Code::InvalidArgument, "anthropic");
    assert_eq!(up.calls(), calls);
}

/// Cache reads and writes come back named in the usage and are priced at the model's own rates.
#[tokio::test]
async fn cache_reads_and_writes_are_priced_at_their_rates() {
    let usage = json!({"input_tokens": 1000, "cache_read_input_tokens": 100_000,
                       "cache_creation_input_tokens": 2000, "output_tokens": 500});
    let answer = json!({"id": "msg_c", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Cached."}], "stop_reason": "end_turn", "usage": usage});
    let mut stream = text_stream(&["Cached."]);
    stream[0]["message"]["usage"] = json!({"input_tokens": 1000, "cache_read_input_tokens": 100_000,
                                            "cache_creation_input_tokens": 2000, "output_tokens": 1});
    stream[5]["usage"] = json!({"output_tokens": 500});
    let up = Upstream::start(vec![
        Reply::json(200, &answer.to_string()),
        Reply::anthropic_sse(&stream),
        Reply::json(200, &answer.to_string()),
    ])
    .await;
    let priced = anthropic_config_text(&up).replace(
        "routes = [",
        "price = { input_per_million = 3.0, output_per_million = 15.0, cached_input_per_million = 0.3, \
         cache_write_per_million = 3.75 }\n        routes = [",
    );
    let gw = Gateway::start(config(&priced)).await;
    // 1,000 plain prompt tokens at $3/M, 100,000 read at $0.30/M, 2,000 written at $3.75/M, 500 out at $15/M:
    // $0.048, where pricing every prompt token at the input rate would say $0.3165.
    let want = "0.048000";

    let mut client = gw.client().await;
    let resp = client
        .generate(authed(generate("claude", "hi"), KEY))
        .await
        .unwrap();
    assert_eq!(resp.metadata().get("aigw-cost-usd").unwrap(), want);
    let u = resp.get_ref().usage.unwrap();
    assert_eq!(
        (
            u.prompt_tokens,
            u.cached_prompt_tokens,
            u.cache_write_tokens,
            u.completion_tokens
        ),
        (103_000, 100_000, 2000, 500)
    );

    let mut s = client
        .stream_generate(authed(stream_request("claude", "hi"), KEY))
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(c) = s.message().await.unwrap() {
        last = Some(c);
    }
    let u = last.unwrap().usage.unwrap();
    assert_eq!(
        (u.cached_prompt_tokens, u.cache_write_tokens),
        (100_000, 2000)
    );
    let trailers = s.trailers().await.unwrap().unwrap();
    assert_eq!(trailers.get("aigw-cost-usd").unwrap(), want);

    // The REST door reports them as OpenAI does (cache writes are the gateway's addition).
    let text = http()
        .post(format!("http://{}/v1/chat/completions", gw.addr))
        .bearer_auth(KEY)
        .body(
            json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body["usage"]["prompt_tokens_details"],
        json!({"cached_tokens": 100_000, "cache_write_tokens": 2000})
    );
    assert_eq!(body["usage"]["prompt_tokens"], 103_000);
}

/// `count_tokens` in front of Anthropic is Anthropic's own count: the body as the client sent it (tools, system,
/// its betas) for the route's model. A request Anthropic refuses is refused as it says; an upstream that cannot
/// be reached leaves the gateway's estimate.
#[tokio::test]
async fn count_tokens_is_anthropics_own_count() {
    let up = Upstream::start(vec![
        Reply::json(200, r#"{"input_tokens": 1234}"#),
        Reply::json(
            400,
            r#"{"type": "error", "error": {"type": "invalid_request_error", "message": "messages: bad role"}}"#,
        ),
        Reply::json(503, r#"{"type": "error", "error": {"type": "api_error", "message": "down"}}"#),
    ])
    .await;
    let gw = Gateway::start(anthropic_config(&up)).await;
    let body = json!({"model": "claude", "system": "Be brief.",
        "messages": [{"role": "user", "content": "12345678"}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}, "defer_loading": true}]});
    let count = || {
        http()
            .post(format!("http://{}/v1/messages/count_tokens", gw.addr))
            .header("x-api-key", KEY)
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", "token-counting-2024-11-01")
            .body(body.to_string())
            .send()
    };
    let counted = count().await.unwrap();
    assert_eq!(counted.status(), 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&counted.text().await.unwrap()).unwrap(),
        json!({"input_tokens": 1234})
    );
    let seen = &up.requests()[0];
    assert!(
        seen.path.ends_with("/messages/count_tokens"),
        "{}",
        seen.path
    );
    let mut expected = body.clone();
    expected["model"] = json!("claude-sonnet-4-5");
    assert_eq!(seen.body, expected);
    let header = |name: &str| {
        seen.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("anthropic-beta"), Some("token-counting-2024-11-01"));
    assert_eq!(header("x-api-key"), Some(UPSTREAM_KEY));

    let refused = count().await.unwrap();
    assert_eq!(refused.status(), 400);
    let err: serde_json::Value = serde_json::from_str(&refused.text().await.unwrap()).unwrap();
    assert_eq!(err["type"], "error");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bad role"),
        "{err}"
    );

    let estimated = count().await.unwrap();
    assert_eq!(estimated.status(), 200);
    let n: serde_json::Value = serde_json::from_str(&estimated.text().await.unwrap()).unwrap();
    assert!(n["input_tokens"].as_u64().unwrap() > 0, "{n}");
    assert_ne!(n["input_tokens"], 1234);
}

/// An error Anthropic writes in a 200 body is an error, not an empty success: never billed, never counted OK.
#[tokio::test]
async fn an_error_body_is_an_error_whatever_the_status() {
    let up = Upstream::start(vec![
        Reply::json(
            200,
            r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#,
        ),
        Reply::json(
            200,
            r#"{"type": "error", "error": {"type": "invalid_request_error", "message": "messages: bad"}}"#,
        ),
    ])
    .await;
    let gw = Gateway::start(anthropic_config(&up)).await;
    let mut client = gw.client().await;
    let busy = client
        .generate(authed(generate("claude", "hi"), KEY))
        .await
        .unwrap_err();
    assert_status(&busy, tonic::Code::Unavailable, "Overloaded");
    let wrong = client
        .generate(authed(generate("claude", "hi"), KEY))
        .await
        .unwrap_err();
    assert_status(&wrong, tonic::Code::InvalidArgument, "messages: bad");
    let (_, metrics) = admin_get(&gw, "/metrics", None).await;
    assert!(
        !metrics.contains(r#"code="OK""#),
        "no call counted as a success: {metrics}"
    );
}
