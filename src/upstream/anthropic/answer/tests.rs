use super::*;
use crate::proto::ToolCallDelta;
use serde_json::json;

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
