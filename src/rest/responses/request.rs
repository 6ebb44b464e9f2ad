//! A Responses API request (`POST /v1/responses`) read into the gRPC request's parts: `input` (a string or a
//! list of items: messages, function calls and their outputs) becomes messages, `instructions` a system
//! message in front, `tools` (flat function definitions), `tool_choice`, `text.format`, `max_output_tokens`,
//! `temperature`, `top_p`, `reasoning.effort` the generation config. `namespace` tools are flattened into
//! functions; hosted tools and fields the gateway does not model are left out and named; fields whose absence
//! would change the answer are refused by name.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::reasoning_items::from_encrypted;
use crate::{
    error::GatewayError,
    proto::{
        content_part, response_format::Format, ContentPart, GenerationConfig, ImageUrl, JsonSchema,
        Message, Reasoning, ReasoningConfig, ResponseFormat, Tool, ToolCall,
    },
    upstream::pass_through::PassThrough,
};
use tools::{tool, tool_choice};

#[derive(Debug, Deserialize)]
struct InRequest {
    model: String,
    /// Read into `Input` (kept as sent too when the response is stored, for its `input_items`).
    input: Option<Value>,
    instructions: Option<String>,
    tools: Option<Vec<Map<String, Value>>>,
    tool_choice: Option<Value>,
    /// Kept as sent, for the echo; its `format` is read from it.
    text: Option<Value>,
    max_output_tokens: Option<i64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    parallel_tool_calls: Option<bool>,
    stream: Option<bool>,
    store: Option<bool>,
    previous_response_id: Option<String>,
    metadata: Option<Map<String, Value>>,
    user: Option<String>,
    safety_identifier: Option<String>,
    /// Kept as sent, for a Responses API upstream (its `summary`); its `effort` is read from it.
    reasoning: Option<Value>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// Accepted and of no effect on a chat-completions upstream: what they ask is already so, or only concerns
/// OpenAI's own platform. A Responses API upstream gets them as sent.
const IGNORED: [&str; 5] = [
    "include",
    "truncation",
    "service_tier",
    "prompt_cache_key",
    "background",
];

/// Fields refused because the answer would mean something else without them: state the gateway does not keep
/// (`conversation`), a stored prompt it cannot read (`prompt`). Every other field it does not model is left
/// out, and named in the answer's `aigw-dropped` header: clients add fields with every release (Codex's
/// `client_metadata`), and an answer that ignores metadata is still the answer.
const REFUSED: [(&str, &str); 2] = [
    (
        "conversation",
        "conversations are OpenAI's stored state, which the gateway does not keep; use previous_response_id",
    ),
    (
        "prompt",
        "stored prompts live on OpenAI's platform, which the gateway cannot read",
    ),
];

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Input {
    Text(String),
    Items(Vec<InItem>),
}

#[derive(Debug, Deserialize)]
struct InItem {
    #[serde(rename = "type")]
    kind: Option<String>,
    id: Option<String>,
    role: Option<String>,
    content: Option<InContent>,
    call_id: Option<String>,
    name: Option<String>,
    /// A call to a tool of a `namespace` tool (Codex's).
    namespace: Option<String>,
    arguments: Option<String>,
    output: Option<Value>,
    /// A reasoning item's summary parts, and its encrypted reasoning.
    summary: Option<Vec<InPart>>,
    encrypted_content: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum InContent {
    Text(String),
    Parts(Vec<InPart>),
}

#[derive(Debug, Deserialize)]
struct InPart {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    image_url: Option<String>,
    detail: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InText {
    format: Option<InFormat>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum InFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        schema: Map<String, Value>,
        description: Option<String>,
        strict: Option<bool>,
    },
}

#[derive(Debug, Deserialize)]
struct InReasoning {
    effort: Option<String>,
}

impl InReasoning {
    fn config(self) -> Option<ReasoningConfig> {
        self.effort.map(|effort| ReasoningConfig {
            effort,
            ..Default::default()
        })
    }
}

/// A request, read.
#[derive(Debug, PartialEq)]
pub(crate) struct Parsed {
    pub(crate) model: String,
    /// The system message `instructions` make, sent first and not kept for a continuation.
    pub(crate) instructions: Option<Message>,
    /// This request's input, after the continued conversation's messages.
    pub(crate) input: Vec<Message>,
    pub(crate) config: Option<GenerationConfig>,
    pub(crate) pass: PassThrough,
    pub(crate) stream: bool,
    pub(crate) store: bool,
    pub(crate) previous_response_id: Option<String>,
    /// Echoed in the response object as they were sent.
    pub(crate) echo: Echo,
    /// Fields the gateway does not model and left out (see `REFUSED`), and hosted tools it does not run.
    pub(crate) dropped: Vec<String>,
    /// The tools of `namespace` tools, flattened.
    pub(crate) namespaces: Namespaces,
    /// The input as items, as the client sent them (a string as a user message): kept with a stored response.
    pub(crate) input_items: Vec<Value>,
}

/// The tools of `namespace` tools (Codex groups its sub-agent and MCP tools so), flattened for upstreams that
/// know only functions: each goes as the function `{namespace}__{name}`, and a call to it comes back as the
/// function call `name` with its `namespace`.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Namespaces(Vec<(String, String, String)>);

impl Namespaces {
    fn flat(namespace: &str, name: &str) -> String {
        format!("{namespace}__{name}")
    }

    /// A called function's name, and its namespace when it is a namespace's tool.
    pub(crate) fn split<'a>(&'a self, called: &'a str) -> (&'a str, Option<&'a str>) {
        match self.0.iter().find(|(flat, _, _)| flat == called) {
            Some((_, namespace, name)) => (name, Some(namespace)),
            None => (called, None),
        }
    }
}

#[derive(Debug, Default, PartialEq)]
pub(crate) struct Echo {
    pub(crate) instructions: Option<String>,
    pub(crate) tools: Vec<Value>,
    pub(crate) tool_choice: Option<Value>,
    pub(crate) parallel_tool_calls: Option<bool>,
    pub(crate) max_output_tokens: Option<i64>,
    pub(crate) temperature: Option<f32>,
    pub(crate) top_p: Option<f32>,
    pub(crate) metadata: Map<String, Value>,
    pub(crate) text: Option<Value>,
    pub(crate) user: Option<String>,
}

fn invalid(msg: impl Into<String>) -> GatewayError {
    GatewayError::InvalidArgument(msg.into())
}

pub(crate) fn parse(body: &[u8]) -> Result<Parsed, GatewayError> {
    let req: InRequest =
        crate::rest::read_json(body).map_err(|e| invalid(format!("invalid request body: {e}")))?;
    let format = match &req.text {
        None => None,
        Some(text) => {
            serde_path_to_error::deserialize::<_, InText>(text)
                .map_err(|e| invalid(format!("invalid request body: text.{e}")))?
                .format
        }
    };
    if let Some((field, why)) = REFUSED.iter().find(|(f, _)| req.rest.contains_key(*f)) {
        return Err(invalid(format!("{field}: {why}")));
    }
    let reasoning = match &req.reasoning {
        None => None,
        Some(r) => serde_path_to_error::deserialize::<_, InReasoning>(r)
            .map_err(|e| invalid(format!("invalid request body: reasoning.{e}")))?
            .config(),
    };
    let dropped: Vec<String> = req
        .rest
        .keys()
        .filter(|k| !IGNORED.contains(&k.as_str()))
        .cloned()
        .collect();
    if req.rest.get("background") == Some(&Value::Bool(true)) {
        return Err(invalid(
            "background: responses are answered while the request waits",
        ));
    }
    let store = req.store.unwrap_or(true);
    let input_items = match (&req.input, store) {
        (Some(Value::String(text)), true) => vec![
            json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}),
        ],
        (Some(Value::Array(items)), true) => items.clone(),
        _ => Vec::new(),
    };
    let input = match req.input.map(serde_json::from_value::<Input>).transpose() {
        Err(e) => return Err(invalid(format!("invalid request body: input: {e}"))),
        Ok(None) => Vec::new(),
        Ok(Some(Input::Text(text))) => vec![text_message("user", text)],
        Ok(Some(Input::Items(items))) => items_to_messages(items)?,
    };
    if input.is_empty() && req.previous_response_id.is_none() {
        return Err(invalid("input: required"));
    }
    let mut dropped = dropped;
    let mut namespaces = Namespaces::default();
    let mut tools: Vec<Tool> = Vec::new();
    let mut hosted: Vec<Value> = Vec::new();
    for (i, t) in req.tools.iter().flatten().enumerate() {
        match t.get("type").and_then(Value::as_str).unwrap_or_default() {
            "function" => tools.push(tool(&format!("tools[{i}]"), t, "")?),
            "namespace" => {
                // Flattened for every upstream; a Responses API upstream gets the namespace itself.
                hosted.push(Value::Object(t.clone()));
                let namespace = t.get("name").and_then(Value::as_str).unwrap_or_default();
                let inner = t.get("tools").and_then(Value::as_array);
                for (j, f) in inner.into_iter().flatten().enumerate() {
                    let here = format!("tools[{i}].tools[{j}]");
                    let f = f
                        .as_object()
                        .filter(|f| f.get("type").and_then(Value::as_str) == Some("function"))
                        .ok_or_else(|| invalid(format!("{here}: a function tool")))?;
                    let tool = tool(&here, f, namespace)?;
                    let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
                    namespaces
                        .0
                        .push((tool.name.clone(), namespace.into(), name.into()));
                    tools.push(tool);
                }
            }
            // A tool the provider runs (web_search, file_search, code_interpreter, ...) or a kind the gateway
            // does not model: a Responses API upstream gets it as sent; for others the model answers without
            // it, and the client is told.
            kind => {
                dropped.push(format!("tools[{i}]:{kind}"));
                hosted.push(Value::Object(t.clone()));
            }
        }
    }
    let tool_choice = req.tool_choice.as_ref().map(tool_choice).transpose()?;
    let response_format = format.map(|f| ResponseFormat {
        format: Some(match f {
            InFormat::Text => Format::Text(true),
            InFormat::JsonObject => Format::JsonObject(true),
            InFormat::JsonSchema {
                name,
                schema,
                description,
                strict,
            } => Format::JsonSchema(JsonSchema {
                name,
                description: description.unwrap_or_default(),
                schema_json: Value::Object(schema).to_string(),
                strict,
            }),
        }),
    });
    let pass = pass_through(
        &req.rest,
        [("reasoning", &req.reasoning), ("text", &req.text)],
        req.metadata.as_ref(),
        hosted,
    );
    let user = req.user.clone().or(req.safety_identifier);
    let config = GenerationConfig {
        temperature: req.temperature,
        // Out of range stays out of range (not wrapped) for the core to refuse.
        max_tokens: req.max_output_tokens.map(|n| {
            n.clamp(i64::from(i32::MIN), i64::from(i32::MAX))
                .try_into()
                .unwrap_or_default()
        }),
        top_p: req.top_p,
        user: user.unwrap_or_default(),
        response_format,
        tools,
        tool_choice,
        parallel_tool_calls: req.parallel_tool_calls,
        reasoning,
        ..Default::default()
    };
    let echo = Echo {
        instructions: req.instructions.clone(),
        tools: req.tools.into_iter().flatten().map(Value::Object).collect(),
        tool_choice: req.tool_choice,
        parallel_tool_calls: req.parallel_tool_calls,
        max_output_tokens: req.max_output_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        metadata: req.metadata.unwrap_or_default(),
        text: req.text,
        user: req.user,
    };
    Ok(Parsed {
        model: req.model,
        instructions: req.instructions.map(|i| text_message("system", i)),
        input,
        config: (config != GenerationConfig::default()).then_some(config),
        pass,
        stream: req.stream.unwrap_or(false),
        store,
        input_items,
        previous_response_id: req.previous_response_id,
        echo,
        dropped,
        namespaces,
    })
}

fn text_message(role: &str, text: String) -> Message {
    Message {
        role: role.into(),
        content: text,
        ..Default::default()
    }
}

/// Input items in order: messages as they are; function calls join the assistant message before them (or
/// make one); their outputs become tool messages; reasoning items go with the assistant message after them
/// (their text, and their `encrypted_content` as the block's signature), for the upstreams that read them back.
fn items_to_messages(items: Vec<InItem>) -> Result<Vec<Message>, GatewayError> {
    let mut out: Vec<Message> = Vec::new();
    let mut reasoning: Vec<Reasoning> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let at = |field: &str| format!("input[{i}].{field}");
        let kind = item.kind.as_deref().unwrap_or("message");
        // Reasoning joins the assistant turn it came with: a new one when the last message is not the
        // assistant's, or when reasoning comes again after the turn's text (a new step of a tool loop).
        let assistant = kind == "function_call"
            || (kind == "message" && item.role.as_deref() == Some("assistant"));
        if assistant && !reasoning.is_empty() {
            out.push(Message {
                role: "assistant".into(),
                reasoning: std::mem::take(&mut reasoning),
                ..Default::default()
            });
        }
        match kind {
            "message" => {
                let role = item
                    .role
                    .ok_or_else(|| invalid(format!("{}: required", at("role"))))?;
                let m = message(&at("content"), role, item.content)?;
                match out.last_mut() {
                    // The reasoning's own message, just made: this text joins it.
                    Some(last)
                        if m.role == "assistant"
                            && last.role == "assistant"
                            && last.content.is_empty()
                            && last.tool_calls.is_empty()
                            && last.parts.is_empty()
                            && !last.reasoning.is_empty() =>
                    {
                        last.content = m.content;
                        last.parts = m.parts;
                    }
                    _ => out.push(m),
                }
            }
            "function_call" => {
                let call = ToolCall {
                    id: item
                        .call_id
                        .ok_or_else(|| invalid(format!("{}: required", at("call_id"))))?,
                    name: match (item.namespace, item.name) {
                        (Some(namespace), Some(name)) => Namespaces::flat(&namespace, &name),
                        (_, name) => name.unwrap_or_default(),
                    },
                    arguments: item.arguments.unwrap_or_default(),
                };
                match out.last_mut() {
                    Some(m) if m.role == "assistant" => m.tool_calls.push(call),
                    _ => out.push(Message {
                        role: "assistant".into(),
                        tool_calls: vec![call],
                        ..Default::default()
                    }),
                }
            }
            "function_call_output" => {
                let id = item
                    .call_id
                    .ok_or_else(|| invalid(format!("{}: required", at("call_id"))))?;
                let (content, parts) = match item.output {
                    Some(Value::String(s)) => (s, Vec::new()),
                    Some(Value::Array(parts)) => tool_output(&at("output"), parts)?,
                    _ => {
                        return Err(invalid(format!(
                            "{}: a string or a list of parts",
                            at("output")
                        )))
                    }
                };
                out.push(Message {
                    role: "tool".into(),
                    content,
                    parts,
                    tool_call_id: id,
                    ..Default::default()
                });
            }
            "reasoning" => {
                let texts = |parts: Vec<InPart>| -> String {
                    parts.into_iter().filter_map(|p| p.text).collect()
                };
                let text = match item.content {
                    Some(InContent::Parts(parts)) if !parts.is_empty() => texts(parts),
                    Some(InContent::Text(text)) => text,
                    _ => item.summary.map(texts).unwrap_or_default(),
                };
                reasoning.push(from_encrypted(text, item.encrypted_content, item.id));
            }
            other => {
                return Err(invalid(format!(
                    "{}: '{other}' items are not supported by the gateway",
                    at("type")
                )))
            }
        }
    }
    Ok(out)
}

/// A function's output given as parts: its text, or its parts when an image is among them (Codex's
/// `view_image`), which upstreams that take images in a tool's result get.
fn tool_output(at: &str, parts: Vec<Value>) -> Result<(String, Vec<ContentPart>), GatewayError> {
    let mut text = String::new();
    let mut out = Vec::new();
    for (k, p) in parts.iter().enumerate() {
        let kind = p.get("type").and_then(Value::as_str).unwrap_or_default();
        if kind == "input_image" {
            let url = p.get("image_url").and_then(Value::as_str).ok_or_else(|| {
                invalid(format!(
                    "{at}[{k}].image_url: required (file ids are not read)"
                ))
            })?;
            out.push(content_part::Part::ImageUrl(ImageUrl {
                url: url.to_owned(),
                detail: p
                    .get("detail")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            }));
        } else if let Some(t) = p.get("text").and_then(Value::as_str) {
            text.push_str(t);
            out.push(content_part::Part::Text(t.to_owned()));
        }
    }
    if out.iter().all(|p| matches!(p, content_part::Part::Text(_))) {
        return Ok((text, Vec::new()));
    }
    let parts = out
        .into_iter()
        .map(|p| ContentPart { part: Some(p) })
        .collect();
    Ok((String::new(), parts))
}

fn message(at: &str, role: String, content: Option<InContent>) -> Result<Message, GatewayError> {
    let parts = match content {
        None => return Ok(text_message(&role, String::new())),
        Some(InContent::Text(text)) => return Ok(text_message(&role, text)),
        Some(InContent::Parts(parts)) => parts,
    };
    let mut text = String::new();
    let mut out = Vec::new();
    for (j, p) in parts.into_iter().enumerate() {
        match p.kind.as_str() {
            "input_text" | "output_text" | "refusal" | "text" => {
                let t = p.text.unwrap_or_default();
                text.push_str(&t);
                out.push(ContentPart {
                    part: Some(content_part::Part::Text(t)),
                });
            }
            "input_image" => {
                let url = p.image_url.ok_or_else(|| {
                    invalid(format!(
                        "{at}[{j}].image_url: required (file ids are not supported)"
                    ))
                })?;
                out.push(ContentPart {
                    part: Some(content_part::Part::ImageUrl(ImageUrl {
                        url,
                        detail: p.detail.unwrap_or_default(),
                    })),
                });
            }
            other => {
                return Err(invalid(format!(
                    "{at}[{j}].type: '{other}' parts are not supported (text and images are)"
                )))
            }
        }
    }
    // Text alone is one text; with an image the parts stay.
    let images = out
        .iter()
        .any(|p| matches!(p.part, Some(content_part::Part::ImageUrl(_))));
    Ok(if images {
        Message {
            role,
            parts: out,
            ..Default::default()
        }
    } else {
        text_message(&role, text)
    })
}

/// What travels beside the typed fields. To a Responses API upstream: every field the door does not model,
/// the hosted tools, and `reasoning`, `text` and `metadata` whole (the typed fields win where both say
/// something). To a chat-completions upstream: the fields chat completions has too.
fn pass_through(
    rest: &Map<String, Value>,
    whole: [(&str, &Option<Value>); 2],
    metadata: Option<&Map<String, Value>>,
    hosted: Vec<Value>,
) -> PassThrough {
    let mut responses = rest.clone();
    if !hosted.is_empty() {
        responses.insert("tools".into(), Value::Array(hosted));
    }
    for (k, v) in whole {
        if let Some(v) = v {
            responses.insert(k.into(), v.clone());
        }
    }
    if let Some(m) = metadata {
        responses.insert("metadata".into(), Value::Object(m.clone()));
    }
    let openai: Map<String, Value> = ["service_tier", "prompt_cache_key"]
        .iter()
        .filter_map(|k| Some(((*k).to_owned(), rest.get(*k)?.clone())))
        .collect();
    let mut out = PassThrough::default();
    for (dialect, fields) in [("responses", responses), ("openai", openai)] {
        if !fields.is_empty() {
            out.dialect.insert(dialect.to_owned(), fields);
        }
    }
    out
}

mod tools;

#[cfg(test)]
mod tests;
