//! The Messages door (`POST /v1/messages`) in front of an OpenAI-style upstream: Anthropic's request reaches it
//! as chat completions, its answer comes back as Anthropic's events, and a stream broken after its start ends
//! in an `error` event, never `message_stop`.

use crate::common::{upstream::*, *};
use serde_json::{json, Value};

async fn post(gw: &Gateway, body: Value, auth: (&str, &str)) -> (u16, String) {
    let resp = http()
        .post(format!("http://{}/v1/messages", gw.addr))
        .header(auth.0, auth.1)
        .header("anthropic-version", "2023-06-01")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn kinds(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn an_openai_upstream_answers_in_anthropic_events() {
    let up = Upstream::start(vec![Reply::sse(&stream_of(&["Hel", "lo"]))]).await;
    let gw = Gateway::without_retries(&up).await;
    let body = json!({"model": "big", "max_tokens": 50, "stream": true,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": "hi"},
                     {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]}]});
    let (status, text) = post(&gw, body, ("x-api-key", KEY)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        kinds(&text),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let delta: Value = text
        .split("\n\n")
        .find(|e| e.starts_with("event: message_delta"))
        .and_then(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap())
        .unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["input_tokens"], 7);
    assert_eq!(delta["usage"]["output_tokens"], 2);
    let sent = &up.requests()[0].body;
    assert_eq!(sent["max_tokens"], 50);
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
               {"role": "assistant", "tool_calls": [{"id": "toolu_1", "type": "function",
                   "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
               {"role": "tool", "tool_call_id": "toolu_1", "content": "ok"}])
    );
}

#[tokio::test]
async fn a_broken_stream_ends_in_an_error_event_and_refusals_are_anthropic_errors() {
    let mut words = stream_of(&["par", "tial"]);
    words.truncate(3);
    let up = Upstream::start(vec![Reply::sse(&words).end(End::Reset)]).await;
    let gw = Gateway::without_retries(&up).await;
    let body = json!({"model": "big", "max_tokens": 50, "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]});
    let (status, text) = post(&gw, body, ("authorization", &format!("Bearer {KEY}"))).await;
    assert_eq!(status, 200);
    let got = kinds(&text);
    assert_eq!(got.last().map(String::as_str), Some("error"), "{got:?}");
    assert!(!got.iter().any(|k| k == "message_stop"));
    // The door's own refusals are Anthropic's too: a wrong method, a body over the limit.
    let url = format!("http://{}/v1/messages", gw.addr);
    let got = http()
        .get(&url)
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 405);
    assert_eq!(got.headers()["allow"], "POST");
    let err: Value = serde_json::from_str(&got.text().await.unwrap()).unwrap();
    assert_eq!(err["error"]["type"], "invalid_request_error");
    let huge = "x".repeat(aigw::rest::MAX_MESSAGES_BODY + 1);
    let got = http()
        .post(&url)
        .header("x-api-key", KEY)
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 413);
    let err: Value = serde_json::from_str(&got.text().await.unwrap()).unwrap();
    assert_eq!(
        (err["type"].as_str(), err["error"]["type"].as_str()),
        (Some("error"), Some("request_too_large"))
    );
    for (body, key, status, kind) in [
        (
            json!({"model": "big", "max_tokens": 5, "messages": []}),
            "sk-wrong",
            401,
            "authentication_error",
        ),
        (
            json!({"model": "big", "messages": []}),
            KEY,
            400,
            "invalid_request_error",
        ),
        (
            json!({"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
            KEY,
            404,
            "not_found_error",
        ),
    ] {
        let (got, text) = post(&gw, body, ("x-api-key", key)).await;
        assert_eq!(got, status, "{text}");
        let err: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(err["type"], "error");
        assert_eq!(err["error"]["type"], kind, "{text}");
    }
}

/// What Claude Code and the Agent SDK ask of the Messages door besides messages: `HEAD /` first,
/// `count_tokens`, `/v1/models` in Anthropic's shape, `toolu_` ids whatever the upstream, an input count in
/// `message_start`, Anthropic's 32 MB body limit, and an overloaded upstream's 529.
#[tokio::test]
async fn the_door_answers_what_anthropic_clients_ask() {
    let tool_call = json!({"id": "c", "object": "chat.completion.chunk", "model": "up-big",
        "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_9", "type": "function",
            "function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "tool_calls"}]})
    .to_string();
    let up = Upstream::start(vec![
        Reply::sse(&[role_chunk(), tool_call, usage_chunk(9, 1), "[DONE]".into()]),
        Reply::json(
            529,
            r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#,
        ),
    ])
    .await;
    let gw = Gateway::without_retries(&up).await;
    let base = format!("http://{}", gw.addr);

    let head = http().head(format!("{base}/")).send().await.unwrap();
    assert_eq!(head.status(), 200);

    let count = |body: Value| {
        http()
            .post(format!("{base}/v1/messages/count_tokens"))
            .header("x-api-key", KEY)
            .header("anthropic-version", "2023-06-01")
            .body(body.to_string())
            .send()
    };
    let got = count(json!({"model": "big", "messages": [{"role": "user", "content": "12345678"}]}))
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let n: Value = serde_json::from_str(&got.text().await.unwrap()).unwrap();
    assert_eq!(n, json!({"input_tokens": 2 + 4}));
    let got = count(json!({"model": "nope", "messages": []}))
        .await
        .unwrap();
    assert_eq!(got.status(), 404);
    let err: Value = serde_json::from_str(&got.text().await.unwrap()).unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "not_found_error");

    let models: Value = http()
        .get(format!("{base}/v1/models"))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert_eq!(models["data"][0]["type"], "model");
    assert_eq!(models["has_more"], false);
    assert_eq!(models["first_id"], models["data"][0]["id"]);
    // Without anthropic-version, OpenAI's shape as before.
    let openai: Value = http()
        .get(format!("{base}/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert_eq!(openai["object"], "list");

    let (status, text) = post(
        &gw,
        json!({"model": "big", "max_tokens": 50, "stream": true,
               "messages": [{"role": "user", "content": "12345678"}]}),
        ("x-api-key", KEY),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""id":"toolu_call_9""#), "{text}");
    let start: Value =
        serde_json::from_str(text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    assert_eq!(start["message"]["usage"]["input_tokens"], 6);

    let (status, text) = post(
        &gw,
        json!({"model": "big", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}),
        ("x-api-key", KEY),
    )
    .await;
    assert_eq!(status, 529, "{text}");
    let err: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(err["error"]["type"], "overloaded_error");
    // The OpenAI doors say 503 for the same.
    let got = http()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(KEY)
        .body(json!({"model": "big", "messages": [{"role": "user", "content": "hi"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 503);

    // Up to Anthropic's 32 MB: a 5 MB image is read (and answered by the upstream), not refused as too large.
    let image = "A".repeat(5 << 20);
    let (status, _) = post(
        &gw,
        json!({"model": "big", "max_tokens": 50, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}}]}]}),
        ("x-api-key", KEY),
    )
    .await;
    assert_ne!(status, 413);
}

/// An Anthropic upstream that answers "ok", and a gateway in front of it (model "claude").
async fn claude_answering() -> (Upstream, Gateway) {
    let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 1}});
    let claude = Upstream::start(vec![Reply::json(200, &answer.to_string())]).await;
    let gw = Gateway::start(config(&crate::anthropic::anthropic_config_text(&claude))).await;
    (claude, gw)
}

/// Top-level fields the Messages door does not model.
const UNMODELLED: [&str; 5] = [
    "context_management",
    "output_config",
    "container",
    "mcp_servers",
    "a_field_from_next_year",
];

/// Fields, tools and blocks the gateway does not model reach an Anthropic upstream as the client sent them —
/// today's (`context_management`, `output_config`, a tool's `defer_loading`, a server tool, a document) and
/// tomorrow's — while an OpenAI-style upstream never sees them and the client is told (`aigw-dropped`); what the
/// gateway owns (the model, max_tokens, thinking) is still its own.
#[tokio::test]
async fn anthropic_fields_pass_through_to_anthropic_upstreams_only() {
    let document = json!({"type": "document", "source": {"type": "text", "media_type": "text/plain",
        "data": "The report."}, "cache_control": {"type": "ephemeral"}});
    let server_tool = json!({"type": "web_search_20250305", "name": "web_search", "max_uses": 2});
    let body = json!({"model": "MODEL", "max_tokens": 50,
        "messages": [{"role": "user", "content": [document, {"type": "text", "text": "Sum it up."}]}],
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
        "output_config": {"effort": "high"}, "container": "c_1", "mcp_servers": [{"name": "x"}],
        "a_field_from_next_year": {"on": true},
        "tools": [{"name": "f", "input_schema": {"type": "object"}, "defer_loading": true}, server_tool]});
    let (claude, gw) = claude_answering().await;
    let mut asked = body.clone();
    asked["model"] = json!("claude");
    let (status, text) = post(&gw, asked, ("x-api-key", KEY)).await;
    assert_eq!(status, 200, "{text}");
    let sent = &claude.requests()[0].body;
    for field in UNMODELLED {
        assert_eq!(sent[field], body[field], "{field}");
    }
    assert_eq!(sent["tools"][0]["defer_loading"], true);
    assert_eq!(sent["tools"][1], server_tool);
    assert_eq!(sent["messages"][0]["content"][0], document);
    assert_eq!(sent["model"], "claude-sonnet-4-5");

    let openai = Upstream::start(vec![Reply::json(200, &completion("ok", "stop", 3, 1))]).await;
    let gw = Gateway::without_retries(&openai).await;
    let mut asked = body.clone();
    asked["model"] = json!("big");
    let resp = http()
        .post(format!("http://{}/v1/messages", gw.addr))
        .header("x-api-key", KEY)
        .body(asked.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["aigw-dropped"],
        "tools[0].defer_loading, tools[1]:web_search_20250305, a_field_from_next_year, container, \
         context_management, mcp_servers, output_config, document"
    );
    let sent = &openai.requests()[0].body;
    for field in UNMODELLED {
        assert!(sent.get(field).is_none(), "{field}: {sent}");
    }
    assert!(sent["tools"][0].get("defer_loading").is_none());
    assert_eq!(sent["tools"].as_array().unwrap().len(), 1);
    assert_eq!(
        sent["messages"][0]["content"],
        json!([{"type": "text", "text": "Sum it up."}])
    );
}

/// The client's API headers reach upstreams of their dialect: Anthropic's version and betas, OpenAI's beta.
#[tokio::test]
async fn api_headers_are_forwarded_to_upstreams_of_their_dialect() {
    let (claude, gw) = claude_answering().await;
    let send = |version: Option<&'static str>| {
        let mut req = http()
            .post(format!("http://{}/v1/messages", gw.addr))
            .header("x-api-key", KEY)
            .header(
                "anthropic-beta",
                "context-management-2025-06-27,interleaved-thinking-2025-05-14",
            );
        if let Some(v) = version {
            req = req.header("anthropic-version", v);
        }
        req.body(
            json!({"model": "claude", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
        )
        .send()
    };
    assert_eq!(send(Some("2024-01-01")).await.unwrap().status(), 200);
    assert_eq!(send(None).await.unwrap().status(), 200);
    let seen = claude.requests();
    assert_eq!(
        seen[0].header("anthropic-beta"),
        Some("context-management-2025-06-27,interleaved-thinking-2025-05-14")
    );
    assert_eq!(seen[0].header("anthropic-version"), Some("2024-01-01"));
    // Without the client's, the gateway's own version.
    assert_eq!(seen[1].header("anthropic-version"), Some("2023-06-01"));

    let openai = Upstream::start(vec![Reply::json(200, &completion("ok", "stop", 3, 1))]).await;
    let gw = Gateway::without_retries(&openai).await;
    let got = http()
        .post(format!("http://{}/v1/chat/completions", gw.addr))
        .bearer_auth(KEY)
        .header("OpenAI-Beta", "responses=v1")
        .header("anthropic-beta", "not-for-openai")
        .body(json!({"model": "big", "messages": [{"role": "user", "content": "hi"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let seen = &openai.requests()[0];
    assert_eq!(seen.header("openai-beta"), Some("responses=v1"));
    assert_eq!(seen.header("anthropic-beta"), None);
}

/// A model named with a `*` takes every name it matches, and a route with `model = "*"` passes the client's name
/// on: an agent's next default model (Claude Code's `claude-opus-4-8`, the Agent SDK's `claude-opus-5-5`) needs no
/// config change. Exact names win over patterns; a name with two `*` is a config error.
#[tokio::test]
async fn model_name_patterns_pass_the_clients_name_through() {
    let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "x",
        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 1}});
    let up = Upstream::start(vec![Reply::json(200, &answer.to_string())]).await;
    let text = format!(
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
        [[models]]
        name = "claude-haiku-pinned"
        max_output_tokens = 1000
        routes = [{{ upstream = "claude-api", model = "claude-haiku-4-5" }}]
        [[models]]
        name = "claude-*"
        max_output_tokens = 1000
        routes = [{{ upstream = "claude-api", model = "*" }}]
        "#,
        up.base_url()
    );
    let gw = Gateway::start(config(&text)).await;
    for (asked, sent) in [
        ("claude-opus-4-8", "claude-opus-4-8"),
        ("claude-opus-5-5", "claude-opus-5-5"),
        ("claude-haiku-pinned", "claude-haiku-4-5"),
    ] {
        let (status, body) = post(
            &gw,
            json!({"model": asked, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}),
            ("x-api-key", KEY),
        )
        .await;
        assert_eq!(status, 200, "{asked}: {body}");
        assert_eq!(up.requests().last().unwrap().body["model"], sent);
    }
    let (status, _) = post(
        &gw,
        json!({"model": "gpt-4.1", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}),
        ("x-api-key", KEY),
    )
    .await;
    assert_eq!(status, 404);
    let bad = text.replace(r#"name = "claude-*""#, r#"name = "claude-*-*""#);
    let err = aigw::config::Config::parse(&bad, |_| None).unwrap_err();
    assert!(err.to_string().contains("more than one '*'"), "{err}");
}
