//! An OpenAI chat-completions request body, read into the call's request: every field the contract carries maps
//! to its proto field; fields it does not name go on to the provider as they are (`PassThrough::provider`). Range checks are the core's (the same
//! as over gRPC); here only what has no gRPC counterpart is refused.

use super::wire::{
    ChatCompletionRequest, Content, InMessage, InResponseFormat, InTool, InToolChoice, Part, Stop,
    ThinkingBlock,
};
use crate::{
    error::GatewayError,
    proto::{
        content_part, response_format::Format, tool_choice::Choice, ContentPart, GenerationConfig,
        ImageUrl, JsonSchema, Message, Reasoning, ReasoningConfig, ResponseFormat, Tool, ToolCall,
        ToolChoice,
    },
    upstream::pass_through::PassThrough,
};

/// A request, read and turned into the gRPC request's parts.
#[derive(Debug, PartialEq)]
pub(crate) struct Parsed {
    pub(crate) model: String,
    pub(crate) messages: Vec<Message>,
    pub(crate) config: Option<GenerationConfig>,
    pub(crate) pass: PassThrough,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
}

/// Fields OpenAI accepts but the gateway does not carry: refused by name rather than passed on, since their
/// answers (`function_call`, audio) would be lost on the way back.
const REFUSED: [(&str, &str); 4] = [
    ("functions", "deprecated by OpenAI; use tools"),
    ("function_call", "deprecated by OpenAI; use tool_choice"),
    ("audio", "audio output is not carried by the gateway"),
    ("modalities", "only text output is carried by the gateway"),
];

fn invalid(msg: impl Into<String>) -> GatewayError {
    GatewayError::InvalidArgument(msg.into())
}

pub(crate) fn parse(body: &[u8]) -> Result<Parsed, GatewayError> {
    let mut req: ChatCompletionRequest =
        super::read_json(body).map_err(|e| invalid(format!("invalid request body: {e}")))?;
    if req.n.is_some_and(|n| n != 1) {
        return Err(invalid("n: only 1 is supported"));
    }
    if let Some((field, why)) = REFUSED.iter().find(|(f, _)| req.rest.contains_key(*f)) {
        return Err(invalid(format!("{field}: {why}")));
    }
    let reasoning = reasoning(&mut req.rest)?;
    let stream = req.stream.unwrap_or(false);
    if req.stream_options.is_some() && !stream {
        return Err(invalid("stream_options: only allowed when stream is true"));
    }
    let messages = req
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| message(m).map_err(|e| invalid(format!("messages[{i}].{e}"))))
        .collect::<Result<_, GatewayError>>()?;
    let stop = match req.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    // Out-of-range counts are kept out of range (not wrapped) for the core to refuse.
    let max_tokens = req.max_completion_tokens.or(req.max_tokens).map(|n| {
        n.clamp(i64::from(i32::MIN), i64::from(i32::MAX))
            .try_into()
            .unwrap_or_default()
    });
    let config = GenerationConfig {
        temperature: req.temperature,
        max_tokens,
        top_p: req.top_p,
        stop,
        seed: req.seed,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        logprobs: req.logprobs.unwrap_or(false),
        top_logprobs: req.top_logprobs,
        user: req.user.unwrap_or_default(),
        response_format: req.response_format.map(response_format),
        tools: req
            .tools
            .unwrap_or_default()
            .into_iter()
            .map(tool)
            .collect(),
        tool_choice: req.tool_choice.map(tool_choice),
        parallel_tool_calls: req.parallel_tool_calls,
        reasoning,
        ..Default::default()
    };
    Ok(Parsed {
        model: req.model,
        messages,
        config: (config != GenerationConfig::default()).then_some(config),
        pass: PassThrough {
            provider: req.rest,
            ..Default::default()
        },
        stream,
        include_usage: req.stream_options.is_some_and(|o| o.include_usage),
    })
}

/// The request's reasoning: OpenAI's `reasoning_effort`, or `thinking` as gateways in front of Claude take it
/// (`{"type": "enabled", "budget_tokens": N}`), taken out of the provider's fields so each upstream gets its own
/// spelling (`upstream::reasoning`).
fn reasoning(
    rest: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<Option<ReasoningConfig>, GatewayError> {
    let mut out = ReasoningConfig::default();
    if let Some(effort) = rest.remove("reasoning_effort") {
        match effort.as_str() {
            Some(e) => out.effort = e.to_owned(),
            None => return Err(invalid("reasoning_effort: must be a string")),
        }
    }
    if let Some(thinking) = rest.remove("thinking") {
        let asked = crate::upstream::reasoning::from_thinking(&thinking)?;
        out.mode = asked.mode;
        out.budget_tokens = asked.budget_tokens;
    }
    Ok((out != ReasoningConfig::default()).then_some(out))
}

/// One message; the error starts with the field inside it.
fn message(m: InMessage) -> Result<Message, String> {
    let mut cache_control = m.cache_control.map(Into::into);
    if let Some(Content::Parts(parts)) = &m.content {
        let marked = parts.iter().rev().find_map(|p| match p {
            Part::Text { cache_control, .. } => cache_control.clone(),
            _ => None,
        });
        cache_control = cache_control.or(marked.map(Into::into));
    }
    let (content, parts) = match m.content {
        None => (String::new(), Vec::new()),
        Some(Content::Text(s)) => (s, Vec::new()),
        // Text parts alone are one text; with an image they stay parts.
        Some(Content::Parts(parts)) if parts.iter().all(|p| matches!(p, Part::Text { .. })) => {
            let text = parts
                .into_iter()
                .filter_map(|p| match p {
                    Part::Text { text, .. } => Some(text),
                    _ => None,
                })
                .collect();
            (text, Vec::new())
        }
        Some(Content::Parts(parts)) => {
            let parts = parts
                .into_iter()
                .enumerate()
                .map(|(j, p)| {
                    let part = match p {
                        Part::Text { text, .. } => content_part::Part::Text(text),
                        Part::ImageUrl { image_url } => content_part::Part::ImageUrl(ImageUrl {
                            url: image_url.url,
                            detail: image_url.detail.unwrap_or_default(),
                        }),
                        Part::Unsupported => {
                            return Err(format!(
                                "content[{j}]: only text and image_url parts are supported"
                            ))
                        }
                    };
                    Ok(ContentPart { part: Some(part) })
                })
                .collect::<Result<_, _>>()?;
            (String::new(), parts)
        }
    };
    let tool_calls = m
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .map(|c| ToolCall {
            id: c.id,
            name: c.function.name,
            arguments: c.function.arguments,
        })
        .collect();
    // Signed blocks carry the text too; `reasoning_content` alone is unsigned text.
    let reasoning = match (m.thinking_blocks, m.reasoning_content.or(m.reasoning)) {
        (Some(blocks), _) if !blocks.is_empty() => blocks
            .into_iter()
            .map(|b| match b {
                ThinkingBlock::Thinking {
                    thinking,
                    signature,
                } => Reasoning {
                    text: thinking,
                    signature,
                    ..Default::default()
                },
                ThinkingBlock::RedactedThinking { data } => Reasoning {
                    redacted: data,
                    ..Default::default()
                },
            })
            .collect(),
        (_, Some(text)) if !text.is_empty() => vec![Reasoning {
            text,
            ..Default::default()
        }],
        _ => Vec::new(),
    };
    Ok(Message {
        role: m.role,
        content,
        name: m.name.unwrap_or_default(),
        tool_call_id: m.tool_call_id.unwrap_or_default(),
        tool_calls,
        parts,
        cache_control,
        reasoning,
    })
}

fn tool(t: InTool) -> Tool {
    let f = t.function;
    Tool {
        name: f.name,
        description: f.description.unwrap_or_default(),
        parameters_json: f
            .parameters
            .map(|p| serde_json::Value::Object(p).to_string())
            .unwrap_or_default(),
        strict: f.strict,
        cache_control: t.cache_control.map(Into::into),
        anthropic_fields: None,
    }
}

fn tool_choice(c: InToolChoice) -> ToolChoice {
    let choice = match c {
        InToolChoice::Mode(mode) => Choice::Mode(mode),
        InToolChoice::Function { function, .. } => Choice::Function(function.name),
    };
    ToolChoice {
        choice: Some(choice),
    }
}

fn response_format(f: InResponseFormat) -> ResponseFormat {
    let format = match f {
        InResponseFormat::Text => Format::Text(true),
        InResponseFormat::JsonObject => Format::JsonObject(true),
        InResponseFormat::JsonSchema { json_schema: s } => Format::JsonSchema(JsonSchema {
            name: s.name,
            description: s.description.unwrap_or_default(),
            schema_json: s
                .schema
                .map(|v| serde_json::Value::Object(v).to_string())
                .unwrap_or_else(|| "{}".into()),
            strict: s.strict,
        }),
    };
    ResponseFormat {
        format: Some(format),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_json(v: serde_json::Value) -> Result<Parsed, GatewayError> {
        parse(v.to_string().as_bytes())
    }

    fn msg(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
            ..Default::default()
        }
    }

    fn base() -> serde_json::Value {
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    }

    fn with(extra: serde_json::Value) -> Parsed {
        let mut v = base();
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        parse_json(v).unwrap()
    }

    #[test]
    fn requests_become_the_grpc_request() {
        let plain = with(json!({}));
        assert_eq!(
            plain,
            Parsed {
                model: "m".into(),
                messages: vec![msg("user", "hi")],
                config: None,
                pass: Default::default(),
                stream: false,
                include_usage: false,
            }
        );
        let cases: &[(serde_json::Value, GenerationConfig)] = &[
            (
                json!({"temperature": 0.5, "top_p": 0.9}),
                GenerationConfig {
                    temperature: Some(0.5),
                    top_p: Some(0.9),
                    ..Default::default()
                },
            ),
            (
                json!({"max_tokens": 7}),
                GenerationConfig {
                    max_tokens: Some(7),
                    ..Default::default()
                },
            ),
            // The newer field wins when both are sent.
            (
                json!({"max_tokens": 7, "max_completion_tokens": 9}),
                GenerationConfig {
                    max_tokens: Some(9),
                    ..Default::default()
                },
            ),
            // Out of range stays out of range for the core to refuse.
            (
                json!({"max_tokens": 1_u64 << 40}),
                GenerationConfig {
                    max_tokens: Some(i32::MAX),
                    ..Default::default()
                },
            ),
            (
                json!({"stop": "END"}),
                GenerationConfig {
                    stop: vec!["END".into()],
                    ..Default::default()
                },
            ),
            (
                json!({"stop": ["a", "b"]}),
                GenerationConfig {
                    stop: vec!["a".into(), "b".into()],
                    ..Default::default()
                },
            ),
            (
                json!({"seed": 3, "presence_penalty": 0.5, "frequency_penalty": -1.0, "logprobs": true,
                       "top_logprobs": 2, "user": "u1", "parallel_tool_calls": false}),
                GenerationConfig {
                    seed: Some(3),
                    presence_penalty: Some(0.5),
                    frequency_penalty: Some(-1.0),
                    logprobs: true,
                    top_logprobs: Some(2),
                    user: "u1".into(),
                    parallel_tool_calls: Some(false),
                    ..Default::default()
                },
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": "f", "description": "d",
                         "parameters": {"type": "object"}, "strict": true}}],
                       "tool_choice": {"type": "function", "function": {"name": "f"}}}),
                GenerationConfig {
                    tools: vec![Tool {
                        name: "f".into(),
                        description: "d".into(),
                        parameters_json: r#"{"type":"object"}"#.into(),
                        strict: Some(true),
                        cache_control: None,
                        anthropic_fields: None,
                    }],
                    tool_choice: Some(ToolChoice {
                        choice: Some(Choice::Function("f".into())),
                    }),
                    ..Default::default()
                },
            ),
            (
                json!({"tool_choice": "none", "response_format": {"type": "json_object"}}),
                GenerationConfig {
                    tool_choice: Some(ToolChoice {
                        choice: Some(Choice::Mode("none".into())),
                    }),
                    response_format: Some(ResponseFormat {
                        format: Some(Format::JsonObject(true)),
                    }),
                    ..Default::default()
                },
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}, "strict": true}}}),
                GenerationConfig {
                    response_format: Some(ResponseFormat {
                        format: Some(Format::JsonSchema(JsonSchema {
                            name: "a".into(),
                            description: String::new(),
                            schema_json: r#"{"type":"object"}"#.into(),
                            strict: Some(true),
                        })),
                    }),
                    ..Default::default()
                },
            ),
            // Anything else is the provider's.
            (
                json!({"reasoning_effort": "low", "top_k": 5}),
                GenerationConfig {
                    // Taken out of the provider's fields: each upstream spells it its own way.
                    reasoning: Some(ReasoningConfig {
                        effort: "low".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ),
        ];
        for (extra, config) in cases {
            assert_eq!(with(extra.clone()).config.as_ref(), Some(config), "{extra}");
        }
        // Anything else is the provider's, as the client wrote it: numbers keep their form (`2.0` stays a
        // float, an integer past 2^53 stays exact), which a protobuf Struct's doubles would not.
        let body = br#"{"model": "m", "messages": [], "top_k": 5, "x": {"scale": 2.0, "id": 9007199254740993}}"#;
        let provider = parse(body).unwrap().pass.provider;
        assert_eq!(
            serde_json::to_string(&provider).unwrap(),
            r#"{"top_k":5,"x":{"id":9007199254740993,"scale":2.0}}"#
        );
        let streamed = with(json!({"stream": true, "stream_options": {"include_usage": true}}));
        assert!(streamed.stream && streamed.include_usage);
        // Nulls are the same as absent, as OpenAI treats them.
        assert_eq!(with(json!({"temperature": null, "stop": null})), plain);
    }

    #[test]
    fn messages_with_parts_tools_and_results() {
        let parsed = with(json!({"messages": [
            {"role": "system", "content": [{"type": "text", "text": "be "}, {"type": "text", "text": "brief"}]},
            {"role": "user", "content": [{"type": "text", "text": "what is it?"},
                {"type": "image_url", "image_url": {"url": "https://i.example/a.png", "detail": "high"}}], "name": "ann"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
        ]}));
        let image = Message {
            name: "ann".into(),
            parts: vec![
                ContentPart {
                    part: Some(content_part::Part::Text("what is it?".into())),
                },
                ContentPart {
                    part: Some(content_part::Part::ImageUrl(ImageUrl {
                        url: "https://i.example/a.png".into(),
                        detail: "high".into(),
                    })),
                },
            ],
            ..msg("user", "")
        };
        let called = Message {
            tool_calls: vec![ToolCall {
                id: "call_1".into(),
                name: "look".into(),
                arguments: "{\"x\":1}".into(),
            }],
            ..msg("assistant", "")
        };
        let result = Message {
            tool_call_id: "call_1".into(),
            ..msg("tool", "a cat")
        };
        assert_eq!(
            parsed.messages,
            vec![msg("system", "be brief"), image, called, result]
        );
    }

    #[test]
    fn reasoning_sent_back_under_both_names_is_read_once() {
        // qwen-code sends an assistant turn's reasoning as `reasoning_content` and `reasoning` both.
        for said in [
            json!({"role": "assistant", "content": "ok", "reasoning_content": "think", "reasoning": "think"}),
            json!({"role": "assistant", "content": "ok", "reasoning": "think"}),
        ] {
            let parsed = with(json!({"messages": [{"role": "user", "content": "q"}, said]}));
            let texts: Vec<_> = parsed.messages[1]
                .reasoning
                .iter()
                .map(|r| r.text.as_str())
                .collect();
            assert_eq!(texts, ["think"]);
        }
    }

    #[test]
    fn cache_marks_pass_through_on_messages_parts_and_tools() {
        let parsed = with(json!({
            "messages": [
                {"role": "system", "content": "manual", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
                {"role": "user", "content": [{"type": "text", "text": "q", "cache_control": {"type": "ephemeral"}}]},
                {"role": "user", "content": "plain"}],
            "tools": [{"type": "function", "function": {"name": "f"}, "cache_control": {"type": "ephemeral"}}]}));
        let mark = |ttl: &str| {
            Some(crate::proto::CacheControl {
                r#type: "ephemeral".into(),
                ttl: ttl.into(),
            })
        };
        let marks: Vec<_> = parsed
            .messages
            .iter()
            .map(|m| m.cache_control.clone())
            .collect();
        assert_eq!(marks, vec![mark("1h"), mark(""), None]);
        assert_eq!(parsed.config.unwrap().tools[0].cache_control, mark(""));
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (json!({"messages": []}), "model"),
            (json!({"model": "m"}), "messages"),
            (json!({"model": "m", "messages": [], "n": 2}), "n: only 1"),
            (
                json!({"model": "m", "messages": [], "functions": []}),
                "functions",
            ),
            (
                json!({"model": "m", "messages": [], "modalities": ["text", "audio"]}),
                "modalities",
            ),
            (
                json!({"model": "m", "messages": [], "stream_options": {"include_usage": true}}),
                "stream_options",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}),
                "messages[0].content[0]",
            ),
            (
                json!({"model": "m", "messages": [], "temperature": "hot"}),
                "temperature",
            ),
            (
                json!({"model": "m", "messages": [], "tools": [{"type": "web", "function": {"name": "f"}}]}),
                "tools",
            ),
        ];
        for (body, says) in cases {
            let err = parse_json(body.clone()).unwrap_err();
            assert!(
                matches!(&err, GatewayError::InvalidArgument(m) if m.contains(says)),
                "{body} -> {err}"
            );
        }
        assert!(parse(b"{not json").is_err());
    }
}
