//! The OpenAI chat-completions wire format as the REST door speaks it to clients: requests are read into
//! owned types (unknown fields refused, so a feature the gateway would drop is never silently lost), answers
//! and chunks are written from borrowed ones.

use serde::{Deserialize, Serialize};

/// Fields not named here are the provider's: they travel on as `provider_options`, unless the gateway sets
/// them itself (then the request is refused, naming the field).
#[derive(Debug, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<InMessage>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// Deprecated by OpenAI in favour of `max_completion_tokens`; either is accepted.
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    pub stop: Option<Stop>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// Only 1 is supported (one answer per call, as over gRPC).
    pub n: Option<u32>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<i32>,
    pub user: Option<String>,
    pub response_format: Option<InResponseFormat>,
    pub tools: Option<Vec<InTool>>,
    pub tool_choice: Option<InToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InTool {
    #[serde(rename = "type")]
    #[allow(dead_code)] // read only to check it: "function" is the one type
    pub kind: FunctionType,
    pub function: InFunction,
}

/// The only tool type of chat completions.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionType {
    Function,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InFunction {
    pub name: String,
    pub description: Option<String>,
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
    pub strict: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum InToolChoice {
    Mode(String),
    Function {
        #[serde(rename = "type")]
        #[allow(dead_code)] // read only to check it: "function" is the one type
        kind: FunctionType,
        function: NamedFunction,
    },
}

#[derive(Debug, Deserialize)]
pub struct NamedFunction {
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: InJsonSchema },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InJsonSchema {
    pub name: String,
    pub description: Option<String>,
    pub schema: Option<serde_json::Map<String, serde_json::Value>>,
    pub strict: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    pub name: Option<String>,
    pub tool_call_id: Option<String>,
    pub tool_calls: Option<Vec<InToolCall>>,
    /// Sent back by some clients with the assistant's earlier answer; nothing to pass on.
    #[allow(dead_code)]
    pub refusal: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct InToolCall {
    pub id: String,
    #[serde(rename = "type")]
    #[allow(dead_code)] // read only to check it: "function" is the one type
    pub kind: FunctionType,
    pub function: InCalled,
}

#[derive(Debug, Deserialize)]
pub struct InCalled {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    Text {
        text: String,
    },
    ImageUrl {
        image_url: InImageUrl,
    },
    /// Any other kind of part: refused with a clear error rather than dropped.
    #[serde(other)]
    Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InImageUrl {
    pub url: String,
    pub detail: Option<String>,
}

/// A whole answer (`object: "chat.completion"`).
#[derive(Debug, Serialize)]
pub struct ChatCompletion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: [CompletionChoice<'a>; 1],
    pub usage: Option<OutUsage>,
    pub system_fingerprint: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct CompletionChoice<'a> {
    pub index: u32,
    pub message: OutMessage<'a>,
    pub logprobs: Option<OutLogprobs<'a>>,
    pub finish_reason: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct OutMessage<'a> {
    pub role: &'static str,
    /// `null` when the answer is all tool calls, as OpenAI sends it.
    pub content: Option<&'a str>,
    pub refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<OutToolCall<'a>>,
}

/// A tool call; in a stream it also has its `index` (each is sent whole, in one piece).
#[derive(Debug, Serialize)]
pub struct OutToolCall<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: OutFunction<'a>,
}

#[derive(Debug, Serialize)]
pub struct OutFunction<'a> {
    pub name: &'a str,
    pub arguments: &'a str,
}

#[derive(Debug, Serialize)]
pub struct OutLogprobs<'a> {
    pub content: Vec<OutLogprob<'a>>,
}

#[derive(Debug, Serialize)]
pub struct OutLogprob<'a> {
    pub token: &'a str,
    pub logprob: f64,
    pub bytes: Vec<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<Vec<OutLogprob<'a>>>,
}

/// One streamed event (`object: "chat.completion.chunk"`).
#[derive(Debug, Serialize)]
pub struct ChatChunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub system_fingerprint: Option<&'a str>,
    pub choices: Vec<ChunkChoice<'a>>,
    /// Left out unless the client asked for usage; then `null` on every chunk but the last, as OpenAI does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<OutUsage>>,
}

#[derive(Debug, Serialize)]
pub struct ChunkChoice<'a> {
    pub index: u32,
    pub delta: Delta<'a>,
    pub logprobs: Option<OutLogprobs<'a>>,
    pub finish_reason: Option<&'a str>,
}

#[derive(Debug, Default, Serialize)]
pub struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<OutToolCall<'a>>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct OutUsage {
    pub prompt_tokens: i32,
    pub completion_tokens: i32,
    pub total_tokens: i32,
    /// The gateway's own: present (true) only when the upstream reported no usage and the gateway counted it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub aigw_estimated: bool,
}

/// `{"error": {...}}`, as OpenAI answers a failed request (and ends a failed stream).
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: ErrorObject<'a>,
}

#[derive(Debug, Serialize)]
pub struct ErrorObject<'a> {
    pub message: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub param: Option<&'a str>,
    pub code: Option<&'a str>,
}

/// `GET /v1/models`.
#[derive(Debug, Serialize)]
pub struct ModelList<'a> {
    pub object: &'static str,
    pub data: Vec<ModelObject<'a>>,
}

#[derive(Debug, Serialize)]
pub struct ModelObject<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
}
