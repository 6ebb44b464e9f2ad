//! The OpenAI chat-completions wire format as the REST door speaks it to clients: requests are read into
//! owned types (unknown fields refused, so a feature the gateway would drop is never silently lost), answers
//! and chunks are written from borrowed ones.

use serde::{Deserialize, Serialize};

/// Fields not named here are the provider's: they travel on as `provider_options`, unless the gateway sets
/// them itself (then the request is refused, naming the field).
#[derive(Debug, Deserialize)]
pub(crate) struct ChatCompletionRequest {
    pub(crate) model: String,
    pub(crate) messages: Vec<InMessage>,
    pub(crate) temperature: Option<f32>,
    pub(crate) top_p: Option<f32>,
    /// Deprecated by OpenAI in favour of `max_completion_tokens`; either is accepted.
    pub(crate) max_tokens: Option<i64>,
    pub(crate) max_completion_tokens: Option<i64>,
    pub(crate) stop: Option<Stop>,
    pub(crate) stream: Option<bool>,
    pub(crate) stream_options: Option<StreamOptions>,
    /// Only 1 is supported (one answer per call, as over gRPC).
    pub(crate) n: Option<u32>,
    pub(crate) seed: Option<i64>,
    pub(crate) presence_penalty: Option<f32>,
    pub(crate) frequency_penalty: Option<f32>,
    pub(crate) logprobs: Option<bool>,
    pub(crate) top_logprobs: Option<i32>,
    pub(crate) user: Option<String>,
    pub(crate) response_format: Option<InResponseFormat>,
    pub(crate) tools: Option<Vec<InTool>>,
    pub(crate) tool_choice: Option<InToolChoice>,
    pub(crate) parallel_tool_calls: Option<bool>,
    #[serde(flatten)]
    pub(crate) rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InTool {
    #[serde(rename = "type")]
    #[allow(dead_code)] // read only to check it: "function" is the one type
    pub(crate) kind: FunctionType,
    pub(crate) function: InFunction,
    pub(crate) cache_control: Option<InCacheControl>,
}

/// `{"type": "ephemeral", "ttl": "1h"}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InCacheControl {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) ttl: Option<String>,
}

impl From<InCacheControl> for crate::proto::CacheControl {
    fn from(c: InCacheControl) -> Self {
        crate::proto::CacheControl {
            r#type: c.kind,
            ttl: c.ttl.unwrap_or_default(),
        }
    }
}

/// The only tool type of chat completions.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FunctionType {
    Function,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InFunction {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) parameters: Option<serde_json::Map<String, serde_json::Value>>,
    pub(crate) strict: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum InToolChoice {
    Mode(String),
    Function {
        #[serde(rename = "type")]
        #[allow(dead_code)] // read only to check it: "function" is the one type
        kind: FunctionType,
        function: NamedFunction,
    },
}

#[derive(Debug, Deserialize)]
pub(crate) struct NamedFunction {
    pub(crate) name: String,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum InResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: InJsonSchema },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InJsonSchema {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) schema: Option<serde_json::Map<String, serde_json::Value>>,
    pub(crate) strict: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    pub(crate) include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InMessage {
    pub(crate) role: String,
    #[serde(default)]
    pub(crate) content: Option<Content>,
    pub(crate) name: Option<String>,
    pub(crate) tool_call_id: Option<String>,
    pub(crate) tool_calls: Option<Vec<InToolCall>>,
    /// Anthropic's prompt-cache mark, as gateways in front of Claude accept it on a message.
    pub(crate) cache_control: Option<InCacheControl>,
    /// Sent back by some clients with the assistant's earlier answer; nothing to pass on.
    #[allow(dead_code)]
    pub(crate) refusal: Option<String>,
    /// An assistant message's reasoning, as the door streamed it.
    pub(crate) reasoning_content: Option<String>,
    /// OpenRouter's name for it; some clients (qwen-code) send both, the same text.
    pub(crate) reasoning: Option<String>,
    /// Signed reasoning blocks (LiteLLM's shape), as the door streamed them: Anthropic needs them back.
    pub(crate) thinking_blocks: Option<Vec<ThinkingBlock>>,
}

/// A reasoning block with its signature, or a redacted one: `{"type": "thinking", "thinking", "signature"}`,
/// `{"type": "redacted_thinking", "data"}`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ThinkingBlock {
    Thinking {
        #[serde(default)]
        thinking: String,
        #[serde(default)]
        signature: String,
    },
    RedactedThinking {
        data: String,
    },
}

#[derive(Debug, Deserialize)]
pub(crate) struct InToolCall {
    pub(crate) id: String,
    #[serde(rename = "type")]
    #[allow(dead_code)] // read only to check it: "function" is the one type
    pub(crate) kind: FunctionType,
    pub(crate) function: InCalled,
}

#[derive(Debug, Deserialize)]
pub(crate) struct InCalled {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) arguments: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Part {
    Text {
        text: String,
        /// A mark on a part marks its message.
        #[serde(default)]
        cache_control: Option<InCacheControl>,
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
pub(crate) struct InImageUrl {
    pub(crate) url: String,
    pub(crate) detail: Option<String>,
}

/// A whole answer (`object: "chat.completion"`).
#[derive(Debug, Serialize)]
pub(crate) struct ChatCompletion<'a> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) choices: [CompletionChoice<'a>; 1],
    pub(crate) usage: Option<OutUsage>,
    pub(crate) system_fingerprint: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub(crate) struct CompletionChoice<'a> {
    pub(crate) index: u32,
    pub(crate) message: OutMessage<'a>,
    pub(crate) logprobs: Option<OutLogprobs<'a>>,
    pub(crate) finish_reason: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub(crate) struct OutMessage<'a> {
    pub(crate) role: &'static str,
    /// `null` when the answer is all tool calls, as OpenAI sends it.
    pub(crate) content: Option<&'a str>,
    pub(crate) refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) tool_calls: Vec<OutToolCall<'a>>,
    /// The reasoning text, as DeepSeek and vLLM write it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reasoning_content: Option<&'a str>,
    /// The reasoning blocks with their signatures (LiteLLM's shape), when the model signed them: sent back with
    /// the message, they let an Anthropic upstream continue a tool loop with thinking on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) thinking_blocks: Vec<ThinkingBlock>,
}

/// A tool call; in a stream it also has its `index`, and its pieces come as they were made: the first with
/// `id`, `type` and the name, later ones with the next piece of the arguments.
#[derive(Debug, Serialize)]
pub(crate) struct OutToolCall<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<&'static str>,
    pub(crate) function: OutFunction<'a>,
}

#[derive(Debug, Serialize)]
pub(crate) struct OutFunction<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<&'a str>,
    pub(crate) arguments: &'a str,
}

#[derive(Debug, Serialize)]
pub(crate) struct OutLogprobs<'a> {
    pub(crate) content: Vec<OutLogprob<'a>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct OutLogprob<'a> {
    pub(crate) token: &'a str,
    pub(crate) logprob: f64,
    pub(crate) bytes: Vec<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) top_logprobs: Option<Vec<OutLogprob<'a>>>,
}

/// One streamed event (`object: "chat.completion.chunk"`).
#[derive(Debug, Serialize)]
pub(crate) struct ChatChunk<'a> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) system_fingerprint: Option<&'a str>,
    pub(crate) choices: Vec<ChunkChoice<'a>>,
    /// Left out unless the client asked for usage; then `null` on every chunk but the last, as OpenAI does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) usage: Option<Option<OutUsage>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ChunkChoice<'a> {
    pub(crate) index: u32,
    pub(crate) delta: Delta<'a>,
    pub(crate) logprobs: Option<OutLogprobs<'a>>,
    pub(crate) finish_reason: Option<&'a str>,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) thinking_blocks: Vec<ThinkingBlock>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) tool_calls: Vec<OutToolCall<'a>>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct OutUsage {
    pub(crate) prompt_tokens: i32,
    pub(crate) completion_tokens: i32,
    pub(crate) total_tokens: i32,
    pub(crate) prompt_tokens_details: PromptTokensDetails,
    pub(crate) completion_tokens_details: CompletionTokensDetails,
    /// The gateway's own: present (true) only when the upstream reported no usage and the gateway counted it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) aigw_estimated: bool,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct PromptTokensDetails {
    pub(crate) cached_tokens: i32,
    /// Not OpenAI's: Anthropic's cache writes, when the upstream reports them.
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) cache_write_tokens: i32,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct CompletionTokensDetails {
    pub(crate) reasoning_tokens: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// `{"error": {...}}`, as OpenAI answers a failed request (and ends a failed stream).
#[derive(Debug, Serialize)]
pub(crate) struct ErrorBody<'a> {
    pub(crate) error: ErrorObject<'a>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ErrorObject<'a> {
    pub(crate) message: &'a str,
    #[serde(rename = "type")]
    pub(crate) kind: &'a str,
    pub(crate) param: Option<&'a str>,
    pub(crate) code: Option<&'a str>,
}

/// `GET /v1/models`.
#[derive(Debug, Serialize)]
pub(crate) struct ModelList<'a> {
    pub(crate) object: &'static str,
    pub(crate) data: Vec<ModelObject<'a>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ModelObject<'a> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) owned_by: &'static str,
}

/// `data: <json>\n\n`.
pub(crate) fn sse_event(value: &impl serde::Serialize) -> bytes::Bytes {
    let mut out = b"data: ".to_vec();
    // Serializing these types cannot fail: no maps with non-string keys, no failing Serialize impls.
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(b"\n\n");
    bytes::Bytes::from(out)
}
