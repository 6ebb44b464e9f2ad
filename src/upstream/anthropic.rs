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

use serde_json::{json, Value};

use crate::{error::GatewayError, upstream::openai::wire::ChatRequest};

/// The API version every request names (`anthropic-version`).
pub(crate) const VERSION: &str = "2023-06-01";

fn unsupported(what: &str) -> GatewayError {
    GatewayError::InvalidArgument(format!(
        "{what}: not supported by upstreams of kind \"anthropic\""
    ))
}

/// The request body, as sent.
pub fn body(req: &ChatRequest<'_>) -> Result<Vec<u8>, GatewayError> {
    serde_json::to_vec(&request::request(req)?)
        .map_err(|e| GatewayError::Internal(format!("encoding request: {e}")))
}

/// A float as the client wrote it: `0.9f32` widened to f64 would go out as 0.8999999761581421.
pub(crate) fn float(v: f32) -> Value {
    v.to_string()
        .parse::<f64>()
        .map_or(Value::Null, Value::from)
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

mod answer;
mod request;

pub(crate) use answer::{completion, event, stop_reason, StreamState};

#[cfg(test)]
mod tests;
