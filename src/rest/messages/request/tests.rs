use super::*;
use crate::proto::ReasoningConfig;
use serde_json::json;

fn parse_json(v: Value) -> Result<Parsed, GatewayError> {
    parse(v.to_string().as_bytes())
}

#[test]
fn a_conversation_with_tools_images_and_cache_marks() {
    let p = parse_json(json!({
        "model": "m", "max_tokens": 100, "temperature": 0.5, "top_k": 5, "stop_sequences": ["END"],
        "system": [{"type": "text", "text": "A manual.", "cache_control": {"type": "ephemeral"}}],
        "metadata": {"user_id": "u-1"},
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "UE5H"}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Seoul"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]},
                {"type": "text", "text": "And tomorrow?"}]}
        ]}))
    .unwrap();
    let roles: Vec<&str> = p.messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "user"]);
    assert_eq!(
        p.messages[0].cache_control.as_ref().unwrap().r#type,
        "ephemeral"
    );
    assert!(matches!(
        &p.messages[1].parts[1].part,
        Some(content_part::Part::ImageUrl(ImageUrl { url, .. })) if url == "data:image/png;base64,UE5H"
    ));
    assert_eq!(p.messages[2].content, "Checking.");
    assert_eq!(p.messages[2].tool_calls[0].arguments, r#"{"city":"Seoul"}"#);
    assert_eq!(
        (
            p.messages[3].tool_call_id.as_str(),
            p.messages[3].content.as_str()
        ),
        ("toolu_1", "sunny")
    );
    assert_eq!(p.messages[4].content, "And tomorrow?");
    let c = p.config;
    assert_eq!(
        (c.max_tokens, c.temperature, c.user.as_str()),
        (Some(100), Some(0.5), "u-1")
    );
    assert_eq!(c.stop, ["END"]);
    assert_eq!(
        c.tool_choice.unwrap().choice,
        Some(Choice::Mode("required".into()))
    );
    assert_eq!(c.parallel_tool_calls, Some(false));
    assert_eq!(c.tools[0].parameters_json, r#"{"type":"object"}"#);
    assert_eq!(p.pass.provider.get("top_k"), Some(&json!(5)));
}

#[test]
fn blocks_the_door_does_not_model_are_kept_as_sent() {
    let doc = json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                     "data": "JVBERi0="}, "citations": {"enabled": true}});
    let reference = json!({"type": "tool_reference", "tool_name": "mcp__gw__marker"});
    let p = parse_json(json!({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": [doc, {"type": "text", "text": "Sum it up."}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "ToolSearch", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [reference]},
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true, "content": [
                {"type": "text", "text": "a shot"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}]},
            {"type": "tool_result", "tool_use_id": "toolu_3", "content": [{"type": "text", "text": "plain"}]}]}
    ]}))
    .unwrap();
    let opaque = |v: &Value| ContentPart {
        part: Some(content_part::Part::Opaque(OpaquePart {
            dialect: "anthropic".into(),
            json: v.to_string(),
        })),
    };
    let text = |t: &str| ContentPart {
        part: Some(content_part::Part::Text(t.into())),
    };
    assert_eq!(p.messages[0].parts, [opaque(&doc), text("Sum it up.")]);
    assert_eq!(p.messages[2].parts, [opaque(&reference)]);
    assert_eq!(p.messages[3].parts[0], text("Error:"));
    assert_eq!(
        p.messages[3].parts[2].part,
        Some(content_part::Part::ImageUrl(ImageUrl {
            url: "data:image/png;base64,iVBO".into(),
            detail: String::new()
        }))
    );
    // A result of text alone stays text, as before.
    assert_eq!(
        (p.messages[4].content.as_str(), p.messages[4].parts.len()),
        ("plain", 0)
    );
    for m in &p.messages {
        crate::call::checks::check_message("messages", 0, m).unwrap();
    }
}

#[test]
fn refusals_name_the_field() {
    for (body, says) in [
        (json!({"model": "m", "messages": []}), "max_tokens"),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "developer", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"source": {}}]}]}),
            "messages[0].content[0].type: required",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text"}]}]}),
            "messages[0].content[0]: missing field `text`",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "b", "input": {}}]}]}),
            "tool_use belongs",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [], "thinking": {"type": "enabled"}}),
            "thinking.budget_tokens: required",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [], "thinking": {"type": "deep"}}),
            "thinking.type",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [], "tools": [{"name": "f"}]}),
            "tools[0]: missing field `input_schema`",
        ),
    ] {
        let err = parse_json(body.clone()).unwrap_err().to_string();
        assert!(err.contains(says), "{body}: {err}");
    }
}

/// Thinking is carried: the request's `thinking` as the reasoning config, and an assistant turn's thinking and
/// redacted blocks, signatures byte-exact, as its message's reasoning (ahead of its text and calls).
#[test]
fn thinking_and_its_blocks_are_carried() {
    let p = parse_json(json!({"model": "m", "max_tokens": 4096,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Need the tool.", "signature": "EqQBCkYIBxgCKkB+/="},
                {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va=="},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}
        ]}))
    .unwrap();
    assert_eq!(
        p.config.reasoning,
        Some(ReasoningConfig {
            mode: "enabled".into(),
            budget_tokens: Some(2048),
            ..Default::default()
        })
    );
    let said = &p.messages[1];
    assert_eq!(said.role, "assistant");
    assert_eq!(
        said.reasoning,
        vec![
            Reasoning {
                text: "Need the tool.".into(),
                signature: "EqQBCkYIBxgCKkB+/=".into(),
                redacted: String::new(),
                id: String::new(),
            },
            Reasoning {
                redacted: "EmwKAhgBEgy3va==".into(),
                ..Default::default()
            },
        ]
    );
    assert_eq!(said.tool_calls[0].id, "toolu_1");
    let adaptive = parse_json(json!({"model": "m", "max_tokens": 5, "messages": [],
        "thinking": {"type": "adaptive"}}))
    .unwrap();
    assert_eq!(adaptive.config.reasoning.unwrap().mode, "adaptive");
}

/// What the door does not model travels to Anthropic upstreams as the client sent it: top-level fields
/// (today's and tomorrow's) and a tool's own fields.
#[test]
fn fields_the_door_does_not_model_are_kept_for_anthropic() {
    let p = parse_json(json!({"model": "m", "max_tokens": 5, "messages": [],
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
        "output_config": {"effort": "high"}, "a_field_from_next_year": [1, 2],
        "tools": [{"name": "t", "input_schema": {"type": "object"}, "defer_loading": true},
                  {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]}))
    .unwrap();
    let kept = p.pass.dialect("anthropic");
    assert_eq!(
        Value::Object(kept),
        json!({"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
               "output_config": {"effort": "high"}, "a_field_from_next_year": [1, 2],
               "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]})
    );
    let tool = p.pass.tool(0).unwrap().clone();
    assert_eq!(Value::Object(tool), json!({"defer_loading": true}));
    assert_eq!(p.config.tools.len(), 1);
    // Named for the header, should a route of another dialect answer.
    assert_eq!(
        p.foreign,
        [
            "tools[0].defer_loading",
            "tools[1]:web_search_20250305",
            "a_field_from_next_year",
            "context_management",
            "output_config"
        ]
    );
}

/// A system message among the turns (Claude Code 2.1 sends them) is read as one, text or blocks.
#[test]
fn system_messages_among_the_turns_are_read() {
    let p = parse_json(json!({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "system", "content": [{"type": "text", "text": "Be terse."}]},
        {"role": "user", "content": "again"}]}))
    .unwrap();
    assert_eq!(p.messages[1].role, "system");
    assert_eq!(p.messages[1].content, "Be terse.");
    let err = parse_json(
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("messages[0].role"), "{err}");
}
