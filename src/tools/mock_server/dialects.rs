//! `aigw mock-upstream --dialect`: the same streamed answer in another API's words — Anthropic's Messages events,
//! Gemini's `streamGenerateContent` chunks, Bedrock's ConverseStream event-stream frames — so a benchmark
//! measures what each dialect costs the gateway. Every POST gets the stream, its events rendered once at start
//! and sent one per body frame as the chat-completions stream sends its chunks, unpaced.

use bytes::Bytes;
use serde_json::{json, Value};

use super::StreamShape;

/// The API a `--dialect` mock speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MockDialect {
    /// OpenAI's chat completions: the mock's own answers, as without `--dialect`.
    #[default]
    Openai,
    Anthropic,
    Gemini,
    Bedrock,
}

impl std::str::FromStr for MockDialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "openai" => Ok(Self::Openai),
            "anthropic" => Ok(Self::Anthropic),
            "gemini" => Ok(Self::Gemini),
            "bedrock" => Ok(Self::Bedrock),
            _ => Err(format!(
                "'{s}' is not a dialect (openai, anthropic, gemini, bedrock)"
            )),
        }
    }
}

impl MockDialect {
    /// The streamed body's content type.
    pub(super) fn content_type(self) -> &'static str {
        match self {
            Self::Bedrock => "application/vnd.amazon.eventstream",
            _ => "text/event-stream",
        }
    }
}

/// What a piece of the answer is.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Thought,
    Text,
    Args,
}

fn kind(shape: StreamShape, i: usize, n: usize) -> Kind {
    match shape {
        StreamShape::Text => Kind::Text,
        StreamShape::Reasoning if i < n * 3 / 4 => Kind::Thought,
        StreamShape::Reasoning => Kind::Text,
        StreamShape::Tools => Kind::Args,
    }
}

/// The stream's events, each one body frame: `tokens` pieces of `shape` in `dialect`'s words. Gemini sends a
/// function call whole, so its tool-call stream is one piece.
pub(super) fn stream(dialect: MockDialect, shape: StreamShape, tokens: usize) -> Vec<Bytes> {
    let piece = |i: usize| format!(" tok{i}");
    match dialect {
        MockDialect::Openai => Vec::new(),
        MockDialect::Anthropic => anthropic(shape, tokens, piece),
        MockDialect::Gemini => gemini(shape, tokens, piece),
        MockDialect::Bedrock => bedrock(shape, tokens, piece),
    }
}

fn sse(event: &Value) -> Bytes {
    let name = event["type"].as_str().unwrap_or_default();
    Bytes::from(format!("event: {name}\ndata: {event}\n\n"))
}

fn anthropic(shape: StreamShape, n: usize, piece: impl Fn(usize) -> String) -> Vec<Bytes> {
    let mut out = vec![sse(
        &json!({"type": "message_start", "message": {"id": "msg_mock",
        "type": "message", "role": "assistant", "model": "mock", "content": [], "stop_reason": null,
        "usage": {"input_tokens": 10, "output_tokens": 1}}}),
    )];
    let mut block: Option<(usize, Kind)> = None;
    for i in 0..n {
        let k = kind(shape, i, n);
        if block.map(|(_, b)| b) != Some(k) {
            let index = block.map_or(0, |(at, _)| {
                out.push(sse(&json!({"type": "content_block_stop", "index": at})));
                at + 1
            });
            let start = match k {
                Kind::Thought => json!({"type": "thinking", "thinking": "", "signature": ""}),
                Kind::Text => json!({"type": "text", "text": ""}),
                Kind::Args => {
                    json!({"type": "tool_use", "id": "toolu_mock", "name": "mock_tool", "input": {}})
                }
            };
            out.push(sse(
                &json!({"type": "content_block_start", "index": index, "content_block": start}),
            ));
            block = Some((index, k));
        }
        let index = block.map_or(0, |(at, _)| at);
        let delta = match k {
            Kind::Thought => json!({"type": "thinking_delta", "thinking": piece(i)}),
            Kind::Text => json!({"type": "text_delta", "text": piece(i)}),
            Kind::Args => json!({"type": "input_json_delta", "partial_json": piece(i)}),
        };
        out.push(sse(
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        ));
    }
    if let Some((at, _)) = block {
        out.push(sse(&json!({"type": "content_block_stop", "index": at})));
    }
    let stop = if shape == StreamShape::Tools {
        "tool_use"
    } else {
        "end_turn"
    };
    out.push(sse(
        &json!({"type": "message_delta", "delta": {"stop_reason": stop},
        "usage": {"output_tokens": n}}),
    ));
    out.push(sse(&json!({"type": "message_stop"})));
    out
}

fn gemini(shape: StreamShape, n: usize, piece: impl Fn(usize) -> String) -> Vec<Bytes> {
    let chunk = |parts: Value, last: bool| {
        let mut c = json!({"candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}],
            "modelVersion": "mock", "responseId": "mock-response"});
        if last {
            c["candidates"][0]["finishReason"] = Value::from("STOP");
            c["usageMetadata"] = json!({"promptTokenCount": 10, "candidatesTokenCount": n,
                "totalTokenCount": n + 10});
        }
        Bytes::from(format!("data: {c}\r\n\r\n"))
    };
    if shape == StreamShape::Tools {
        let args: String = (0..n).map(&piece).collect();
        let call = json!([{"functionCall": {"name": "mock_tool", "args": {"text": args}}}]);
        return vec![chunk(call, true)];
    }
    (0..n)
        .map(|i| {
            let part = match kind(shape, i, n) {
                Kind::Thought => json!({"text": piece(i), "thought": true}),
                _ => json!({"text": piece(i)}),
            };
            chunk(json!([part]), i + 1 == n)
        })
        .collect()
}

fn frame(event_type: &str, payload: &Value) -> Bytes {
    let json = payload.to_string();
    Bytes::from(crate::upstream::event_stream::encode_event(
        event_type,
        json.as_bytes(),
    ))
}

fn bedrock(shape: StreamShape, n: usize, piece: impl Fn(usize) -> String) -> Vec<Bytes> {
    let mut out = vec![frame("messageStart", &json!({"role": "assistant"}))];
    let mut block: Option<(usize, Kind)> = None;
    for i in 0..n {
        let k = kind(shape, i, n);
        if block.map(|(_, b)| b) != Some(k) {
            let index = block.map_or(0, |(at, _)| {
                out.push(frame("contentBlockStop", &json!({"contentBlockIndex": at})));
                at + 1
            });
            if k == Kind::Args {
                out.push(frame(
                    "contentBlockStart",
                    &json!({"contentBlockIndex": index,
                    "start": {"toolUse": {"toolUseId": "tooluse_mock", "name": "mock_tool"}}}),
                ));
            }
            block = Some((index, k));
        }
        let index = block.map_or(0, |(at, _)| at);
        let delta = match k {
            Kind::Thought => json!({"reasoningContent": {"text": piece(i)}}),
            Kind::Text => json!({"text": piece(i)}),
            Kind::Args => json!({"toolUse": {"input": piece(i)}}),
        };
        out.push(frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": index, "delta": delta}),
        ));
    }
    if let Some((at, _)) = block {
        out.push(frame("contentBlockStop", &json!({"contentBlockIndex": at})));
    }
    let stop = if shape == StreamShape::Tools {
        "tool_use"
    } else {
        "end_turn"
    };
    out.push(frame("messageStop", &json!({"stopReason": stop})));
    out.push(frame(
        "metadata",
        &json!({"usage": {"inputTokens": 10, "outputTokens": n,
        "totalTokens": n + 10}, "metrics": {"latencyMs": 1}}),
    ));
    out
}
