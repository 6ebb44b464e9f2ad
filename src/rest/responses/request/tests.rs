use super::*;
use crate::proto::tool_choice::Choice;
use serde_json::json;

fn parse_json(v: Value) -> Result<Parsed, GatewayError> {
    parse(v.to_string().as_bytes())
}

#[test]
fn a_string_input_with_instructions_and_options() {
    let p = parse_json(json!({"model": "m", "input": "hi", "instructions": "Be brief.",
        "max_output_tokens": 50, "temperature": 0.2, "reasoning": {"effort": "low"},
        "text": {"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"}, "strict": true}},
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        "tool_choice": {"type": "function", "name": "f"}, "store": false, "include": ["x"]}))
    .unwrap();
    assert_eq!(p.input, vec![text_message("user", "hi".into())]);
    assert_eq!(
        p.instructions,
        Some(text_message("system", "Be brief.".into()))
    );
    assert!(!p.store && !p.stream);
    let c = p.config.unwrap();
    assert_eq!((c.max_tokens, c.temperature), (Some(50), Some(0.2)));
    assert_eq!(c.tools[0].name, "f");
    assert_eq!(c.tools[0].parameters_json, r#"{"type":"object"}"#);
    assert_eq!(
        c.tool_choice.unwrap().choice,
        Some(Choice::Function("f".into()))
    );
    assert!(matches!(
        c.response_format.unwrap().format,
        Some(Format::JsonSchema(JsonSchema { ref name, strict: Some(true), .. })) if name == "a"
    ));
    // The effort is the gateway's to translate per upstream, never a raw field in the upstream body.
    assert!(p.pass.provider.is_empty());
    assert_eq!(
        c.reasoning,
        Some(ReasoningConfig {
            effort: "low".into(),
            ..Default::default()
        })
    );
}

#[test]
fn items_become_messages_with_calls_and_outputs() {
    let p = parse_json(json!({"model": "m", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "weather?"},
                                     {"type": "input_image", "image_url": "https://i.example/a.png"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "noon"}]}
    ]}))
    .unwrap();
    let roles: Vec<&str> = p.input.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "tool"]);
    assert_eq!(p.input[0].parts.len(), 2);
    assert_eq!(p.input[1].content, "Checking.");
    let ids: Vec<&str> = p.input[1]
        .tool_calls
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(ids, ["call_1", "call_2"]);
    assert_eq!(
        (
            p.input[3].tool_call_id.as_str(),
            p.input[3].content.as_str()
        ),
        ("call_2", "noon")
    );
}

#[test]
fn what_the_gateway_cannot_honour_is_refused_by_name() {
    for (body, says) in [
        (json!({"model": "m"}), "input: required"),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "namespace", "name": "n", "tools": [{"type": "web_search"}]}]}),
            "tools[0].tools[0]: a function tool",
        ),
        (
            json!({"model": "m", "input": "x", "conversation": "c1"}),
            "conversation: conversations are OpenAI's stored state",
        ),
        (
            json!({"model": "m", "input": "x", "prompt": {"id": "pmpt_1"}}),
            "prompt: stored prompts",
        ),
        (
            json!({"model": "m", "input": [{"type": "file_search_call"}]}),
            "input[0].type",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
            "input[0].content[0].type",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": {"type": "web_search"}}),
            "tool_choice",
        ),
        (
            json!({"model": "m", "input": "x", "background": true}),
            "background",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}),
            "text.format",
        ),
    ] {
        let err = parse_json(body.clone()).unwrap_err().to_string();
        assert!(err.contains(says), "{body}: {err}");
    }
    // A continuation may send no new input.
    assert!(parse_json(json!({"model": "m", "previous_response_id": "resp_1"})).is_ok());
}

/// Fields a client adds that change nothing the gateway answers are left out and named, not refused.
#[test]
fn unknown_fields_are_left_out_and_named() {
    let p = parse_json(
        json!({"model": "m", "input": "x", "client_metadata": {"session": "s"},
                              "include": ["reasoning.encrypted_content"], "a_new_field": 1}),
    )
    .unwrap();
    assert_eq!(p.dropped, ["a_new_field", "client_metadata"]);
}

/// Codex's tools: functions, a namespace of functions (flattened, and its calls named back), and a hosted
/// tool the gateway does not run (left out and named: the model answers without searching).
#[test]
fn namespace_tools_are_flattened_and_hosted_tools_left_out() {
    let p = parse_json(json!({"model": "m", "tools": [
        {"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
        {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents", "tools": [
            {"type": "function", "name": "close_agent", "description": "Close one", "parameters": {"type": "object"}}]},
        {"type": "web_search", "external_web_access": false}],
        "input": [
            {"type": "message", "role": "user", "content": "go"},
            {"type": "function_call", "call_id": "c1", "name": "close_agent", "namespace": "multi_agent_v1",
             "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "closed"},
            {"type": "function_call_output", "call_id": "c2", "output": [
                {"type": "input_text", "text": "a shot"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBO"}]}]}))
    .unwrap();
    let names: Vec<_> = p
        .config
        .as_ref()
        .unwrap()
        .tools
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names, ["exec_command", "multi_agent_v1__close_agent"]);
    assert_eq!(p.dropped, ["tools[2]:web_search"]);
    assert_eq!(p.input[1].tool_calls[0].name, "multi_agent_v1__close_agent");
    assert_eq!(
        p.namespaces.split("multi_agent_v1__close_agent"),
        ("close_agent", Some("multi_agent_v1"))
    );
    assert_eq!(p.namespaces.split("exec_command"), ("exec_command", None));
    // A function's output with an image keeps it (view_image), for upstreams that take one.
    assert_eq!(p.input[3].parts.len(), 2);
    assert_eq!(p.input[2].content, "closed");
}
