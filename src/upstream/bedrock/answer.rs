//! Converse's answers translated back: a whole answer, and ConverseStream's events (each an AWS event-stream
//! frame's JSON payload, named by its `:event-type`) — reasoning, signatures, text and tool input handed out as
//! they arrive.

use serde::Deserialize;
use serde_json::Value;

use super::JSON_TOOL;
use crate::{
    proto::{Reasoning, ToolCall, Usage},
    upstream::answer::{Completion, NoAnswer},
    upstream::openai::convert::{ChunkError, Piece, Reading},
    upstream::utf16::RawText,
};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    output: Option<Output>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct Output {
    message: Option<OutMessage>,
}

#[derive(Debug, Deserialize)]
struct OutMessage {
    #[serde(default)]
    content: Vec<Block>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Block {
    text: Option<String>,
    tool_use: Option<ToolUse>,
    reasoning_content: Option<ReasoningContent>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUse {
    tool_use_id: String,
    name: String,
    #[serde(default)]
    input: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReasoningContent {
    reasoning_text: Option<ReasoningText>,
    redacted_content: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ReasoningText {
    #[serde(default)]
    text: String,
    #[serde(default)]
    signature: String,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_write_input_tokens: u64,
}

/// Converse counts cache reads and writes apart from `inputTokens` (as Anthropic does); the gateway's prompt
/// tokens hold all three, the cached and written parts named.
fn usage(u: WireUsage) -> Usage {
    let clamp = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
    let prompt = u.input_tokens + u.cache_read_input_tokens + u.cache_write_input_tokens;
    Usage {
        cached_prompt_tokens: clamp(u.cache_read_input_tokens),
        cache_write_tokens: clamp(u.cache_write_input_tokens),
        ..crate::upstream::openai::convert::usage(crate::upstream::openai::wire::WireUsage {
            prompt_tokens: prompt,
            completion_tokens: u.output_tokens,
            total_tokens: prompt + u.output_tokens,
            ..Default::default()
        })
    }
}

/// Converse's stop reasons in OpenAI's words.
fn finish_reason(stop: &str, json_answer: bool) -> String {
    match stop {
        "tool_use" if json_answer => "stop",
        "end_turn" | "stop_sequence" => "stop",
        "tool_use" => "tool_calls",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        other => other,
    }
    .to_owned()
}

pub(crate) fn completion(body: &[u8]) -> Result<Completion, NoAnswer> {
    let a: Answer = serde_json::from_slice(body)
        .map_err(|e| NoAnswer::Malformed(format!("invalid Converse JSON: {e}")))?;
    let Some(message) = a.output.and_then(|o| o.message) else {
        return Err(NoAnswer::Malformed("no output message".into()));
    };
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    let mut reasoning = Vec::new();
    let mut json_answer = false;
    for block in message.content {
        if let Some(t) = block.text {
            content.push_str(&t);
        } else if let Some(call) = block.tool_use {
            if call.name == JSON_TOOL {
                // The JSON the client asked for, written as the reserved tool's input.
                json_answer = true;
                content.push_str(&call.input.to_string());
            } else {
                tool_calls.push(ToolCall {
                    id: call.tool_use_id,
                    name: call.name,
                    arguments: arguments(&call.input),
                });
            }
        } else if let Some(r) = block.reasoning_content {
            if let Some(t) = r.reasoning_text {
                reasoning.push(Reasoning {
                    text: t.text,
                    signature: t.signature,
                    ..Default::default()
                });
            } else if let Some(data) = r.redacted_content {
                reasoning.push(Reasoning {
                    redacted: data,
                    ..Default::default()
                });
            }
        }
    }
    Ok(Completion {
        id: String::new(),
        model: String::new(),
        content,
        finish_reason: a
            .stop_reason
            .map(|s| finish_reason(&s, json_answer))
            .unwrap_or_default(),
        usage: a.usage.map(usage),
        tool_calls,
        logprobs: Vec::new(),
        reasoning,
    })
}

fn arguments(input: &Value) -> String {
    match input {
        Value::Null => "{}".to_owned(),
        input => input.to_string(),
    }
}

// ---- streams -------------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart {
    content_block_index: usize,
    start: Option<StartKind>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartKind {
    tool_use: Option<StartToolUse>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartToolUse {
    tool_use_id: String,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta {
    content_block_index: usize,
    delta: Delta,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delta {
    text: Option<RawText>,
    tool_use: Option<ToolInput>,
    reasoning_content: Option<ReasoningDelta>,
}

#[derive(Debug, Deserialize)]
struct ToolInput {
    #[serde(default)]
    input: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReasoningDelta {
    text: Option<String>,
    signature: Option<String>,
    redacted_content: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageStop {
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct Exception {
    #[serde(default, alias = "Message")]
    message: String,
}

/// What a stream has told so far: which content block is which tool call (or the JSON answer), which block
/// the reasoning is in, and whether `messageStop` came (the stream is whole when the body ends after it, its
/// `metadata` event with the usage in between).
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    /// Content block index -> tool call index.
    tool_blocks: Vec<(usize, usize)>,
    /// The block whose tool input is the JSON answer.
    json_block: Option<usize>,
    /// The reasoning block being streamed (its content block index), and whether a piece of it was relayed.
    reasoning: Option<(usize, bool)>,
    stop: Option<String>,
    /// `messageStop` arrived.
    pub(crate) stopped: bool,
}

fn parse<'a, T: Deserialize<'a>>(data: &'a str) -> Result<T, ChunkError> {
    serde_json::from_str(data).map_err(ChunkError::Invalid)
}

/// One event of a stream (`event`: its `:event-type`, or `exception:<type>` for an exception frame).
pub(crate) fn event(
    event: &str,
    data: &str,
    state: &mut StreamState,
    reading: &mut Reading,
) -> Result<Piece, ChunkError> {
    match event {
        "contentBlockStart" => {
            let start: BlockStart = parse(data)?;
            match start.start.and_then(|s| s.tool_use) {
                Some(call) if call.name == JSON_TOOL => {
                    state.json_block = Some(start.content_block_index);
                    Ok(Piece::Progress)
                }
                Some(call) => {
                    let (index, piece) = reading.call_begins(call.tool_use_id, call.name)?;
                    state.tool_blocks.push((start.content_block_index, index));
                    reading.reasoning_open = None;
                    Ok(piece)
                }
                None => Ok(Piece::Progress),
            }
        }
        "contentBlockDelta" => {
            let d: BlockDelta = parse(data)?;
            let at = d.content_block_index;
            if let Some(text) = d.delta.text {
                return Ok(reading.text_piece(text));
            }
            if let Some(input) = d.delta.tool_use {
                if state.json_block == Some(at) {
                    return Ok(reading.text_piece(RawText(input.input.into_bytes())));
                }
                let Some(&(_, call)) = state.tool_blocks.iter().find(|(b, _)| *b == at) else {
                    return Err(ChunkError::Malformed(format!(
                        "tool input for content block {at}, which is not a tool call"
                    )));
                };
                return reading.call_arguments(call, input.input);
            }
            match d.delta.reasoning_content {
                Some(ReasoningDelta {
                    redacted_content: Some(data),
                    ..
                }) => reading.reasoning_piece(true, String::new(), String::new(), data),
                Some(r) => {
                    let (text, signature) =
                        (r.text.unwrap_or_default(), r.signature.unwrap_or_default());
                    if text.is_empty() && signature.is_empty() {
                        return Ok(Piece::Progress);
                    }
                    let new_block = match state.reasoning {
                        Some((block, started)) if block == at => !started,
                        _ => true,
                    };
                    state.reasoning = Some((at, true));
                    reading.reasoning_piece(new_block, text, signature, String::new())
                }
                None => Ok(Piece::Progress),
            }
        }
        "messageStop" => {
            let stop: MessageStop = parse(data)?;
            state.stop = stop.stop_reason;
            state.stopped = true;
            Ok(Piece::Progress)
        }
        "metadata" => {
            let m: Metadata = parse(data)?;
            if let Some(u) = m.usage {
                reading.end.usage = Some(usage(u));
            }
            Ok(Piece::Progress)
        }
        _ if event.starts_with("exception:") => {
            let kind = &event["exception:".len()..];
            let message = serde_json::from_str::<Exception>(data)
                .map(|e| e.message)
                .unwrap_or_default();
            let message = format!("{kind}: {message}");
            Err(match kind {
                "throttlingException" | "serviceUnavailableException" => {
                    ChunkError::Overloaded(message)
                }
                _ => ChunkError::Upstream(message),
            })
        }
        // messageStart, contentBlockStop and events the gateway does not model: signs of life.
        _ => Ok(Piece::Progress),
    }
}

/// The body ended after `messageStop`: the finish reason, and a tool call with no input has the empty object.
pub(crate) fn finish(state: &StreamState, reading: &mut Reading) {
    let end = &mut reading.end;
    for call in &mut end.tool_calls {
        if call.arguments.is_empty() {
            call.arguments.push_str("{}");
        }
    }
    if let Some(stop) = &state.stop {
        end.finish_reason = finish_reason(stop, state.json_block.is_some());
    }
}
