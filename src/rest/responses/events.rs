//! A Responses stream's events: `response.created`, `response.in_progress`, each output item opened as its
//! first piece comes (reasoning, the message, function calls) with its deltas, closed when the next opens, then
//! `response.completed` (or `.incomplete`, or `error` and `response.failed` after a failure).

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::answer::{obj, output_text, Answer, Keep};
use crate::{
    error::GatewayError,
    proto::{Reasoning, ReasoningDelta, StreamChunk, ToolCall, ToolCallDelta},
    rest::StreamWriter,
};

/// The most answer a Responses stream keeps (text, reasoning, call arguments) for its closing events, which
/// repeat it: the deltas of a longer answer have gone out, and the stream ends with `response.failed`
/// (`memory_exhausted`) rather than hold it again four times over. 16 times the longest answers models give.
const MAX_KEPT: usize = 8 << 20;

/// Writes one stream's events, numbering them. Output items open in the order their first pieces came
/// (reasoning, the message, function calls) and each closes when the next opens.
pub(super) struct Events {
    answer: Answer,
    seq: u64,
    /// The output items closed so far, in order: the finished response lists them.
    output: Vec<Value>,
    open: Option<Item>,
    /// The message's whole text, for the kept conversation (only when it is kept).
    text: String,
    /// Bytes of answer kept so far for the closing events (`MAX_KEPT`).
    kept: usize,
    /// Message items opened so far (a second one, after a call, gets its own id).
    messages: usize,
    /// Per tool call streamed in pieces: its output index, item id, and the call so far.
    calls: Vec<(u32, String, ToolCall)>,
    keep: Option<Keep>,
}

/// The output item being written.
enum Item {
    Reasoning {
        /// The reasoning block it is.
        index: u32,
        at: u32,
        id: String,
        block: Reasoning,
    },
    Message {
        at: u32,
        id: String,
        /// Its text (of this item; `Events::text` has all of them).
        text: String,
    },
    Call {
        call: usize,
    },
}

/// `response.output_text.delta`, `response.reasoning_summary_text.delta` and
/// `response.function_call_arguments.delta`: written from borrowed fields, no JSON tree per piece.
#[derive(serde::Serialize)]
struct PieceEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary_index: Option<u32>,
    delta: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<&'static [u8]>,
}

/// Writes one piece's event, numbered.
fn piece(seq: &mut u64, mut event: PieceEvent<'_>, out: &mut Vec<u8>) {
    event.sequence_number = *seq;
    *seq += 1;
    crate::rest::named_event(event.kind, &event, out);
}

impl Events {
    pub(super) fn new(answer: Answer, keep: Option<Keep>) -> Events {
        Events {
            answer,
            seq: 0,
            output: Vec::new(),
            open: None,
            text: String::new(),
            kept: 0,
            messages: 0,
            calls: Vec::new(),
            keep,
        }
    }

    fn event(&mut self, kind: &str, mut body: Map<String, Value>, out: &mut Vec<u8>) {
        body.insert("type".into(), json!(kind));
        body.insert("sequence_number".into(), json!(self.seq));
        self.seq += 1;
        crate::rest::named_event(kind, &body, out);
    }

    /// The next output index.
    fn next_at(&self) -> u32 {
        u32::try_from(self.output.len() + usize::from(self.open.is_some())).unwrap_or(u32::MAX)
    }

    fn added(&mut self, at: u32, item: Value, out: &mut Vec<u8>) {
        self.event(
            "response.output_item.added",
            obj(json!({"output_index": at, "item": item})),
            out,
        );
    }

    /// Opens a reasoning item, under the provider's id for it when there is one.
    fn open_reasoning(&mut self, index: u32, provider_id: &str, out: &mut Vec<u8>) {
        self.close(out);
        let at = self.next_at();
        let id = if provider_id.is_empty() {
            self.answer.reasoning_id(index as usize)
        } else {
            provider_id.to_owned()
        };
        self.added(
            at,
            json!({"id": id, "type": "reasoning", "summary": []}),
            out,
        );
        self.event(
            "response.reasoning_summary_part.added",
            obj(
                json!({"item_id": id, "output_index": at, "summary_index": 0,
                       "part": {"type": "summary_text", "text": ""}}),
            ),
            out,
        );
        self.open = Some(Item::Reasoning {
            index,
            at,
            block: Reasoning {
                id: provider_id.to_owned(),
                ..Default::default()
            },
            id,
        });
    }

    fn open_message(&mut self, out: &mut Vec<u8>) {
        self.close(out);
        let at = self.next_at();
        let id = match self.messages {
            0 => self.answer.message_id.clone(),
            n => format!("{}_{n}", self.answer.message_id),
        };
        self.messages += 1;
        let item = self.answer.message_item(&id, "in_progress", "");
        self.added(at, item, out);
        self.event(
            "response.content_part.added",
            obj(
                json!({"item_id": id, "output_index": at, "content_index": 0,
                       "part": output_text("")}),
            ),
            out,
        );
        self.open = Some(Item::Message {
            at,
            id,
            text: String::new(),
        });
    }

    fn open_call(&mut self, c: &ToolCallDelta, out: &mut Vec<u8>) {
        self.close(out);
        let at = self.next_at();
        let call = ToolCall {
            id: c.id.clone(),
            name: c.name.clone(),
            arguments: String::new(),
        };
        let id = format!("fc_{}", c.id);
        self.added(at, self.answer.function_item(&call, "in_progress"), out);
        let index = c.index as usize;
        if self.calls.len() <= index {
            self.calls
                .resize_with(index + 1, || (u32::MAX, String::new(), ToolCall::default()));
        }
        self.calls[index] = (at, id, call);
        self.open = Some(Item::Call { call: index });
    }

    /// Closes the open item with its `done` events.
    fn close(&mut self, out: &mut Vec<u8>) {
        match self.open.take() {
            None => {}
            Some(Item::Reasoning {
                index,
                at,
                id,
                block,
            }) => {
                let text = &block.text;
                self.event(
                    "response.reasoning_summary_text.done",
                    obj(json!({"item_id": id, "output_index": at, "summary_index": 0, "text": text})),
                    out,
                );
                self.event(
                    "response.reasoning_summary_part.done",
                    obj(
                        json!({"item_id": id, "output_index": at, "summary_index": 0,
                               "part": {"type": "summary_text", "text": text}}),
                    ),
                    out,
                );
                let item = self.answer.reasoning_item(index as usize, &block);
                self.finished(at, item, out);
            }
            Some(Item::Message { at, id, text }) => {
                self.event(
                    "response.output_text.done",
                    obj(
                        json!({"item_id": id, "output_index": at, "content_index": 0, "text": text,
                               "logprobs": []}),
                    ),
                    out,
                );
                self.event(
                    "response.content_part.done",
                    obj(
                        json!({"item_id": id, "output_index": at, "content_index": 0,
                               "part": output_text(&text)}),
                    ),
                    out,
                );
                let item = self.answer.message_item(&id, "completed", text);
                self.finished(at, item, out);
            }
            Some(Item::Call { call }) => {
                let (at, id, call) = self.calls[call].clone();
                self.event(
                    "response.function_call_arguments.done",
                    obj(json!({"item_id": id, "output_index": at,
                               "name": self.answer.namespaces.split(&call.name).0,
                               "arguments": call.arguments})),
                    out,
                );
                self.finished(at, self.answer.function_item(&call, "completed"), out);
            }
        }
    }

    fn finished(&mut self, at: u32, item: Value, out: &mut Vec<u8>) {
        self.event(
            "response.output_item.done",
            obj(json!({"output_index": at, "item": item})),
            out,
        );
        self.output.push(item);
    }
}

impl StreamWriter for Events {
    fn start(&mut self) -> Bytes {
        let mut out = Vec::new();
        for kind in ["response.created", "response.in_progress"] {
            let response = Value::Object(self.answer.shell("in_progress", Vec::new()));
            self.event(kind, obj(json!({"response": response})), &mut out);
        }
        Bytes::from(out)
    }

    fn text(&mut self, delta: &str) -> Bytes {
        let mut out = Vec::new();
        if !matches!(self.open, Some(Item::Message { .. })) {
            self.open_message(&mut out);
        }
        if self.keep.is_some() {
            self.text.push_str(delta);
        }
        self.kept += delta.len();
        let Some(Item::Message { at, id, text }) = &mut self.open else {
            return Bytes::from(out);
        };
        text.push_str(delta);
        piece(
            &mut self.seq,
            PieceEvent {
                kind: "response.output_text.delta",
                sequence_number: 0,
                item_id: id,
                output_index: *at,
                content_index: Some(0),
                summary_index: None,
                delta,
                logprobs: Some(&[]),
            },
            &mut out,
        );
        Bytes::from(out)
    }

    /// Reasoning text as `response.reasoning_summary_text.delta`s of one reasoning item per block; the
    /// signature (or redacted data) goes into the item's `encrypted_content` when it is done.
    fn reasoning(&mut self, r: &ReasoningDelta) -> Bytes {
        let mut out = Vec::new();
        if !matches!(&self.open, Some(Item::Reasoning { index, .. }) if *index == r.index) {
            self.open_reasoning(r.index, &r.id, &mut out);
        }
        let Some(Item::Reasoning { at, id, block, .. }) = &mut self.open else {
            return Bytes::from(out);
        };
        block.text.push_str(&r.text);
        block.signature.push_str(&r.signature);
        block.redacted.push_str(&r.redacted);
        self.kept += r.text.len() + r.signature.len() + r.redacted.len();
        if !r.text.is_empty() {
            piece(
                &mut self.seq,
                PieceEvent {
                    kind: "response.reasoning_summary_text.delta",
                    sequence_number: 0,
                    item_id: id,
                    output_index: *at,
                    content_index: None,
                    summary_index: Some(0),
                    delta: &r.text,
                    logprobs: None,
                },
                &mut out,
            );
        }
        Bytes::from(out)
    }

    /// A call's first piece adds its item; its arguments follow as `response.function_call_arguments.delta`s.
    fn tool_call(&mut self, c: &ToolCallDelta) -> Bytes {
        let mut out = Vec::new();
        let index = c.index as usize;
        if self.calls.get(index).is_none_or(|(at, ..)| *at == u32::MAX) {
            self.open_call(c, &mut out);
        }
        let (at, id, call) = &mut self.calls[index];
        call.arguments.push_str(&c.arguments);
        self.kept += c.arguments.len();
        if !c.arguments.is_empty() {
            piece(
                &mut self.seq,
                PieceEvent {
                    kind: "response.function_call_arguments.delta",
                    sequence_number: 0,
                    item_id: id,
                    output_index: *at,
                    content_index: None,
                    summary_index: None,
                    delta: &c.arguments,
                    logprobs: None,
                },
                &mut out,
            );
        }
        Bytes::from(out)
    }

    /// Closes the open item (adding an empty message to an answer with no items), sends each call that was not
    /// streamed in pieces whole, then the finished response.
    fn last(&mut self, last: &StreamChunk) -> Bytes {
        let mut out = Vec::new();
        let streamed = self.calls.len();
        let unstreamed = last.tool_calls.get(streamed..).unwrap_or(&[]);
        if self.output.is_empty() && self.open.is_none() && unstreamed.is_empty() {
            self.open_message(&mut out);
        }
        self.close(&mut out);
        for (i, call) in unstreamed.iter().enumerate() {
            let piece = ToolCallDelta {
                index: u32::try_from(streamed + i).unwrap_or(u32::MAX),
                id: call.id.clone(),
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            };
            out.extend_from_slice(&self.tool_call(&piece));
            self.close(&mut out);
        }
        let output = std::mem::take(&mut self.output);
        let response = self.answer.object(output, &last.finish_reason, last.usage);
        let kind = if response["status"] == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.event(kind, obj(json!({"response": response})), &mut out);
        if let Some(keep) = self.keep.take() {
            let said = (
                self.text.as_str(),
                &last.tool_calls[..],
                &last.reasoning_blocks[..],
            );
            keep.answered(&self.answer.id, said, &response);
        }
        Bytes::from(out)
    }

    fn overflow(&self) -> Option<GatewayError> {
        (self.kept > MAX_KEPT).then(|| {
            GatewayError::ResourceExhausted {
                message: format!(
                    "the answer passed {} MiB, the most a Responses stream keeps for its closing events; its \
                     deltas were sent",
                    MAX_KEPT >> 20
                ),
                retry_after: None,
                limit: "memory",
            }
        })
    }

    /// A failure after the start: an `error` event, then `response.failed`.
    fn failed(&mut self, error: &GatewayError) -> Bytes {
        let mut out = Vec::new();
        let (_, kind, code) = error.http();
        let code = code.unwrap_or(kind);
        let message = error.message();
        self.event(
            "error",
            obj(json!({"code": code, "message": message, "param": null})),
            &mut out,
        );
        let mut response = self.answer.shell("failed", Vec::new());
        response.insert("error".into(), json!({"code": code, "message": message}));
        self.event(
            "response.failed",
            obj(json!({"response": response})),
            &mut out,
        );
        Bytes::from(out)
    }
}
