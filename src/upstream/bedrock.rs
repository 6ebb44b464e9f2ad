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

use crate::{
    error::GatewayError,
    upstream::openai::{embeddings::EmbedAsk, wire::ChatRequest},
};

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

/// The InvokeModel endpoint for `model`, which Bedrock's embedding models answer.
pub(crate) fn invoke_path(model: &str) -> String {
    path(model, false).replace("/converse", "/invoke")
}

/// Whether `model` embeds many texts in one call (Cohere's); Titan's take one text a call.
fn batches(model: &str) -> bool {
    model.contains("cohere.")
}

/// The InvokeModel bodies that embed `ask.input`, in order: one for Cohere's models (all the texts), one per
/// text for Titan's (with the asked dimensions).
pub(crate) fn embed_bodies(model: &str, ask: EmbedAsk<'_>) -> Result<Vec<Vec<u8>>, GatewayError> {
    let encode = |v: serde_json::Value| {
        serde_json::to_vec(&v).map_err(|e| GatewayError::Internal(format!("encoding request: {e}")))
    };
    if batches(model) {
        if ask.dimensions.is_some() {
            return Err(unsupported("dimensions with a Cohere embedding model"));
        }
        return Ok(vec![encode(
            serde_json::json!({"texts": ask.input, "input_type": "search_document"}),
        )?]);
    }
    ask.input
        .iter()
        .map(|text| {
            let mut body = serde_json::json!({ "inputText": text });
            if let Some(d) = ask.dimensions {
                body["dimensions"] = d.into();
            }
            encode(body)
        })
        .collect()
}

/// One InvokeModel answer of an embedding model: its vectors (`texts` of them) and the input tokens it counted
/// (Titan counts them; Cohere does not say).
pub(crate) fn embed_answer(body: &[u8], texts: usize) -> Result<(Vec<Vec<f32>>, u64), String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer {
        embedding: Option<Vec<f32>>,
        #[serde(default)]
        input_text_token_count: u64,
        embeddings: Option<Vec<Vec<f32>>>,
    }
    let a: Answer =
        serde_json::from_slice(body).map_err(|e| format!("invalid embeddings JSON: {e}"))?;
    let vectors = match (a.embedding, a.embeddings) {
        (Some(one), _) => vec![one],
        (None, Some(many)) => many,
        (None, None) => return Err("no embedding in the answer".into()),
    };
    if vectors.len() != texts {
        return Err(format!("{} embeddings for {texts} inputs", vectors.len()));
    }
    Ok((vectors, a.input_text_token_count))
}

mod answer;
mod request;

pub(crate) use answer::{completion, event, finish, StreamState};

#[cfg(test)]
mod tests;
