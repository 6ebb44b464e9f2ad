//! OpenAI's Responses API as an upstream dialect (`kind = "responses"`, `{base_url}/responses`): the request
//! written as input items, the answer read back from output items or from the event stream.
//!
//! What the Responses door does not model travels here as the client sent it
//! (`GenerationConfig.dialect_options["responses"]`: `client_metadata`, `include`, `service_tier`, hosted tools,
//! ...); the gateway's own fields win, except that hosted tools join the function tools and `include` lists
//! join. Requests are stateless (`store: false`): reasoning goes back as items with their id and
//! `encrypted_content`, which the gateway asks for whenever the request asks for reasoning.

use serde::Deserialize;
use serde_json::Value;

use super::{answer::Completion, utf16::RawText};
use crate::{
    error::GatewayError,
    proto::{Reasoning, ToolCall, Usage},
    upstream::openai::{
        convert::{ChunkError, Piece, Reading},
        wire::{ApiError, ChatRequest},
    },
};

/// The request body, as sent.
pub fn body(req: &ChatRequest<'_>) -> Result<Vec<u8>, GatewayError> {
    serde_json::to_vec(&request::request(req)?)
        .map_err(|e| GatewayError::Internal(format!("encoding request: {e}")))
}

mod request;

#[derive(Debug, Default, Deserialize)]
struct Response {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    output: Vec<Value>,
    usage: Option<WireUsage>,
    incomplete_details: Option<Incomplete>,
    error: Option<ApiError>,
}

#[derive(Debug, Default, Deserialize)]
struct Incomplete {
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: InputDetails,
    #[serde(default)]
    output_tokens_details: OutputDetails,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct OutputDetails {
    #[serde(default)]
    reasoning_tokens: u64,
}

fn usage(u: WireUsage) -> Usage {
    use crate::upstream::openai::wire as chat;
    crate::upstream::openai::convert::usage(chat::WireUsage {
        prompt_tokens: u.input_tokens,
        completion_tokens: u.output_tokens,
        total_tokens: u.input_tokens + u.output_tokens,
        prompt_tokens_details: chat::PromptDetails {
            cached_tokens: u.input_tokens_details.cached_tokens,
        },
        completion_tokens_details: chat::CompletionDetails {
            reasoning_tokens: u.output_tokens_details.reasoning_tokens,
        },
        ..Default::default()
    })
}

/// An output item the gateway reads; the others (hosted tools' calls) are left to the Responses API's own
/// clients, which only a same-dialect pass-through could give them.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Item {
    Message {
        #[serde(default)]
        content: Vec<Value>,
    },
    FunctionCall {
        /// The item's id, which its argument pieces name (`fc_...`); not the call's.
        #[serde(default)]
        id: String,
        #[serde(default)]
        call_id: String,
        #[serde(default)]
        name: String,
        namespace: Option<String>,
        #[serde(default)]
        arguments: String,
    },
    Reasoning {
        #[serde(default)]
        id: String,
        #[serde(default)]
        summary: Vec<Value>,
        encrypted_content: Option<String>,
    },
    #[serde(other)]
    Other,
}

/// A call's name as the gateway's tools have it: a namespace's tool is `{namespace}__{name}` (see the
/// Responses door).
fn call_name(name: String, namespace: Option<String>) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}__{name}"),
        _ => name,
    }
}

fn texts(parts: &[Value]) -> String {
    parts
        .iter()
        .filter_map(|p| p["text"].as_str().or_else(|| p["refusal"].as_str()))
        .collect()
}

/// Why the answer ended, in chat's words.
fn finish_reason(status: &str, incomplete: Option<&Incomplete>, called: bool) -> String {
    match (status, incomplete.map(|i| i.reason.as_str())) {
        ("incomplete", Some("content_filter")) => "content_filter",
        ("incomplete", _) => "length",
        _ if called => "tool_calls",
        _ => "stop",
    }
    .to_owned()
}

pub(crate) fn completion(body: &[u8]) -> Result<Completion, String> {
    let r: Response =
        serde_json::from_slice(body).map_err(|e| format!("invalid response JSON: {e}"))?;
    if r.status == "failed" {
        let message = r.error.map(|e| e.message).unwrap_or_default();
        return Err(format!("the response failed: {message}"));
    }
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    let mut reasoning = Vec::new();
    for item in r.output {
        match serde_json::from_value(item).unwrap_or(Item::Other) {
            Item::Message { content: parts } => content.push_str(&texts(&parts)),
            Item::FunctionCall {
                call_id,
                name,
                namespace,
                arguments,
                ..
            } => tool_calls.push(ToolCall {
                id: call_id,
                name: call_name(name, namespace),
                arguments,
            }),
            Item::Reasoning {
                id,
                summary,
                encrypted_content,
            } => reasoning.push(Reasoning {
                text: texts(&summary),
                signature: encrypted_content.unwrap_or_default(),
                redacted: String::new(),
                id,
            }),
            Item::Other => {}
        }
    }
    Ok(Completion {
        id: r.id,
        model: r.model,
        content,
        finish_reason: finish_reason(
            &r.status,
            r.incomplete_details.as_ref(),
            !tool_calls.is_empty(),
        ),
        usage: r.usage.map(usage),
        tool_calls,
        logprobs: Vec::new(),
        reasoning,
    })
}

// ---- streams -------------------------------------------------------------------------------------------------

/// One event of the stream, read loosely: each kind uses some of these.
#[derive(Debug, Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    item_id: String,
    item: Option<Value>,
    response: Option<Response>,
    /// A text or arguments piece; text as WTF-8 (see `upstream::utf16`).
    delta: Option<RawText>,
    /// An `error` event's.
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: Option<String>,
}

/// What a stream has told so far: which item is which call, and which reasoning item is open.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    /// Function call item id -> tool call index.
    calls: Vec<(String, usize)>,
    /// The reasoning item whose block is open (its item id).
    reasoning: Option<String>,
    /// `response.completed` (or `.incomplete`) seen: the stream is complete.
    pub(crate) stopped: bool,
}

/// One event: text, reasoning and call pieces for the client, or progress; ids, usage and the whole calls go
/// into `reading.end`. Complete at `response.completed` or `response.incomplete`, never before.
pub(crate) fn event(
    data: &str,
    state: &mut StreamState,
    reading: &mut Reading,
) -> Result<Piece, ChunkError> {
    let e: Event = serde_json::from_str(data).map_err(ChunkError::Invalid)?;
    match e.kind.as_str() {
        "response.created" | "response.in_progress" => {
            if let Some(r) = e.response {
                reading.end.id = r.id;
                reading.end.model = r.model;
            }
            Ok(Piece::Progress)
        }
        "response.output_item.added" => match e.item.map(serde_json::from_value) {
            Some(Ok(Item::FunctionCall {
                id: item_id,
                call_id,
                name,
                namespace,
                ..
            })) => {
                let (index, piece) = reading.call_begins(call_id, call_name(name, namespace))?;
                state.calls.push((item_id, index));
                Ok(piece)
            }
            Some(Ok(Item::Reasoning { id, .. })) => {
                state.reasoning = Some(id.clone());
                reading.reasoning_begins(id)
            }
            _ => Ok(Piece::Progress),
        },
        "response.output_text.delta" => match e.delta {
            Some(raw) => Ok(reading.text_piece(raw)),
            None => Ok(Piece::Progress),
        },
        "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
            let delta = text_of(e.delta);
            if delta.is_empty() {
                return Ok(Piece::Progress);
            }
            let open = state.reasoning.as_deref() == Some(e.item_id.as_str());
            state.reasoning = Some(e.item_id);
            reading.reasoning_piece(!open, delta, String::new(), String::new())
        }
        "response.function_call_arguments.delta" => {
            let delta = text_of(e.delta);
            let index = call_of(state, &e.item_id, reading)?;
            reading.call_arguments(index, delta)
        }
        "response.output_item.done" => match e.item.map(serde_json::from_value) {
            Some(Ok(Item::Reasoning {
                id,
                encrypted_content: Some(blob),
                ..
            })) if !blob.is_empty() => {
                let open = state.reasoning.as_deref() == Some(id.as_str());
                state.reasoning = None;
                if open {
                    reading.reasoning_piece(false, String::new(), blob, String::new())
                } else {
                    // A block with no piece before its end: it begins (with its id) and ends here.
                    let begun = reading.reasoning_begins(id)?;
                    let signed =
                        reading.reasoning_piece(false, String::new(), blob, String::new())?;
                    reading.queued.push_back(signed);
                    Ok(begun)
                }
            }
            Some(Ok(Item::FunctionCall { id, arguments, .. })) => {
                // Arguments given whole at the end (some servers stream none) are the call's only piece.
                let index = call_of(state, &id, reading)?;
                if reading.end.tool_calls[index].arguments.is_empty() && !arguments.is_empty() {
                    return reading.call_arguments(index, arguments);
                }
                Ok(Piece::Progress)
            }
            _ => Ok(Piece::Progress),
        },
        "response.completed" | "response.incomplete" => {
            state.stopped = true;
            let r = e.response.unwrap_or_default();
            let end = &mut reading.end;
            for call in &mut end.tool_calls {
                if call.arguments.is_empty() {
                    call.arguments.push_str("{}");
                }
            }
            end.finish_reason = finish_reason(
                &r.status,
                r.incomplete_details.as_ref(),
                !end.tool_calls.is_empty(),
            );
            end.usage = r.usage.map(usage);
            Ok(Piece::Nothing)
        }
        "response.failed" => {
            let message = e
                .response
                .and_then(|r| r.error)
                .map(|e| e.message)
                .unwrap_or_default();
            Err(ChunkError::Upstream(format!(
                "the response failed: {message}"
            )))
        }
        "error" if e.code.as_deref() == Some("server_is_overloaded") => {
            Err(ChunkError::Overloaded(e.message))
        }
        "error" => Err(ChunkError::Upstream(e.message)),
        // Parts added and done, text done, annotations, hosted tools' progress: signs of life.
        _ => Ok(Piece::Progress),
    }
}

/// A piece's text (reasoning and arguments are read whole pieces at a time, lossily).
fn text_of(delta: Option<RawText>) -> String {
    String::from_utf8_lossy(&delta.map(|d| d.0).unwrap_or_default()).into_owned()
}

/// The tool call an item id names.
fn call_of(state: &StreamState, item_id: &str, reading: &Reading) -> Result<usize, ChunkError> {
    state
        .calls
        .iter()
        .find(|(id, _)| id == item_id)
        .map(|&(_, index)| index)
        .filter(|&index| index < reading.end.tool_calls.len())
        .ok_or_else(|| {
            ChunkError::Malformed(format!(
                "arguments for item '{item_id}', which is not a function call"
            ))
        })
}

#[cfg(test)]
mod tests;
