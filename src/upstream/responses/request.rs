//! The Responses API request body. The input items, where an agent's turn spends its bytes, are typed and
//! borrow the call's text; the other fields are a JSON object, into which the client's own fields merge.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::{
    error::GatewayError,
    proto::Reasoning,
    upstream::openai::wire::{ChatContent, ChatMessage, ChatPart, ChatRequest},
};

fn unsupported(what: &str) -> GatewayError {
    GatewayError::InvalidArgument(format!("{what}: not supported by the Responses API"))
}

#[derive(Serialize)]
pub(super) struct Request<'a> {
    model: &'a str,
    input: Vec<Item<'a>>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Item<'a> {
    Message {
        role: &'a str,
        content: Content<'a>,
    },
    FunctionCall {
        call_id: &'a str,
        name: Cow<'a, str>,
        arguments: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
    },
    FunctionCallOutput {
        call_id: &'a str,
        output: Content<'a>,
    },
    Reasoning {
        summary: Vec<Part<'a>>,
        encrypted_content: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        id: &'a str,
    },
}

/// A message's content: its text, or its parts.
#[derive(Serialize)]
#[serde(untagged)]
enum Content<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<Part<'a>>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part<'a> {
    InputText { text: &'a str },
    InputImage { image_url: &'a str, detail: &'a str },
    OutputText { text: Cow<'a, str> },
    SummaryText { text: &'a str },
}

/// The request as the Responses API reads it.
pub(super) fn request<'a>(req: &'a ChatRequest<'a>) -> Result<Request<'a>, GatewayError> {
    if req.logprobs || req.top_logprobs.is_some() {
        return Err(unsupported("config.logprobs"));
    }
    if !req.stop.is_empty() {
        return Err(unsupported("config.stop"));
    }
    if req.seed.is_some() || req.presence_penalty.is_some() || req.frequency_penalty.is_some() {
        return Err(unsupported(
            "config.seed, presence_penalty and frequency_penalty",
        ));
    }
    // The client's namespace tools travel whole (among its tools, `merge`): their flattened functions stay out,
    // and calls to them go back under their namespace.
    let namespaces: Vec<String> = match req.responses_options.get("tools") {
        Some(Value::Array(tools)) => tools
            .iter()
            .filter(|t| t["type"] == "namespace")
            .filter_map(|t| Some(format!("{}__", t["name"].as_str()?)))
            .collect(),
        _ => Vec::new(),
    };
    let namespaced = |name: &str| -> Option<(String, String)> {
        let prefix = namespaces.iter().find(|p| name.starts_with(p.as_str()))?;
        Some((
            prefix[..prefix.len() - 2].to_owned(),
            name[prefix.len()..].to_owned(),
        ))
    };
    let mut input = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        match m.role {
            "tool" => input.push(Item::FunctionCallOutput {
                call_id: m.tool_call_id.unwrap_or_default(),
                output: tool_output(m),
            }),
            "assistant" => {
                input.extend(m.reasoning.iter().filter_map(reasoning_item));
                let text = m.text();
                if !text.is_empty() {
                    input.push(Item::Message {
                        role: "assistant",
                        content: Content::Parts(vec![Part::OutputText { text }]),
                    });
                }
                for c in &m.tool_calls {
                    let (name, namespace) = match namespaced(c.function.name) {
                        Some((namespace, name)) => (Cow::Owned(name), Some(namespace)),
                        None => (Cow::Borrowed(c.function.name), None),
                    };
                    input.push(Item::FunctionCall {
                        call_id: c.id,
                        name,
                        arguments: c.function.arguments,
                        namespace,
                    });
                }
            }
            role => input.push(Item::Message {
                role,
                content: content(m),
            }),
        }
    }
    let mut body = Map::new();
    if let Some(n) = req.max_output_tokens() {
        body.insert("max_output_tokens".into(), Value::from(n));
    }
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), super::super::anthropic::float(t));
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), super::super::anthropic::float(p));
    }
    if let Some(user) = req.user {
        body.insert("user".into(), Value::from(user));
    }
    let tools: Vec<Value> = req
        .tools
        .iter()
        .filter(|t| {
            t["function"]["name"]
                .as_str()
                .is_none_or(|name| namespaced(name).is_none())
        })
        .map(function_tool)
        .collect();
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &req.tool_choice {
        body.insert("tool_choice".into(), tool_choice(choice));
    }
    if let Some(p) = req.parallel_tool_calls {
        body.insert("parallel_tool_calls".into(), Value::Bool(p));
    }
    if let Some(format) = &req.response_format {
        body.insert("text".into(), json!({"format": text_format(format)}));
    }
    if let Some(effort) = req.reasoning_effort {
        body.insert("reasoning".into(), json!({"effort": effort}));
    }
    if req.reasoning.is_some() {
        // Stateless: the reasoning can only go back to the model with its encrypted content.
        body.insert("include".into(), json!(["reasoning.encrypted_content"]));
    }
    body.insert("store".into(), Value::Bool(false));
    if req.stream {
        body.insert("stream".into(), Value::Bool(true));
    }
    for (k, v) in req.responses_options.iter().chain(&req.provider_options) {
        // The model and the input are the gateway's.
        if k != "model" && k != "input" {
            merge(&mut body, k, v);
        }
    }
    Ok(Request {
        model: req.model,
        input,
        rest: body,
    })
}

/// A field the client sent in this dialect, joined to the gateway's: the gateway's own values win, but hosted
/// tools join the functions, `include` lists join, and `reasoning`'s and `text`'s other fields (`summary`,
/// `verbosity`) join the gateway's effort and format.
fn merge(body: &mut Map<String, Value>, k: &str, v: &Value) {
    match (body.get_mut(k), v) {
        (None, v) => {
            body.insert(k.to_owned(), v.clone());
        }
        (Some(Value::Array(ours)), Value::Array(theirs)) if k == "tools" || k == "include" => {
            for item in theirs {
                if !ours.contains(item) {
                    ours.push(item.clone());
                }
            }
        }
        (Some(Value::Object(ours)), Value::Object(theirs)) if k == "reasoning" || k == "text" => {
            for (k, v) in theirs {
                ours.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        _ => {}
    }
}

/// A message's content: its text, or its parts as input parts (other APIs' blocks left out).
fn content<'a>(m: &'a ChatMessage<'a>) -> Content<'a> {
    match &m.content {
        None => Content::Text(Cow::Borrowed("")),
        Some(ChatContent::Text(t)) => Content::Text(Cow::Borrowed(t)),
        Some(ChatContent::Parts(parts) | ChatContent::Flattened(parts)) => Content::Parts(
            parts
                .iter()
                .filter_map(|p| match p {
                    ChatPart::Text { text } => Some(Part::InputText { text }),
                    ChatPart::ImageUrl { image_url } => Some(Part::InputImage {
                        image_url: &image_url.url,
                        detail: image_url.detail.unwrap_or("auto"),
                    }),
                    ChatPart::Opaque { .. } => None,
                })
                .collect(),
        ),
    }
}

/// A tool's output: its text, or its parts when it has images too.
fn tool_output<'a>(m: &'a ChatMessage<'a>) -> Content<'a> {
    match &m.content {
        Some(ChatContent::Flattened(_)) => content(m),
        _ => Content::Text(m.text()),
    }
}

/// A reasoning block as an input item: only one with encrypted content can go back (the model checks it);
/// other providers' blocks (redacted, or text alone) are left out.
fn reasoning_item(r: &Reasoning) -> Option<Item<'_>> {
    if r.signature.is_empty() || !r.redacted.is_empty() {
        return None;
    }
    let summary = if r.text.is_empty() {
        Vec::new()
    } else {
        vec![Part::SummaryText { text: &r.text }]
    };
    Some(Item::Reasoning {
        summary,
        encrypted_content: &r.signature,
        id: &r.id,
    })
}

/// A chat-completions function tool (`{"type": "function", "function": {...}}`) as a Responses one (flat).
fn function_tool(t: &Value) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), Value::from("function"));
    if let Value::Object(f) = &t["function"] {
        for (k, v) in f {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

fn tool_choice(choice: &Value) -> Value {
    match choice["function"]["name"].as_str() {
        Some(name) => json!({"type": "function", "name": name}),
        None => choice.clone(),
    }
}

/// Chat's `response_format` as `text.format`: a JSON schema's fields move up a level.
fn text_format(format: &Value) -> Value {
    match &format["json_schema"] {
        Value::Object(schema) => {
            let mut out = schema.clone();
            out.insert("type".into(), Value::from("json_schema"));
            Value::Object(out)
        }
        _ => format.clone(),
    }
}
