//! The request and answer fields beyond plain text — tools, tool results, response formats, images, sampling
//! extras, logprobs and provider options: their checks and their OpenAI JSON. Pure functions, like `convert`.

use std::borrow::Cow;

use serde_json::{json, Map, Value};

use crate::{
    error::GatewayError,
    proto::{
        content_part::Part, response_format::Format, tool_choice::Choice, CacheControl,
        GenerationConfig, Message, ResponseFormat, TokenLogprob, Tool, ToolCall, ToolChoice,
        TopLogprob,
    },
    upstream::openai::wire::{
        AnswerToolCall, ChatContent, ChatPart, ImageUrl, Logprobs, ToolCallDelta, WireFunction,
        WireToolCall,
    },
};

/// Fields of the upstream request the gateway sets itself: `provider_options` may not override them.
pub(crate) const RESERVED: [&str; 21] = [
    "model",
    "messages",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "user",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "n",
    "system",
];

/// Image types every major provider accepts inline.
pub(crate) const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// Bounds on what a stream's tool calls may grow to while they are re-assembled.
pub(crate) const MAX_TOOL_CALLS: usize = 128;
pub(crate) const MAX_TOOL_CALL_BYTES: usize = 4 << 20;
/// At most this much reasoning is held for one answer (a 128k-token think is about 512 KiB), in at most this many
/// blocks.
pub(crate) const MAX_REASONING_BYTES: usize = 8 << 20;
pub(crate) const MAX_REASONING_BLOCKS: usize = 1024;
/// Bound on the log probabilities kept for one answer, in bytes of tokens (plus 16 per entry for the number
/// and the entry itself): an upstream cannot make the gateway hold, or send, more.
pub(crate) const MAX_LOGPROB_BYTES: usize = 4 << 20;

fn invalid(msg: String) -> GatewayError {
    GatewayError::InvalidArgument(msg)
}

/// OpenAI's rule for function and schema names.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// JSON text that must hold an object; `what` names the field in the error.
fn json_object(text: &str, what: &str) -> Result<Map<String, Value>, GatewayError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(invalid(format!("{what}: must be a JSON object"))),
        Err(e) => Err(invalid(format!("{what}: invalid JSON: {e}"))),
    }
}

/// The fields of one message beyond role, content and name; `list` names where it is ("messages", "history").
pub(crate) fn check_message(list: &str, i: usize, m: &Message) -> Result<(), GatewayError> {
    let at = |field: &str| format!("{list}[{i}].{field}");
    if m.role == "tool" {
        if m.tool_call_id.is_empty() {
            return Err(invalid(format!(
                "{}: required for role 'tool'",
                at("tool_call_id")
            )));
        }
    } else if !m.tool_call_id.is_empty() {
        return Err(invalid(format!(
            "{}: only for role 'tool'",
            at("tool_call_id")
        )));
    }
    if let Some(c) = &m.cache_control {
        check_cache_control(&at("cache_control"), c)?;
    }
    if !m.tool_calls.is_empty() && m.role != "assistant" {
        return Err(invalid(format!(
            "{}: only for role 'assistant'",
            at("tool_calls")
        )));
    }
    for (j, call) in m.tool_calls.iter().enumerate() {
        if call.id.is_empty() || !valid_name(&call.name) {
            return Err(invalid(format!(
                "{}: needs an id and a function name (letters, digits, _ and -, at most 64)",
                at(&format!("tool_calls[{j}]"))
            )));
        }
    }
    if m.parts.is_empty() {
        return Ok(());
    }
    if !m.content.is_empty() {
        return Err(invalid(format!(
            "{}: set content or parts, not both",
            at("parts")
        )));
    }
    for (j, part) in m.parts.iter().enumerate() {
        let here = at(&format!("parts[{j}]"));
        match &part.part {
            None => return Err(invalid(format!("{here}: empty part"))),
            Some(Part::Text(_)) => {}
            Some(Part::Opaque(_)) if m.role == "system" => {
                return Err(invalid(format!(
                    "{here}: no opaque blocks in system messages"
                )))
            }
            Some(Part::Opaque(block)) => check_opaque(&here, block)?,
            Some(_) if m.role != "user" && m.role != "tool" => {
                return Err(invalid(format!(
                    "{here}: images only in user and tool messages"
                )))
            }
            Some(Part::ImageUrl(img)) if img.url.is_empty() => {
                return Err(invalid(format!("{here}.image_url.url: required")))
            }
            Some(Part::ImageUrl(img)) if !image_url_allowed(&img.url) => {
                return Err(invalid(format!(
                    "{here}.image_url.url: only http, https and data URLs are accepted"
                )))
            }
            Some(Part::Image(img)) if img.data.is_empty() => {
                return Err(invalid(format!("{here}.image.data: required")))
            }
            Some(Part::Image(img)) if !IMAGE_TYPES.contains(&img.mime_type.as_str()) => {
                return Err(invalid(format!(
                    "{here}.image.mime_type: '{}' is not one of {}",
                    img.mime_type,
                    IMAGE_TYPES.join(", ")
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// An opaque block names its dialect and is a JSON object with a `type`: what every writer relies on.
fn check_opaque(here: &str, block: &crate::proto::OpaquePart) -> Result<(), GatewayError> {
    if !matches!(block.dialect.as_str(), "anthropic" | "openai") {
        return Err(invalid(format!(
            "{here}.opaque.dialect: '{}' is not 'anthropic' or 'openai'",
            block.dialect
        )));
    }
    if super::wire::opaque_type(&block.json).is_none() {
        return Err(invalid(format!(
            "{here}.opaque.json: must be a JSON object with a \"type\""
        )));
    }
    Ok(())
}

/// The generation parameters beyond temperature, top_p, max_tokens and stop.
pub(crate) fn check_config(c: &GenerationConfig) -> Result<(), GatewayError> {
    for (name, v) in [
        ("presence_penalty", c.presence_penalty),
        ("frequency_penalty", c.frequency_penalty),
    ] {
        if let Some(v) = v.filter(|v| !(-2.0..=2.0).contains(v)) {
            return Err(invalid(format!("config.{name}: {v} is outside -2..2")));
        }
    }
    if let Some(r) = &c.reasoning {
        crate::upstream::reasoning::check(r)?;
    }
    if let Some(n) = c.top_logprobs {
        if !(0..=20).contains(&n) {
            return Err(invalid(format!(
                "config.top_logprobs: {n} is outside 0..20"
            )));
        }
        if !c.logprobs {
            return Err(invalid("config.top_logprobs: needs logprobs = true".into()));
        }
    }
    // A set, not a scan of the tools before each: a thousand tools cost a thousand lookups, not half a million.
    let mut names = std::collections::HashSet::with_capacity(c.tools.len());
    for (i, tool) in c.tools.iter().enumerate() {
        if let Some(c) = &tool.cache_control {
            check_cache_control(&format!("config.tools[{i}].cache_control"), c)?;
        }
        if !valid_name(&tool.name) {
            return Err(invalid(format!(
                "config.tools[{i}].name: '{}' must be 1..64 letters, digits, _ or -",
                tool.name
            )));
        }
        if !names.insert(tool.name.as_str()) {
            return Err(invalid(format!(
                "config.tools[{i}].name: '{}' is defined twice",
                tool.name
            )));
        }
        if !tool.parameters_json.is_empty() {
            json_object(
                &tool.parameters_json,
                &format!("config.tools[{i}].parameters_json"),
            )?;
        }
    }
    match c.tool_choice.as_ref().and_then(|t| t.choice.as_ref()) {
        None => {}
        Some(Choice::Mode(mode)) => {
            if !["none", "auto", "required"].contains(&mode.as_str()) {
                return Err(invalid(format!(
                    "config.tool_choice.mode: '{mode}' is not one of none, auto, required"
                )));
            }
            if mode == "required" && c.tools.is_empty() {
                return Err(invalid(
                    "config.tool_choice: 'required' needs config.tools".into(),
                ));
            }
        }
        Some(Choice::Function(name)) if !c.tools.iter().any(|t| &t.name == name) => {
            return Err(invalid(format!(
                "config.tool_choice.function: '{name}' is not in config.tools"
            )));
        }
        Some(Choice::Function(_)) => {}
    }
    if let Some(Format::JsonSchema(s)) = c.response_format.as_ref().and_then(|f| f.format.as_ref())
    {
        if !valid_name(&s.name) {
            return Err(invalid(format!(
                "config.response_format.json_schema.name: '{}' must be 1..64 letters, digits, _ or -",
                s.name
            )));
        }
        json_object(
            &s.schema_json,
            "config.response_format.json_schema.schema_json",
        )?;
    }
    if let Some(key) = c
        .provider_options
        .as_ref()
        .and_then(|o| o.fields.keys().find(|k| RESERVED.contains(&k.as_str())))
    {
        return Err(invalid(format!(
            "config.provider_options.{key}: set by the gateway; use the typed field"
        )));
    }
    Ok(())
}

/// A message's content for the upstream: its text, or its parts (images as URLs, inline bytes as `data:`
/// URLs). `None` for an assistant message that is all tool calls.
pub(crate) fn content(m: &Message) -> Option<ChatContent<'_>> {
    if m.parts.is_empty() {
        if m.content.is_empty() && !m.tool_calls.is_empty() {
            return None;
        }
        return Some(ChatContent::Text(&m.content));
    }
    let parts = m
        .parts
        .iter()
        .filter_map(|p| p.part.as_ref())
        .map(|p| match p {
            Part::Text(text) => ChatPart::Text { text },
            Part::ImageUrl(img) => ChatPart::ImageUrl {
                image_url: ImageUrl {
                    url: Cow::Borrowed(&img.url),
                    detail: detail(&img.detail),
                },
            },
            Part::Image(img) => ChatPart::ImageUrl {
                image_url: ImageUrl {
                    url: Cow::Owned(data_url(&img.mime_type, &img.data)),
                    detail: detail(&img.detail),
                },
            },
            Part::Opaque(block) => ChatPart::Opaque {
                dialect: &block.dialect,
                json: &block.json,
            },
        })
        .collect();
    Some(if m.role == "tool" || m.role == "assistant" {
        ChatContent::Flattened(parts)
    } else {
        ChatContent::Parts(parts)
    })
}

fn detail(d: &str) -> Option<&str> {
    (!d.is_empty()).then_some(d)
}

/// Whether an image URL may go to an upstream: `http:`, `https:` or `data:` (scheme case-insensitive). Others
/// (`file:`, `javascript:`, `ftp:` ...) could make an upstream or a tool read what it should not.
pub(crate) fn image_url_allowed(url: &str) -> bool {
    let scheme = url.split_once(':').map_or("", |(s, _)| s);
    ["http", "https", "data"]
        .iter()
        .any(|ok| scheme.eq_ignore_ascii_case(ok))
}

/// `data:<mime>;base64,<data>`.
pub(crate) fn data_url(mime: &str, data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(mime.len() + 13 + data.len().div_ceil(3) * 4);
    out.push_str("data:");
    out.push_str(mime);
    out.push_str(";base64,");
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (k, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub(crate) fn tool_calls(calls: &[ToolCall]) -> Vec<WireToolCall<'_>> {
    calls
        .iter()
        .map(|c| WireToolCall {
            id: &c.id,
            kind: "function",
            function: WireFunction {
                name: &c.name,
                arguments: &c.arguments,
            },
        })
        .collect()
}

/// Tool definitions as OpenAI takes them (schemas were checked to be JSON objects).
fn check_cache_control(at: &str, c: &CacheControl) -> Result<(), GatewayError> {
    if !matches!(c.r#type.as_str(), "" | "ephemeral") {
        return Err(invalid(format!(
            "{at}.type: '{}' is not 'ephemeral'",
            c.r#type
        )));
    }
    if !matches!(c.ttl.as_str(), "" | "5m" | "1h") {
        return Err(invalid(format!(
            "{at}.ttl: '{}' is not '5m' or '1h'",
            c.ttl
        )));
    }
    Ok(())
}

/// A cache mark as Anthropic writes it: `{"type": "ephemeral"}`, with its `ttl` when one is named.
pub(crate) fn cache_control(c: Option<&CacheControl>) -> Option<Value> {
    c.map(|c| {
        let mut out = json!({"type": "ephemeral"});
        if !c.ttl.is_empty() {
            out["ttl"] = Value::from(c.ttl.as_str());
        }
        out
    })
}

pub(crate) fn tools(tools: &[Tool]) -> Vec<Value> {
    tools
        .iter()
        .map(|t| {
            let mut function = Map::new();
            function.insert("name".into(), Value::from(t.name.as_str()));
            if !t.description.is_empty() {
                function.insert("description".into(), Value::from(t.description.as_str()));
            }
            if !t.parameters_json.is_empty() {
                let schema = serde_json::from_str(&t.parameters_json).unwrap_or(Value::Null);
                function.insert("parameters".into(), schema);
            }
            if let Some(strict) = t.strict {
                function.insert("strict".into(), Value::Bool(strict));
            }
            json!({"type": "function", "function": function})
        })
        .collect()
}

pub(crate) fn tool_choice(choice: Option<&ToolChoice>) -> Option<Value> {
    match choice?.choice.as_ref()? {
        Choice::Mode(mode) => Some(Value::from(mode.as_str())),
        Choice::Function(name) => Some(json!({"type": "function", "function": {"name": name}})),
    }
}

pub(crate) fn response_format(format: Option<&ResponseFormat>) -> Option<Value> {
    match format?.format.as_ref()? {
        Format::Text(_) => Some(json!({"type": "text"})),
        Format::JsonObject(_) => Some(json!({"type": "json_object"})),
        Format::JsonSchema(s) => {
            let mut schema = Map::new();
            schema.insert("name".into(), Value::from(s.name.as_str()));
            if !s.description.is_empty() {
                schema.insert("description".into(), Value::from(s.description.as_str()));
            }
            let body = serde_json::from_str(&s.schema_json).unwrap_or(Value::Null);
            schema.insert("schema".into(), body);
            if let Some(strict) = s.strict {
                schema.insert("strict".into(), Value::Bool(strict));
            }
            Some(json!({"type": "json_schema", "json_schema": schema}))
        }
    }
}

// ---- google.protobuf.Struct <-> JSON --------------------------------------------------------------------------

pub(crate) fn struct_to_json(s: &prost_types::Struct) -> Map<String, Value> {
    s.fields
        .iter()
        .map(|(k, v)| (k.clone(), value_to_json(v)))
        .collect()
}

fn value_to_json(v: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        // Struct numbers are doubles; whole ones go out as integers, which strict APIs want for counts.
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 => {
            Value::from(*n as i64)
        }
        Some(Kind::NumberValue(n)) => {
            serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
        }
        Some(Kind::StringValue(s)) => Value::from(s.as_str()),
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StructValue(s)) => Value::Object(struct_to_json(s)),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(value_to_json).collect()),
    }
}

pub fn json_to_struct(map: Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map
            .into_iter()
            .map(|(k, v)| (k, json_to_value(v)))
            .collect(),
    }
}

fn json_to_value(v: Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.into_iter().map(json_to_value).collect(),
        }),
        Value::Object(m) => Kind::StructValue(json_to_struct(m)),
    };
    prost_types::Value { kind: Some(kind) }
}

// ---- answers ---------------------------------------------------------------------------------------------------

pub(crate) fn from_wire_calls(calls: Vec<AnswerToolCall>) -> Vec<ToolCall> {
    calls
        .into_iter()
        .map(|c| ToolCall {
            id: c.id,
            name: c.function.name,
            arguments: c.function.arguments,
        })
        .collect()
}

/// Adds an answer's (or a chunk's) log probabilities to `kept`, whose size so far is `bytes`; refused past
/// [`MAX_LOGPROB_BYTES`].
pub(crate) fn add_logprobs(
    kept: &mut Vec<TokenLogprob>,
    bytes: &mut usize,
    l: Option<Logprobs>,
) -> Result<(), String> {
    let Some(content) = l.and_then(|l| l.content) else {
        return Ok(());
    };
    for t in &content {
        *bytes += t.token.len() + 16;
        *bytes += t
            .top_logprobs
            .iter()
            .map(|t| t.token.len() + 16)
            .sum::<usize>();
    }
    if *bytes > MAX_LOGPROB_BYTES {
        return Err(format!("logprobs over {MAX_LOGPROB_BYTES} bytes"));
    }
    kept.extend(from_wire_logprobs(content));
    Ok(())
}

fn from_wire_logprobs(
    content: Vec<crate::upstream::openai::wire::WireLogprob>,
) -> Vec<TokenLogprob> {
    content
        .into_iter()
        .map(|t| TokenLogprob {
            token: t.token,
            logprob: t.logprob,
            top_logprobs: t
                .top_logprobs
                .into_iter()
                .map(|t| TopLogprob {
                    token: t.token,
                    logprob: t.logprob,
                })
                .collect(),
        })
        .collect()
}

/// Adds a chunk's tool-call pieces to the calls re-assembled so far: by `index`, the first piece brings the id
/// and name, later ones append to the arguments. Bounded: an upstream cannot make the gateway hold more than
/// [`MAX_TOOL_CALLS`] calls or [`MAX_TOOL_CALL_BYTES`] of arguments.
pub(crate) fn merge_tool_deltas(
    calls: &mut Vec<ToolCall>,
    deltas: Vec<ToolCallDelta>,
    emit: &mut impl FnMut(crate::proto::ToolCallDelta),
) -> Result<(), String> {
    for d in deltas {
        if d.index >= MAX_TOOL_CALLS {
            return Err(format!("tool call index {} over {MAX_TOOL_CALLS}", d.index));
        }
        if calls.len() <= d.index {
            calls.resize_with(d.index + 1, ToolCall::default);
        }
        let call = &mut calls[d.index];
        let mut out = crate::proto::ToolCallDelta {
            index: d.index as u32,
            ..Default::default()
        };
        if let Some(id) = d.id.filter(|id| !id.is_empty()) {
            call.id.clone_from(&id);
            out.id = id;
        }
        if let Some(f) = d.function {
            if let Some(name) = f.name {
                call.name.push_str(&name);
                out.name = name;
            }
            if let Some(args) = f.arguments {
                call.arguments.push_str(&args);
                out.arguments = args;
            }
        }
        if !(out.id.is_empty() && out.name.is_empty() && out.arguments.is_empty()) {
            emit(out);
        }
    }
    let bytes: usize = calls.iter().map(|c| c.arguments.len() + c.name.len()).sum();
    if bytes > MAX_TOOL_CALL_BYTES {
        return Err(format!("tool calls over {MAX_TOOL_CALL_BYTES} bytes"));
    }
    Ok(())
}

/// What an image counts for in the gateway's estimates, in bytes of text: about 1,600 tokens, a large image's
/// price at OpenAI and Anthropic (its own size says little: a megabyte of PNG is not 250,000 tokens).
const IMAGE_BYTES: usize = 6_400;

/// A message's size in bytes for the gateway's token estimates: its text, text parts, images (a fixed
/// allowance each) and tool calls (names and arguments).
pub(crate) fn size(m: &Message) -> usize {
    let parts: usize = m
        .parts
        .iter()
        .filter_map(|p| p.part.as_ref())
        .map(|p| match p {
            Part::Text(t) => t.len(),
            Part::ImageUrl(_) | Part::Image(_) => IMAGE_BYTES,
            Part::Opaque(block) => block.json.len(),
        })
        .sum();
    let calls: usize = m
        .tool_calls
        .iter()
        .map(|c| c.name.len() + c.arguments.len())
        .sum();
    m.content.len() + parts + calls
}

#[cfg(test)]
mod tests;
