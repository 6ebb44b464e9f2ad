//! An Anthropic Messages API request (`POST /v1/messages`) read into the gRPC request's parts: `system` (a string
//! or text blocks) becomes a system message; user turns' `tool_result` blocks become tool messages ahead of the
//! turn's text and images; assistant `tool_use` blocks become tool calls; `cache_control` on a block marks its
//! message; assistant `thinking` and `redacted_thinking` blocks become the message's reasoning, byte-exact;
//! `max_tokens` (required, as Anthropic has it), `stop_sequences`, `temperature`, `top_p`, `tools`,
//! `tool_choice`, `thinking` and `metadata.user_id` map to their proto fields, and `top_k` goes on as a provider
//! option.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{
    error::GatewayError,
    proto::{
        content_part, tool_choice::Choice, CacheControl, ContentPart, GenerationConfig, ImageUrl,
        Message, OpaquePart, Reasoning, Tool, ToolCall, ToolChoice,
    },
    upstream::pass_through::PassThrough,
};

/// Fields not named here are Anthropic's: they travel on to Anthropic upstreams as they are
/// (`PassThrough::dialect["anthropic"]`), and are left out for others.
#[derive(Debug, Deserialize)]
struct InRequest {
    model: String,
    /// Required for a call, as Anthropic has it; `count_tokens` takes none.
    max_tokens: Option<i64>,
    messages: Vec<InMessage>,
    system: Option<InContent>,
    stop_sequences: Option<Vec<String>>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<u32>,
    stream: Option<bool>,
    /// Read one by one: client tools (`InTool`), and server tools kept as sent.
    tools: Option<Vec<Value>>,
    tool_choice: Option<InToolChoice>,
    metadata: Option<InMetadata>,
    thinking: Option<Value>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InMessage {
    role: String,
    content: InContent,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum InContent {
    Text(String),
    /// Read one by one (`block`): the types the door models, and the rest kept as sent.
    Blocks(Vec<Value>),
}

/// The block types the door reads; any other travels as an opaque block, as the client sent it.
const MODELLED: [&str; 6] = [
    "text",
    "image",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
];

/// A block: modelled, or opaque with its type (Anthropic's `document`, `search_result`, `tool_reference`,
/// server tools' blocks, and blocks not invented yet). `at` names it in a refusal (made only then).
fn block(
    at: impl Fn() -> String,
    v: Value,
) -> Result<Result<InBlock, (String, content_part::Part)>, GatewayError> {
    let kind = match v.get("type").and_then(Value::as_str) {
        Some(kind) if !kind.is_empty() => kind,
        _ => return Err(invalid(format!("{}.type: required", at()))),
    };
    if MODELLED.contains(&kind) {
        return serde_json::from_value(v)
            .map(Ok)
            .map_err(|e| invalid(format!("{}: {e}", at())));
    }
    Ok(Err((kind.to_owned(), opaque(&v))))
}

fn opaque(v: &Value) -> content_part::Part {
    content_part::Part::Opaque(OpaquePart {
        dialect: "anthropic".into(),
        json: v.to_string(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum InBlock {
    Text {
        text: String,
        cache_control: Option<InCacheControl>,
        #[serde(default)]
        #[allow(dead_code)] // accepted; citations are not carried
        citations: Option<Value>,
    },
    Image {
        source: InImageSource,
        cache_control: Option<InCacheControl>,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
        cache_control: Option<InCacheControl>,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<InContent>,
        #[serde(default)]
        is_error: bool,
        cache_control: Option<InCacheControl>,
    },
    /// Sent back by clients with earlier assistant turns: carried byte-exact (Anthropic checks the signature).
    Thinking {
        #[serde(default)]
        thinking: String,
        #[serde(default)]
        signature: String,
    },
    RedactedThinking {
        #[serde(default)]
        data: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum InImageSource {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

#[derive(Debug, Clone, Deserialize)]
struct InCacheControl {
    #[serde(rename = "type")]
    kind: String,
    ttl: Option<String>,
}

/// A tool; fields not named here (`defer_loading`, ...) travel on to Anthropic upstreams as they are.
#[derive(Debug, Deserialize)]
struct InTool {
    name: String,
    description: Option<String>,
    input_schema: Map<String, Value>,
    cache_control: Option<InCacheControl>,
    /// "custom" or none: server tools are read apart.
    #[serde(rename = "type")]
    #[allow(dead_code)]
    kind: Option<String>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum InToolChoice {
    Auto {
        disable_parallel_tool_use: Option<bool>,
    },
    Any {
        disable_parallel_tool_use: Option<bool>,
    },
    Tool {
        name: String,
        disable_parallel_tool_use: Option<bool>,
    },
    None {},
}

#[derive(Debug, Deserialize)]
struct InMetadata {
    user_id: Option<String>,
}

/// A request, read.
#[derive(Debug, PartialEq)]
pub(crate) struct Parsed {
    pub(crate) model: String,
    pub(crate) messages: Vec<Message>,
    pub(crate) config: GenerationConfig,
    pub(crate) pass: PassThrough,
    pub(crate) stream: bool,
    /// What only an Anthropic upstream takes: fields, tools' fields, server tools, blocks (by type), named
    /// for the `aigw-dropped` header when the model has routes of another dialect.
    pub(crate) foreign: Vec<String>,
}

fn invalid(msg: impl Into<String>) -> GatewayError {
    GatewayError::InvalidArgument(msg.into())
}

pub(crate) fn parse(body: &[u8]) -> Result<Parsed, GatewayError> {
    read(body, true)
}

/// A `count_tokens` request: a call's body, without the need for `max_tokens`.
pub(crate) fn parse_to_count(body: &[u8]) -> Result<Parsed, GatewayError> {
    read(body, false)
}

fn read(body: &[u8], needs_max_tokens: bool) -> Result<Parsed, GatewayError> {
    let req: InRequest =
        crate::rest::read_json(body).map_err(|e| invalid(format!("invalid request body: {e}")))?;
    if needs_max_tokens && req.max_tokens.is_none() {
        return Err(invalid("invalid request body: missing field `max_tokens`"));
    }
    let mut foreign = Vec::new();
    let mut kinds = Vec::new();
    let reasoning = req
        .thinking
        .as_ref()
        .map(crate::upstream::reasoning::from_thinking)
        .transpose()?;
    let mut messages = Vec::new();
    if let Some(system) = req.system {
        let (text, mark) = system_text(system)?;
        messages.push(Message {
            role: "system".into(),
            content: text,
            cache_control: mark,
            ..Default::default()
        });
    }
    for (i, m) in req.messages.into_iter().enumerate() {
        turn(i, m, &mut messages, &mut kinds)?;
    }
    let mut tools = Vec::new();
    let mut tool_fields = Vec::new();
    let mut server_tools = Vec::new();
    for (i, t) in req.tools.unwrap_or_default().into_iter().enumerate() {
        let kind = t.get("type").and_then(Value::as_str).unwrap_or("custom");
        if kind != "custom" {
            // A tool Anthropic runs or defines (web search, code execution, bash, the text editor): Anthropic
            // upstreams get it as sent, others cannot run it.
            foreign.push(format!("tools[{i}]:{kind}"));
            server_tools.push(t);
            continue;
        }
        let t: InTool = serde_json::from_value(t)
            .map_err(|e| invalid(format!("invalid request body: tools[{i}]: {e}")))?;
        foreign.extend(t.rest.keys().map(|k| format!("tools[{i}].{k}")));
        tools.push(Tool {
            name: t.name,
            description: t.description.unwrap_or_default(),
            parameters_json: Value::Object(t.input_schema).to_string(),
            strict: None,
            cache_control: t.cache_control.map(mark),
            anthropic_fields: None,
        });
        tool_fields.push((!t.rest.is_empty()).then_some(t.rest));
    }
    let mut rest = req.rest;
    foreign.extend(rest.keys().cloned());
    if !server_tools.is_empty() {
        rest.insert("tools".into(), Value::Array(server_tools));
    }
    let (tool_choice, parallel) = match req.tool_choice {
        None => (None, None),
        Some(InToolChoice::Auto {
            disable_parallel_tool_use: d,
        }) => (Some(Choice::Mode("auto".into())), d),
        Some(InToolChoice::Any {
            disable_parallel_tool_use: d,
        }) => (Some(Choice::Mode("required".into())), d),
        Some(InToolChoice::Tool {
            name,
            disable_parallel_tool_use: d,
        }) => (Some(Choice::Function(name)), d),
        Some(InToolChoice::None {}) => (Some(Choice::Mode("none".into())), None),
    };
    let mut pass = PassThrough::default();
    if let Some(k) = req.top_k {
        pass.provider.insert("top_k".into(), Value::from(k));
    }
    if !rest.is_empty() {
        pass.dialect.insert("anthropic".to_owned(), rest);
    }
    if tool_fields.iter().any(Option::is_some) {
        pass.tools = tool_fields;
    }
    let config = GenerationConfig {
        temperature: req.temperature,
        // Out of range stays out of range (not wrapped) for the core to refuse.
        max_tokens: req.max_tokens.map(|n| {
            n.clamp(i64::from(i32::MIN), i64::from(i32::MAX))
                .try_into()
                .unwrap_or_default()
        }),
        top_p: req.top_p,
        stop: req.stop_sequences.unwrap_or_default(),
        user: req.metadata.and_then(|m| m.user_id).unwrap_or_default(),
        tools,
        tool_choice: tool_choice.map(|c| ToolChoice { choice: Some(c) }),
        parallel_tool_calls: parallel.map(|disabled| !disabled),
        reasoning,
        ..Default::default()
    };
    // Blocks the door keeps opaque, by type (named as they were read).
    for kind in kinds {
        if !foreign.contains(&kind) {
            foreign.push(kind);
        }
    }
    Ok(Parsed {
        model: req.model,
        messages,
        config,
        pass,
        stream: req.stream.unwrap_or(false),
        foreign,
    })
}

fn mark(c: InCacheControl) -> CacheControl {
    CacheControl {
        r#type: c.kind,
        ttl: c.ttl.unwrap_or_default(),
    }
}

fn system_text(system: InContent) -> Result<(String, Option<CacheControl>), GatewayError> {
    match system {
        InContent::Text(t) => Ok((t, None)),
        InContent::Blocks(blocks) => {
            let mut text = Vec::new();
            let mut marked = None;
            for (j, b) in blocks.into_iter().enumerate() {
                match block(|| format!("system[{j}]"), b)? {
                    Ok(InBlock::Text {
                        text: t,
                        cache_control,
                        ..
                    }) => {
                        text.push(t);
                        marked = cache_control.map(mark).or(marked);
                    }
                    _ => return Err(invalid(format!("system[{j}]: only text blocks"))),
                }
            }
            Ok((text.join("\n\n"), marked))
        }
    }
}

fn image(source: InImageSource) -> content_part::Part {
    let url = match source {
        InImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        InImageSource::Url { url } => url,
    };
    content_part::Part::ImageUrl(ImageUrl {
        url,
        detail: String::new(),
    })
}

/// A tool's result: its text (an error's marked as one), or its blocks when there is more than text in it
/// (images, documents, Claude Code's `tool_reference`s), which Anthropic upstreams get as they were sent.
fn tool_output(
    at: &str,
    content: Option<InContent>,
    is_error: bool,
    kinds: &mut Vec<String>,
) -> Result<(String, Vec<ContentPart>), GatewayError> {
    let error = |text: String| {
        if is_error {
            format!("Error: {text}")
        } else {
            text
        }
    };
    let blocks = match content {
        None => return Ok((error(String::new()), Vec::new())),
        Some(InContent::Text(t)) => return Ok((error(t), Vec::new())),
        Some(InContent::Blocks(blocks)) => blocks,
    };
    let mut parts = Vec::with_capacity(blocks.len());
    for (k, b) in blocks.into_iter().enumerate() {
        let here = || format!("{at}.content[{k}]");
        parts.push(match block(here, b)? {
            Ok(InBlock::Text { text, .. }) => content_part::Part::Text(text),
            Ok(InBlock::Image { source, .. }) => image(source),
            Ok(_) => {
                return Err(invalid(format!(
                    "{}.type: not a block a tool result holds",
                    here()
                )))
            }
            Err((kind, opaque)) => {
                kinds.push(kind);
                opaque
            }
        });
    }
    if parts
        .iter()
        .all(|p| matches!(p, content_part::Part::Text(_)))
    {
        let text: Vec<String> = parts
            .into_iter()
            .filter_map(|p| match p {
                content_part::Part::Text(t) => Some(t),
                _ => None,
            })
            .collect();
        return Ok((error(text.join("\n")), Vec::new()));
    }
    if is_error {
        parts.insert(0, content_part::Part::Text("Error:".into()));
    }
    let parts = parts
        .into_iter()
        .map(|p| ContentPart { part: Some(p) })
        .collect();
    Ok((String::new(), parts))
}

/// One turn: an assistant's text and tool calls, or a user's tool results (each a tool message, first) and
/// then their text and images.
/// `kinds` gets the type of each block kept opaque.
fn turn(
    i: usize,
    m: InMessage,
    out: &mut Vec<Message>,
    kinds: &mut Vec<String>,
) -> Result<(), GatewayError> {
    let at = |j: usize| format!("messages[{i}].content[{j}]");
    if !matches!(m.role.as_str(), "user" | "assistant" | "system") {
        return Err(invalid(format!(
            "messages[{i}].role: '{}' is not 'user', 'assistant' or 'system'",
            m.role
        )));
    }
    // A system message among the turns (Claude Code sends them): its text, which an Anthropic upstream gets in
    // `system` and an OpenAI-style one in place.
    if m.role == "system" {
        let (content, cache_control) =
            system_text(m.content).map_err(|e| invalid(format!("messages[{i}].{e}")))?;
        out.push(Message {
            role: m.role,
            content,
            cache_control,
            ..Default::default()
        });
        return Ok(());
    }
    let blocks = match m.content {
        InContent::Text(text) => {
            out.push(Message {
                role: m.role,
                content: text,
                ..Default::default()
            });
            return Ok(());
        }
        InContent::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    let mut reasoning = Vec::new();
    let mut marked = None;
    for (j, b) in blocks.into_iter().enumerate() {
        let b = match block(|| at(j), b)? {
            Ok(b) => b,
            Err((kind, opaque)) => {
                kinds.push(kind);
                parts.push(opaque);
                continue;
            }
        };
        match b {
            InBlock::Text {
                text,
                cache_control,
                ..
            } => {
                marked = cache_control.map(mark).or(marked);
                parts.push(content_part::Part::Text(text));
            }
            InBlock::Image {
                source,
                cache_control,
            } => {
                marked = cache_control.map(mark).or(marked);
                parts.push(image(source));
            }
            InBlock::ToolUse {
                id,
                name,
                input,
                cache_control,
            } if m.role == "assistant" => {
                marked = cache_control.map(mark).or(marked);
                let input = if input.is_null() {
                    Value::Object(Map::new())
                } else {
                    input
                };
                calls.push(ToolCall {
                    id,
                    name,
                    arguments: input.to_string(),
                });
            }
            InBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
                cache_control,
            } if m.role == "user" => {
                let (content, parts) = tool_output(&at(j), content, is_error, kinds)?;
                out.push(Message {
                    role: "tool".into(),
                    content,
                    parts,
                    tool_call_id: tool_use_id,
                    cache_control: cache_control.map(mark),
                    ..Default::default()
                });
            }
            InBlock::Thinking {
                thinking,
                signature,
            } if m.role == "assistant" => reasoning.push(Reasoning {
                text: thinking,
                signature,
                ..Default::default()
            }),
            InBlock::RedactedThinking { data } if m.role == "assistant" => {
                reasoning.push(Reasoning {
                    redacted: data,
                    ..Default::default()
                })
            }
            InBlock::ToolUse { .. } | InBlock::ToolResult { .. } => {
                return Err(invalid(format!(
                    "{}: tool_use belongs to assistant turns, tool_result to user turns",
                    at(j)
                )))
            }
            InBlock::Thinking { .. } | InBlock::RedactedThinking { .. } => {
                return Err(invalid(format!(
                    "{}: thinking blocks belong to assistant turns",
                    at(j)
                )))
            }
        }
    }
    if parts.is_empty() && calls.is_empty() && reasoning.is_empty() {
        // A user turn of tool results alone: its tool messages are the turn.
        if let Some(last) = out.last_mut().filter(|_| marked.is_some()) {
            last.cache_control = marked;
        }
        return Ok(());
    }
    let images = parts
        .iter()
        .any(|p| !matches!(p, content_part::Part::Text(_)));
    let mut message = Message {
        role: m.role,
        tool_calls: calls,
        cache_control: marked,
        reasoning,
        ..Default::default()
    };
    if images {
        message.parts = parts
            .into_iter()
            .map(|p| ContentPart { part: Some(p) })
            .collect();
    } else {
        message.content = parts
            .into_iter()
            .filter_map(|p| match p {
                content_part::Part::Text(t) => Some(t),
                _ => None,
            })
            .collect();
    }
    out.push(message);
    Ok(())
}

#[cfg(test)]
mod tests;
