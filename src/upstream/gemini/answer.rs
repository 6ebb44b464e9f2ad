//! Gemini's answers translated back: a whole `GenerateContentResponse`, and the stream's chunks (each one a
//! partial response) — thoughts, thought signatures, text and function calls handed out as they arrive.

use serde::Deserialize;
use serde_json::Value;

use crate::{
    proto::{Reasoning, ToolCall, Usage},
    upstream::answer::{Completion, NoAnswer},
    upstream::openai::convert::{ChunkError, Piece, Reading},
    upstream::utf16::RawText,
};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    #[serde(default)]
    candidates: Vec<Candidate>,
    usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    model_version: String,
    #[serde(default)]
    response_id: String,
    prompt_feedback: Option<PromptFeedback>,
    /// Set when the body is an error, not an answer.
    error: Option<GoogleError>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<Content>,
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Content {
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Part {
    text: Option<RawText>,
    #[serde(default)]
    thought: bool,
    thought_signature: Option<String>,
    function_call: Option<FunctionCall>,
}

#[derive(Debug, Deserialize)]
struct FunctionCall {
    #[serde(default)]
    id: String,
    name: String,
    #[serde(default)]
    args: Value,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    tool_use_prompt_token_count: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
}

/// Google's error body: `{"error": {"code": 429, "message": ..., "status": "RESOURCE_EXHAUSTED"}}`.
#[derive(Debug, Deserialize)]
pub(super) struct GoogleError {
    #[serde(default)]
    pub(super) code: u16,
    #[serde(default)]
    pub(super) message: String,
    #[serde(default)]
    pub(super) status: String,
}

/// Gemini counts thoughts apart from the answer's tokens; the gateway's output tokens hold both, the reasoning
/// part named. Tool-use prompt tokens (Google's own tools' results) are prompt tokens.
fn usage(u: UsageMetadata) -> Usage {
    let prompt = u.prompt_token_count + u.tool_use_prompt_token_count;
    let completion = u.candidates_token_count + u.thoughts_token_count;
    crate::upstream::openai::convert::usage(crate::upstream::openai::wire::WireUsage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        prompt_tokens_details: crate::upstream::openai::wire::PromptDetails {
            cached_tokens: u.cached_content_token_count,
        },
        completion_tokens_details: crate::upstream::openai::wire::CompletionDetails {
            reasoning_tokens: u.thoughts_token_count,
        },
        ..Default::default()
    })
}

/// Gemini's finish reasons in OpenAI's words; `calls`: the answer called a function (Gemini says STOP).
fn finish_reason(reason: &str, calls: bool) -> String {
    match reason {
        "STOP" if calls => "tool_calls",
        "STOP" => "stop",
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        other => return other.to_ascii_lowercase(),
    }
    .to_owned()
}

/// The HTTP status a Google error stands for (its `code`, else its `status`).
pub(super) fn error_status(e: &GoogleError) -> u16 {
    if (400..600).contains(&e.code) {
        return e.code;
    }
    match e.status.as_str() {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "RESOURCE_EXHAUSTED" => 429,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => 500,
    }
}

/// A tool call's id: Gemini's when it gave one, else one made up, unique in the conversation (clients key a
/// call's result by its id across turns; Gemini 2.5 gives none).
fn call_id(given: String) -> String {
    if given.is_empty() {
        format!("call_{:016x}", fastrand::u64(..))
    } else {
        given
    }
}

pub(crate) fn completion(body: &[u8]) -> Result<Completion, NoAnswer> {
    let r: Response = serde_json::from_slice(body)
        .map_err(|e| NoAnswer::Malformed(format!("invalid generateContent JSON: {e}")))?;
    if let Some(error) = r.error {
        return Err(NoAnswer::Api {
            status: error_status(&error),
            message: error.message,
        });
    }
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    let mut reasoning: Vec<Reasoning> = Vec::new();
    let mut in_thought = false;
    let candidate = r.candidates.into_iter().next();
    let finish = candidate.as_ref().and_then(|c| c.finish_reason.clone());
    for part in candidate.and_then(|c| c.content).unwrap_or_default().parts {
        let text = part
            .text
            .map(|t| String::from_utf8_lossy(&t.0).into_owned());
        // A thought continues the block of the thought before it; a signature on another part goes with the
        // thought before it, or stands alone.
        if part.thought || part.thought_signature.is_some() {
            if !in_thought {
                reasoning.push(Reasoning::default());
            }
            if let Some(last) = reasoning.last_mut() {
                if part.thought {
                    last.text.push_str(text.as_deref().unwrap_or_default());
                }
                last.signature
                    .push_str(part.thought_signature.as_deref().unwrap_or_default());
            }
        }
        if part.thought {
            in_thought = true;
            continue;
        }
        in_thought = false;
        if let Some(call) = part.function_call {
            tool_calls.push(ToolCall {
                id: call_id(call.id),
                name: call.name,
                arguments: arguments(&call.args),
            });
        } else if let Some(t) = text {
            content.push_str(&t);
        }
    }
    let finish_reason = match (finish, r.prompt_feedback.and_then(|f| f.block_reason)) {
        (Some(f), _) => finish_reason(&f, !tool_calls.is_empty()),
        (None, Some(_)) => "content_filter".to_owned(),
        (None, None) => String::new(),
    };
    Ok(Completion {
        id: r.response_id,
        model: r.model_version,
        content,
        finish_reason,
        usage: r.usage_metadata.map(usage),
        tool_calls,
        logprobs: Vec::new(),
        reasoning,
    })
}

/// A call's arguments as JSON text (Gemini sends the object; none is the empty object).
fn arguments(args: &Value) -> String {
    match args {
        Value::Null => "{}".to_owned(),
        args => args.to_string(),
    }
}

// ---- streams -------------------------------------------------------------------------------------------------

/// What a stream has told so far: whether the last part was a thought (a signature or thought after it belongs
/// to its block), and whether a finish reason came (a stream ends when its body does, complete only after one).
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    in_thought: bool,
    /// A chunk with a finish reason (or a blocked prompt) arrived: the body's end is the answer's.
    pub(crate) finished: bool,
    /// The last finish reason, in Gemini's words.
    finish: Option<String>,
}

/// One chunk of a stream: its pieces in order (the first returned, the rest queued in `reading`); ids, usage,
/// finish reason and tool calls go into `reading.end`.
pub(crate) fn chunk(
    data: &str,
    state: &mut StreamState,
    reading: &mut Reading,
) -> Result<Piece, ChunkError> {
    let r: Response = serde_json::from_str(data).map_err(ChunkError::Invalid)?;
    if let Some(error) = r.error {
        return Err(match error_status(&error) {
            429 | 503 | 529 => ChunkError::Overloaded(error.message),
            _ => ChunkError::Upstream(error.message),
        });
    }
    let end = &mut reading.end;
    if !r.response_id.is_empty() {
        end.id = r.response_id;
    }
    if !r.model_version.is_empty() {
        end.model = r.model_version;
    }
    if let Some(u) = r.usage_metadata {
        end.usage = Some(usage(u));
    }
    if r.prompt_feedback.and_then(|f| f.block_reason).is_some() && r.candidates.is_empty() {
        state.finished = true;
        state.finish = Some("SAFETY".into());
    }
    for candidate in r.candidates.into_iter().take(1) {
        if let Some(f) = candidate.finish_reason {
            state.finished = true;
            state.finish = Some(f);
        }
        for part in candidate.content.unwrap_or_default().parts {
            part_pieces(part, state, reading)?;
        }
    }
    // The chunk's pieces wait in the reading's queue (no list of their own per chunk): the first goes now.
    Ok(reading.queued.pop_front().unwrap_or(Piece::Progress))
}

/// Queues a piece for the client; a sign of life is no piece (the chunk itself is one).
fn queue(reading: &mut Reading, piece: Piece) {
    if piece != Piece::Progress {
        reading.queued.push_back(piece);
    }
}

fn part_pieces(
    part: Part,
    state: &mut StreamState,
    reading: &mut Reading,
) -> Result<(), ChunkError> {
    let text = part.text.map(|t| t.0).unwrap_or_default();
    if part.thought {
        let signature = part.thought_signature.unwrap_or_default();
        if !text.is_empty() || !signature.is_empty() {
            let text = String::from_utf8_lossy(&text).into_owned();
            let new_block = !state.in_thought;
            let piece = reading.reasoning_piece(new_block, text, signature, String::new())?;
            queue(reading, piece);
        }
        state.in_thought = true;
        return Ok(());
    }
    if let Some(signature) = part.thought_signature.filter(|s| !s.is_empty()) {
        // After a thought, its block's signature; else a block of its own.
        let new_block = !state.in_thought;
        let piece = reading.reasoning_piece(new_block, String::new(), signature, String::new())?;
        queue(reading, piece);
    }
    state.in_thought = false;
    if let Some(call) = part.function_call {
        let id = call_id(call.id);
        let (index, first) = reading.call_begins(id, call.name)?;
        queue(reading, first);
        let piece = reading.call_arguments(index, arguments(&call.args))?;
        queue(reading, piece);
        // A text piece closes the reasoning block; a call must too.
        reading.reasoning_open = None;
    } else if !text.is_empty() {
        let piece = reading.text_piece(RawText(text));
        queue(reading, piece);
    }
    Ok(())
}

/// The stream's body ended after a finish reason: the answer is whole. A call's finish is `tool_calls`.
pub(crate) fn finish(state: &StreamState, reading: &mut Reading) {
    let calls = !reading.end.tool_calls.is_empty();
    if let Some(f) = &state.finish {
        reading.end.finish_reason = finish_reason(f, calls);
    }
}
