//! The Anthropic Messages API dialect (`kind = "anthropic"`): the gateway's request (OpenAI-shaped, see
//! `openai::ChatRequest`) translated to `POST {base_url}/messages`, and Anthropic's answers and stream events
//! translated back. Pure functions and a small stream state; the HTTP client is `http.rs`'s.
//!
//! Translation choices: system and developer messages become the top-level `system`; `tool` messages become
//! `tool_result` blocks in a user turn; consecutive messages of one role are merged into one turn (Anthropic
//! wants tool results for one assistant turn together); `max_tokens` is required (the dispatcher fills the
//! model's `default_output_tokens` when the client sets none); temperature is capped at 1 (Anthropic's range);
//! `seed` and the penalties have no Anthropic counterpart and are not sent; `logprobs` and JSON response formats
//! are refused (INVALID_ARGUMENT) rather than silently dropped. The reasoning request becomes `thinking`, and an
//! assistant message's signed thinking and redacted blocks go first in its turn, byte-exact
//! (`upstream::reasoning`). Streams hand out thinking, signature and tool-input pieces as they arrive; pings and
//! other events are signs of life.

use serde_json::{json, Map, Value};

use crate::{
    error::GatewayError,
    upstream::openai::wire::{ChatContent, ChatMessage, ChatPart, ChatRequest},
};

/// The API version every request names (`anthropic-version`).
pub(crate) const VERSION: &str = "2023-06-01";

fn unsupported(what: &str) -> GatewayError {
    GatewayError::InvalidArgument(format!(
        "{what}: not supported by upstreams of kind \"anthropic\""
    ))
}

/// The request body.
pub(crate) fn request(req: &ChatRequest<'_>) -> Result<Value, GatewayError> {
    if req.logprobs || req.top_logprobs.is_some() {
        return Err(unsupported("config.logprobs"));
    }
    if let Some(format) = &req.response_format {
        if format["type"] != "text" {
            return Err(unsupported("config.response_format"));
        }
    }
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    for m in &req.messages {
        let (role, mut blocks) = match m.role {
            "system" | "developer" => {
                system.push(text_block(&m.text()));
                mark_last(&mut system, m.cache_control.as_ref());
                continue;
            }
            "tool" => ("user", vec![tool_result(m)]),
            "assistant" => ("assistant", assistant_blocks(m)),
            _ => ("user", content_blocks(m)),
        };
        mark_last(&mut blocks, m.cache_control.as_ref());
        match turns.last_mut() {
            Some((last, merged)) if *last == role => merged.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    let mut body = Map::new();
    body.insert("model".into(), Value::from(req.model));
    body.insert("messages".into(), Value::Array(messages));
    // One string unless a cache mark needs the block form.
    let marked = system.iter().any(|b| b.get("cache_control").is_some());
    match system.len() {
        0 => {}
        _ if marked => {
            body.insert("system".into(), Value::Array(system));
        }
        _ => {
            let texts: Vec<&str> = system.iter().filter_map(|b| b["text"].as_str()).collect();
            body.insert("system".into(), Value::from(texts.join("\n\n")));
        }
    }
    let max = req.max_output_tokens().unwrap_or(1);
    body.insert("max_tokens".into(), Value::from(max));
    if let Some(thinking) = req
        .reasoning
        .and_then(|r| super::reasoning::anthropic_thinking(r, max))
    {
        body.insert("thinking".into(), thinking);
    }
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), float(t.min(1.0)));
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), float(p));
    }
    if !req.stop.is_empty() {
        body.insert("stop_sequences".into(), Value::from(req.stop.to_vec()));
    }
    if req.stream {
        body.insert("stream".into(), Value::Bool(true));
    }
    if let Some(user) = req.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    if !req.tools.is_empty() {
        let marks = req.tool_cache_control.iter().map(Option::as_ref);
        let fields = req.tool_anthropic_fields.iter().map(Option::as_ref);
        let tools = req
            .tools
            .iter()
            .zip(marks.chain(std::iter::repeat(None)))
            .zip(fields.chain(std::iter::repeat(None)))
            .map(|((t, mark), fields)| {
                let mut t = tool(t);
                if let Some(mark) = mark {
                    t["cache_control"] = mark.clone();
                }
                // What the client sent that the gateway does not model, as it sent it.
                if let (Value::Object(out), Some(fields)) = (&mut t, fields) {
                    for (k, v) in fields {
                        out.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                t
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = tool_choice(req.tool_choice.as_ref(), req.parallel_tool_calls) {
        body.insert("tool_choice".into(), choice);
    }
    // Fields the client sent in Anthropic's own dialect travel as they are; the gateway's own win, but server
    // tools join the client's tools.
    for (k, v) in req.anthropic_options.iter().chain(&req.provider_options) {
        match (body.get_mut(k.as_str()), v) {
            (Some(Value::Array(tools)), Value::Array(server)) if k == "tools" => {
                tools.extend(server.iter().cloned())
            }
            (Some(_), _) => {}
            (None, v) => {
                body.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(Value::Object(body))
}

/// A float as the client wrote it: `0.9f32` widened to f64 would go out as 0.8999999761581421.
pub(crate) fn float(v: f32) -> Value {
    v.to_string()
        .parse::<f64>()
        .map_or(Value::Null, Value::from)
}

/// Puts a message's cache mark on its last block, where Anthropic reads it.
fn mark_last(blocks: &mut [Value], mark: Option<&Value>) {
    if let (Some(last), Some(mark)) = (blocks.last_mut(), mark) {
        last["cache_control"] = mark.clone();
    }
}

fn text_block(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

/// A message's blocks: text, images by URL or inline (`data:` URLs become base64 sources), and Anthropic's
/// own blocks the gateway does not model, as the client sent them (other APIs' are left out).
fn content_blocks(m: &ChatMessage<'_>) -> Vec<Value> {
    match &m.content {
        None => Vec::new(),
        Some(ChatContent::Text(t)) => vec![text_block(t)],
        Some(ChatContent::Parts(parts) | ChatContent::Flattened(parts)) => parts
            .iter()
            .filter_map(|p| match p {
                ChatPart::Text { text } => Some(text_block(text)),
                ChatPart::ImageUrl { image_url } => Some(image(&image_url.url)),
                ChatPart::Opaque {
                    dialect: "anthropic",
                    json,
                } => serde_json::from_str(json).ok(),
                ChatPart::Opaque { .. } => None,
            })
            .collect(),
    }
}

fn image(url: &str) -> Value {
    let inline = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"));
    match inline {
        Some((media_type, data)) => json!({"type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data}}),
        None => json!({"type": "image", "source": {"type": "url", "url": url}}),
    }
}

fn assistant_blocks(m: &ChatMessage<'_>) -> Vec<Value> {
    // Thinking goes first, as the model wrote it: Anthropic checks the signatures of the last turn's blocks.
    let mut blocks: Vec<Value> = super::reasoning::anthropic_blocks(m.reasoning).collect();
    match &m.content {
        // Server tools' blocks (`server_tool_use`, `web_search_tool_result`, ...) among the text, in order.
        Some(ChatContent::Flattened(_)) => blocks.extend(content_blocks(m)),
        _ => {
            let text = m.text();
            if !text.is_empty() {
                blocks.push(text_block(&text));
            }
        }
    }
    for call in &m.tool_calls {
        blocks.push(tool_use_block(
            call.id,
            call.function.name,
            call.function.arguments,
        ));
    }
    blocks
}

/// A tool call as Anthropic writes it. The model wrote the arguments as text; Anthropic wants the object they
/// spell (the empty object when they spell none).
pub(crate) fn tool_use_block(id: &str, name: &str, arguments: &str) -> Value {
    json!({"type": "tool_use", "id": id, "name": name, "input": tool_input(arguments)})
}

pub(crate) fn tool_input(arguments: &str) -> Value {
    serde_json::from_str(arguments)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}))
}

/// A tool's result: its text, or its blocks (images, documents, tool references) when it has more than text.
fn tool_result(m: &ChatMessage<'_>) -> Value {
    let content = match &m.content {
        Some(ChatContent::Flattened(_)) => Value::Array(content_blocks(m)),
        _ => Value::from(m.text()),
    };
    json!({"type": "tool_result", "tool_use_id": m.tool_call_id.unwrap_or_default(),
           "content": content})
}

/// An OpenAI function definition as an Anthropic tool.
fn tool(t: &Value) -> Value {
    let f = &t["function"];
    let mut out = Map::new();
    out.insert("name".into(), f["name"].clone());
    if let Some(d) = f["description"].as_str() {
        out.insert("description".into(), Value::from(d));
    }
    let schema = match &f["parameters"] {
        Value::Object(_) => f["parameters"].clone(),
        _ => json!({"type": "object", "properties": {}}),
    };
    out.insert("input_schema".into(), schema);
    Value::Object(out)
}

fn tool_choice(choice: Option<&Value>, parallel: Option<bool>) -> Option<Value> {
    let mut out = match choice {
        None if parallel.is_none() => return None,
        None => json!({"type": "auto"}),
        Some(Value::String(mode)) => match mode.as_str() {
            "none" => json!({"type": "none"}),
            "required" => json!({"type": "any"}),
            _ => json!({"type": "auto"}),
        },
        Some(named) => json!({"type": "tool", "name": named["function"]["name"]}),
    };
    if parallel == Some(false) && out["type"] != "none" {
        out["disable_parallel_tool_use"] = Value::Bool(true);
    }
    Some(out)
}

mod answer;

pub(crate) use answer::{completion, event, stop_reason, StreamState};

#[cfg(test)]
mod tests;
