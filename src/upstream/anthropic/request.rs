//! The Messages API request body, typed: what the gateway sends is written straight from the call's request,
//! borrowing its text (an agent's turn is 100 KiB and more of it), rather than built as a JSON tree first.

use std::{borrow::Cow, collections::BTreeMap};

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::unsupported;
use crate::{
    error::GatewayError,
    proto::Reasoning,
    upstream::openai::wire::{ChatContent, ChatMessage, ChatPart, ChatRequest},
};

#[derive(Serialize)]
pub(super) struct Request<'a> {
    model: &'a str,
    messages: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<System<'a>>,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<Value>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolDef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    /// What the client sent in Anthropic's dialect, or for any provider, that the gateway does not set itself.
    #[serde(flatten)]
    rest: BTreeMap<&'a str, &'a Value>,
}

#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    user_id: &'a str,
}

/// The system prompt: one string, unless a cache mark needs the block form.
#[derive(Serialize)]
#[serde(untagged)]
enum System<'a> {
    Text(String),
    Blocks(Vec<Block<'a>>),
}

/// A content block. Those the gateway writes are typed; a block the client sent that the gateway does not
/// model goes as it was sent.
#[derive(Serialize)]
#[serde(untagged)]
enum Block<'a> {
    Typed {
        #[serde(flatten)]
        kind: Kind<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    Opaque(Value),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Kind<'a> {
    Text {
        text: Cow<'a, str>,
    },
    Image {
        source: Source<'a>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: ToolContent<'a>,
    },
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    RedactedThinking {
        data: &'a str,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Source<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

/// A tool's result: its text, or its blocks when it has more than text.
#[derive(Serialize)]
#[serde(untagged)]
enum ToolContent<'a> {
    Text(Cow<'a, str>),
    Blocks(Vec<Block<'a>>),
}

/// A tool the client defined, or a server tool (web search, code execution, ...) as the client sent it.
#[derive(Serialize)]
#[serde(untagged)]
enum ToolDef<'a> {
    Client {
        name: &'a Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        description: Option<&'a str>,
        input_schema: Cow<'a, Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
        /// The tool's fields for Anthropic upstreams only (`defer_loading`, ...), as the client sent them.
        #[serde(flatten)]
        fields: BTreeMap<&'a str, &'a Value>,
    },
    Server(&'a Value),
}

impl<'a> Block<'a> {
    fn typed(kind: Kind<'a>) -> Self {
        Self::Typed {
            kind,
            cache_control: None,
        }
    }

    fn text(text: impl Into<Cow<'a, str>>) -> Self {
        Self::typed(Kind::Text { text: text.into() })
    }

    /// Puts a message's cache mark on the block, where Anthropic reads it.
    fn mark(&mut self, mark: &'a Value) {
        match self {
            Self::Typed { cache_control, .. } => *cache_control = Some(mark),
            Self::Opaque(Value::Object(block)) => {
                block.insert("cache_control".into(), mark.clone());
            }
            Self::Opaque(_) => {}
        }
    }

    fn marked(&self) -> bool {
        match self {
            Self::Typed { cache_control, .. } => cache_control.is_some(),
            Self::Opaque(block) => block.get("cache_control").is_some(),
        }
    }
}

/// The request body for `req`.
pub(super) fn request<'a>(req: &'a ChatRequest<'a>) -> Result<Request<'a>, GatewayError> {
    if req.logprobs || req.top_logprobs.is_some() {
        return Err(unsupported("config.logprobs"));
    }
    if let Some(format) = &req.response_format {
        if format["type"] != "text" {
            return Err(unsupported("config.response_format"));
        }
    }
    let mut system: Vec<Block<'a>> = Vec::new();
    let mut turns: Vec<Turn<'a>> = Vec::new();
    for m in &req.messages {
        let (role, mut blocks) = match m.role {
            "system" | "developer" => {
                system.push(Block::text(m.text()));
                mark_last(&mut system, m.cache_control.as_ref());
                continue;
            }
            "tool" => ("user", vec![tool_result(m)]),
            "assistant" => ("assistant", assistant_blocks(m)),
            _ => ("user", content_blocks(m)),
        };
        mark_last(&mut blocks, m.cache_control.as_ref());
        // Consecutive messages of one role are one turn (a tool call's results together).
        match turns.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => turns.push(Turn {
                role,
                content: blocks,
            }),
        }
    }
    let system = match system.len() {
        0 => None,
        _ if system.iter().any(Block::marked) => Some(System::Blocks(system)),
        _ => Some(System::Text(
            system
                .iter()
                .filter_map(|b| match b {
                    Block::Typed {
                        kind: Kind::Text { text },
                        ..
                    } => Some(text.as_ref()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n\n"),
        )),
    };
    let max_tokens = req.max_output_tokens().unwrap_or(1);
    let mut body = Request {
        model: req.model,
        messages: turns,
        system,
        max_tokens,
        thinking: req
            .reasoning
            .and_then(|r| crate::upstream::reasoning::anthropic_thinking(r, max_tokens)),
        temperature: req.temperature.map(|t| super::float(t.min(1.0))),
        top_p: req.top_p.map(super::float),
        stop_sequences: req.stop,
        stream: req.stream,
        metadata: req.user.map(|user_id| Metadata { user_id }),
        tools: tools(req),
        tool_choice: tool_choice(req.tool_choice.as_ref(), req.parallel_tool_calls),
        rest: BTreeMap::new(),
    };
    // Fields the client sent in Anthropic's own dialect travel as they are; the gateway's own win, but server
    // tools join the client's tools.
    for (k, v) in req.anthropic_options.iter().chain(&req.provider_options) {
        match (k.as_str(), v) {
            _ if body.rest.contains_key(k.as_str()) => {}
            ("tools", Value::Array(server)) => {
                body.tools.extend(server.iter().map(ToolDef::Server));
            }
            (k, v) if !body.sets(k) => {
                body.rest.insert(k, v);
            }
            _ => {}
        }
    }
    Ok(body)
}

impl Request<'_> {
    /// Whether the gateway set this field itself.
    fn sets(&self, key: &str) -> bool {
        match key {
            "model" | "messages" | "max_tokens" => true,
            "system" => self.system.is_some(),
            "thinking" => self.thinking.is_some(),
            "temperature" => self.temperature.is_some(),
            "top_p" => self.top_p.is_some(),
            "stop_sequences" => !self.stop_sequences.is_empty(),
            "stream" => self.stream,
            "metadata" => self.metadata.is_some(),
            "tools" => !self.tools.is_empty(),
            "tool_choice" => self.tool_choice.is_some(),
            _ => false,
        }
    }
}

/// Puts a message's cache mark on its last block, where Anthropic reads it.
fn mark_last<'a>(blocks: &mut [Block<'a>], mark: Option<&'a Value>) {
    if let (Some(last), Some(mark)) = (blocks.last_mut(), mark) {
        last.mark(mark);
    }
}

/// A message's blocks: text, images by URL or inline (`data:` URLs become base64 sources), and Anthropic's
/// own blocks the gateway does not model, as the client sent them (other APIs' are left out).
fn content_blocks<'a>(m: &'a ChatMessage<'a>) -> Vec<Block<'a>> {
    match &m.content {
        None => Vec::new(),
        Some(ChatContent::Text(t)) => vec![Block::text(*t)],
        Some(ChatContent::Parts(parts) | ChatContent::Flattened(parts)) => parts
            .iter()
            .filter_map(|p| match p {
                ChatPart::Text { text } => Some(Block::text(*text)),
                ChatPart::ImageUrl { image_url } => Some(image(&image_url.url)),
                ChatPart::Opaque {
                    dialect: "anthropic",
                    json,
                } => serde_json::from_str(json).ok().map(Block::Opaque),
                ChatPart::Opaque { .. } => None,
            })
            .collect(),
    }
}

fn image(url: &str) -> Block<'_> {
    let source = match crate::upstream::openai::extras::inline_image(url) {
        Some((media_type, data)) => Source::Base64 { media_type, data },
        None => Source::Url { url },
    };
    Block::typed(Kind::Image { source })
}

fn assistant_blocks<'a>(m: &'a ChatMessage<'a>) -> Vec<Block<'a>> {
    // Thinking goes first, as the model wrote it: Anthropic checks the signatures of the last turn's blocks.
    let mut blocks: Vec<Block<'a>> = thinking_blocks(m.reasoning).collect();
    match &m.content {
        // Server tools' blocks (`server_tool_use`, `web_search_tool_result`, ...) among the text, in order.
        Some(ChatContent::Flattened(_)) => blocks.extend(content_blocks(m)),
        _ => {
            let text = m.text();
            if !text.is_empty() {
                blocks.push(Block::text(text));
            }
        }
    }
    for call in &m.tool_calls {
        blocks.push(Block::typed(Kind::ToolUse {
            id: call.id,
            name: call.function.name,
            input: super::tool_input(call.function.arguments),
        }));
    }
    blocks
}

/// An assistant turn's reasoning as Anthropic wants it back: signed thinking and redacted blocks, byte-exact;
/// unsigned text (another provider's reasoning) is not Anthropic's to check and is left out.
fn thinking_blocks(blocks: &[Reasoning]) -> impl Iterator<Item = Block<'_>> {
    blocks.iter().filter_map(|b| {
        if !b.redacted.is_empty() {
            Some(Block::typed(Kind::RedactedThinking { data: &b.redacted }))
        } else if !b.signature.is_empty() {
            Some(Block::typed(Kind::Thinking {
                thinking: &b.text,
                signature: &b.signature,
            }))
        } else {
            None
        }
    })
}

/// A tool's result: its text, or its blocks (images, documents, tool references) when it has more than text.
fn tool_result<'a>(m: &'a ChatMessage<'a>) -> Block<'a> {
    let content = match &m.content {
        Some(ChatContent::Flattened(_)) => ToolContent::Blocks(content_blocks(m)),
        _ => ToolContent::Text(m.text()),
    };
    Block::typed(Kind::ToolResult {
        tool_use_id: m.tool_call_id.unwrap_or_default(),
        content,
    })
}

/// The client's tools (OpenAI function definitions) as Anthropic's, each with its cache mark and its
/// Anthropic-only fields (the gateway's own win).
fn tools<'a>(req: &'a ChatRequest<'a>) -> Vec<ToolDef<'a>> {
    let marks = req.tool_cache_control.iter().map(Option::as_ref);
    let fields = req.tool_anthropic_fields.iter().map(Option::as_ref);
    req.tools
        .iter()
        .zip(marks.chain(std::iter::repeat(None)))
        .zip(fields.chain(std::iter::repeat(None)))
        .map(|((t, cache_control), fields)| {
            let f = &t["function"];
            let description = f["description"].as_str();
            let set = |k: &str| match k {
                "name" | "input_schema" => true,
                "description" => description.is_some(),
                "cache_control" => cache_control.is_some(),
                _ => false,
            };
            let fields = fields.map_or_else(BTreeMap::new, |fields: &'a Map<String, Value>| {
                fields
                    .iter()
                    .filter(|(k, _)| !set(k))
                    .map(|(k, v)| (k.as_str(), v))
                    .collect()
            });
            ToolDef::Client {
                name: &f["name"],
                description,
                input_schema: match &f["parameters"] {
                    schema @ Value::Object(_) => Cow::Borrowed(schema),
                    _ => Cow::Owned(json!({"type": "object", "properties": {}})),
                },
                cache_control,
                fields,
            }
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Signed thinking and redacted blocks go back byte-exact; unsigned text is another provider's and is left out.
    #[test]
    fn reasoning_goes_back_as_signed_blocks() {
        let block = |text: &str, signature: &str, redacted: &str| Reasoning {
            text: text.into(),
            signature: signature.into(),
            redacted: redacted.into(),
            id: String::new(),
        };
        let blocks = [
            block("Let me think", "sig/+=", ""),
            block("", "", "EncRypted=="),
            block(" more", "", ""),
        ];
        let out: Vec<Value> = thinking_blocks(&blocks)
            .map(|b| serde_json::to_value(b).unwrap())
            .collect();
        assert_eq!(
            out,
            [
                json!({"type": "thinking", "thinking": "Let me think", "signature": "sig/+="}),
                json!({"type": "redacted_thinking", "data": "EncRypted=="}),
            ]
        );
    }
}
