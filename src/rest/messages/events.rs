//! A Messages stream's events: `message_start`, each content block opened as its first piece comes (thinking, text,
//! tool use) with its deltas and closed when the next opens, `ping` during silences, then `message_delta` and
//! `message_stop` (or an `error` event after a failure).

use bytes::Bytes;
use serde_json::{json, Value};

use super::shapes::{error_body, tool_use_id, usage};
use crate::{
    error::GatewayError,
    proto::StreamChunk,
    upstream::anthropic::{self, stop_reason},
};

/// Writes one stream's events. Content blocks are numbered as they open: thinking, text and tool-use blocks in
/// the order their first pieces came, each closed when the next opens.
pub(super) struct Events {
    id: String,
    model: String,
    /// The input tokens `message_start` reports (the gateway's estimate).
    input_estimate: u64,
    /// The next content block's index.
    next: u32,
    /// The open block: what it holds, and its index.
    open: Option<(Block, u32)>,
    /// Per tool call streamed in pieces, its block index (interleaved pieces of parallel calls go to theirs).
    tool_blocks: Vec<u32>,
    /// Some block was written (an answer with none gets an empty text block).
    any: bool,
}

/// A tool call index the upstream skipped: no block yet.
pub(super) const UNOPENED: u32 = u32::MAX;

/// What an open content block holds.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Block {
    Text,
    /// The reasoning block of this index.
    Thinking(u32),
    Tool,
}

/// `content_block_delta` with a `text_delta`, `thinking_delta`, `signature_delta` or `input_json_delta`.
#[derive(serde::Serialize)]
pub(super) struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: DeltaBody<'a>,
}

#[derive(serde::Serialize)]
#[serde(tag = "type")]
pub(super) enum DeltaBody<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
}

pub(super) fn event(kind: &str, data: &Value, out: &mut Vec<u8>) {
    crate::rest::named_event(kind, data, out);
}

pub(super) fn delta(index: u32, body: DeltaBody<'_>, out: &mut Vec<u8>) {
    let event = BlockDelta {
        kind: "content_block_delta",
        index,
        delta: body,
    };
    crate::rest::named_event(event.kind, &event, out);
}

impl Events {
    pub(super) fn new(id: String, model: String, input_estimate: u64) -> Events {
        Events {
            id,
            model,
            input_estimate,
            next: 0,
            open: None,
            tool_blocks: Vec::new(),
            any: false,
        }
    }

    /// Opens a block (closing the open one first) and returns its index.
    fn open(&mut self, block: Block, content_block: Value, out: &mut Vec<u8>) -> u32 {
        self.close(out);
        let index = self.next;
        self.next += 1;
        self.any = true;
        event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": content_block}),
            out,
        );
        self.open = Some((block, index));
        index
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((_, index)) = self.open.take() {
            event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
                out,
            );
        }
    }

    /// The open block's index if it holds `block`, else a new one's.
    fn block(
        &mut self,
        block: Block,
        content_block: impl FnOnce() -> Value,
        out: &mut Vec<u8>,
    ) -> u32 {
        match self.open {
            Some((open, index)) if open == block => index,
            _ => self.open(block, content_block(), out),
        }
    }
}

impl crate::rest::StreamWriter for Events {
    fn start(&mut self) -> Bytes {
        let mut out = Vec::new();
        // The prompt's count is known only at the end: message_delta carries it.
        // The upstream's count comes at the end, with message_delta; clients that track their context read
        // this one, so it is the gateway's estimate until then.
        let message = json!({"id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": self.input_estimate, "output_tokens": 0}});
        event(
            "message_start",
            &json!({"type": "message_start", "message": message}),
            &mut out,
        );
        Bytes::from(out)
    }

    fn text(&mut self, text: &str) -> Bytes {
        let mut out = Vec::new();
        let index = self.block(
            Block::Text,
            || json!({"type": "text", "text": ""}),
            &mut out,
        );
        // The one event per upstream delta: written from borrowed fields, no JSON tree per chunk.
        delta(index, DeltaBody::Text { text }, &mut out);
        Bytes::from(out)
    }

    /// Thinking as `thinking_delta`s and its `signature_delta`, in one thinking block per reasoning block; a
    /// redacted block whole, as Anthropic sends it.
    fn reasoning(&mut self, r: &crate::proto::ReasoningDelta) -> Bytes {
        let mut out = Vec::new();
        if !r.redacted.is_empty() {
            self.open(
                Block::Thinking(r.index),
                json!({"type": "redacted_thinking", "data": r.redacted}),
                &mut out,
            );
            self.close(&mut out);
            return Bytes::from(out);
        }
        let index = self.block(
            Block::Thinking(r.index),
            || json!({"type": "thinking", "thinking": "", "signature": ""}),
            &mut out,
        );
        if !r.text.is_empty() {
            delta(index, DeltaBody::Thinking { thinking: &r.text }, &mut out);
        }
        if !r.signature.is_empty() {
            delta(
                index,
                DeltaBody::Signature {
                    signature: &r.signature,
                },
                &mut out,
            );
        }
        Bytes::from(out)
    }

    /// A call's first piece opens its `tool_use` block; its arguments follow as `input_json_delta`s.
    fn tool_call(&mut self, c: &crate::proto::ToolCallDelta) -> Bytes {
        let mut out = Vec::new();
        let call = c.index as usize;
        let index = match self.tool_blocks.get(call).filter(|&&i| i != UNOPENED) {
            Some(&index) => index,
            None => {
                let index = self.open(
                    Block::Tool,
                    json!({"type": "tool_use", "id": tool_use_id(&c.id), "name": c.name, "input": {}}),
                    &mut out,
                );
                if self.tool_blocks.len() <= call {
                    self.tool_blocks.resize(call + 1, UNOPENED);
                }
                self.tool_blocks[call] = index;
                index
            }
        };
        if !c.arguments.is_empty() {
            delta(
                index,
                DeltaBody::InputJson {
                    partial_json: &c.arguments,
                },
                &mut out,
            );
        }
        Bytes::from(out)
    }

    /// Anthropic's own keep-alive.
    fn keepalive(&mut self) -> Bytes {
        Bytes::from_static(b"event: ping\ndata: {\"type\": \"ping\"}\n\n")
    }

    fn last(&mut self, last: &StreamChunk) -> Bytes {
        let mut out = Vec::new();
        let unstreamed = last.tool_calls.get(self.tool_blocks.len()..).unwrap_or(&[]);
        if !self.any && unstreamed.is_empty() {
            self.open(Block::Text, json!({"type": "text", "text": ""}), &mut out);
        }
        self.close(&mut out);
        // Calls that were not streamed in pieces (a cached or mock answer) go whole.
        for call in unstreamed {
            let index = self.open(
                Block::Tool,
                json!({"type": "tool_use", "id": tool_use_id(&call.id), "name": call.name, "input": {}}),
                &mut out,
            );
            let input = anthropic::tool_input(&call.arguments).to_string();
            delta(
                index,
                DeltaBody::InputJson {
                    partial_json: &input,
                },
                &mut out,
            );
            self.close(&mut out);
        }
        event(
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": stop_reason(&last.finish_reason), "stop_sequence": null},
                    "usage": usage(last.usage.unwrap_or_default())}),
            &mut out,
        );
        event("message_stop", &json!({"type": "message_stop"}), &mut out);
        Bytes::from(out)
    }

    /// A failure after the start: Anthropic's `error` event, which the SDKs raise; no `message_stop`.
    fn failed(&mut self, error: &GatewayError) -> Bytes {
        let mut out = Vec::new();
        let (http, _, _) = error.http();
        event("error", &error_body(http, &error.message()), &mut out);
        Bytes::from(out)
    }
}
