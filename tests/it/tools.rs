//! Tools, tool results, logprobs and provider options end to end: a scripted OpenAI upstream that streams tool
//! calls in pieces, the gateway in front of it, and gRPC and REST clients on the other side.

use crate::common::{upstream::*, *};
use aigw::proto::{tool_choice::Choice, GenerationConfig, StreamChunk, Tool, ToolCall, ToolChoice};
use serde_json::{json, Value};

fn event(delta: Value, finish: Option<&str>) -> String {
    json!({"id": "chatcmpl-t", "object": "chat.completion.chunk", "model": "up-model-2025",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    .to_string()
}

/// Two parallel calls, their pieces interleaved and their arguments split mid-token, as OpenAI streams them.
fn tool_stream() -> Vec<String> {
    vec![
        event(json!({"role": "assistant", "content": null}), None),
        event(
            json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                     "function": {"name": "get_weather", "arguments": ""}}]}),
            None,
        ),
        event(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"ci"}}]}),
            None,
        ),
        event(
            json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                                     "function": {"name": "get_time", "arguments": "{\"tz\":"}}]}),
            None,
        ),
        event(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "ty\":\"Seoul\"}"}}]}),
            None,
        ),
        event(
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "\"KST\"}"}}]}),
            None,
        ),
        event(json!({}), Some("tool_calls")),
        usage_chunk(20, 12),
        "[DONE]".into(),
    ]
}

fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: arguments.into(),
    }
}

fn tools_config() -> GenerationConfig {
    GenerationConfig {
        tools: vec![
            Tool {
                name: "get_weather".into(),
                parameters_json: r#"{"type":"object","properties":{"city":{"type":"string"}}}"#
                    .into(),
                ..Default::default()
            },
            Tool {
                name: "get_time".into(),
                ..Default::default()
            },
        ],
        tool_choice: Some(ToolChoice {
            choice: Some(Choice::Mode("auto".into())),
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn streamed_tool_calls_survive_the_round_trip_over_grpc() {
    let answer = completion("It is sunny in Seoul at 9.", "stop", 30, 8);
    let up = Upstream::start(vec![Reply::sse(&tool_stream()), Reply::json(200, &answer)]).await;
    let gw = Gateway::in_front_of(&up).await;
    let mut client = gw.client().await;
    let mut req = stream_request("big", "weather and time in Seoul?");
    req.config = Some(tools_config());
    let mut stream = client
        .stream_generate(authed(req.clone(), KEY))
        .await
        .unwrap()
        .into_inner();
    let mut chunks: Vec<StreamChunk> = Vec::new();
    while let Some(c) = stream.message().await.unwrap() {
        chunks.push(c);
    }
    // No text: each piece of each call as the upstream sent it (the two calls interleaved), then one final
    // chunk carrying both calls, whole.
    let pieces: Vec<(u32, &str, &str, &str)> = chunks
        .iter()
        .flat_map(|c| &c.tool_call_deltas)
        .map(|d| {
            (
                d.index,
                d.id.as_str(),
                d.name.as_str(),
                d.arguments.as_str(),
            )
        })
        .collect();
    assert_eq!(
        pieces,
        [
            (0, "call_a", "get_weather", ""),
            (0, "", "", r#"{"ci"#),
            (1, "call_b", "get_time", r#"{"tz":"#),
            (0, "", "", r#"ty":"Seoul"}"#),
            (1, "", "", r#""KST"}"#),
        ]
    );
    assert!(chunks.iter().all(|c| c.delta.is_empty()), "{chunks:?}");
    let last = chunks.last().unwrap();
    assert!(last.is_complete);
    assert_eq!(last.finish_reason, "tool_calls");
    let calls = vec![
        call("call_a", "get_weather", r#"{"city":"Seoul"}"#),
        call("call_b", "get_time", r#"{"tz":"KST"}"#),
    ];
    assert_eq!(last.tool_calls, calls);
    assert_eq!(last.usage.unwrap().total_tokens, 32);
    let sent = &up.requests()[0].body;
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(
        sent["tools"][0]["function"]["parameters"]["properties"]["city"]["type"],
        "string"
    );
    assert_eq!(sent["tool_choice"], "auto");

    // The client runs the tools and sends the results back with the assistant's calls.
    let mut next = generate("big", "weather and time in Seoul?");
    next.config = Some(tools_config());
    next.messages.push(assistant_calls("", calls.clone()));
    for (id, result) in [("call_a", "sunny"), ("call_b", "09:00")] {
        next.messages.push(tool_result(id, result));
    }
    let resp = client
        .generate(authed(next, KEY))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.content, "It is sunny in Seoul at 9.");
    let sent = &up.requests()[1].body;
    assert_eq!(
        sent["messages"][1],
        json!({"role": "assistant", "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Seoul\"}"}},
            {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{\"tz\":\"KST\"}"}}]})
    );
    assert_eq!(
        sent["messages"][2],
        json!({"role": "tool", "content": "sunny", "tool_call_id": "call_a"})
    );
    assert_eq!(sent["messages"][3]["tool_call_id"], "call_b");
}

#[tokio::test]
async fn the_rest_door_streams_and_returns_tool_calls_as_openai_does() {
    let whole = json!({"id": "chatcmpl-w", "object": "chat.completion", "model": "up-model-2025",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_z", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}});
    let up = Upstream::start(vec![
        Reply::sse(&tool_stream()),
        Reply::json(200, &whole.to_string()),
    ])
    .await;
    let gw = Gateway::in_front_of(&up).await;
    let body = json!({"model": "big", "stream": true,
        "messages": [{"role": "user", "content": "weather and time?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
                  {"type": "function", "function": {"name": "get_time"}}],
        "tool_choice": "required", "parallel_tool_calls": true});
    let resp = http()
        .post(format!("http://{}/v1/chat/completions", gw.addr))
        .bearer_auth(KEY)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let events: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(text.trim_end().ends_with("data: [DONE]"));
    // Re-assemble as an SDK does: by index, appending arguments.
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut pieces = 0;
    for e in &events {
        for tc in e["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = tc["index"].as_u64().unwrap() as usize;
            if calls.len() <= i {
                calls.resize(i + 1, Default::default());
            }
            // A call's first piece names it; the rest add to its arguments, as OpenAI streams them.
            let first = tc.get("id").is_some();
            assert_eq!(tc["type"] == "function", first, "{tc}");
            pieces += 1;
            calls[i].0 += tc["id"].as_str().unwrap_or_default();
            calls[i].1 += tc["function"]["name"].as_str().unwrap_or_default();
            calls[i].2 += tc["function"]["arguments"].as_str().unwrap_or_default();
        }
    }
    // Streamed as the upstream made them, not in one piece at the end.
    assert_eq!(pieces, 5);
    let own = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        calls,
        vec![
            own("call_a", "get_weather", r#"{"city":"Seoul"}"#),
            own("call_b", "get_time", r#"{"tz":"KST"}"#)
        ]
    );
    let finish: Vec<&str> = events
        .iter()
        .filter_map(|e| e["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, ["tool_calls"]);
    let sent = &up.requests()[0].body;
    assert_eq!(sent["tool_choice"], "required");
    assert_eq!(sent["parallel_tool_calls"], true);

    // Unary: the calls in the message, content null.
    let mut unary = body.clone();
    unary["stream"] = json!(false);
    let resp = http()
        .post(format!("http://{}/v1/chat/completions", gw.addr))
        .bearer_auth(KEY)
        .body(unary.to_string())
        .send()
        .await
        .unwrap();
    let answer: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    let message = &answer["choices"][0]["message"];
    assert_eq!(message["content"], Value::Null);
    assert_eq!(
        message["tool_calls"],
        json!([{"id": "call_z", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}])
    );
    assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn logprobs_and_provider_options_pass_both_ways() {
    let body = json!({"id": "c", "object": "chat.completion", "model": "up",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi"},
            "logprobs": {"content": [{"token": "Hi", "logprob": -0.25, "bytes": [72, 105],
                "top_logprobs": [{"token": "Hi", "logprob": -0.25}, {"token": "Hey", "logprob": -2.0}]}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}});
    let up = Upstream::start(vec![Reply::json(200, &body.to_string())]).await;
    let gw = Gateway::in_front_of(&up).await;
    let mut client = gw.client().await;
    let options = json!({"reasoning_effort": "low", "top_k": 40});
    let config = GenerationConfig {
        logprobs: true,
        top_logprobs: Some(2),
        seed: Some(11),
        user: "end-user-1".into(),
        provider_options: Some(aigw::upstream::pass_through::json_to_struct(
            options.as_object().unwrap().clone(),
        )),
        ..Default::default()
    };
    let resp = client
        .generate(authed(
            with_config(generate("big", "hi"), config.clone()),
            KEY,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.logprobs.len(), 1);
    assert_eq!(resp.logprobs[0].token, "Hi");
    assert_eq!(resp.logprobs[0].top_logprobs[1].token, "Hey");
    let sent = &up.requests()[0].body;
    assert_eq!(sent["logprobs"], true);
    assert_eq!(sent["top_logprobs"], 2);
    assert_eq!(sent["seed"], 11);
    assert_eq!(sent["user"], "end-user-1");
    assert_eq!(sent["reasoning_effort"], "low");
    assert_eq!(sent["top_k"], 40, "whole numbers go out as integers");
    // A provider option may not override what the gateway sets.
    let mut clash = config;
    clash.provider_options = Some(aigw::upstream::pass_through::json_to_struct(
        json!({"stream": true}).as_object().unwrap().clone(),
    ));
    let status = client
        .generate(authed(with_config(generate("big", "hi"), clash), KEY))
        .await
        .unwrap_err();
    assert_status(
        &status,
        tonic::Code::InvalidArgument,
        "config.provider_options.stream",
    );
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn answers_with_tool_calls_are_not_cached() {
    let up = Upstream::start(vec![Reply::sse(&tool_stream())]).await;
    let cache = r#"cache = { ttl = "10m" }"#;
    let gw = Gateway::start(config(&priced_config_text(&up.base_url(), "", "", cache))).await;
    let mut client = gw.client().await;
    let mut req = stream_request("m", "weather?");
    req.config = Some(GenerationConfig {
        temperature: Some(0.0),
        ..tools_config()
    });
    for _ in 0..2 {
        let mut s = client
            .stream_generate(authed(req.clone(), KEY))
            .await
            .unwrap()
            .into_inner();
        while s.message().await.unwrap().is_some() {}
    }
    assert_eq!(up.calls(), 2, "both calls went upstream");
}
