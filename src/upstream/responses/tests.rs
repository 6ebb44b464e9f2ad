use super::*;
use crate::{
    config::MaxTokensField,
    proto::{
        content_part::Part, tool_choice::Choice, ContentPart, GenerationConfig, ImageUrl, Message,
        ReasoningConfig, Tool, ToolChoice,
    },
    upstream::openai::convert::grpc_chat_request as chat_request,
};
use serde_json::json;

fn body(messages: &[Message], config: Option<&GenerationConfig>, stream: bool) -> Value {
    let req = chat_request("gpt-x", messages, config, MaxTokensField::MaxTokens, stream);
    serde_json::from_slice(&super::body(&req).unwrap()).unwrap()
}

/// A tool loop with encrypted reasoning, as the Responses API takes it back statelessly: reasoning items with
/// their ids and encrypted content, calls and outputs as items, images in a tool's output as input parts; the
/// client's own fields (Codex's) join the gateway's, which win.
#[test]
fn requests_become_input_items() {
    let options = serde_json::from_value(json!({
        "client_metadata": {"turn": "1"}, "include": ["message.output_text.logprobs"],
        "reasoning": {"summary": "auto", "effort": "low"},
        "tools": [{"type": "web_search", "external_web_access": false}],
        "model": "not-this-one"}))
    .unwrap();
    let config = GenerationConfig {
        max_tokens: Some(300),
        reasoning: Some(ReasoningConfig {
            effort: "high".into(),
            ..Default::default()
        }),
        tools: vec![Tool {
            name: "exec_command".into(),
            parameters_json: r#"{"type":"object"}"#.into(),
            ..Default::default()
        }],
        tool_choice: Some(ToolChoice {
            choice: Some(Choice::Function("exec_command".into())),
        }),
        dialect_options: [(
            "responses".to_owned(),
            crate::upstream::pass_through::json_to_struct(options),
        )]
        .into(),
        ..Default::default()
    };
    let messages = vec![
        Message::text("developer", "Be careful."),
        Message::text("user", "run it"),
        Message {
            reasoning: vec![Reasoning {
                text: "Run it first.".into(),
                signature: "gAAAAenc".into(),
                id: "rs_abc".into(),
                ..Default::default()
            }],
            tool_calls: vec![crate::proto::ToolCall {
                id: "call_1".into(),
                name: "exec_command".into(),
                arguments: r#"{"cmd":"ls"}"#.into(),
            }],
            ..Message::text("assistant", "")
        },
        Message {
            tool_call_id: "call_1".into(),
            parts: vec![
                ContentPart {
                    part: Some(Part::Text("a shot".into())),
                },
                ContentPart {
                    part: Some(Part::ImageUrl(ImageUrl {
                        url: "data:image/png;base64,iVBO".into(),
                        detail: String::new(),
                    })),
                },
            ],
            ..Message::text("tool", "")
        },
    ];
    let b = body(&messages, Some(&config), true);
    assert_eq!(
        b["input"],
        json!([
            {"type": "message", "role": "developer", "content": "Be careful."},
            {"type": "message", "role": "user", "content": "run it"},
            {"type": "reasoning", "id": "rs_abc", "encrypted_content": "gAAAAenc",
             "summary": [{"type": "summary_text", "text": "Run it first."}]},
            {"type": "function_call", "call_id": "call_1", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": [
                {"type": "input_text", "text": "a shot"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBO", "detail": "auto"}]}
        ])
    );
    assert_eq!(b["model"], "gpt-x");
    assert_eq!(b["max_output_tokens"], 300);
    assert_eq!(b["store"], false);
    assert_eq!(b["stream"], true);
    assert_eq!(b["client_metadata"], json!({"turn": "1"}));
    assert_eq!(b["reasoning"], json!({"effort": "high", "summary": "auto"}));
    assert_eq!(
        b["include"],
        json!([
            "reasoning.encrypted_content",
            "message.output_text.logprobs"
        ])
    );
    assert_eq!(
        b["tools"],
        json!([{"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
               {"type": "web_search", "external_web_access": false}])
    );
    assert_eq!(
        b["tool_choice"],
        json!({"type": "function", "name": "exec_command"})
    );
}

#[test]
fn what_the_responses_api_cannot_take_is_refused_by_name() {
    let config = GenerationConfig {
        stop: vec!["END".into()],
        ..Default::default()
    };
    let messages = [Message::text("user", "q")];
    let req = chat_request(
        "gpt-x",
        &messages,
        Some(&config),
        MaxTokensField::MaxTokens,
        false,
    );
    assert!(super::body(&req)
        .unwrap_err()
        .to_string()
        .contains("config.stop"));
}

#[test]
fn whole_answers_are_read_from_output_items() {
    let body = json!({"id": "resp_1", "model": "gpt-x", "status": "completed", "output": [
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Think."}],
         "encrypted_content": "gAAA"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi", "annotations": []}]},
        {"type": "function_call", "call_id": "call_1", "name": "close_agent", "namespace": "multi_agent_v1",
         "arguments": "{}"}],
        "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15,
                  "input_tokens_details": {"cached_tokens": 4}, "output_tokens_details": {"reasoning_tokens": 3}}});
    let c = completion(body.to_string().as_bytes()).unwrap();
    assert_eq!((c.id.as_str(), c.content.as_str()), ("resp_1", "Hi"));
    assert_eq!(c.finish_reason, "tool_calls");
    assert_eq!(c.tool_calls[0].name, "multi_agent_v1__close_agent");
    assert_eq!(
        c.reasoning,
        [Reasoning {
            text: "Think.".into(),
            signature: "gAAA".into(),
            redacted: String::new(),
            id: "rs_1".into()
        }]
    );
    let u = c.usage.unwrap();
    assert_eq!(
        (
            u.prompt_tokens,
            u.completion_tokens,
            u.cached_prompt_tokens,
            u.reasoning_tokens
        ),
        (10, 5, 4, 3)
    );
    let cut = json!({"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}, "output": []});
    assert_eq!(
        completion(cut.to_string().as_bytes())
            .unwrap()
            .finish_reason,
        "length"
    );
    let failed = json!({"status": "failed", "error": {"code": "server_error", "message": "boom"}, "output": []});
    assert!(completion(failed.to_string().as_bytes())
        .unwrap_err()
        .contains("boom"));
}

/// The event stream: reasoning with its id first, then its signature (the encrypted content) when its item is
/// done; text; a call's id and name, then its arguments in pieces; the end with usage at
/// `response.completed`.
#[test]
fn streams_are_read_piece_by_piece() {
    let mut state = StreamState::default();
    let mut reading = Reading::default();
    let mut pieces = Vec::new();
    for e in [
        json!({"type": "response.created", "response": {"id": "resp_9", "model": "gpt-x", "status": "in_progress", "output": []}}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "reasoning", "id": "rs_9", "summary": []}}),
        json!({"type": "response.reasoning_summary_text.delta", "item_id": "rs_9", "delta": "Let me "}),
        json!({"type": "response.reasoning_summary_text.delta", "item_id": "rs_9", "delta": "see."}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": {"type": "reasoning", "id": "rs_9",
               "summary": [], "encrypted_content": "gAAAenc"}}),
        json!({"type": "response.output_text.delta", "item_id": "msg_9", "delta": "Calling."}),
        json!({"type": "response.output_item.added", "output_index": 2, "item": {"type": "function_call", "id": "fc_9",
               "call_id": "call_9", "name": "exec_command", "arguments": ""}}),
        json!({"type": "response.function_call_arguments.delta", "item_id": "fc_9", "delta": "{\"cmd\":"}),
        json!({"type": "response.function_call_arguments.delta", "item_id": "fc_9", "delta": "\"ls\"}"}),
        json!({"type": "response.completed", "response": {"id": "resp_9", "status": "completed", "output": [],
               "usage": {"input_tokens": 7, "output_tokens": 9}}}),
    ] {
        pieces.push(event(&e.to_string(), &mut state, &mut reading).unwrap());
    }
    assert!(state.stopped);
    let reasoning: Vec<_> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Reasoning(r) => Some((
                r.index,
                r.id.as_str(),
                r.text.as_str(),
                r.signature.as_str(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasoning,
        [
            (0, "rs_9", "", ""),
            (0, "", "Let me ", ""),
            (0, "", "see.", ""),
            (0, "", "", "gAAAenc")
        ]
    );
    assert_eq!(pieces[5], Piece::Text("Calling.".into()));
    let calls: Vec<_> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::ToolCall(c) => Some((c.id.as_str(), c.name.as_str(), c.arguments.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        calls,
        [
            ("call_9", "exec_command", ""),
            ("", "", "{\"cmd\":"),
            ("", "", "\"ls\"}")
        ]
    );
    let end = &reading.end;
    assert_eq!(
        (end.id.as_str(), end.finish_reason.as_str()),
        ("resp_9", "tool_calls")
    );
    assert_eq!(end.tool_calls[0].arguments, r#"{"cmd":"ls"}"#);
    assert_eq!(
        (
            end.reasoning[0].id.as_str(),
            end.reasoning[0].text.as_str(),
            end.reasoning[0].signature.as_str()
        ),
        ("rs_9", "Let me see.", "gAAAenc")
    );
    assert_eq!(end.usage.unwrap().total_tokens, 16);
}

#[test]
fn failures_in_the_stream_are_errors() {
    let mut state = StreamState::default();
    let mut reading = Reading::default();
    let failed = json!({"type": "response.failed", "response": {"status": "failed", "output": [],
                        "error": {"code": "server_error", "message": "boom"}}});
    assert!(matches!(
        event(&failed.to_string(), &mut state, &mut reading),
        Err(ChunkError::Upstream(m)) if m.contains("boom")
    ));
    let busy = json!({"type": "error", "code": "server_is_overloaded", "message": "busy"});
    assert!(matches!(
        event(&busy.to_string(), &mut state, &mut reading),
        Err(ChunkError::Overloaded(_))
    ));
    let stray =
        json!({"type": "response.function_call_arguments.delta", "item_id": "fc_x", "delta": "{}"});
    assert!(matches!(
        event(&stray.to_string(), &mut state, &mut reading),
        Err(ChunkError::Malformed(_))
    ));
}
