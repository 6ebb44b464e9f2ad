//! Reasoning models and agents through every door, against scripted upstreams on real sockets: thinking (with
//! its signature) and tool-call arguments relayed piece by piece as they arrive, signatures round-tripping
//! byte-exact, headers before the answer and keep-alives during silences, one upstream call per answer, and
//! every attempt booked.

use std::sync::Arc;

use crate::common::{upstream::*, *};
use aigw::proto::{Message, Reasoning, ReasoningConfig, StreamChunk};
use serde_json::{json, Value};
use tokio::sync::Notify;

pub(crate) const SIGNATURE: &str = "EqQBCkYIBxgCKkDX+/9z==";
pub(crate) const THOUGHTS: [&str; 4] = ["I should ", "look at ", "the file ", "first."];
/// The arguments of the one tool call, in the seven pieces the upstream streams them in.
pub(crate) const ARGS: [&str; 7] = [
    "{\"path\"",
    ": \"src/",
    "main.rs\"",
    ", \"text\"",
    ": \"fn ",
    "main() {}\"",
    "}",
];

/// The Messages door's blocks for a thinking model's answer: its thinking, its text, its call.
const BLOCKS: [&str; 3] = ["thinking", "text", "tool_use"];

pub(crate) fn whole_args() -> String {
    ARGS.concat()
}

/// Anthropic's event stream of a thinking model: a signed thinking block in four pieces, a line of text, then a
/// tool call whose input comes in seven pieces (with pings between).
fn anthropic_stream() -> Vec<Value> {
    let mut events = vec![
        json!({"type": "message_start", "message": {"id": "msg_up", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5", "content": [], "usage": {"input_tokens": 25, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
    ];
    for t in THOUGHTS {
        events.push(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": t}}));
        events.push(json!({"type": "ping"}));
    }
    events.extend([
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": SIGNATURE}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Editing."}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_01", "name": "edit_file", "input": {}}}),
    ]);
    for a in ARGS {
        events.push(json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": a}}));
    }
    events.extend([
        json!({"type": "content_block_stop", "index": 2}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 60}}),
        json!({"type": "message_stop"}),
    ]);
    events
}

/// The same answer as an OpenAI-style reasoning model streams it: `reasoning_content` pieces, text, then the
/// call's arguments in seven pieces.
fn openai_stream() -> Vec<String> {
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({"id": "chatcmpl-r", "object": "chat.completion.chunk", "model": "up-big",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        .to_string()
    };
    let mut events = vec![role_chunk()];
    events.extend(
        THOUGHTS
            .iter()
            .map(|t| chunk(json!({"reasoning_content": t}), None)),
    );
    events.push(chunk(json!({"content": "Editing."}), None));
    events.push(chunk(
        json!({"tool_calls": [{"index": 0, "id": "call_01", "type": "function",
                               "function": {"name": "edit_file", "arguments": ""}}]}),
        None,
    ));
    events.extend(ARGS.iter().map(|a| {
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}),
            None,
        )
    }));
    events.push(chunk(json!({}), Some("tool_calls")));
    events.push(usage_chunk(25, 60));
    events.push("[DONE]".into());
    events
}

/// Model "big" on an Anthropic upstream at `up`, room for long thinking.
fn anthropic_config_text(up: &Upstream, policy: &str) -> String {
    crate::anthropic::anthropic_model_config(up, "big", 64000, 8000, policy)
}

pub(crate) fn tool_json() -> Value {
    json!([{"type": "function", "function": {"name": "edit_file", "parameters": {"type": "object"}}}])
}

/// The pieces one door's stream carried: reasoning text pieces, signatures, argument pieces, text.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Seen {
    pub(crate) reasoning: Vec<String>,
    pub(crate) signature: String,
    pub(crate) args: Vec<String>,
    pub(crate) text: String,
    /// The kinds of piece in the order they came: r(easoning), t(ext), c(all).
    pub(crate) order: String,
}

impl Seen {
    fn note(&mut self, kind: char) {
        if !self.order.ends_with(kind) {
            self.order.push(kind);
        }
    }

    pub(crate) fn expected() -> Seen {
        Seen {
            reasoning: THOUGHTS.iter().map(|t| t.to_string()).collect(),
            signature: String::new(),
            args: ARGS.iter().map(|a| a.to_string()).collect(),
            text: "Editing.".into(),
            order: "rtc".into(),
        }
    }
}

pub(crate) async fn grpc_stream(gw: &Gateway) -> (Seen, StreamChunk) {
    let mut req = stream_request("big", "fix main.rs");
    req.config = Some(aigw::proto::GenerationConfig {
        tools: vec![aigw::proto::Tool {
            name: "edit_file".into(),
            parameters_json: r#"{"type":"object"}"#.into(),
            ..Default::default()
        }],
        reasoning: Some(ReasoningConfig {
            effort: "high".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut s = gw
        .client()
        .await
        .stream_generate(authed(req, KEY))
        .await
        .unwrap()
        .into_inner();
    let mut seen = Seen::default();
    loop {
        let c = s.message().await.unwrap().expect("a final chunk");
        if c.is_complete {
            return (seen, c);
        }
        if let Some(r) = &c.reasoning {
            if !r.text.is_empty() {
                seen.reasoning.push(r.text.clone());
                seen.note('r');
            }
            seen.signature.push_str(&r.signature);
        }
        if !c.delta.is_empty() {
            seen.text.push_str(&c.delta);
            seen.note('t');
        }
        for d in &c.tool_call_deltas {
            if !d.arguments.is_empty() {
                seen.args.push(d.arguments.clone());
            }
            seen.note('c');
        }
    }
}

pub(crate) async fn post_sse(gw: &Gateway, path: &str, body: Value) -> String {
    let resp = http()
        .post(format!("http://{}{path}", gw.addr))
        .bearer_auth(KEY)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// The `data:` JSON of each event, with its `event:` name when it has one.
pub(crate) fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|e| {
            let kind = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("")
                .to_owned();
            let data = e.lines().find_map(|l| l.strip_prefix("data: "))?;
            serde_json::from_str(data).ok().map(|v| (kind, v))
        })
        .collect()
}

pub(crate) async fn chat_stream(gw: &Gateway) -> Seen {
    let text = post_sse(
        gw,
        "/v1/chat/completions",
        json!({"model": "big", "stream": true, "reasoning_effort": "high", "tools": tool_json(),
               "messages": [{"role": "user", "content": "fix main.rs"}]}),
    )
    .await;
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let mut seen = Seen::default();
    for (_, e) in events(&text) {
        let d = &e["choices"][0]["delta"];
        if let Some(r) = d["reasoning_content"].as_str() {
            seen.reasoning.push(r.to_owned());
            seen.note('r');
        }
        for b in d["thinking_blocks"].as_array().into_iter().flatten() {
            seen.signature
                .push_str(b["signature"].as_str().unwrap_or_default());
        }
        if let Some(t) = d["content"].as_str().filter(|t| !t.is_empty()) {
            seen.text.push_str(t);
            seen.note('t');
        }
        for c in d["tool_calls"].as_array().into_iter().flatten() {
            let a = c["function"]["arguments"].as_str().unwrap_or_default();
            if !a.is_empty() {
                seen.args.push(a.to_owned());
            }
            seen.note('c');
        }
    }
    seen
}

/// The Messages door's stream, whose content blocks must be `blocks` (their types, in order).
pub(crate) async fn messages_stream(gw: &Gateway, max_tokens: u32, blocks: &[&str]) -> Seen {
    let text = post_sse(
        gw,
        "/v1/messages",
        json!({"model": "big", "stream": true, "max_tokens": max_tokens,
               "thinking": {"type": "enabled", "budget_tokens": 4000},
               "tools": [{"name": "edit_file", "input_schema": {"type": "object"}}],
               "messages": [{"role": "user", "content": "fix main.rs"}]}),
    )
    .await;
    let evs = events(&text);
    assert_eq!(evs.last().unwrap().0, "message_stop", "{text}");
    // Blocks open and close in order, one at a time, numbered from 0.
    let starts: Vec<(u64, String)> = evs
        .iter()
        .filter(|(k, _)| k == "content_block_start")
        .map(|(_, e)| {
            (
                e["index"].as_u64().unwrap(),
                e["content_block"]["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(u64, String)> = (0..).zip(blocks.iter().map(|b| b.to_string())).collect();
    assert_eq!(starts, expected, "{text}");
    let mut seen = Seen::default();
    for (kind, e) in evs {
        if kind != "content_block_delta" {
            continue;
        }
        let d = &e["delta"];
        match d["type"].as_str().unwrap() {
            "thinking_delta" => {
                seen.reasoning.push(d["thinking"].as_str().unwrap().into());
                seen.note('r');
            }
            "signature_delta" => seen.signature.push_str(d["signature"].as_str().unwrap()),
            "text_delta" => {
                seen.text.push_str(d["text"].as_str().unwrap());
                seen.note('t');
            }
            "input_json_delta" => {
                seen.args.push(d["partial_json"].as_str().unwrap().into());
                seen.note('c');
            }
            other => panic!("unexpected delta {other}"),
        }
    }
    seen
}

pub(crate) async fn responses_stream(gw: &Gateway) -> (Seen, Value) {
    let text = post_sse(
        gw,
        "/v1/responses",
        json!({"model": "big", "stream": true, "reasoning": {"effort": "high"},
               "tools": [{"type": "function", "name": "edit_file", "parameters": {"type": "object"}}],
               "input": "fix main.rs"}),
    )
    .await;
    let mut seen = Seen::default();
    let mut done = Value::Null;
    for (kind, e) in events(&text) {
        match kind.as_str() {
            "response.reasoning_summary_text.delta" => {
                seen.reasoning.push(e["delta"].as_str().unwrap().into());
                seen.note('r');
            }
            "response.output_text.delta" => {
                seen.text.push_str(e["delta"].as_str().unwrap());
                seen.note('t');
            }
            "response.function_call_arguments.delta" => {
                seen.args.push(e["delta"].as_str().unwrap().into());
                seen.note('c');
            }
            "response.completed" => done = e["response"].clone(),
            _ => {}
        }
    }
    (seen, done)
}

#[tokio::test]
async fn anthropic_thinking_and_tool_input_stream_live_on_every_door() {
    let up = Upstream::start(vec![Reply::anthropic_sse(&anthropic_stream())]).await;
    let gw = Gateway::start(config(&anthropic_config_text(&up, ""))).await;
    let signed = Seen {
        signature: SIGNATURE.into(),
        ..Seen::expected()
    };

    let (seen, last) = grpc_stream(&gw).await;
    assert_eq!(seen, signed);
    assert_eq!(
        last.reasoning_blocks,
        vec![Reasoning {
            text: THOUGHTS.concat(),
            signature: SIGNATURE.into(),
            redacted: String::new(),
            id: String::new(),
        }]
    );
    assert_eq!(last.tool_calls[0].arguments, whole_args());
    // The effort became Anthropic's thinking budget.
    assert_eq!(
        up.requests()[0].body["thinking"],
        json!({"type": "enabled", "budget_tokens": 7999})
    );

    assert_eq!(chat_stream(&gw).await, signed);
    assert_eq!(messages_stream(&gw, 8000, &BLOCKS).await, signed);
    assert_eq!(
        up.requests()[2].body["thinking"],
        json!({"type": "enabled", "budget_tokens": 4000})
    );
    let (seen, done) = responses_stream(&gw).await;
    assert_eq!(seen, Seen::expected());
    let output = done["output"].as_array().unwrap();
    assert_eq!(output[0]["type"], "reasoning");
    assert_eq!(output[0]["encrypted_content"], SIGNATURE);
    assert_eq!(output[0]["summary"][0]["text"], THOUGHTS.concat());
    assert_eq!(output[2]["arguments"], whole_args());
    // Never a top-level reasoning_effort to Anthropic: its thinking instead.
    assert!(up.requests()[3].body.get("reasoning_effort").is_none());
    assert_eq!(up.calls(), 4);
}

#[tokio::test]
async fn openai_style_reasoning_streams_live_on_every_door() {
    let up = Upstream::start(vec![Reply::sse(&openai_stream())]).await;
    let gw = Gateway::in_front_of(&up).await;
    let (seen, last) = grpc_stream(&gw).await;
    assert_eq!(seen, Seen::expected());
    assert_eq!(last.reasoning_blocks[0].text, THOUGHTS.concat());
    assert_eq!(up.requests()[0].body["reasoning_effort"], "high");
    assert_eq!(chat_stream(&gw).await, Seen::expected());
    assert_eq!(messages_stream(&gw, 1000, &BLOCKS).await, Seen::expected());
    // Anthropic's budget, to an OpenAI-style upstream, is an effort.
    assert_eq!(up.requests()[2].body["reasoning_effort"], "low");
    assert!(up.requests()[2].body.get("thinking").is_none());
    let (seen, _) = responses_stream(&gw).await;
    assert_eq!(seen, Seen::expected());
    assert_eq!(up.calls(), 4);
}

/// Turn 2 of a tool loop sends the previous turn's thinking back as each door gave it out; the Anthropic
/// upstream gets the block byte-exact, first in the assistant turn.
#[tokio::test]
async fn thinking_signatures_round_trip_byte_exact_on_every_door() {
    let up = Upstream::start(vec![Reply::anthropic_sse(&anthropic_stream())]).await;
    let gw = Gateway::start(config(&anthropic_config_text(&up, ""))).await;
    let thought = THOUGHTS.concat();
    let block = json!({"type": "thinking", "thinking": thought, "signature": SIGNATURE});
    let args: Value = serde_json::from_str(&whole_args()).unwrap();
    let call_id = "toolu_01";

    let mut req = stream_request("big", "fix main.rs");
    req.messages.push(Message {
        role: "assistant".into(),
        reasoning: vec![Reasoning {
            text: thought.clone(),
            signature: SIGNATURE.into(),
            redacted: String::new(),
            id: String::new(),
        }],
        ..assistant_calls(
            "",
            vec![aigw::proto::ToolCall {
                id: call_id.into(),
                name: "edit_file".into(),
                arguments: whole_args(),
            }],
        )
    });
    req.messages.push(tool_result(call_id, "done"));
    let mut s = gw
        .client()
        .await
        .stream_generate(authed(req, KEY))
        .await
        .unwrap()
        .into_inner();
    while s.message().await.unwrap().is_some() {}

    post_sse(
        &gw,
        "/v1/messages",
        json!({"model": "big", "stream": true, "max_tokens": 8000,
               "thinking": {"type": "enabled", "budget_tokens": 4000},
               "messages": [{"role": "user", "content": "fix main.rs"},
                   {"role": "assistant", "content": [block, {"type": "tool_use", "id": call_id, "name": "edit_file", "input": args}]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "done"}]}]}),
    )
    .await;

    post_sse(
        &gw,
        "/v1/chat/completions",
        json!({"model": "big", "stream": true,
               "messages": [{"role": "user", "content": "fix main.rs"},
                   {"role": "assistant", "content": null, "reasoning_content": thought,
                    "thinking_blocks": [block],
                    "tool_calls": [{"id": call_id, "type": "function", "function": {"name": "edit_file", "arguments": whole_args()}}]},
                   {"role": "tool", "tool_call_id": call_id, "content": "done"}]}),
    )
    .await;

    post_sse(
        &gw,
        "/v1/responses",
        json!({"model": "big", "stream": true, "input": [
            {"role": "user", "content": "fix main.rs"},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": thought}],
             "encrypted_content": SIGNATURE},
            {"type": "function_call", "call_id": call_id, "name": "edit_file", "arguments": whole_args()},
            {"type": "function_call_output", "call_id": call_id, "output": "done"}]}),
    )
    .await;

    let requests = up.requests();
    assert_eq!(requests.len(), 4);
    for (door, r) in ["gRPC", "Messages", "chat", "Responses"]
        .iter()
        .zip(&requests)
    {
        let turn = &r.body["messages"][1];
        assert_eq!(turn["role"], "assistant", "{door}");
        assert_eq!(turn["content"][0], block, "{door}: {turn}");
        assert_eq!(turn["content"][1]["type"], "tool_use", "{door}");
        // Byte-exact in the bytes on the wire, not only as parsed JSON.
        let raw = String::from_utf8_lossy(&r.raw_body);
        assert!(raw.contains(SIGNATURE), "{door}");
    }
}

/// A reasoning model that is silent for a while before it answers: the response's headers go out as soon as the
/// upstream accepted the call, keep-alives (gRPC heartbeats, SSE comments, Anthropic pings) fill the silence,
/// and the answer that follows is the one upstream call's.
#[tokio::test]
async fn headers_come_at_once_and_keepalives_fill_a_silence() {
    let gate = Arc::new(Notify::new());
    let mut body = format!("data: {}\n\n", role_chunk()).into_bytes();
    body.extend(b": upstream comment\n\n");
    let rest: String = openai_stream()[1..]
        .iter()
        .map(|e| format!("data: {e}\n\n"))
        .collect();
    let reply = Reply::sse_raw(vec![
        Part::Bytes(body),
        Part::Gate(gate.clone()),
        Part::Bytes(rest.into_bytes()),
    ]);
    let up = Upstream::start(vec![reply]).await;
    let policy = r#"stream = { keepalive = "100ms", first_event = "600s" }"#;
    let gw = Gateway::start(config(&config_with(&up.base_url(), "", policy))).await;

    // gRPC: the response (its headers) is in hand while the upstream holds the answer; heartbeats follow.
    let mut s = gw
        .client()
        .await
        .stream_generate(authed(stream_request("big", "think"), KEY))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..2 {
        let c = s.message().await.unwrap().unwrap();
        assert!(
            c.heartbeat && c.delta.is_empty() && c.reasoning.is_none(),
            "{c:?}"
        );
    }
    gate.notify_one();
    let mut reasoning = 0;
    loop {
        let c = s.message().await.unwrap().unwrap();
        reasoning += usize::from(c.reasoning.is_some());
        if c.is_complete {
            break;
        }
    }
    assert_eq!(reasoning, THOUGHTS.len());

    // The REST doors: headers first, then their own keep-alives, then the answer.
    for (path, body, keepalive) in [
        (
            "/v1/chat/completions",
            json!({"model": "big", "stream": true, "messages": [{"role": "user", "content": "think"}]}),
            ": keep-alive\n\n",
        ),
        (
            "/v1/messages",
            json!({"model": "big", "stream": true, "max_tokens": 100, "messages": [{"role": "user", "content": "think"}]}),
            "event: ping\ndata: {\"type\": \"ping\"}\n\n",
        ),
    ] {
        let mut resp = http()
            .post(format!("http://{}{path}", gw.addr))
            .bearer_auth(KEY)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let mut text = String::new();
        while text.matches(keepalive).count() < 2 {
            let bytes = resp.chunk().await.unwrap().expect("more of the stream");
            text.push_str(std::str::from_utf8(&bytes).unwrap());
        }
        gate.notify_one();
        while let Some(bytes) = resp.chunk().await.unwrap() {
            text.push_str(std::str::from_utf8(&bytes).unwrap());
        }
        assert!(text.contains("Editing."), "{path}: {text}");
    }
    assert_eq!(up.calls(), 3);
}

/// Once a piece of the answer has reached the client a fault ends the call instead of starting a second
/// generation; an attempt that was accepted and lost before its answer began is retried, and booked.
#[tokio::test]
async fn an_answer_that_began_is_never_retried_and_lost_attempts_are_booked() {
    let thinking = json!({"id": "c", "object": "chat.completion.chunk", "model": "up-big",
        "choices": [{"index": 0, "delta": {"reasoning_content": "Hmm"}, "finish_reason": null}]})
    .to_string();
    let up = Upstream::start(vec![
        Reply::sse(&[role_chunk()]).end(End::Reset),
        Reply::sse(&[role_chunk(), thinking]).end(End::Reset),
        Reply::sse(&stream_of(&["never"])),
    ])
    .await;
    let gw = Gateway::start(config(&config_with(
        &up.base_url(),
        "",
        r#"retry = { backoff = "1ms" }"#,
    )))
    .await;
    let mut s = gw
        .client()
        .await
        .stream_generate(authed(stream_request("big", "hi"), KEY))
        .await
        .unwrap()
        .into_inner();
    let (chunks, status) = read_to_error(&mut s).await;
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].reasoning.as_ref().unwrap().text, "Hmm");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(up.calls(), 2, "no second generation after the answer began");
    // Both attempts reached the upstream: the prompt is booked twice (5 tokens each for "hi"), estimated.
    let (_, metrics) = admin_get(&gw, "/metrics", None).await;
    assert_eq!(
        metric(
            &metrics,
            r#"aigw_tokens_total{estimated="true",key="tester",kind="prompt",model="big"}"#
        ),
        10.0
    );
}

/// An upstream failure the gateway already retried tells the SDKs not to retry it again.
#[tokio::test]
async fn errors_after_the_gateways_own_retries_say_do_not_retry() {
    let up = Upstream::start(vec![Reply::json(
        503,
        r#"{"error": {"message": "overloaded"}}"#,
    )])
    .await;
    let gw = Gateway::start(config(&config_with(
        &up.base_url(),
        "",
        r#"retry = { backoff = "1ms" }"#,
    )))
    .await;
    for stream in [false, true] {
        let resp = http()
            .post(format!("http://{}/v1/chat/completions", gw.addr))
            .bearer_auth(KEY)
            .body(
                json!({"model": "big", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 502, "stream {stream}");
        assert_eq!(resp.headers()["x-should-retry"], "false");
    }
    assert_eq!(up.calls(), 6, "three attempts a call");
    // The gateway's own refusals carry no such word: a client may retry them when it likes.
    let resp = http()
        .post(format!("http://{}/v1/chat/completions", gw.addr))
        .bearer_auth(KEY)
        .body(json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.headers().get("x-should-retry").is_none());
}
