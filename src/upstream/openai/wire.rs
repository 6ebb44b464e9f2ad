//! OpenAI chat-completions wire types: typed serde structs, borrowed on the request side so building a
//! request copies no prompt text.

use crate::upstream::text::RawText;
use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct ChatRequest<'a> {
    pub model: &'a str,
    pub messages: Vec<ChatMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub stop: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub logprobs: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Provider-specific fields, merged into the body (checked not to collide with the fields above).
    #[serde(flatten)]
    pub provider_options: Map<String, Value>,
}

impl ChatRequest<'_> {
    /// The output-token limit, whichever field carries it.
    pub fn max_output_tokens(&self) -> Option<u32> {
        self.max_tokens.or(self.max_completion_tokens)
    }
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct ChatMessage<'a> {
    pub role: &'a str,
    /// Left out only for an assistant message that is all tool calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<ChatContent<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<WireToolCall<'a>>,
}

impl ChatMessage<'_> {
    /// The message's text: its content, or its text parts joined.
    pub fn text(&self) -> Cow<'_, str> {
        match &self.content {
            None => Cow::Borrowed(""),
            Some(ChatContent::Text(t)) => Cow::Borrowed(t),
            Some(ChatContent::Parts(parts)) => Cow::Owned(
                parts
                    .iter()
                    .filter_map(|p| match p {
                        ChatPart::Text { text } => Some(*text),
                        ChatPart::ImageUrl { .. } => None,
                    })
                    .collect(),
            ),
        }
    }
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum ChatContent<'a> {
    Text(&'a str),
    Parts(Vec<ChatPart<'a>>),
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatPart<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: ImageUrl<'a> },
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ImageUrl<'a> {
    /// Borrowed for URLs; a `data:` URL built from inline bytes is owned.
    pub url: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
}

/// A tool call as OpenAI writes it in a request's history.
#[derive(Debug, Serialize, PartialEq)]
pub struct WireToolCall<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: WireFunction<'a>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct WireFunction<'a> {
    pub name: &'a str,
    pub arguments: &'a str,
}

/// A tool call in a whole answer.
#[derive(Debug, Deserialize)]
pub struct AnswerToolCall {
    #[serde(default)]
    pub id: String,
    pub function: AnswerFunction,
}

#[derive(Debug, Deserialize)]
pub struct AnswerFunction {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

/// One piece of a streamed tool call: the first for an `index` has its id and name, later ones add arguments.
#[derive(Debug, Deserialize)]
pub struct ToolCallDelta {
    #[serde(default)]
    pub index: usize,
    pub id: Option<String>,
    pub function: Option<FunctionDelta>,
}

#[derive(Debug, Deserialize)]
pub struct FunctionDelta {
    pub name: Option<String>,
    pub arguments: Option<String>,
}

/// `logprobs` of a choice: `{"content": [...]}` (null content when there are none).
#[derive(Debug, Default, Deserialize)]
pub struct Logprobs {
    #[serde(default)]
    pub content: Option<Vec<WireLogprob>>,
}

#[derive(Debug, Deserialize)]
pub struct WireLogprob {
    pub token: String,
    pub logprob: f64,
    #[serde(default)]
    pub top_logprobs: Vec<WireTopLogprob>,
}

#[derive(Debug, Deserialize)]
pub struct WireTopLogprob {
    pub token: String,
    pub logprob: f64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct StreamOptions {
    pub include_usage: bool,
}

/// A non-streamed answer.
#[derive(Debug, Deserialize)]
pub struct ChatCompletion {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<Choice>,
    pub usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
pub struct Choice {
    pub message: ResponseMessage,
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub logprobs: Option<Logprobs>,
}

#[derive(Debug, Deserialize)]
pub struct ResponseMessage {
    pub content: Option<RawText>,
    /// Set instead of content when the model refuses.
    pub refusal: Option<RawText>,
    #[serde(default)]
    pub tool_calls: Option<Vec<AnswerToolCall>>,
}

/// One `data:` event of a streamed answer. An error object can arrive in the stream instead of a chunk.
///
/// `id` and `model` repeat on every chunk but are kept once: borrowed from the event's text, they cost no
/// allocation per chunk (unless they contain escapes).
#[derive(Debug, Deserialize)]
pub struct ChatChunk<'a> {
    #[serde(default, borrow)]
    pub id: Cow<'a, str>,
    #[serde(default, borrow)]
    pub model: Cow<'a, str>,
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    pub usage: Option<WireUsage>,
    pub error: Option<ApiError>,
}

#[derive(Debug, Deserialize)]
pub struct ChunkChoice {
    #[serde(default)]
    pub delta: Delta,
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub logprobs: Option<Logprobs>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Delta {
    /// Read as WTF-8: a JavaScript upstream can split a surrogate pair between two chunks.
    pub content: Option<RawText>,
    pub refusal: Option<RawText>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

/// `{"error": {...}}`, the body of an OpenAI error response.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[derive(Debug, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub message: String,
}
