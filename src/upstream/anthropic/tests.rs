use super::*;
use crate::{
    config::MaxTokensField,
    proto::{
        content_part::Part, tool_choice::Choice, ContentPart, GenerationConfig, ImageData,
        ImageUrl, Message, Reasoning, ResponseFormat, Tool, ToolCall, ToolChoice,
    },
    upstream::openai::convert::grpc_chat_request as chat_request,
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
    super::body(&req).map(|bytes| serde_json::from_slice(&bytes).unwrap())
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
        provider_options: Some(crate::upstream::pass_through::json_to_struct(
            options.as_object().unwrap().clone(),
        )),
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
    let err = crate::call::checks::check_message("messages", 0, &bad[0]).unwrap_err();
    assert!(
        err.to_string().contains("messages[0].cache_control.ttl"),
        "{err}"
    );
}

/// Thinking streams through piece by piece: its text, its signature (byte-exact), a redacted block whole, and
/// tool input as it arrives; pings are signs of life. The end has every block whole, in order.
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
