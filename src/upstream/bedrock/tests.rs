use super::*;
use crate::{
    config::MaxTokensField,
    proto::{
        content_part::Part, response_format::Format, tool_choice::Choice, CacheControl,
        ContentPart, GenerationConfig, ImageData, ImageUrl, JsonSchema, Message, Reasoning,
        ReasoningConfig, ReasoningDelta, ResponseFormat, Tool, ToolCall, ToolCallDelta, ToolChoice,
    },
    upstream::answer::NoAnswer,
    upstream::openai::convert::{grpc_chat_request as chat_request, ChunkError, Piece, Reading},
};
use serde_json::{json, Value};

const CLAUDE: &str = "anthropic.claude-sonnet-4-5-20250929-v1:0";

fn body_for(
    model: &str,
    messages: &[Message],
    config: Option<&GenerationConfig>,
) -> Result<Value, GatewayError> {
    let req = chat_request(model, messages, config, MaxTokensField::MaxTokens, true);
    super::body(&req).map(|bytes| serde_json::from_slice(&bytes).unwrap())
}

fn body(messages: &[Message], config: Option<&GenerationConfig>) -> Result<Value, GatewayError> {
    body_for(CLAUDE, messages, config)
}

#[test]
fn requests_become_converse_bodies() {
    let messages = vec![
        Message {
            cache_control: Some(CacheControl::default()),
            ..Message::text("system", "Be brief.")
        },
        Message {
            parts: vec![
                ContentPart {
                    part: Some(Part::Text("and this?".into())),
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
            tool_calls: vec![ToolCall {
                id: "tooluse_1".into(),
                name: "get_weather".into(),
                arguments: r#"{"city":"Seoul"}"#.into(),
            }],
            reasoning: vec![
                Reasoning {
                    text: "Look it up.".into(),
                    signature: "c2ln".into(),
                    ..Default::default()
                },
                Reasoning {
                    text: "another provider's".into(),
                    ..Default::default()
                },
            ],
            ..Message::text("assistant", "Let me look.")
        },
        Message {
            tool_call_id: "tooluse_1".into(),
            ..Message::text("tool", "sunny")
        },
    ];
    let config = GenerationConfig {
        temperature: Some(1.5),
        top_p: Some(0.9),
        max_tokens: Some(4000),
        stop: vec!["END".into()],
        seed: Some(3),
        tools: vec![Tool {
            name: "get_weather".into(),
            description: "Weather by city".into(),
            parameters_json: r#"{"type":"object","properties":{"city":{"type":"string"}}}"#.into(),
            cache_control: Some(CacheControl::default()),
            ..Default::default()
        }],
        tool_choice: Some(ToolChoice {
            choice: Some(Choice::Mode("required".into())),
        }),
        reasoning: Some(ReasoningConfig {
            budget_tokens: Some(2048),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        body(&messages, Some(&config)).unwrap(),
        json!({
            "messages": [
                {"role": "user", "content": [
                    {"text": "and this?"},
                    {"image": {"format": "png", "source": {"bytes": "UE5H"}}},
                ]},
                {"role": "assistant", "content": [
                    {"reasoningContent": {"reasoningText": {"text": "Look it up.", "signature": "c2ln"}}},
                    {"text": "Let me look."},
                    {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Seoul"}}},
                ]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "sunny"}]}},
                ]},
            ],
            "system": [{"text": "Be brief."}, {"cachePoint": {"type": "default"}}],
            // Claude's temperature range is 0 to 1.
            "inferenceConfig": {"maxTokens": 4000, "temperature": 1.0, "topP": 0.9, "stopSequences": ["END"]},
            "toolConfig": {
                "tools": [
                    {"toolSpec": {"name": "get_weather", "description": "Weather by city",
                        "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}},
                    {"cachePoint": {"type": "default"}},
                ],
                "toolChoice": {"any": {}},
            },
            "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 2048}},
        })
    );
}

#[test]
fn json_output_is_a_tool_the_model_must_call_and_urls_are_refused() {
    let config = GenerationConfig {
        response_format: Some(ResponseFormat {
            format: Some(Format::JsonSchema(JsonSchema {
                name: "out".into(),
                schema_json: r#"{"type":"object","properties":{"n":{"type":"integer"}}}"#.into(),
                ..Default::default()
            })),
        }),
        reasoning: Some(ReasoningConfig {
            effort: "low".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let b = body_for(
        "openai.gpt-oss-120b-1:0",
        &[Message::text("user", "n?")],
        Some(&config),
    )
    .unwrap();
    assert_eq!(
        b["toolConfig"],
        json!({"tools": [{"toolSpec": {"name": JSON_TOOL, "description": "Write the answer as this tool's input.",
                  "inputSchema": {"json": {"type": "object", "properties": {"n": {"type": "integer"}}}}}}],
               "toolChoice": {"tool": {"name": JSON_TOOL}}})
    );
    // Other models' reasoning is their own reasoning_effort.
    assert_eq!(
        b["additionalModelRequestFields"],
        json!({"reasoning_effort": "low"})
    );
    let by_url = Message {
        parts: vec![ContentPart {
            part: Some(Part::ImageUrl(ImageUrl {
                url: "https://img.example/a.png".into(),
                detail: String::new(),
            })),
        }],
        ..Message::text("user", "")
    };
    let refused = body(&[by_url], None).unwrap_err();
    assert!(
        matches!(&refused, GatewayError::InvalidArgument(m) if m.contains("bedrock")),
        "{refused:?}"
    );
    let reserved = GenerationConfig {
        tools: vec![Tool {
            name: JSON_TOOL.into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert!(body(&[Message::text("user", "x")], Some(&reserved)).is_err());
    assert_eq!(
        path("arn:aws:bedrock:us-east-1:1:inference-profile/us.anthropic.x-v1:0", true),
        "model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.anthropic.x-v1%3A0/converse-stream"
    );
}

#[test]
fn whole_answers_translate_back() {
    let answer = json!({"output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "c2ln"}}},
            {"reasoningContent": {"redactedContent": "ZW5j"}},
            {"text": "Checking."},
            {"toolUse": {"toolUseId": "tooluse_9", "name": "get_weather", "input": {"city": "Seoul"}}}]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 10, "outputTokens": 7, "totalTokens": 25, "cacheReadInputTokens": 5,
                  "cacheWriteInputTokens": 3},
        "metrics": {"latencyMs": 100}});
    let done = completion(answer.to_string().as_bytes()).unwrap();
    assert_eq!(
        (done.content.as_str(), done.finish_reason.as_str()),
        ("Checking.", "tool_calls")
    );
    assert_eq!(done.tool_calls[0].arguments, r#"{"city":"Seoul"}"#);
    assert_eq!(done.reasoning[0].signature, "c2ln");
    assert_eq!(done.reasoning[1].redacted, "ZW5j");
    let u = done.usage.unwrap();
    assert_eq!((u.prompt_tokens, u.completion_tokens), (18, 7));
    assert_eq!((u.cached_prompt_tokens, u.cache_write_tokens), (5, 3));

    let json_answer = json!({"output": {"message": {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "t", "name": JSON_TOOL, "input": {"n": 3}}}]}},
        "stopReason": "tool_use"});
    let done = completion(json_answer.to_string().as_bytes()).unwrap();
    assert_eq!(
        (done.content.as_str(), done.finish_reason.as_str()),
        (r#"{"n":3}"#, "stop")
    );
    assert!(done.tool_calls.is_empty());
    assert!(matches!(completion(b"{}"), Err(NoAnswer::Malformed(_))));
}

fn pieces(events: &[(&str, Value)]) -> (Vec<Piece>, Reading, StreamState) {
    let mut reading = Reading::default();
    let mut state = StreamState::default();
    let mut out = Vec::new();
    for (name, data) in events {
        out.push(event(name, &data.to_string(), &mut state, &mut reading).unwrap());
    }
    (out, reading, state)
}

#[test]
fn stream_events_hand_out_reasoning_text_and_tool_input() {
    let events = [
        ("messageStart", json!({"role": "assistant", "p": "abc"})),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Let me "}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "check."}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "c2ln"}}}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 0})),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"text": "On it."}}),
        ),
        (
            "contentBlockStart",
            json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"city\": \"Se"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "oul\"}"}}}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 2})),
        ("messageStop", json!({"stopReason": "tool_use"})),
        (
            "metadata",
            json!({"usage": {"inputTokens": 10, "outputTokens": 20, "totalTokens": 30}, "metrics": {"latencyMs": 5}}),
        ),
    ];
    let (out, mut reading, state) = pieces(&events);
    let reasoning = |text: &str, signature: &str| {
        Piece::Reasoning(ReasoningDelta {
            index: 0,
            text: text.into(),
            signature: signature.into(),
            ..Default::default()
        })
    };
    let relayed: Vec<Piece> = out.into_iter().filter(|p| *p != Piece::Progress).collect();
    assert_eq!(
        relayed,
        vec![
            reasoning("Let me ", ""),
            reasoning("check.", ""),
            reasoning("", "c2ln"),
            Piece::Text("On it.".into()),
            Piece::ToolCall(ToolCallDelta {
                index: 0,
                id: "tooluse_1".into(),
                name: "get_weather".into(),
                arguments: String::new(),
            }),
            Piece::ToolCall(ToolCallDelta {
                index: 0,
                arguments: "{\"city\": \"Se".into(),
                ..Default::default()
            }),
            Piece::ToolCall(ToolCallDelta {
                index: 0,
                arguments: "oul\"}".into(),
                ..Default::default()
            }),
        ]
    );
    assert!(state.stopped);
    finish(&state, &mut reading);
    let end = reading.end;
    assert_eq!(end.finish_reason, "tool_calls");
    assert_eq!(end.reasoning[0].text, "Let me check.");
    assert_eq!(end.reasoning[0].signature, "c2ln");
    assert_eq!(end.usage.unwrap().total_tokens, 30);

    // A JSON answer's tool input is the answer's text.
    let json_events = [
        (
            "contentBlockStart",
            json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t", "name": JSON_TOOL}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{\"n\": 3}"}}}),
        ),
        ("messageStop", json!({"stopReason": "tool_use"})),
    ];
    let (out, mut reading, state) = pieces(&json_events);
    assert!(out.contains(&Piece::Text("{\"n\": 3}".into())));
    finish(&state, &mut reading);
    assert_eq!(reading.end.finish_reason, "stop");
    assert!(reading.end.tool_calls.is_empty());
}

#[test]
fn exceptions_are_the_upstreams_errors() {
    let mut reading = Reading::default();
    let mut state = StreamState::default();
    let throttled = json!({"message": "Too many requests"}).to_string();
    assert!(matches!(
        event("exception:throttlingException", &throttled, &mut state, &mut reading),
        Err(ChunkError::Overloaded(m)) if m.contains("Too many")
    ));
    assert!(matches!(
        event(
            "exception:validationException",
            &throttled,
            &mut state,
            &mut reading
        ),
        Err(ChunkError::Upstream(_))
    ));
    let stray = json!({"contentBlockIndex": 4, "delta": {"toolUse": {"input": "{}"}}}).to_string();
    assert!(matches!(
        event("contentBlockDelta", &stray, &mut state, &mut reading),
        Err(ChunkError::Malformed(_))
    ));
}
