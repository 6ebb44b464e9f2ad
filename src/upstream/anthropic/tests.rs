use super::*;
use crate::{
    config::MaxTokensField,
    proto::{
        content_part::Part, tool_choice::Choice, ContentPart, GenerationConfig, ImageData,
        ImageUrl, Message, ResponseFormat, Tool, ToolCallDelta, ToolChoice,
    },
    upstream::openai::{convert::chat_request, extras},
};

fn body(messages: &[Message], config: Option<&GenerationConfig>) -> Result<Value, GatewayError> {
    let mut req = chat_request(
        "claude-x",
        messages,
        config,
        MaxTokensField::MaxTokens,
        true,
    );
    req.max_tokens = req.max_tokens.or(Some(256));
    request(&req)
}

#[test]
fn requests_become_messages_api_bodies() {
    let messages = vec![
        Message::text("system", "Be brief."),
        Message::text("developer", "Use metric units."),
        Message {
            parts: vec![
                ContentPart {
                    part: Some(Part::Text("and this?".into())),
                },
                ContentPart {
                    part: Some(Part::ImageUrl(ImageUrl {
                        url: "https://img.example/a.png".into(),
                        detail: String::new(),
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
            ..Message::text("user", "")
        },
        Message {
            tool_calls: vec![
                ToolCall {
                    id: "toolu_1".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"city":"Seoul"}"#.into(),
                },
                ToolCall {
                    id: "toolu_2".into(),
                    name: "get_time".into(),
                    arguments: String::new(),
                },
            ],
            ..Message::text("assistant", "Let me look.")
        },
        Message {
            tool_call_id: "toolu_1".into(),
            ..Message::text("tool", "sunny")
        },
        Message {
            tool_call_id: "toolu_2".into(),
            ..Message::text("tool", "09:00")
        },
    ];
    let options = json!({"top_k": 5, "thinking": {"type": "disabled"}});
    let config = GenerationConfig {
        temperature: Some(1.5),
        top_p: Some(0.9),
        stop: vec!["END".into()],
        seed: Some(3),
        presence_penalty: Some(1.0),
        user: "u-1".into(),
        tools: vec![
            Tool {
                name: "get_weather".into(),
                description: "Weather now".into(),
                parameters_json: r#"{"type":"object","properties":{"city":{"type":"string"}}}"#
                    .into(),
                strict: None,
                cache_control: None,
                anthropic_fields: None,
            },
            Tool {
                name: "get_time".into(),
                ..Default::default()
            },
        ],
        tool_choice: Some(ToolChoice {
            choice: Some(Choice::Mode("required".into())),
        }),
        parallel_tool_calls: Some(false),
        provider_options: Some(extras::json_to_struct(options.as_object().unwrap().clone())),
        ..Default::default()
    };
    let want = json!({
        "model": "claude-x",
        "system": "Be brief.\n\nUse metric units.",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "and this?"},
                {"type": "image", "source": {"type": "url", "url": "https://img.example/a.png"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "UE5H"}}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Seoul"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}]},
            // Both results in one user turn.
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "09:00"}]}],
        "max_tokens": 256,
        "temperature": 1.0,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "stream": true,
        "metadata": {"user_id": "u-1"},
        "tools": [
            {"name": "get_weather", "description": "Weather now",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
            {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "top_k": 5,
        "thinking": {"type": "disabled"},
    });
    assert_eq!(body(&messages, Some(&config)).unwrap(), want);
}

#[test]
fn tool_choices_map_and_unsupported_features_are_refused() {
    let choose = |c: Choice| {
        let config = GenerationConfig {
            tools: vec![Tool {
                name: "f".into(),
                ..Default::default()
            }],
            tool_choice: Some(ToolChoice { choice: Some(c) }),
            ..Default::default()
        };
        body(&[Message::text("user", "hi")], Some(&config)).unwrap()["tool_choice"].clone()
    };
    assert_eq!(choose(Choice::Mode("auto".into())), json!({"type": "auto"}));
    assert_eq!(choose(Choice::Mode("none".into())), json!({"type": "none"}));
    assert_eq!(
        choose(Choice::Function("f".into())),
        json!({"type": "tool", "name": "f"})
    );
    for config in [
        GenerationConfig {
            logprobs: true,
            ..Default::default()
        },
        GenerationConfig {
            response_format: Some(ResponseFormat {
                format: Some(crate::proto::response_format::Format::JsonObject(true)),
            }),
            ..Default::default()
        },
    ] {
        let err = body(&[Message::text("user", "hi")], Some(&config)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
        assert!(err.to_string().contains("anthropic"), "{err}");
    }
}

#[test]
fn whole_answers_translate_back() {
    let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Seoul"}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 3,
                  "output_tokens": 7}});
    let done = completion(answer.to_string().as_bytes()).unwrap();
    assert_eq!(done.id, "msg_1");
    assert_eq!(done.content, "Checking.");
    assert_eq!(done.finish_reason, "tool_calls");
    assert_eq!(
        done.tool_calls,
        vec![ToolCall {
            id: "toolu_9".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Seoul"}"#.into(),
        }]
    );
    let u = done.usage.unwrap();
    // Cache reads and writes are prompt tokens, and named as such for their prices.
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (18, 7, 25)
    );
    assert_eq!((u.cached_prompt_tokens, u.cache_write_tokens), (5, 3));
    for (stop, reason) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
        ("pause_turn", "pause_turn"),
    ] {
        assert_eq!(finish_reason(stop), reason);
    }
}

#[test]
fn stream_events_translate_back() {
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_s", "type": "message", "role": "assistant",
            "model": "claude-x", "content": [], "stop_reason": null, "usage": {"input_tokens": 12, "cache_read_input_tokens": 100, "output_tokens": 1}}}),
        json!({"type": "ping"}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Se"}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "oul\"}"}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}}}),
        json!({"type": "content_block_stop", "index": 2}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 20}}),
        json!({"type": "message_stop"}),
    ];
    let mut state = StreamState::default();
    let mut reading = Reading::default();
    let pieces: Vec<Piece> = events
        .iter()
        .map(|e| event(&e.to_string(), &mut state, &mut reading).unwrap())
        .collect();
    let end = reading.end;
    let texts: Vec<&Piece> = pieces
        .iter()
        .filter(|p| matches!(p, Piece::Text(_)))
        .collect();
    assert_eq!(
        texts,
        [&Piece::Text("Hel".into()), &Piece::Text("lo".into())]
    );
    assert!(state.stopped);
    assert_eq!((end.id.as_str(), end.model.as_str()), ("msg_s", "claude-x"));
    assert_eq!(end.finish_reason, "tool_calls");
    assert_eq!(
        end.tool_calls,
        vec![
            ToolCall {
                id: "toolu_a".into(),
                name: "get_weather".into(),
                arguments: r#"{"city": "Seoul"}"#.into(),
            },
            ToolCall {
                id: "toolu_b".into(),
                name: "get_time".into(),
                arguments: "{}".into(),
            },
        ]
    );
    let u = end.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.cached_prompt_tokens, u.completion_tokens),
        (112, 100, 20)
    );
    // An error event ends the stream with the upstream's message.
    let err = event(
        &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
            .to_string(),
        &mut StreamState::default(),
        &mut Reading::default(),
    );
    assert!(matches!(err, Err(ChunkError::Overloaded(m)) if m == "Overloaded"));
    let err = event(
        &json!({"type": "error", "error": {"type": "api_error", "message": "Internal"}})
            .to_string(),
        &mut StreamState::default(),
        &mut Reading::default(),
    );
    assert!(matches!(err, Err(ChunkError::Upstream(m)) if m == "Internal"));
    // Tool input for a block that is not a tool call is malformed.
    let stray = json!({"type": "content_block_delta", "index": 4, "delta": {"type": "input_json_delta", "partial_json": "{"}});
    assert!(matches!(
        event(
            &stray.to_string(),
            &mut StreamState::default(),
            &mut Reading::default()
        ),
        Err(ChunkError::Malformed(_))
    ));
}

#[test]
fn a_surrogate_pair_split_between_text_deltas_is_joined() {
    let delta = |text: &str| {
        format!(
            r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{text}"}}}}"#
        )
    };
    let mut state = StreamState::default();
    let mut reading = Reading::default();
    let mut text = String::new();
    for data in [delta(r"hi \ud83d"), delta(r"\ude00!"), delta(r"\udbff")] {
        match event(&data, &mut state, &mut reading).unwrap() {
            Piece::Text(t) => text.push_str(&t),
            other => assert!(matches!(other, Piece::Progress | Piece::Nothing)),
        }
    }
    text.extend(reading.text.finish());
    assert_eq!(text, "hi 😀!\u{FFFD}");
    // Other events with a lone surrogate are still malformed, not silently accepted.
    let odd = r#"{"type":"message_start","message":{"id":"\ud83d","model":"m"}}"#;
    assert!(matches!(
        event(odd, &mut state, &mut reading),
        Err(ChunkError::Invalid(_))
    ));
}

#[test]
fn cache_marks_go_on_the_last_block_of_their_message_and_tool() {
    let mark = |ttl: &str| {
        Some(crate::proto::CacheControl {
            r#type: "ephemeral".into(),
            ttl: ttl.into(),
        })
    };
    let messages = [
        Message {
            cache_control: mark("1h"),
            ..Message::text("system", "A long manual.")
        },
        Message {
            cache_control: mark(""),
            ..Message::text("user", "First question.")
        },
        Message::text("user", "Second."),
    ];
    let config = GenerationConfig {
        tools: vec![
            Tool {
                name: "a".into(),
                ..Default::default()
            },
            Tool {
                name: "b".into(),
                cache_control: mark("5m"),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let sent = body(&messages, Some(&config)).unwrap();
    assert_eq!(
        sent["system"],
        json!([{"type": "text", "text": "A long manual.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}])
    );
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": [
            {"type": "text", "text": "First question.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Second."}]}])
    );
    assert_eq!(sent["tools"][0].get("cache_control"), None);
    assert_eq!(
        sent["tools"][1]["cache_control"],
        json!({"type": "ephemeral", "ttl": "5m"})
    );
    // OpenAI-style upstreams cache on their own and never see the marks.
    let openai = chat_request(
        "m",
        &messages,
        Some(&config),
        MaxTokensField::MaxTokens,
        false,
    );
    let text = serde_json::to_string(&openai).unwrap();
    assert!(
        !text.contains("cache_control") && !text.contains("ephemeral"),
        "{text}"
    );
    // Unknown kinds and lifetimes are refused by name.
    let bad = [Message {
        cache_control: Some(crate::proto::CacheControl {
            r#type: "ephemeral".into(),
            ttl: "2h".into(),
        }),
        ..Message::text("user", "x")
    }];
    let err = crate::upstream::openai::extras::check_message("messages", 0, &bad[0]).unwrap_err();
    assert!(
        err.to_string().contains("messages[0].cache_control.ttl"),
        "{err}"
    );
}

/// Thinking streams through piece by piece: its text, its signature (byte-exact), a redacted block whole, and
/// tool input as it arrives; pings are signs of life. The end has every block whole, in order.
#[test]
fn thinking_and_tool_input_stream_piece_by_piece() {
    let sig = "EqQBCkYIBxgCKkDX+/==";
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_t", "model": "claude-x", "content": [],
            "usage": {"input_tokens": 30, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me "}}),
        json!({"type": "ping"}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "check."}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": sig}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "EmwKAhgB"}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "edit", "input": {}}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"path\":"}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": " \"a.rs\"}"}}),
        json!({"type": "content_block_stop", "index": 2}),
        json!({"type": "content_block_start", "index": 3, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        json!({"type": "content_block_delta", "index": 3, "delta": {"type": "thinking_delta", "thinking": "Then"}}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 40}}),
        json!({"type": "message_stop"}),
    ];
    let mut state = StreamState::default();
    let mut reading = Reading::default();
    let pieces: Vec<Piece> = events
        .iter()
        .map(|e| event(&e.to_string(), &mut state, &mut reading).unwrap())
        .collect();
    let r = |index: u32, text: &str, signature: &str, redacted: &str| {
        Piece::Reasoning(crate::proto::ReasoningDelta {
            index,
            text: text.into(),
            signature: signature.into(),
            redacted: redacted.into(),
            id: String::new(),
        })
    };
    let call = |id: &str, name: &str, arguments: &str| {
        Piece::ToolCall(ToolCallDelta {
            index: 0,
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        })
    };
    assert_eq!(
        pieces,
        [
            Piece::Progress,
            Piece::Progress,
            r(0, "Let me ", "", ""),
            Piece::Progress,
            r(0, "check.", "", ""),
            r(0, "", sig, ""),
            Piece::Progress,
            r(1, "", "", "EmwKAhgB"),
            Piece::Progress,
            call("toolu_1", "edit", ""),
            Piece::Progress,
            call("", "", "{\"path\":"),
            call("", "", " \"a.rs\"}"),
            Piece::Progress,
            Piece::Progress,
            r(2, "Then", "", ""),
            Piece::Progress,
            Piece::Nothing,
        ]
    );
    let end = reading.end;
    assert_eq!(
        end.reasoning,
        vec![
            Reasoning {
                text: "Let me check.".into(),
                signature: sig.into(),
                redacted: String::new(),
                id: String::new(),
            },
            Reasoning {
                redacted: "EmwKAhgB".into(),
                ..Default::default()
            },
            Reasoning {
                text: "Then".into(),
                ..Default::default()
            },
        ]
    );
    assert_eq!(end.tool_calls[0].arguments, r#"{"path": "a.rs"}"#);
}

/// The reasoning request becomes Anthropic's `thinking`, and an assistant turn's blocks go back first, signed
/// blocks byte-exact, unsigned text (another provider's) left out.
#[test]
fn thinking_goes_up_with_its_blocks() {
    let config = GenerationConfig {
        max_tokens: Some(8_000),
        reasoning: Some(crate::proto::ReasoningConfig {
            effort: "high".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let said = Message {
        role: "assistant".into(),
        reasoning: vec![
            Reasoning {
                text: "Need the tool.".into(),
                signature: "sig+/=".into(),
                redacted: String::new(),
                id: String::new(),
            },
            Reasoning {
                text: "unsigned".into(),
                ..Default::default()
            },
            Reasoning {
                redacted: "ENC".into(),
                ..Default::default()
            },
        ],
        tool_calls: vec![ToolCall {
            id: "toolu_1".into(),
            name: "f".into(),
            arguments: "{}".into(),
        }],
        ..Default::default()
    };
    let tool = Message {
        role: "tool".into(),
        content: "ok".into(),
        tool_call_id: "toolu_1".into(),
        ..Default::default()
    };
    let b = body(&[Message::text("user", "go"), said, tool], Some(&config)).unwrap();
    assert_eq!(
        b["thinking"],
        json!({"type": "enabled", "budget_tokens": 7999})
    );
    assert_eq!(
        b["messages"][1]["content"],
        json!([
            {"type": "thinking", "thinking": "Need the tool.", "signature": "sig+/="},
            {"type": "redacted_thinking", "data": "ENC"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
        ])
    );
}

/// A whole answer's thinking blocks come back in order.
#[test]
fn whole_answers_carry_their_thinking() {
    let body = json!({"id": "msg_1", "model": "claude-x", "stop_reason": "end_turn",
        "content": [{"type": "thinking", "thinking": "Hm.", "signature": "S1"},
                    {"type": "redacted_thinking", "data": "R1"},
                    {"type": "text", "text": "Hi"}],
        "usage": {"input_tokens": 3, "output_tokens": 9}});
    let done = completion(body.to_string().as_bytes()).unwrap();
    assert_eq!(done.content, "Hi");
    assert_eq!(
        done.reasoning,
        vec![
            Reasoning {
                text: "Hm.".into(),
                signature: "S1".into(),
                redacted: String::new(),
                id: String::new(),
            },
            Reasoning {
                redacted: "R1".into(),
                ..Default::default()
            },
        ]
    );
}

#[test]
fn blocks_the_gateway_does_not_model_reach_anthropic_only() {
    let part = |p: Part| ContentPart { part: Some(p) };
    let opaque = |dialect: &str, json: &str| {
        part(Part::Opaque(crate::proto::OpaquePart {
            dialect: dialect.into(),
            json: json.into(),
        }))
    };
    let doc =
        r#"{"type":"document","source":{"type":"text","media_type":"text/plain","data":"hi"}}"#;
    let reference = r#"{"type":"tool_reference","tool_name":"mcp__gw__marker"}"#;
    let messages = vec![
        Message {
            parts: vec![
                opaque("anthropic", doc),
                opaque("openai", r#"{"type":"input_audio"}"#),
                part(Part::Text("Read it.".into())),
            ],
            ..Message::text("user", "")
        },
        Message {
            tool_calls: vec![ToolCall {
                id: "toolu_1".into(),
                name: "ToolSearch".into(),
                arguments: "{}".into(),
            }],
            ..Message::text("assistant", "")
        },
        Message {
            tool_call_id: "toolu_1".into(),
            parts: vec![
                part(Part::Text("found".into())),
                opaque("anthropic", reference),
                part(Part::ImageUrl(ImageUrl {
                    url: "data:image/png;base64,iVBO".into(),
                    detail: String::new(),
                })),
            ],
            ..Message::text("tool", "")
        },
    ];
    let b = body(&messages, None).unwrap();
    let doc: Value = serde_json::from_str(doc).unwrap();
    assert_eq!(
        b["messages"][0]["content"],
        json!([doc, {"type": "text", "text": "Read it."}])
    );
    assert_eq!(
        b["messages"][2]["content"][0]["content"],
        json!([{"type": "text", "text": "found"},
               serde_json::from_str::<Value>(reference).unwrap(),
               {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}])
    );
    // An OpenAI-style upstream gets the text, its own block, and is told of nothing else.
    let req = chat_request("gpt-x", &messages, None, MaxTokensField::MaxTokens, false);
    let openai = serde_json::to_value(&req).unwrap();
    assert_eq!(
        openai["messages"][0]["content"],
        json!([{"type": "input_audio"}, {"type": "text", "text": "Read it."}])
    );
    assert_eq!(openai["messages"][2]["content"], json!("found"));
    assert_eq!(
        req.left_out("openai"),
        ["document", "image", "tool_reference"]
    );
    assert_eq!(req.left_out("anthropic"), ["input_audio"]);
}
