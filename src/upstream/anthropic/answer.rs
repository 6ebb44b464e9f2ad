//! Anthropic's answers translated back: a whole message, and the stream's events — text, thinking, signatures
//! and tool input handed out piece by piece as they arrive; pings and other events are signs of life.

use serde::Deserialize;
use serde_json::Value;

use crate::{
    proto::{Reasoning, ToolCall, Usage},
    upstream::answer::{Completion, NoAnswer},
    upstream::openai::convert::{ChunkError, Piece, Reading},
    upstream::utf16::RawText,
};

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    content: Vec<Block>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
    /// Set when the body is an error, not a message (`{"type": "error", ...}`).
    error: Option<crate::upstream::openai::wire::ApiError>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
        #[serde(default)]
        signature: String,
    },
    RedactedThinking {
        #[serde(default)]
        data: String,
    },
    /// Blocks the gateway does not model (server tool results and the like).
    #[serde(other)]
    Other,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
}

impl WireUsage {
    /// Cached prompt tokens are prompt tokens too.
    fn prompt(self) -> u64 {
        self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens
    }
}

/// Anthropic counts cache reads and writes apart from `input_tokens`; the gateway's prompt tokens hold all
/// three, with the cached and written parts named.
fn usage(prompt: WireUsage, completion: u64) -> Usage {
    let clamp = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
    Usage {
        cached_prompt_tokens: clamp(prompt.cache_read_input_tokens),
        cache_write_tokens: clamp(prompt.cache_creation_input_tokens),
        ..crate::upstream::openai::convert::usage(crate::upstream::openai::wire::WireUsage {
            prompt_tokens: prompt.prompt(),
            completion_tokens: completion,
            total_tokens: prompt.prompt() + completion,
            ..Default::default()
        })
    }
}

/// OpenAI's finish reasons in Anthropic's words (the Messages door's answers); [`finish_reason`] the other way.
pub(crate) fn stop_reason(finish: &str) -> &str {
    match finish {
        "stop" | "" => "end_turn",
        "length" => "max_tokens",
        "tool_calls" => "tool_use",
        "content_filter" => "refusal",
        other => other,
    }
}

/// Anthropic's stop reasons in OpenAI's words.
pub(crate) fn finish_reason(stop: &str) -> String {
    match stop {
        "end_turn" | "stop_sequence" => "stop",
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        other => other,
    }
    .to_owned()
}

fn error_status(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "overloaded_error" => 529,
        _ => 500,
    }
}

pub(crate) fn completion(body: &[u8]) -> Result<Completion, NoAnswer> {
    let m: Message = serde_json::from_slice(body)
        .map_err(|e| NoAnswer::Malformed(format!("invalid message JSON: {e}")))?;
    if let Some(error) = m.error {
        return Err(NoAnswer::Api {
            status: error_status(&error.kind),
            message: error.message,
        });
    }
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    let mut reasoning = Vec::new();
    for block in m.content {
        match block {
            Block::Text { text } => content.push_str(&text),
            Block::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id,
                name,
                arguments: input.to_string(),
            }),
            Block::Thinking {
                thinking,
                signature,
            } => reasoning.push(Reasoning {
                text: thinking,
                signature,
                ..Default::default()
            }),
            Block::RedactedThinking { data } => reasoning.push(Reasoning {
                redacted: data,
                ..Default::default()
            }),
            Block::Other => {}
        }
    }
    Ok(Completion {
        id: m.id,
        model: m.model,
        content,
        finish_reason: m
            .stop_reason
            .as_deref()
            .map(finish_reason)
            .unwrap_or_default(),
        usage: m.usage.map(|u| usage(u, u.output_tokens)),
        tool_calls,
        logprobs: Vec::new(),
        reasoning,
    })
}

// ---- streams -------------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    MessageStart {
        message: Message,
    },
    ContentBlockStart {
        index: usize,
        content_block: Block,
    },
    ContentBlockDelta {
        index: usize,
        delta: BlockDelta,
    },
    ContentBlockStop {},
    MessageDelta {
        #[serde(default)]
        delta: MessageDelta,
        usage: Option<WireUsage>,
    },
    MessageStop {},
    Ping {},
    Error {
        error: crate::upstream::openai::wire::ApiError,
    },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    SignatureDelta {
        signature: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Default, Deserialize)]
struct MessageDelta {
    stop_reason: Option<String>,
}

/// A `content_block_delta` with a `text_delta`, read leniently (its text as WTF-8).
#[derive(Deserialize)]
struct RawTextDelta {
    #[serde(rename = "type")]
    kind: String,
    delta: RawTextDeltaBody,
}

#[derive(Deserialize)]
struct RawTextDeltaBody {
    #[serde(rename = "type")]
    kind: String,
    text: RawText,
}

/// What a stream has told so far that the end needs: which content block is which tool call, and the usage
/// counts, which arrive in two halves (prompt at the start, output at the end).
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    /// Content block index -> tool call index, for `input_json_delta`s.
    tool_blocks: Vec<(usize, usize)>,
    /// The thinking block being streamed (its content block index), and whether a piece of it was relayed.
    thinking: Option<(usize, bool)>,
    /// `message_start`'s input counts (updated by `message_delta` when it carries them).
    prompt: Option<WireUsage>,
    output_tokens: Option<u64>,
    /// `message_stop` seen: the stream is complete.
    pub(crate) stopped: bool,
}

/// One event of a stream: text for the client, progress (tool input arriving), or nothing; ids, finish reason,
/// usage and tool calls go into `end`. A stream is complete at `message_stop`, never before.
pub(crate) fn event(
    data: &str,
    state: &mut StreamState,
    reading: &mut Reading,
) -> Result<Piece, ChunkError> {
    let event: Event = match serde_json::from_str(data) {
        Ok(event) => event,
        // The tagged enums above read strings strictly; a text delta carrying half a surrogate pair is read
        // again as plain structs whose text is WTF-8 (see `upstream::utf16`).
        Err(e) => match serde_json::from_str::<RawTextDelta>(data) {
            Ok(raw) if raw.kind == "content_block_delta" && raw.delta.kind == "text_delta" => {
                return Ok(reading.text_piece(raw.delta.text));
            }
            _ => return Err(ChunkError::Invalid(e)),
        },
    };
    let end = &mut reading.end;
    match event {
        Event::MessageStart { message } => {
            end.id = message.id;
            end.model = message.model;
            if let Some(u) = message.usage {
                state.prompt = Some(u);
                state.output_tokens = Some(u.output_tokens);
            }
            Ok(Piece::Progress)
        }
        Event::ContentBlockStart {
            index,
            content_block: Block::ToolUse { id, name, .. },
        } => {
            let (call, piece) = reading.call_begins(id, name)?;
            state.tool_blocks.push((index, call));
            Ok(piece)
        }
        Event::ContentBlockStart {
            content_block: Block::Text { text },
            ..
        } if !text.is_empty() => Ok(reading.text_piece(RawText(text.into_bytes()))),
        Event::ContentBlockStart {
            index,
            content_block:
                Block::Thinking {
                    thinking,
                    signature,
                },
        } => {
            state.thinking = Some((index, false));
            if thinking.is_empty() && signature.is_empty() {
                return Ok(Piece::Progress);
            }
            thinking_piece(state, reading, index, thinking, signature)
        }
        Event::ContentBlockStart {
            content_block: Block::RedactedThinking { data },
            ..
        } => reading.reasoning_piece(true, String::new(), String::new(), data),
        Event::ContentBlockDelta {
            delta: BlockDelta::TextDelta { text },
            ..
        } if !text.is_empty() => Ok(reading.text_piece(RawText(text.into_bytes()))),
        Event::ContentBlockDelta {
            index,
            delta: BlockDelta::ThinkingDelta { thinking },
        } if !thinking.is_empty() => thinking_piece(state, reading, index, thinking, String::new()),
        Event::ContentBlockDelta {
            index,
            delta: BlockDelta::SignatureDelta { signature },
        } if !signature.is_empty() => {
            thinking_piece(state, reading, index, String::new(), signature)
        }
        Event::ContentBlockDelta {
            index,
            delta: BlockDelta::InputJsonDelta { partial_json },
        } => {
            let Some(&(_, call)) = state.tool_blocks.iter().find(|(b, _)| *b == index) else {
                return Err(ChunkError::Malformed(format!(
                    "input for content block {index}, which is not a tool call"
                )));
            };
            reading.call_arguments(call, partial_json)
        }
        Event::MessageDelta { delta, usage } => {
            if let Some(stop) = delta.stop_reason {
                end.finish_reason = finish_reason(&stop);
            }
            if let Some(u) = usage {
                state.output_tokens = Some(u.output_tokens);
                if u.prompt() > 0 {
                    state.prompt = Some(u);
                }
            }
            Ok(Piece::Progress)
        }
        Event::MessageStop {} => {
            state.stopped = true;
            // A tool call with no input streamed has the empty object as its arguments.
            for call in &mut end.tool_calls {
                if call.arguments.is_empty() {
                    call.arguments.push_str("{}");
                }
            }
            if let (Some(p), Some(c)) = (state.prompt, state.output_tokens) {
                end.usage = Some(usage(p, c));
            }
            Ok(Piece::Nothing)
        }
        Event::Error { error } if error.kind == "overloaded_error" => {
            Err(ChunkError::Overloaded(error.message))
        }
        Event::Error { error } => Err(ChunkError::Upstream(error.message)),
        // Pings, block stops, empty deltas: signs of life.
        _ => Ok(Piece::Progress),
    }
}

/// A piece of the thinking block at content `index`: the first piece of a block starts a reasoning block.
fn thinking_piece(
    state: &mut StreamState,
    reading: &mut Reading,
    index: usize,
    text: String,
    signature: String,
) -> Result<Piece, ChunkError> {
    let new_block = match state.thinking {
        Some((at, started)) if at == index => !started,
        _ => true,
    };
    state.thinking = Some((index, true));
    reading.reasoning_piece(new_block, text, signature, String::new())
}

#[cfg(test)]
mod tests;
