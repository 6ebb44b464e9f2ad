//! Amazon Bedrock's Converse API (`kind = "bedrock"`): the gateway's request (OpenAI-shaped, see
//! `openai::ChatRequest`) translated to `POST {base_url}/model/{model}/converse` (streams: `converse-stream`,
//! answered in AWS's binary event-stream framing), signed with SigV4 (`aws_auth.rs`), and Bedrock's answers
//! and stream events translated back. Pure functions and a small stream state; the HTTP client is `http.rs`'s.
//!
//! Translation choices: system and developer messages become `system` blocks; `tool` messages become
//! `toolResult` blocks in a user turn; consecutive messages of one role are one turn. Tools go as `toolSpec`s
//! with their JSON Schema; `tool_choice` `required` is `any` (Converse has no `none`: the tools stay and the
//! model chooses). Images go inline as bytes (Converse takes no image URLs: one is refused, INVALID_ARGUMENT).
//! Prompt-cache marks become `cachePoint` blocks after what they mark. Reasoning is the model's own field in
//! `additionalModelRequestFields`: Claude's `thinking` (as Anthropic's API spells it), other models'
//! `reasoning_effort`; an assistant turn's signed reasoning and redacted blocks go first in it, byte-exact.
//! JSON output (Converse has no response format) is the one tool the model must call, `JSON_TOOL`, whose
//! input is handed out as the answer's text. `logprobs` is refused; `seed`, the penalties and `user` have no
//! Converse counterpart and are not sent.

use crate::{error::GatewayError, upstream::openai::wire::ChatRequest};

/// The tool that carries a JSON answer: reserved (a client's tool of this name is refused).
pub(crate) const JSON_TOOL: &str = "aigw_json_answer";

fn unsupported(what: &str) -> GatewayError {
    GatewayError::InvalidArgument(format!(
        "{what}: not supported by upstreams of kind \"bedrock\""
    ))
}

/// The request body, as sent.
pub fn body(req: &ChatRequest<'_>) -> Result<Vec<u8>, GatewayError> {
    serde_json::to_vec(&request::request(req)?)
        .map_err(|e| GatewayError::Internal(format!("encoding request: {e}")))
}

/// The endpoint for `model` (its id percent-encoded: ids and ARNs hold `:` and `/`).
pub(crate) fn path(model: &str, stream: bool) -> String {
    let mut id = String::with_capacity(model.len());
    for b in model.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            id.push(char::from(b));
        } else {
            id.push_str(&format!("%{b:02X}"));
        }
    }
    let verb = if stream {
        "converse-stream"
    } else {
        "converse"
    };
    format!("model/{id}/{verb}")
}

mod answer;
mod request;

pub(crate) use answer::{completion, event, finish, StreamState};

#[cfg(test)]
mod tests;
