//! The `generateContent` request body, typed and written straight from the call's request (borrowing its
//! text, as Anthropic's body does).

use std::{borrow::Cow, collections::BTreeMap, collections::HashMap};

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::{unsupported, SKIP_SIGNATURE};
use crate::{
    error::GatewayError,
    proto::{Reasoning, ReasoningConfig},
    upstream::openai::wire::{gemini_takes, ChatContent, ChatMessage, ChatPart, ChatRequest},
};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Request<'a> {
    contents: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<Content<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolSet<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<Value>,
    #[serde(skip_serializing_if = "Generation::is_empty")]
    generation_config: Generation<'a>,
    /// What the client sent in Gemini's dialect, or for any provider, that the gateway does not set itself.
    #[serde(flatten)]
    rest: BTreeMap<&'a str, &'a Value>,
}

#[derive(Serialize)]
struct Content<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    parts: Vec<Part<'a>>,
}

/// A part: one of Gemini's kinds of data, with the thought signature the model put on it; or a part the
/// client sent in Gemini's own form (`video_metadata`, `executableCode`, ...), as it was sent.
#[derive(Serialize)]
#[serde(untagged)]
enum Part<'a> {
    Typed {
        #[serde(flatten)]
        data: Data<'a>,
        #[serde(rename = "thoughtSignature", skip_serializing_if = "Option::is_none")]
        signature: Option<&'a str>,
    },
    Opaque(Value),
}

/// A part's one kind of data, named as Gemini names it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Data<'a> {
    Text(Cow<'a, str>),
    #[serde(rename = "inlineData")]
    Inline(Blob<'a>),
    #[serde(rename = "fileData")]
    File(FileRef<'a>),
    FunctionCall(Call<'a>),
    FunctionResponse(CallResult<'a>),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Blob<'a> {
    mime_type: &'a str,
    data: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FileRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    mime_type: Option<&'static str>,
    file_uri: &'a str,
}

#[derive(Serialize)]
struct Call<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    id: &'a str,
    name: &'a str,
    args: Value,
}

#[derive(Serialize)]
struct CallResult<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    id: &'a str,
    name: &'a str,
    response: Value,
}

/// The client's function declarations, or a tool of Gemini's own (`googleSearch`, `codeExecution`, ...) as the
/// client sent it.
#[derive(Serialize)]
#[serde(untagged)]
enum ToolSet<'a> {
    Functions {
        #[serde(rename = "functionDeclarations")]
        function_declarations: Vec<Declaration<'a>>,
    },
    Native(&'a Value),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Declaration<'a> {
    name: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    /// JSON Schema as the client wrote it (`parameters` takes only Google's OpenAPI subset).
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters_json_schema: Option<&'a Value>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Generation<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_json_schema: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_config: Option<Value>,
    /// The client's own `generationConfig` fields that the gateway does not set (`responseModalities`, ...).
    #[serde(flatten)]
    rest: BTreeMap<&'a str, &'a Value>,
}

impl Generation<'_> {
    fn is_empty(&self) -> bool {
        self.temperature.is_none()
            && self.top_p.is_none()
            && self.max_output_tokens.is_none()
            && self.stop_sequences.is_empty()
            && self.seed.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
            && self.response_mime_type.is_none()
            && self.thinking_config.is_none()
            && self.rest.is_empty()
    }

    /// Whether the gateway set this field itself.
    fn sets(&self, key: &str) -> bool {
        match key {
            "temperature" => self.temperature.is_some(),
            "topP" => self.top_p.is_some(),
            "maxOutputTokens" => self.max_output_tokens.is_some(),
            "stopSequences" => !self.stop_sequences.is_empty(),
            "seed" => self.seed.is_some(),
            "presencePenalty" => self.presence_penalty.is_some(),
            "frequencyPenalty" => self.frequency_penalty.is_some(),
            "responseMimeType" => self.response_mime_type.is_some(),
            "responseJsonSchema" | "responseSchema" => self.response_json_schema.is_some(),
            "thinkingConfig" => self.thinking_config.is_some(),
            _ => false,
        }
    }
}

fn text<'a>(text: impl Into<Cow<'a, str>>) -> Part<'a> {
    Part::Typed {
        data: Data::Text(text.into()),
        signature: None,
    }
}

/// The request body for `req` (the model is in the URL, not the body).
pub(super) fn request<'a>(req: &'a ChatRequest<'a>) -> Result<Request<'a>, GatewayError> {
    if req.logprobs || req.top_logprobs.is_some() {
        return Err(unsupported("config.logprobs"));
    }
    let (response_mime_type, response_json_schema) = match &req.response_format {
        None => (None, None),
        Some(f) => match f["type"].as_str() {
            Some("json_object") => (Some("application/json"), None),
            Some("json_schema") => (
                Some("application/json"),
                Some(&f["json_schema"]["schema"]).filter(|s| !s.is_null()),
            ),
            _ => (None, None),
        },
    };
    // A tool's result names its function: the call it answers, by id, from an earlier assistant message.
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut system: Vec<Part<'a>> = Vec::new();
    let mut contents: Vec<Content<'a>> = Vec::new();
    for m in &req.messages {
        let (role, parts) = match m.role {
            "system" | "developer" => {
                system.push(text(m.text()));
                continue;
            }
            "tool" => ("user", vec![tool_result(m, &names)]),
            "assistant" => {
                for c in &m.tool_calls {
                    names.insert(c.id, c.function.name);
                }
                ("model", model_parts(m))
            }
            _ => ("user", content_parts(m)),
        };
        // Consecutive messages of one role are one turn: Gemini wants a step's function responses together.
        match contents.last_mut() {
            Some(last) if last.role == Some(role) => last.parts.extend(parts),
            _ => contents.push(Content {
                role: Some(role),
                parts,
            }),
        }
    }
    let mut body = Request {
        contents,
        system_instruction: (!system.is_empty()).then_some(Content {
            role: None,
            parts: system,
        }),
        tools: declarations(&req.tools).into_iter().collect(),
        tool_config: tool_config(req.tool_choice.as_ref()),
        generation_config: Generation {
            temperature: req.temperature.map(crate::upstream::anthropic::float),
            top_p: req.top_p.map(crate::upstream::anthropic::float),
            max_output_tokens: req.max_output_tokens(),
            stop_sequences: req.stop,
            seed: req.seed,
            presence_penalty: req.presence_penalty.map(crate::upstream::anthropic::float),
            frequency_penalty: req.frequency_penalty.map(crate::upstream::anthropic::float),
            response_mime_type,
            response_json_schema,
            thinking_config: req.reasoning.and_then(thinking),
            rest: BTreeMap::new(),
        },
        rest: BTreeMap::new(),
    };
    // Fields the client sent in Gemini's own dialect travel as they are; the gateway's own win, but Gemini's
    // tools join the client's functions and its generationConfig fields join the gateway's.
    // Top-k, which the Messages door and OpenAI-compatible servers spell `top_k`, is Gemini's `topK`.
    if let Some(k) = req.provider_options.get("top_k").filter(|k| k.is_u64()) {
        body.generation_config.rest.insert("topK", k);
    }
    let any_provider = req
        .provider_options
        .iter()
        .filter(|(k, _)| *k != "top_k" && gemini_takes(k));
    for (k, v) in req.gemini_options.iter().chain(any_provider) {
        match (k.as_str(), v) {
            _ if body.rest.contains_key(k.as_str()) => {}
            ("tools", Value::Array(native)) => {
                body.tools.extend(native.iter().map(ToolSet::Native))
            }
            ("generationConfig", Value::Object(fields)) => {
                for (k, v) in fields {
                    if !body.generation_config.sets(k)
                        && !body.generation_config.rest.contains_key(k.as_str())
                    {
                        body.generation_config.rest.insert(k, v);
                    }
                }
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
    /// Whether the gateway set this top-level field itself.
    fn sets(&self, key: &str) -> bool {
        match key {
            "contents" | "model" => true,
            "systemInstruction" => self.system_instruction.is_some(),
            "tools" => !self.tools.is_empty(),
            "toolConfig" => self.tool_config.is_some(),
            "generationConfig" => true,
            _ => false,
        }
    }
}

/// A user message's parts: text, images inline (`data:` URLs) or by URI, and Gemini's own parts the gateway
/// does not model, as the client sent them (other APIs' are left out).
fn content_parts<'a>(m: &'a ChatMessage<'a>) -> Vec<Part<'a>> {
    match &m.content {
        None => Vec::new(),
        Some(ChatContent::Text(t)) => vec![text(*t)],
        Some(ChatContent::Parts(parts) | ChatContent::Flattened(parts)) => parts
            .iter()
            .filter_map(|p| match p {
                ChatPart::Text { text: t } => Some(text(*t)),
                ChatPart::ImageUrl { image_url } => Some(image(&image_url.url)),
                ChatPart::Opaque {
                    dialect: "gemini",
                    json,
                } => serde_json::from_str(json).ok().map(Part::Opaque),
                ChatPart::Opaque { .. } => None,
            })
            .collect(),
    }
}

fn image(url: &str) -> Part<'_> {
    let data = match crate::upstream::openai::extras::inline_image(url) {
        Some((mime_type, data)) => Data::Inline(Blob { mime_type, data }),
        None => Data::File(FileRef {
            mime_type: image_type(url),
            file_uri: url,
        }),
    };
    Part::Typed {
        data,
        signature: None,
    }
}

/// An image's type by its URL's extension; `None` leaves it to Gemini.
fn image_type(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
    match ext.as_str() {
        "png" => Some("image/png"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        "gif" => Some("image/gif"),
        "webp" => Some("image/webp"),
        _ => None,
    }
}

/// An assistant turn as Gemini wrote it: its text, then its function calls, each thought signature back on the
/// part it came with (see `super`'s doc). A function call whose signature the client did not keep gets Google's
/// documented stand-in, so that a Gemini 3 model does not refuse the turn.
fn model_parts<'a>(m: &'a ChatMessage<'a>) -> Vec<Part<'a>> {
    let mut signatures = signatures(m.reasoning);
    let mut parts: Vec<Part<'a>> = match &m.content {
        Some(ChatContent::Flattened(_)) => content_parts(m),
        _ => {
            let t = m.text();
            if t.is_empty() {
                Vec::new()
            } else {
                vec![text(t)]
            }
        }
    };
    for (i, call) in m.tool_calls.iter().enumerate() {
        let signature = signatures.next().or((i == 0).then_some(SKIP_SIGNATURE));
        parts.push(Part::Typed {
            data: Data::FunctionCall(Call {
                id: call.id,
                name: call.function.name,
                args: crate::upstream::anthropic::tool_input(call.function.arguments),
            }),
            signature,
        });
    }
    // A text answer's signature was on its last part (an empty one when the model wrote no text).
    if let Some(signature) = signatures.last() {
        match parts.last_mut() {
            Some(Part::Typed {
                data: Data::Text(_),
                signature: slot @ None,
            }) => *slot = Some(signature),
            _ => parts.push(Part::Typed {
                data: Data::Text(Cow::Borrowed("")),
                signature: Some(signature),
            }),
        }
    }
    parts
}

/// A turn's thought signatures, in order: the signed reasoning blocks' (redacted blocks and encrypted
/// Responses items are other APIs').
fn signatures(blocks: &[Reasoning]) -> impl Iterator<Item = &str> {
    blocks
        .iter()
        .filter(|b| b.redacted.is_empty() && b.id.is_empty() && !b.signature.is_empty())
        .map(|b| b.signature.as_str())
}

/// A tool's result: the JSON object it wrote, or its text as `output` (Google's name for a function's output).
fn tool_result<'a>(m: &'a ChatMessage<'a>, names: &HashMap<&str, &'a str>) -> Part<'a> {
    let id = m.tool_call_id.unwrap_or_default();
    let output = m.text();
    let response = match serde_json::from_str::<Value>(&output) {
        Ok(object @ Value::Object(_)) => object,
        _ => json!({ "output": output }),
    };
    Part::Typed {
        data: Data::FunctionResponse(CallResult {
            id,
            name: names.get(id).copied().or(m.name).unwrap_or_default(),
            response,
        }),
        signature: None,
    }
}

/// The client's tools (OpenAI function definitions) as one set of Gemini function declarations.
fn declarations(tools: &[Value]) -> Option<ToolSet<'_>> {
    if tools.is_empty() {
        return None;
    }
    let function_declarations = tools
        .iter()
        .map(|t| {
            let f = &t["function"];
            Declaration {
                name: &f["name"],
                description: f["description"].as_str(),
                parameters_json_schema: Some(&f["parameters"]).filter(|p| p.is_object()),
            }
        })
        .collect();
    Some(ToolSet::Functions {
        function_declarations,
    })
}

fn tool_config(choice: Option<&Value>) -> Option<Value> {
    let config = match choice? {
        Value::String(mode) => match mode.as_str() {
            "none" => json!({"mode": "NONE"}),
            "required" => json!({"mode": "ANY"}),
            _ => json!({"mode": "AUTO"}),
        },
        named => json!({"mode": "ANY", "allowedFunctionNames": [named["function"]["name"]]}),
    };
    Some(json!({ "functionCallingConfig": config }))
}

/// Gemini's `thinkingConfig`: thoughts included whenever the client asked for reasoning (so they stream);
/// a budget as `thinkingBudget` (Gemini 2.5), an effort as `thinkingLevel` (Gemini 3), adaptive as the dynamic
/// budget (-1), disabled as a budget of 0.
fn thinking(r: &ReasoningConfig) -> Option<Value> {
    let mut config = Map::new();
    match (r.mode.as_str(), r.budget_tokens, r.effort.as_str()) {
        ("disabled", _, _) | (_, None, "none") => {
            config.insert("thinkingBudget".into(), Value::from(0));
            return Some(Value::Object(config));
        }
        ("adaptive", None, "") => {
            config.insert("thinkingBudget".into(), Value::from(-1));
        }
        (_, Some(budget), _) => {
            config.insert("thinkingBudget".into(), Value::from(budget));
        }
        (_, None, "") => {}
        (_, None, effort) => {
            config.insert("thinkingLevel".into(), Value::from(effort));
        }
    }
    config.insert("includeThoughts".into(), Value::Bool(true));
    Some(Value::Object(config))
}
