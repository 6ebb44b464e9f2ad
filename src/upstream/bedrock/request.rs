//! The Converse request body, typed and written straight from the call's request (borrowing its text).

use std::{borrow::Cow, collections::BTreeMap};

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::{unsupported, JSON_TOOL};
use crate::{
    error::GatewayError,
    proto::Reasoning,
    upstream::openai::{
        extras::inline_image,
        wire::{bedrock_takes, ChatContent, ChatMessage, ChatPart, ChatRequest},
    },
};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Request<'a> {
    messages: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<Block<'a>>,
    #[serde(skip_serializing_if = "Inference::is_empty")]
    inference_config: Inference<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'a>>,
    /// The model's own fields (Claude's `thinking` and `top_k`, gpt-oss's `reasoning_effort`, ...).
    #[serde(skip_serializing_if = "Map::is_empty")]
    additional_model_request_fields: Map<String, Value>,
    /// What the client sent in Bedrock's dialect, or Converse's own fields for any provider, that the gateway
    /// does not set itself.
    #[serde(flatten)]
    rest: BTreeMap<&'a str, &'a Value>,
}

#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

/// A content block: one of Converse's kinds, named as Converse names it; or a block the client sent in
/// Bedrock's own form, as it was sent.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Block<'a> {
    Text(Cow<'a, str>),
    Image(Image<'a>),
    ToolUse(ToolUse<'a>),
    ToolResult(ToolResult<'a>),
    ReasoningContent(ReasoningContent<'a>),
    CachePoint(CachePoint),
    #[serde(untagged)]
    Opaque(Value),
}

#[derive(Serialize)]
struct Image<'a> {
    format: &'a str,
    source: ImageSource<'a>,
}

#[derive(Serialize)]
struct ImageSource<'a> {
    bytes: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolUse<'a> {
    tool_use_id: &'a str,
    name: &'a str,
    input: Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolResult<'a> {
    tool_use_id: &'a str,
    content: Vec<Block<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum ReasoningContent<'a> {
    ReasoningText { text: &'a str, signature: &'a str },
    RedactedContent(&'a str),
}

#[derive(Serialize)]
struct CachePoint {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Inference<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<Value>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
}

impl Inference<'_> {
    fn is_empty(&self) -> bool {
        self.max_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.stop_sequences.is_empty()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'a> {
    tools: Vec<ToolEntry<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum ToolEntry<'a> {
    ToolSpec(ToolSpec<'a>),
    CachePoint(CachePoint),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolSpec<'a> {
    name: Cow<'a, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: InputSchema<'a>,
}

#[derive(Serialize)]
struct InputSchema<'a> {
    json: Cow<'a, Value>,
}

const CACHE_POINT: CachePoint = CachePoint { kind: "default" };

/// The request body for `req` (the model is in the URL, not the body).
pub(super) fn request<'a>(req: &'a ChatRequest<'a>) -> Result<Request<'a>, GatewayError> {
    if req.logprobs || req.top_logprobs.is_some() {
        return Err(unsupported("config.logprobs"));
    }
    let mut system: Vec<Block<'a>> = Vec::new();
    let mut turns: Vec<Turn<'a>> = Vec::new();
    for m in &req.messages {
        let marked = m.cache_control.is_some();
        let (role, mut blocks) = match m.role {
            "system" | "developer" => {
                system.push(Block::Text(m.text()));
                if marked {
                    system.push(Block::CachePoint(CACHE_POINT));
                }
                continue;
            }
            "tool" => ("user", vec![tool_result(m)?]),
            "assistant" => ("assistant", assistant_blocks(m)?),
            _ => ("user", content_blocks(m)?),
        };
        if marked {
            blocks.push(Block::CachePoint(CACHE_POINT));
        }
        // Consecutive messages of one role are one turn (a step's tool results together), as Converse wants.
        match turns.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => turns.push(Turn {
                role,
                content: blocks,
            }),
        }
    }
    let max_tokens = req.max_output_tokens();
    let mut additional = Map::new();
    let claude = req.model.contains("anthropic.") || req.model.contains("claude");
    if let Some(r) = req.reasoning {
        if claude {
            let limit = max_tokens.unwrap_or(u32::MAX);
            if let Some(thinking) = crate::upstream::reasoning::anthropic_thinking(r, limit) {
                additional.insert("thinking".into(), thinking);
            }
        } else if let Some(effort) = crate::upstream::reasoning::effort(r) {
            additional.insert("reasoning_effort".into(), Value::from(effort));
        }
    }
    let mut body = Request {
        messages: turns,
        system,
        inference_config: Inference {
            max_tokens,
            // Claude's range is 0 to 1; other models' is their own.
            temperature: req
                .temperature
                .map(|t| if claude { t.min(1.0) } else { t })
                .map(crate::upstream::anthropic::float),
            top_p: req.top_p.map(crate::upstream::anthropic::float),
            stop_sequences: req.stop,
        },
        tool_config: tool_config(req)?,
        additional_model_request_fields: additional,
        rest: BTreeMap::new(),
    };
    // Top-k, which the Messages door spells `top_k`, is a field of the model's own.
    if let Some(k) = req.provider_options.get("top_k").filter(|k| k.is_u64()) {
        body.additional_model_request_fields
            .insert("top_k".into(), k.clone());
    }
    let any_provider = req
        .provider_options
        .iter()
        .filter(|(k, _)| *k != "top_k" && bedrock_takes(k));
    for (k, v) in req.bedrock_options.iter().chain(any_provider) {
        match (k.as_str(), v) {
            _ if body.rest.contains_key(k.as_str()) => {}
            ("additionalModelRequestFields", Value::Object(fields)) => {
                for (k, v) in fields {
                    body.additional_model_request_fields
                        .entry(k.clone())
                        .or_insert_with(|| v.clone());
                }
            }
            ("messages" | "system" | "inferenceConfig" | "toolConfig", _) => {}
            (k, v) => {
                body.rest.insert(k, v);
            }
        }
    }
    Ok(body)
}

/// A user message's blocks: text, inline images, and Bedrock's own blocks (documents, videos, ...) as the
/// client sent them. Converse takes images only as bytes: an image by URL is refused, not dropped.
fn content_blocks<'a>(m: &'a ChatMessage<'a>) -> Result<Vec<Block<'a>>, GatewayError> {
    match &m.content {
        None => Ok(Vec::new()),
        Some(ChatContent::Text(t)) => Ok(vec![Block::Text(Cow::Borrowed(t))]),
        Some(ChatContent::Parts(parts) | ChatContent::Flattened(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for p in parts {
                match p {
                    ChatPart::Text { text } => out.push(Block::Text(Cow::Borrowed(text))),
                    ChatPart::ImageUrl { image_url } => out.push(image(&image_url.url)?),
                    ChatPart::Opaque {
                        dialect: "bedrock",
                        json,
                    } => {
                        if let Ok(block) = serde_json::from_str(json) {
                            out.push(Block::Opaque(block));
                        }
                    }
                    ChatPart::Opaque { .. } => {}
                }
            }
            Ok(out)
        }
    }
}

fn image(url: &str) -> Result<Block<'_>, GatewayError> {
    let (media_type, bytes) = inline_image(url)
        .ok_or_else(|| unsupported("an image by URL (Converse takes inline images only)"))?;
    let format = media_type
        .strip_prefix("image/")
        .filter(|f| ["png", "jpeg", "gif", "webp"].contains(f))
        .ok_or_else(|| unsupported(&format!("an image of type {media_type}")))?;
    Ok(Block::Image(Image {
        format,
        source: ImageSource { bytes },
    }))
}

/// An assistant turn: its signed reasoning first, byte-exact, then its text, then its tool calls. Unsigned
/// reasoning text (another provider's) is not Bedrock's to check and is left out.
fn assistant_blocks<'a>(m: &'a ChatMessage<'a>) -> Result<Vec<Block<'a>>, GatewayError> {
    let mut blocks: Vec<Block<'a>> = reasoning_blocks(m.reasoning).collect();
    match &m.content {
        Some(ChatContent::Flattened(_)) => blocks.extend(content_blocks(m)?),
        _ => {
            let text = m.text();
            if !text.is_empty() {
                blocks.push(Block::Text(text));
            }
        }
    }
    for call in &m.tool_calls {
        if call.function.name == JSON_TOOL {
            return Err(GatewayError::InvalidArgument(format!(
                "tool name {JSON_TOOL}: reserved by the gateway for JSON output on Bedrock"
            )));
        }
        blocks.push(Block::ToolUse(ToolUse {
            tool_use_id: call.id,
            name: call.function.name,
            input: crate::upstream::anthropic::tool_input(call.function.arguments),
        }));
    }
    Ok(blocks)
}

fn reasoning_blocks(blocks: &[Reasoning]) -> impl Iterator<Item = Block<'_>> {
    blocks.iter().filter_map(|b| {
        if !b.redacted.is_empty() {
            Some(Block::ReasoningContent(ReasoningContent::RedactedContent(
                &b.redacted,
            )))
        } else if !b.signature.is_empty() && b.id.is_empty() {
            Some(Block::ReasoningContent(ReasoningContent::ReasoningText {
                text: &b.text,
                signature: &b.signature,
            }))
        } else {
            None
        }
    })
}

/// A tool's result: its text, or its blocks (images among them) when it has more than text.
fn tool_result<'a>(m: &'a ChatMessage<'a>) -> Result<Block<'a>, GatewayError> {
    let content = match &m.content {
        Some(ChatContent::Flattened(_)) => content_blocks(m)?,
        _ => vec![Block::Text(m.text())],
    };
    Ok(Block::ToolResult(ToolResult {
        tool_use_id: m.tool_call_id.unwrap_or_default(),
        content,
    }))
}

/// The client's tools as Converse's, each followed by a cache point when it is marked; JSON output as the one
/// tool the model must call (`JSON_TOOL`), whose input is the answer.
fn tool_config<'a>(req: &'a ChatRequest<'a>) -> Result<Option<ToolConfig<'a>>, GatewayError> {
    let mut tools = Vec::new();
    let marks = req.tool_cache_control.iter().map(Option::is_some);
    for (t, marked) in req.tools.iter().zip(marks.chain(std::iter::repeat(false))) {
        let f = &t["function"];
        if f["name"] == JSON_TOOL {
            return Err(GatewayError::InvalidArgument(format!(
                "tool name {JSON_TOOL}: reserved by the gateway for JSON output on Bedrock"
            )));
        }
        tools.push(ToolEntry::ToolSpec(ToolSpec {
            name: Cow::Borrowed(&f["name"]),
            description: f["description"].as_str(),
            input_schema: InputSchema {
                json: match &f["parameters"] {
                    schema @ Value::Object(_) => Cow::Borrowed(schema),
                    _ => Cow::Owned(json!({"type": "object", "properties": {}})),
                },
            },
        }));
        if marked {
            tools.push(ToolEntry::CachePoint(CACHE_POINT));
        }
    }
    let json_schema = match &req.response_format {
        Some(f) if f["type"] == "json_schema" => {
            Some(Cow::Borrowed(&f["json_schema"]["schema"])).filter(|s| s.is_object())
        }
        Some(f) if f["type"] == "json_object" => Some(Cow::Owned(json!({"type": "object"}))),
        _ => None,
    };
    if let Some(schema) = json_schema {
        tools.push(ToolEntry::ToolSpec(ToolSpec {
            name: Cow::Owned(Value::from(JSON_TOOL)),
            description: Some("Write the answer as this tool's input."),
            input_schema: InputSchema { json: schema },
        }));
        return Ok(Some(ToolConfig {
            tools,
            tool_choice: Some(json!({"tool": {"name": JSON_TOOL}})),
        }));
    }
    if tools.is_empty() {
        return Ok(None);
    }
    // Converse has no "none": the tools stay (a turn with tool calls in it needs them) and the model chooses.
    let tool_choice = match &req.tool_choice {
        Some(Value::String(mode)) if mode == "required" => Some(json!({"any": {}})),
        Some(Value::String(_)) | None => None,
        Some(named) => Some(json!({"tool": {"name": named["function"]["name"]}})),
    };
    Ok(Some(ToolConfig { tools, tool_choice }))
}
