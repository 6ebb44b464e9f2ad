use super::*;
use crate::{
    config::MaxTokensField,
    proto::{
        content_part::Part, response_format::Format, tool_choice::Choice, ContentPart,
        GenerationConfig, ImageData, ImageUrl, JsonSchema, Message, Reasoning, ReasoningConfig,
        ReasoningDelta, ResponseFormat, Tool, ToolCall, ToolCallDelta, ToolChoice,
    },
    upstream::answer::NoAnswer,
    upstream::openai::convert::{grpc_chat_request as chat_request, ChunkError, Piece, Reading},
    upstream::pass_through::json_to_struct,
};
use serde_json::{json, Value};

fn body(messages: &[Message], config: Option<&GenerationConfig>) -> Result<Value, GatewayError> {
    let req = chat_request(
        "gemini-x",
        messages,
        config,
        MaxTokensField::MaxTokens,
        true,
    );
    super::body(&req).map(|bytes| serde_json::from_slice(&bytes).unwrap())
}

fn object(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

#[test]
fn requests_become_generate_content_bodies() {
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
                        url: "https://img.example/a.PNG?x=1".into(),
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
                    id: "call_a".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"city":"Seoul"}"#.into(),
                },
                ToolCall {
                    id: "call_b".into(),
                    name: "get_time".into(),
                    arguments: String::new(),
                },
            ],
            reasoning: vec![Reasoning {
                text: "Two lookups.".into(),
                signature: "c2lnLWE=".into(),
                ..Default::default()
            }],
            ..Message::text("assistant", "Let me look.")
        },
        Message {
            tool_call_id: "call_a".into(),
            ..Message::text("tool", "sunny")
        },
        Message {
            tool_call_id: "call_b".into(),
            ..Message::text("tool", r#"{"time": "09:00"}"#)
        },
    ];
    let config = GenerationConfig {
        temperature: Some(0.9),
        top_p: Some(0.5),
        max_tokens: Some(300),
        stop: vec!["END".into()],
        seed: Some(3),
        presence_penalty: Some(1.0),
        user: "u-1".into(),
        tools: vec![Tool {
            name: "get_weather".into(),
            description: "Weather by city".into(),
            parameters_json: r#"{"type":"object","properties":{"city":{"type":"string"}},"additionalProperties":false}"#.into(),
            ..Default::default()
        }],
        tool_choice: Some(ToolChoice {
            choice: Some(Choice::Mode("required".into())),
        }),
        ..Default::default()
    };
    let b = body(&messages, Some(&config)).unwrap();
    assert_eq!(
        b,
        json!({
            "contents": [
                {"role": "user", "parts": [
                    {"text": "and this?"},
                    {"fileData": {"mimeType": "image/png", "fileUri": "https://img.example/a.PNG?x=1"}},
                    {"inlineData": {"mimeType": "image/png", "data": "UE5H"}},
                ]},
                {"role": "model", "parts": [
                    {"text": "Let me look."},
                    {"functionCall": {"id": "call_a", "name": "get_weather", "args": {"city": "Seoul"}},
                     "thoughtSignature": "c2lnLWE="},
                    {"functionCall": {"id": "call_b", "name": "get_time", "args": {}}},
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"id": "call_a", "name": "get_weather", "response": {"output": "sunny"}}},
                    {"functionResponse": {"id": "call_b", "name": "get_time", "response": {"time": "09:00"}}},
                ]},
            ],
            "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use metric units."}]},
            "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "Weather by city",
                "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}},
                                         "additionalProperties": false}}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
            "generationConfig": {"temperature": 0.9, "topP": 0.5, "maxOutputTokens": 300,
                "stopSequences": ["END"], "seed": 3, "presencePenalty": 1.0},
        })
    );
}

/// A function call whose signature the client dropped gets Google's stand-in (the first call of the turn
/// only); a text answer's signature goes back on its last text part, or on an empty one.
#[test]
fn signatures_go_back_on_their_parts() {
    let call = |id: &str| ToolCall {
        id: id.into(),
        name: "f".into(),
        arguments: "{}".into(),
    };
    let unsigned = Message {
        tool_calls: vec![call("c1"), call("c2")],
        ..Message::text("assistant", "")
    };
    let b = body(&[Message::text("user", "hi"), unsigned], None).unwrap();
    let parts = &b["contents"][1]["parts"];
    assert_eq!(parts[0]["thoughtSignature"], SKIP_SIGNATURE);
    assert!(parts[1].get("thoughtSignature").is_none());

    let signed_text = |text: &str| Message {
        reasoning: vec![
            // Another API's blocks are not Gemini's to check.
            Reasoning {
                redacted: "enc".into(),
                ..Default::default()
            },
            Reasoning {
                signature: "enc-item".into(),
                id: "rs_1".into(),
                ..Default::default()
            },
            Reasoning {
                text: "thought".into(),
                signature: "c2ln".into(),
                ..Default::default()
            },
        ],
        ..Message::text("assistant", text)
    };
    let b = body(&[Message::text("user", "hi"), signed_text("Hello.")], None).unwrap();
    assert_eq!(
        b["contents"][1]["parts"],
        json!([{"text": "Hello.", "thoughtSignature": "c2ln"}])
    );
    let b = body(&[Message::text("user", "hi"), signed_text("")], None).unwrap();
    assert_eq!(
        b["contents"][1]["parts"],
        json!([{"text": "", "thoughtSignature": "c2ln"}])
    );
}

#[test]
fn formats_reasoning_and_gemini_fields_translate() {
    let schema = ResponseFormat {
        format: Some(Format::JsonSchema(JsonSchema {
            name: "out".into(),
            schema_json: r#"{"type":"object","properties":{"n":{"type":"integer"}}}"#.into(),
            ..Default::default()
        })),
    };
    let mut dialect = std::collections::HashMap::new();
    dialect.insert(
        "gemini".to_owned(),
        json_to_struct(object(json!({
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
            "generationConfig": {"responseModalities": ["TEXT"], "temperature": 2},
            "tools": [{"googleSearch": {}}],
        }))),
    );
    dialect.insert(
        "anthropic".to_owned(),
        json_to_struct(object(json!({"top_k": 3}))),
    );
    let config = GenerationConfig {
        temperature: Some(0.2),
        response_format: Some(schema),
        reasoning: Some(ReasoningConfig {
            budget_tokens: Some(2048),
            ..Default::default()
        }),
        dialect_options: dialect,
        ..Default::default()
    };
    let b = body(&[Message::text("user", "n?")], Some(&config)).unwrap();
    assert_eq!(
        b["generationConfig"],
        json!({"temperature": 0.2, "responseMimeType": "application/json",
               "responseJsonSchema": {"type": "object", "properties": {"n": {"type": "integer"}}},
               "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": true},
               "responseModalities": ["TEXT"]})
    );
    assert_eq!(b["safetySettings"][0]["threshold"], "BLOCK_NONE");
    assert_eq!(b["tools"], json!([{"googleSearch": {}}]));
    assert!(b.get("top_k").is_none(), "{b}");

    let thinking = |r: ReasoningConfig| {
        let config = GenerationConfig {
            reasoning: Some(r),
            ..Default::default()
        };
        body(&[Message::text("user", "x")], Some(&config)).unwrap()["generationConfig"]
            ["thinkingConfig"]
            .clone()
    };
    let effort = |e: &str| ReasoningConfig {
        effort: e.into(),
        ..Default::default()
    };
    let mode = |m: &str| ReasoningConfig {
        mode: m.into(),
        ..Default::default()
    };
    assert_eq!(
        thinking(effort("high")),
        json!({"thinkingLevel": "high", "includeThoughts": true})
    );
    assert_eq!(thinking(mode("disabled")), json!({"thinkingBudget": 0}));
    assert_eq!(
        thinking(mode("adaptive")),
        json!({"thinkingBudget": -1, "includeThoughts": true})
    );
    assert_eq!(thinking(effort("none")), json!({"thinkingBudget": 0}));

    let json_object = GenerationConfig {
        response_format: Some(ResponseFormat {
            format: Some(Format::JsonObject(true)),
        }),
        tool_choice: Some(ToolChoice {
            choice: Some(Choice::Function("get_weather".into())),
        }),
        ..Default::default()
    };
    let b = body(&[Message::text("user", "x")], Some(&json_object)).unwrap();
    assert_eq!(
        b["generationConfig"],
        json!({"responseMimeType": "application/json"})
    );
    assert_eq!(
        b["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
    );
    let logprobs = GenerationConfig {
        logprobs: true,
        ..Default::default()
    };
    let refused = body(&[Message::text("user", "x")], Some(&logprobs)).unwrap_err();
    assert!(
        matches!(&refused, GatewayError::InvalidArgument(m) if m.contains("gemini")),
        "{refused:?}"
    );
}

#[test]
fn whole_answers_translate_back() {
    let answer = json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "Weighing it.", "thought": true},
            {"functionCall": {"name": "get_weather", "args": {"city": "Seoul"}}, "thoughtSignature": "c2ln"},
            {"functionCall": {"id": "fc_2", "name": "get_time"}},
        ]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20, "thoughtsTokenCount": 30,
                          "cachedContentTokenCount": 60, "totalTokenCount": 150},
        "modelVersion": "gemini-2.5-pro", "responseId": "resp-1"});
    let done = completion(answer.to_string().as_bytes()).unwrap();
    assert_eq!(
        (done.id.as_str(), done.model.as_str()),
        ("resp-1", "gemini-2.5-pro")
    );
    assert_eq!(done.finish_reason, "tool_calls");
    // Gemini 2.5 names no call: the id is made up, unique.
    let made = &done.tool_calls[0].id;
    assert!(made.starts_with("call_") && made.len() == 21, "{made}");
    assert_eq!(
        done.tool_calls,
        vec![
            ToolCall {
                id: made.clone(),
                name: "get_weather".into(),
                arguments: r#"{"city":"Seoul"}"#.into(),
            },
            ToolCall {
                id: "fc_2".into(),
                name: "get_time".into(),
                arguments: "{}".into(),
            }
        ]
    );
    assert_eq!(
        done.reasoning,
        vec![Reasoning {
            text: "Weighing it.".into(),
            signature: "c2ln".into(),
            ..Default::default()
        }]
    );
    let u = done.usage.unwrap();
    // Thoughts are output tokens, and named as reasoning; cached tokens are part of the prompt.
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (100, 50, 150)
    );
    assert_eq!((u.cached_prompt_tokens, u.reasoning_tokens), (60, 30));

    let text = json!({"candidates": [{"content": {"parts": [{"text": "Hi"}, {"text": "!", "thoughtSignature": "dA=="}]},
        "finishReason": "MAX_TOKENS"}]});
    let done = completion(text.to_string().as_bytes()).unwrap();
    assert_eq!(
        (done.content.as_str(), done.finish_reason.as_str()),
        ("Hi!", "length")
    );
    assert_eq!(done.reasoning[0].signature, "dA==");
    let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}});
    let done = completion(blocked.to_string().as_bytes()).unwrap();
    assert_eq!(done.finish_reason, "content_filter");
    let error = json!({"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}});
    assert!(matches!(
        completion(error.to_string().as_bytes()),
        Err(NoAnswer::Api { status: 429, .. })
    ));
}

fn pieces(chunks: &[Value]) -> (Vec<Piece>, Reading, StreamState) {
    let mut reading = Reading::default();
    let mut state = StreamState::default();
    let mut out = Vec::new();
    for c in chunks {
        let first = chunk(&c.to_string(), &mut state, &mut reading).unwrap();
        out.push(first);
        out.extend(reading.queued.drain(..));
    }
    (out, reading, state)
}

#[test]
fn stream_chunks_hand_out_thoughts_signatures_text_and_calls() {
    let chunks = [
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Let me ", "thought": true}]}}],
               "responseId": "r1", "modelVersion": "gemini-3-pro"}),
        json!({"candidates": [{"content": {"parts": [{"text": "check.", "thought": true}]}}]}),
        json!({"candidates": [{"content": {"parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Seoul"}}, "thoughtSignature": "c2ln"}]}}]}),
        json!({"candidates": [{"content": {"parts": [{"text": "On it."}]}, "finishReason": "STOP"}],
               "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 7}}),
    ];
    let (out, mut reading, state) = pieces(&chunks);
    let made = reading.end.tool_calls[0].id.clone();
    assert!(made.starts_with("call_"), "{made}");
    let reasoning = |text: &str, signature: &str| {
        Piece::Reasoning(ReasoningDelta {
            index: 0,
            text: text.into(),
            signature: signature.into(),
            ..Default::default()
        })
    };
    assert_eq!(
        out,
        vec![
            reasoning("Let me ", ""),
            reasoning("check.", ""),
            reasoning("", "c2ln"),
            Piece::ToolCall(ToolCallDelta {
                index: 0,
                id: made,
                name: "get_weather".into(),
                arguments: String::new(),
            }),
            Piece::ToolCall(ToolCallDelta {
                index: 0,
                arguments: r#"{"city":"Seoul"}"#.into(),
                ..Default::default()
            }),
            Piece::Text("On it.".into()),
        ]
    );
    assert!(state.finished);
    finish(&state, &mut reading);
    let end = reading.end;
    assert_eq!(
        (
            end.id.as_str(),
            end.model.as_str(),
            end.finish_reason.as_str()
        ),
        ("r1", "gemini-3-pro", "tool_calls")
    );
    assert_eq!(
        end.reasoning,
        vec![Reasoning {
            text: "Let me check.".into(),
            signature: "c2ln".into(),
            ..Default::default()
        }]
    );
    let u = end.usage.unwrap();
    assert_eq!((u.completion_tokens, u.reasoning_tokens), (12, 7));
}

/// A stream is finished only by a finish reason; an error chunk is the upstream's error, an overload retryable.
#[test]
fn stream_errors_and_unfinished_streams() {
    let (_, _, state) =
        pieces(&[json!({"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]})]);
    assert!(!state.finished);
    let mut reading = Reading::default();
    let mut state = StreamState::default();
    let overloaded = json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}});
    assert!(matches!(
        chunk(&overloaded.to_string(), &mut state, &mut reading),
        Err(ChunkError::Overloaded(m)) if m.contains("overloaded")
    ));
    let bad = json!({"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}});
    assert!(matches!(
        chunk(&bad.to_string(), &mut state, &mut reading),
        Err(ChunkError::Upstream(_))
    ));
    assert!(matches!(
        chunk("{not json", &mut state, &mut reading),
        Err(ChunkError::Invalid(_))
    ));
}

#[test]
fn embeddings_go_as_one_batch() {
    let input = ["a".to_owned(), "b".to_owned()];
    let ask = EmbedAsk {
        input: &input,
        dimensions: Some(8),
        user: "",
    };
    let b: Value = serde_json::from_slice(&embed_body("text-embedding-004", ask).unwrap()).unwrap();
    assert_eq!(
        b,
        json!({"requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 8},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 8},
        ]})
    );
    let answer = json!({"embeddings": [{"values": [0.5, 1.0]}, {"values": [0.25, 0.0]}]});
    let e = embeddings(answer.to_string().as_bytes(), 2).unwrap();
    assert_eq!(e.vectors, vec![vec![0.5, 1.0], vec![0.25, 0.0]]);
    assert!(embeddings(answer.to_string().as_bytes(), 3).is_err());
    assert_eq!(resource("tunedModels/x"), "tunedModels/x");
}
