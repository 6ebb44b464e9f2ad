//! The request and answer fields beyond plain text — tools, tool results, response formats, images, sampling
//! extras, logprobs and provider options: their checks and their OpenAI JSON. Pure functions, like `convert`.

use std::borrow::Cow;

use serde_json::{json, Map, Value};

use crate::{
    proto::{
        content_part::Part, response_format::Format, tool_choice::Choice, CacheControl, Message,
        ResponseFormat, TokenLogprob, Tool, ToolCall, ToolChoice, TopLogprob,
    },
    upstream::openai::wire::{
        AnswerToolCall, ChatContent, ChatPart, ImageUrl, Logprobs, ToolCallDelta, WireFunction,
        WireToolCall,
    },
};

/// Image types every major provider accepts inline.
pub(crate) const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// An inline image's media type and base64 data, from its `data:` URL; `None` for an image by address.
pub(crate) fn inline_image(url: &str) -> Option<(&str, &str)> {
    url.strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
}

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
            index: u32::try_from(d.index).unwrap_or(u32::MAX),
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
