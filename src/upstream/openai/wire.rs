//! OpenAI chat-completions wire types: typed serde structs, borrowed on the request side so building a
//! request copies no prompt text.

use crate::upstream::utf16::RawText;
use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct ChatRequest<'a> {
    pub(crate) model: &'a str,
    pub(crate) messages: Vec<ChatMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub(crate) stop: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) presence_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) frequency_penalty: Option<f32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) logprobs: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) top_logprobs: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) response_format: Option<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) parallel_tool_calls: Option<bool>,
    /// The OpenAI-style form of `reasoning` (see `reasoning::effort`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reasoning_effort: Option<&'a str>,
    /// What the client asked of the model's reasoning, for dialects that spell it otherwise (Anthropic).
    #[serde(skip)]
    pub(crate) reasoning: Option<&'a crate::proto::ReasoningConfig>,
    /// Provider-specific fields, merged into the body (checked not to collide with the fields above).
    #[serde(flatten)]
    pub(crate) provider_options: Map<String, Value>,
    /// Fields for chat-completions upstreams only, as the client sent them (`dialect_options["openai"]`; none
    /// that `provider_options` has).
    #[serde(flatten)]
    pub(crate) openai_options: Map<String, Value>,
    /// Per tool, its prompt-cache mark: Anthropic's alone, never sent to OpenAI-style upstreams.
    #[serde(skip)]
    pub(crate) tool_cache_control: Vec<Option<Value>>,
    /// Per tool, the fields of its definition only Anthropic reads (`defer_loading`, ...), as the client sent
    /// them.
    #[serde(skip)]
    pub(crate) tool_anthropic_fields: Vec<Option<Map<String, Value>>>,
    /// Fields for Anthropic upstreams only, as the client sent them (see `GenerationConfig.dialect_options`).
    #[serde(skip)]
    pub(crate) anthropic_options: Map<String, Value>,
    /// Fields for Responses API upstreams only, as the client sent them (`dialect_options["responses"]`).
    #[serde(skip)]
    pub(crate) responses_options: Map<String, Value>,
    /// Fields for Gemini upstreams only, as the client sent them (`dialect_options["gemini"]`).
    #[serde(skip)]
    pub(crate) gemini_options: Map<String, Value>,
    /// Fields for Bedrock upstreams only, as the client sent them (`dialect_options["bedrock"]`).
    #[serde(skip)]
    pub(crate) bedrock_options: Map<String, Value>,
    /// The client's API headers, for upstreams of their dialect.
    #[serde(skip)]
    pub(crate) api_headers: Option<&'a crate::upstream::api_headers::ApiHeaders>,
}

impl ChatRequest<'_> {
    /// The output-token limit, whichever field carries it.
    pub(crate) fn max_output_tokens(&self) -> Option<u32> {
        self.max_tokens.or(self.max_completion_tokens)
    }
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub(crate) struct ChatMessage<'a> {
    pub(crate) role: &'a str,
    /// Left out only for an assistant message that is all tool calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) content: Option<ChatContent<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tool_call_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) tool_calls: Vec<WireToolCall<'a>>,
    /// An assistant message's reasoning text, as OpenAI-style reasoning models write it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reasoning_content: Option<Cow<'a, str>>,
    /// The message's prompt-cache mark: Anthropic's alone, never sent to OpenAI-style upstreams.
    #[serde(skip)]
    pub(crate) cache_control: Option<Value>,
    /// The message's reasoning blocks whole (signatures included): Anthropic's.
    #[serde(skip)]
    pub(crate) reasoning: &'a [crate::proto::Reasoning],
}

/// The top-level fields of Gemini's request that a client may set for any provider (the chat door's unnamed
/// fields): others are another API's (`store`, `service_tier`, ...), which Gemini would refuse, and are left out.
const GEMINI_FIELDS: [&str; 6] = [
    "safetySettings",
    "cachedContent",
    "generationConfig",
    "toolConfig",
    "tools",
    "labels",
];

/// Whether a field for any provider is one of Gemini's (`top_k` is its `topK`).
pub(crate) fn gemini_takes(field: &str) -> bool {
    GEMINI_FIELDS.contains(&field) || field == "top_k"
}

/// Converse's own top-level fields that a client may set for any provider (the chat door's unnamed fields);
/// others are another API's, which Bedrock would refuse.
pub(crate) const CONVERSE_FIELDS: [&str; 5] = [
    "guardrailConfig",
    "performanceConfig",
    "requestMetadata",
    "promptVariables",
    "additionalModelResponseFieldPaths",
];

/// Whether a field for any provider is one Converse takes (`top_k` goes to the model's own fields).
pub(crate) fn bedrock_takes(field: &str) -> bool {
    CONVERSE_FIELDS.contains(&field) || field == "top_k"
}

impl ChatRequest<'_> {
    /// What an upstream of `dialect` ("openai" or "anthropic") does not get of this request: Anthropic's fields
    /// for an OpenAI-style upstream, and content blocks it cannot take (by `type`). Logged where it is sent.
    pub(crate) fn left_out(&self, dialect: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if dialect != "openai" {
            out.extend(self.openai_options.keys().cloned());
        }
        if dialect != "anthropic" {
            out.extend(self.anthropic_options.keys().cloned());
        }
        if dialect != "responses" {
            out.extend(self.responses_options.keys().cloned());
        }
        if dialect != "gemini" {
            out.extend(self.gemini_options.keys().cloned());
        } else {
            // Another API's fields, meant for any provider, are not Gemini's.
            let theirs = self.provider_options.keys();
            out.extend(theirs.filter(|k| !gemini_takes(k)).cloned());
        }
        if dialect != "bedrock" {
            out.extend(self.bedrock_options.keys().cloned());
        } else {
            let theirs = self.provider_options.keys();
            out.extend(theirs.filter(|k| !bedrock_takes(k)).cloned());
        }
        for m in &self.messages {
            if let Some(c) = &m.content {
                out.extend(c.left_out(dialect));
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

impl ChatMessage<'_> {
    /// The message's text: its content, or its text parts joined.
    pub(crate) fn text(&self) -> Cow<'_, str> {
        match &self.content {
            None => Cow::Borrowed(""),
            Some(ChatContent::Text(t)) => Cow::Borrowed(t),
            Some(ChatContent::Parts(parts) | ChatContent::Flattened(parts)) => {
                Cow::Owned(parts.iter().filter_map(ChatPart::text).collect())
            }
        }
    }
}

#[derive(Debug, PartialEq)]
pub(crate) enum ChatContent<'a> {
    Text(&'a str),
    Parts(Vec<ChatPart<'a>>),
    /// A tool's result or an assistant's turn with more than text in it: OpenAI-style upstreams get its text
    /// (they take no images in a tool message), Anthropic's every block.
    Flattened(Vec<ChatPart<'a>>),
}

impl Serialize for ChatContent<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        match self {
            Self::Text(t) => s.serialize_str(t),
            Self::Flattened(parts) => {
                let text: String = parts.iter().filter_map(ChatPart::text).collect();
                s.serialize_str(&text)
            }
            Self::Parts(parts) => {
                let mut seq = s.serialize_seq(None)?;
                for p in parts {
                    match p {
                        ChatPart::Opaque {
                            dialect: "openai",
                            json,
                        } => {
                            let block: Value =
                                serde_json::from_str(json).map_err(serde::ser::Error::custom)?;
                            seq.serialize_element(&block)?;
                        }
                        // Another API's block: left out (and logged where the request is sent).
                        ChatPart::Opaque { .. } => {}
                        _ => seq.serialize_element(p)?,
                    }
                }
                seq.end()
            }
        }
    }
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ChatPart<'a> {
    Text {
        text: &'a str,
    },
    ImageUrl {
        image_url: ImageUrl<'a>,
    },
    /// A block the gateway does not model, as the client sent it: written by `ChatContent`'s serializer (as
    /// it is for its own dialect, left out for others), never by this derive.
    #[serde(skip)]
    Opaque {
        dialect: &'a str,
        json: &'a str,
    },
}

impl<'a> ChatPart<'a> {
    fn text(&self) -> Option<&'a str> {
        match self {
            Self::Text { text } => Some(text),
            _ => None,
        }
    }
}

/// An opaque block's `type` (`None` unless it is a JSON object with a string `type`), read without building
/// the block: its data may be megabytes (a PDF).
pub(crate) fn opaque_type(json: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        kind: String,
    }
    serde_json::from_str::<Typed>(json).ok().map(|t| t.kind)
}

impl ChatContent<'_> {
    /// The `type`s of the blocks an upstream of `dialect` does not get: other APIs' opaque blocks, and what a
    /// tool message cannot carry there. For the log.
    pub(crate) fn left_out(&self, dialect: &str) -> Vec<String> {
        let kind = |json: &str| opaque_type(json).unwrap_or_default();
        match self {
            Self::Text(_) => Vec::new(),
            Self::Flattened(parts) if dialect == "openai" => parts
                .iter()
                .filter_map(|p| match p {
                    ChatPart::Text { .. } => None,
                    ChatPart::ImageUrl { .. } => Some("image".to_owned()),
                    ChatPart::Opaque { json, .. } => Some(kind(json)),
                })
                .collect(),
            Self::Parts(parts) | Self::Flattened(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    ChatPart::Opaque { dialect: d, json } if *d != dialect => Some(kind(json)),
                    _ => None,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct ImageUrl<'a> {
    /// Borrowed for URLs; a `data:` URL built from inline bytes is owned.
    pub(crate) url: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) detail: Option<&'a str>,
}

/// A tool call as OpenAI writes it in a request's history.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct WireToolCall<'a> {
    pub(crate) id: &'a str,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) function: WireFunction<'a>,
}

#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct WireFunction<'a> {
    pub(crate) name: &'a str,
    pub(crate) arguments: &'a str,
}

/// A tool call in a whole answer.
#[derive(Debug, Deserialize)]
pub(crate) struct AnswerToolCall {
    #[serde(default)]
    pub(crate) id: String,
    pub(crate) function: AnswerFunction,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AnswerFunction {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) arguments: String,
}

/// One piece of a streamed tool call: the first for an `index` has its id and name, later ones add arguments.
#[derive(Debug, Deserialize)]
pub(crate) struct ToolCallDelta {
    #[serde(default)]
    pub(crate) index: usize,
    pub(crate) id: Option<String>,
    pub(crate) function: Option<FunctionDelta>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FunctionDelta {
    pub(crate) name: Option<String>,
    pub(crate) arguments: Option<String>,
}

/// `logprobs` of a choice: `{"content": [...]}` (null content when there are none).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Logprobs {
    #[serde(default)]
    pub(crate) content: Option<Vec<WireLogprob>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireLogprob {
    pub(crate) token: String,
    pub(crate) logprob: f64,
    #[serde(default)]
    pub(crate) top_logprobs: Vec<WireTopLogprob>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireTopLogprob {
    pub(crate) token: String,
    pub(crate) logprob: f64,
}

#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct StreamOptions {
    pub(crate) include_usage: bool,
}

/// A non-streamed answer.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatCompletion {
    #[serde(default)]
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) model: String,
    #[serde(default)]
    pub(crate) choices: Vec<Choice>,
    pub(crate) usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Choice {
    pub(crate) message: ResponseMessage,
    pub(crate) finish_reason: Option<String>,
    #[serde(default)]
    pub(crate) logprobs: Option<Logprobs>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ResponseMessage {
    pub(crate) content: Option<RawText>,
    /// Set instead of content when the model refuses.
    pub(crate) refusal: Option<RawText>,
    #[serde(default)]
    pub(crate) tool_calls: Option<Vec<AnswerToolCall>>,
    #[serde(default)]
    pub(crate) reasoning_content: Option<ReasoningText>,
    #[serde(default)]
    pub(crate) reasoning: Option<ReasoningText>,
}

/// One `data:` event of a streamed answer. An error object can arrive in the stream instead of a chunk.
///
/// `id` and `model` repeat on every chunk but are kept once: borrowed from the event's text, they cost no
/// allocation per chunk (unless they contain escapes).
#[derive(Debug, Deserialize)]
pub(crate) struct ChatChunk<'a> {
    #[serde(default, borrow)]
    pub(crate) id: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(crate) model: Cow<'a, str>,
    #[serde(default)]
    pub(crate) choices: Vec<ChunkChoice>,
    pub(crate) usage: Option<WireUsage>,
    pub(crate) error: Option<ApiError>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChunkChoice {
    #[serde(default)]
    pub(crate) delta: Delta,
    pub(crate) finish_reason: Option<String>,
    #[serde(default)]
    pub(crate) logprobs: Option<Logprobs>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Delta {
    /// Read as WTF-8: a JavaScript upstream can split a surrogate pair between two chunks.
    pub(crate) content: Option<RawText>,
    pub(crate) refusal: Option<RawText>,
    #[serde(default)]
    pub(crate) tool_calls: Option<Vec<ToolCallDelta>>,
    /// Reasoning text as DeepSeek, vLLM, SGLang and others send it.
    #[serde(default)]
    pub(crate) reasoning_content: Option<ReasoningText>,
    /// The same under OpenRouter's (and Ollama's) name.
    #[serde(default)]
    pub(crate) reasoning: Option<ReasoningText>,
}

/// A reasoning field: text, or a shape the gateway does not read (some providers put an object here), which
/// is skipped rather than failing the chunk.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum ReasoningText {
    Text(String),
    Other(serde::de::IgnoredAny),
}

impl ReasoningText {
    pub(crate) fn into_text(self) -> Option<String> {
        match self {
            Self::Text(t) => Some(t),
            Self::Other(_) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub(crate) prompt_tokens: u64,
    #[serde(default)]
    pub(crate) completion_tokens: u64,
    #[serde(default)]
    pub(crate) total_tokens: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) prompt_tokens_details: PromptDetails,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) completion_tokens_details: CompletionDetails,
    /// DeepSeek's name for cached prompt tokens.
    #[serde(default)]
    pub(crate) prompt_cache_hit_tokens: u64,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub(crate) struct PromptDetails {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) cached_tokens: u64,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub(crate) struct CompletionDetails {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) reasoning_tokens: u64,
}

/// Some providers send `null` for a detail they do not count.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `{"error": {...}}`, the body of an OpenAI error response.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) error: ApiError,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ApiError {
    #[serde(default)]
    pub(crate) message: String,
    /// Anthropic's error type (`overloaded_error`, ...); OpenAI's `type`.
    #[serde(default, rename = "type")]
    pub(crate) kind: String,
}
