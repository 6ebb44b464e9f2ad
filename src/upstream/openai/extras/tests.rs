use super::*;
use crate::{
    config::MaxTokensField,
    proto::{ContentPart, GenerationConfig, ImageData, JsonSchema},
    upstream::openai::convert::{self, grpc_chat_request as chat_request, ChunkError, Piece},
};

fn msg(role: &str, content: &str) -> Message {
    Message {
        role: role.into(),
        content: content.into(),
        ..Default::default()
    }
}

fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: arguments.into(),
    }
}

fn weather() -> Tool {
    Tool {
        name: "get_weather".into(),
        description: "Weather now".into(),
        parameters_json: r#"{"type":"object","properties":{"city":{"type":"string"}}}"#.into(),
        strict: Some(true),
        cache_control: None,
        anthropic_fields: None,
    }
}

fn to_json(messages: &[Message], config: Option<&GenerationConfig>) -> Value {
    let req = chat_request("up", messages, config, MaxTokensField::MaxTokens, false);
    serde_json::to_value(&req).unwrap()
}

#[test]
fn requests_with_tools_images_and_extras_to_json() {
    let messages = vec![
        Message {
            parts: vec![
                ContentPart {
                    part: Some(Part::Text("what is this?".into())),
                },
                ContentPart {
                    part: Some(Part::ImageUrl(crate::proto::ImageUrl {
                        url: "https://img.example/a.png".into(),
                        detail: "low".into(),
                    })),
                },
                ContentPart {
                    part: Some(Part::Image(ImageData {
                        data: b"PNG".to_vec(),
                        mime_type: "image/png".into(),
                        detail: String::new(),
                    })),
                },
            ],
            ..msg("user", "")
        },
        Message {
            tool_calls: vec![call("call_1", "get_weather", r#"{"city":"Seoul"}"#)],
            ..msg("assistant", "")
        },
        Message {
            tool_call_id: "call_1".into(),
            ..msg("tool", "sunny")
        },
    ];
    let options =
        json!({"reasoning_effort": "low", "top_k": 40, "ratio": 0.5, "tags": ["a", null]});
    let config = GenerationConfig {
        seed: Some(7),
        presence_penalty: Some(0.5),
        frequency_penalty: Some(-0.5),
        logprobs: true,
        top_logprobs: Some(2),
        user: "user-42".into(),
        response_format: Some(ResponseFormat {
            format: Some(Format::JsonSchema(JsonSchema {
                name: "answer".into(),
                description: String::new(),
                schema_json: r#"{"type":"object"}"#.into(),
                strict: Some(true),
            })),
        }),
        tools: vec![weather()],
        tool_choice: Some(ToolChoice {
            choice: Some(Choice::Function("get_weather".into())),
        }),
        parallel_tool_calls: Some(false),
        provider_options: Some(crate::upstream::pass_through::json_to_struct(
            options.as_object().unwrap().clone(),
        )),
        ..Default::default()
    };
    let want = json!({
        "model": "up",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "https://img.example/a.png", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,UE5H"}}]},
            {"role": "assistant", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Seoul\"}"}}]},
            {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}],
        "seed": 7, "presence_penalty": 0.5, "frequency_penalty": -0.5, "logprobs": true, "top_logprobs": 2,
        "user": "user-42",
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": true}},
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": false,
        "reasoning_effort": "low", "top_k": 40, "ratio": 0.5, "tags": ["a", null],
    });
    assert_eq!(to_json(&messages, Some(&config)), want);
    // The simple forms.
    let simple = GenerationConfig {
        response_format: Some(ResponseFormat {
            format: Some(Format::JsonObject(true)),
        }),
        tool_choice: Some(ToolChoice {
            choice: Some(Choice::Mode("required".into())),
        }),
        tools: vec![Tool {
            name: "now".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let got = to_json(&[msg("user", "hi")], Some(&simple));
    assert_eq!(got["response_format"], json!({"type": "json_object"}));
    assert_eq!(got["tool_choice"], json!("required"));
    assert_eq!(
        got["tools"],
        json!([{"type": "function", "function": {"name": "now"}}])
    );
    assert!(got.get("logprobs").is_none() && got.get("user").is_none());
}

#[test]
fn answers_carry_tool_calls_and_logprobs() {
    let body = json!({"id": "c1", "model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls",
        "message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}]},
        "logprobs": {"content": [{"token": "a", "logprob": -0.5, "bytes": [97],
            "top_logprobs": [{"token": "a", "logprob": -0.5}, {"token": "b", "logprob": -1.5}]}]}}]});
    let done = convert::completion(body.to_string().as_bytes(), true).unwrap();
    assert_eq!(done.content, "");
    assert_eq!(done.finish_reason, "tool_calls");
    assert_eq!(done.tool_calls, vec![call("call_a", "f", "{\"x\":1}")]);
    assert_eq!(done.logprobs.len(), 1);
    assert_eq!(done.logprobs[0].top_logprobs[1].token, "b");
}

/// Two parallel calls whose pieces interleave and split their arguments anywhere, as OpenAI streams them.
#[test]
fn streamed_tool_call_pieces_are_reassembled() {
    let piece = |tc: Value| {
        json!({"id": "s", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [tc]}, "finish_reason": null}]})
            .to_string()
    };
    let events = [
        json!({"id": "s", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "content": null}}]}).to_string(),
        piece(json!({"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}})),
        piece(json!({"index": 0, "function": {"arguments": "{\"ci"}})),
        piece(json!({"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{\"tz\""}})),
        piece(json!({"index": 0, "function": {"arguments": "ty\":\"서울\"}"}})),
        piece(json!({"index": 1, "function": {"arguments": ":\"KST\"}"}})),
        json!({"id": "s", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}).to_string(),
    ];
    let mut reading = convert::Reading::default();
    let pieces: Vec<Piece> = events
        .iter()
        .map(|e| convert::chunk(e, &mut reading).unwrap())
        .collect();
    let end = reading.end;
    // The role-only chunk and the finish are signs of life; each piece of a call is relayed as it came.
    assert_eq!(pieces[0], Piece::Progress);
    assert_eq!(pieces[6], Piece::Progress);
    let delta = |index: u32, id: &str, name: &str, arguments: &str| {
        Piece::ToolCall(crate::proto::ToolCallDelta {
            index,
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        })
    };
    assert_eq!(
        pieces[1..6],
        [
            delta(0, "call_a", "get_weather", ""),
            delta(0, "", "", "{\"ci"),
            delta(1, "call_b", "get_time", "{\"tz\""),
            delta(0, "", "", "ty\":\"서울\"}"),
            delta(1, "", "", ":\"KST\"}"),
        ]
    );
    assert!(reading.queued.is_empty());
    assert_eq!(end.finish_reason, "tool_calls");
    assert_eq!(
        end.tool_calls,
        vec![
            call("call_a", "get_weather", "{\"city\":\"서울\"}"),
            call("call_b", "get_time", "{\"tz\":\"KST\"}"),
        ]
    );
    // An index far out is refused, not allocated.
    let far = piece(json!({"index": 1_000_000_000, "id": "x", "function": {"name": "f"}}));
    assert!(matches!(
        convert::chunk(&far, &mut convert::Reading::default()),
        Err(ChunkError::Malformed(_))
    ));
}

#[test]
fn sizes_count_text_parts_images_and_calls() {
    let m = Message {
        parts: vec![
            ContentPart {
                part: Some(Part::Text("12345678".into())),
            },
            ContentPart {
                part: Some(Part::Image(ImageData {
                    data: vec![0; 1 << 20],
                    ..Default::default()
                })),
            },
        ],
        tool_calls: vec![call("c", "fn", "{}")],
        ..msg("assistant", "abc")
    };
    assert_eq!(size(&m), 3 + 8 + IMAGE_BYTES + 2 + 2);
}

#[test]
fn only_web_and_data_image_urls_are_accepted() {
    for (url, ok) in [
        ("https://img.example/a.png", true),
        ("HTTP://img.example/a.png", true),
        ("data:image/png;base64,UE5H", true),
        ("file:///etc/passwd", false),
        ("javascript:alert(1)", false),
        ("ftp://x/y.png", false),
        ("img.example/a.png", false),
    ] {
        assert_eq!(image_url_allowed(url), ok, "{url}");
    }
}

#[test]
fn data_urls_are_base64() {
    for (data, b64) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
    ] {
        assert_eq!(
            data_url("image/png", data.as_bytes()),
            format!("data:image/png;base64,{b64}")
        );
    }
}

/// Reasoning arrives as `reasoning_content` (DeepSeek, vLLM) or `reasoning` (OpenRouter); each piece is relayed
/// as it comes, ahead of the chunk's text, and text after reasoning closes its block. A shape the gateway does not
/// read is skipped, not fatal.
#[test]
fn reasoning_pieces_stream_ahead_of_text() {
    let delta = |d: Value| {
        json!({"id": "s", "model": "m", "choices": [{"index": 0, "delta": d, "finish_reason": null}]})
            .to_string()
    };
    let events = [
        delta(json!({"role": "assistant", "content": ""})),
        delta(json!({"reasoning_content": "Think"})),
        delta(json!({"reasoning": "ing"})),
        delta(json!({"reasoning_content": null, "reasoning": {"summary": "x"}, "content": "Hi"})),
        delta(json!({"reasoning_content": " again", "content": " there"})),
    ];
    let mut reading = convert::Reading::default();
    let mut pieces = Vec::new();
    for e in &events {
        pieces.push(convert::chunk(e, &mut reading).unwrap());
        pieces.extend(reading.queued.drain(..));
    }
    let r = |index: u32, text: &str| {
        Piece::Reasoning(crate::proto::ReasoningDelta {
            index,
            text: text.into(),
            ..Default::default()
        })
    };
    assert_eq!(
        pieces,
        [
            Piece::Progress,
            r(0, "Think"),
            r(0, "ing"),
            Piece::Text("Hi".into()),
            r(1, " again"),
            Piece::Text(" there".into()),
        ]
    );
    assert_eq!(reading.end.reasoning.len(), 2);
    assert_eq!(reading.end.reasoning[0].text, "Thinking");
    // A whole answer's reasoning, under either name.
    for field in ["reasoning_content", "reasoning"] {
        let body = json!({"id": "c", "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "4", field: "2+2 is 4"}}]});
        let done = convert::completion(body.to_string().as_bytes(), false).unwrap();
        assert_eq!(done.reasoning[0].text, "2+2 is 4", "{field}");
    }
}
