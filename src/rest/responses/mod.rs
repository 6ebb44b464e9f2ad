//! `POST /v1/responses`, OpenAI's Responses API, on the same pipeline as chat completions: the request becomes
//! a whole or streamed call of the call layer (so every upstream kind serves it, with the same limits, cache,
//! routing, metrics and logs), and the answer goes back as a response object, or as the documented event
//! stream: `response.created`, `response.in_progress`, then the output items in the order their first pieces
//! came — reasoning items with `response.reasoning_summary_text.delta`s, the message with its
//! `response.output_text.delta`s, each function call with its `response.function_call_arguments.delta`s — then
//! `response.completed` (or `response.incomplete` when the output limit cut it); a failure after the start is an `error` event and `response.failed`, never a
//! completion.
//!
//! `store` (true unless the request says false) keeps the conversation for `previous_response_id`
//! (`core::conversations`: an hour, bounded in memory, per replica, for the key that made it).

mod request;
/// For the fuzz harness.
#[cfg(test)]
pub(crate) use request::parse as parse_request;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Response};
use serde_json::{json, Map, Value};
use tonic::body::Body;

use super::{error, Caller};
use crate::{
    admission::auth::Identity,
    call::start::Reply,
    core::{conversations::Stored, gateway::Gateway},
    error::GatewayError,
    proto::{
        GenerateRequest, Message, Reasoning, ReasoningDelta, StreamChunk, StreamGenerateRequest,
        ToolCall, ToolCallDelta, Usage,
    },
};
use request::{parse, Echo, Namespaces, Parsed};

/// The names the Responses door's calls have in logs and metrics.
pub(crate) const RPC_UNARY: &str = "Responses";
pub(crate) const RPC_STREAM: &str = "ResponsesStream";

pub(crate) async fn create(caller: Caller, body: Bytes) -> Response<Body> {
    let (gw, who) = (&caller.gw, &caller.who);
    let parsed = match parse(&body) {
        Ok(p) => p,
        Err(e) => return error::gateway(&e),
    };
    let Parsed {
        model,
        instructions,
        input,
        config,
        stream,
        store,
        previous_response_id,
        echo,
        dropped,
        namespaces,
        input_items,
    } = parsed;
    // Nothing is left out when every route of the model speaks the Responses API itself.
    let dropped =
        if !dropped.is_empty() && gw.catalog().router.speaks_everywhere(&model, "responses") {
            Vec::new()
        } else {
            dropped
        };
    // The continued conversation, then this input.
    let mut kept = match &previous_response_id {
        None => Vec::new(),
        Some(id) => match gw.conversations.get(id, &who.owner) {
            Some(messages) => messages,
            None => {
                let e = GatewayError::InvalidArgument(format!(
                    "previous_response_id: no response '{id}' is kept for this key (responses are kept an hour, \
                     on the replica that answered, unless store was false)"
                ));
                return error::gateway(&e);
            }
        },
    };
    kept.extend(input);
    // The call's messages: the instructions in front; a copy only when the conversation is kept too.
    let (messages, kept): (Vec<Message>, Option<Vec<Message>>) = if store {
        let call = instructions
            .into_iter()
            .chain(kept.iter().cloned())
            .collect();
        (call, Some(kept))
    } else {
        (instructions.into_iter().chain(kept).collect(), None)
    };
    let suffix = format!("{:032x}", fastrand::u128(..));
    let answer = Answer {
        id: format!("resp_{suffix}"),
        message_id: format!("msg_{suffix}"),
        created: super::unix_now(),
        model: model.clone(),
        echo,
        previous_response_id,
        store,
        namespaces,
    };
    let keep = kept.map(|messages| Keep {
        gw: gw.clone(),
        owner: who.owner.clone(),
        messages,
        input_items,
    });
    let mut resp = if stream {
        let message = StreamGenerateRequest {
            model,
            messages,
            config,
        };
        let writer = |_: &HeaderMap| Events {
            answer,
            seq: 0,
            output: Vec::new(),
            open: None,
            text: String::new(),
            kept: 0,
            messages: 0,
            calls: Vec::new(),
            keep,
        };
        caller
            .stream(RPC_STREAM, message, writer, error::failure)
            .await
    } else {
        let message = GenerateRequest {
            model,
            messages,
            config,
        };
        let answer = |reply: Reply<crate::proto::GenerateResponse>| {
            let Reply {
                value: done,
                headers,
            } = reply;
            let mut output: Vec<Value> = done
                .reasoning
                .iter()
                .enumerate()
                .map(|(i, r)| answer.reasoning_item(i, r))
                .collect();
            if !done.content.is_empty() || done.tool_calls.is_empty() {
                output.push(answer.message_item(
                    &answer.message_id,
                    "completed",
                    done.content.as_str(),
                ));
            }
            output.extend(
                done.tool_calls
                    .iter()
                    .map(|c| answer.function_item(c, "completed")),
            );
            let body = answer.object(output, &done.finish_reason, done.usage);
            if let Some(keep) = keep {
                let said = (
                    done.content.as_str(),
                    &done.tool_calls[..],
                    &done.reasoning[..],
                );
                keep.answered(&answer.id, said, &body);
            }
            super::json_with(headers, &body)
        };
        caller
            .generate(RPC_UNARY, message, answer, error::failure)
            .await
    };
    // Fields and tools left out on the way to a chat-completions upstream, named, so a client sees what did not
    // travel.
    if !dropped.is_empty() {
        tracing::info!(dropped = %dropped.join(","), "Responses fields left out");
        if let Ok(value) = http::HeaderValue::try_from(dropped.join(", ")) {
            resp.headers_mut().insert("aigw-dropped", value);
        }
    }
    resp
}

/// `GET /v1/responses/{id}`: a stored response of the caller's key, as it was answered.
pub(crate) fn retrieve(gw: &Gateway, who: &Identity, id: &str) -> Response<Body> {
    match gw.conversations.stored(id, &who.owner) {
        Some(stored) => super::json(http::StatusCode::OK, &*stored.response),
        None => not_found(id),
    }
}

/// `DELETE /v1/responses/{id}`: forgets a stored response (it can no longer be continued).
pub(crate) fn delete(gw: &Gateway, who: &Identity, id: &str) -> Response<Body> {
    if gw.conversations.delete(id, &who.owner) {
        let deleted = json!({"id": id, "object": "response.deleted", "deleted": true});
        super::json(http::StatusCode::OK, &deleted)
    } else {
        not_found(id)
    }
}

/// `GET /v1/responses/{id}/input_items`: the stored response's input items as its request sent them, newest
/// first unless `order=asc`, `limit` (1 to 100, default 20) at a time after the item `after`.
pub(crate) fn input_items(
    gw: &Gateway,
    who: &Identity,
    id: &str,
    query: Option<&str>,
) -> Response<Body> {
    let Some(stored) = gw.conversations.stored(id, &who.owner) else {
        return not_found(id);
    };
    let mut asc = false;
    let mut limit = 20usize;
    let mut after = None;
    for (k, v) in url_pairs(query.unwrap_or_default()) {
        match k {
            "order" => asc = v == "asc",
            "limit" => limit = v.parse::<usize>().unwrap_or(20).clamp(1, 100),
            "after" => after = Some(v),
            _ => {}
        }
    }
    let mut items: Vec<&Value> = stored.input.iter().collect();
    if !asc {
        items.reverse();
    }
    let start = after
        .and_then(|a| items.iter().position(|i| i["id"] == a))
        .map_or(0, |at| at + 1);
    let page: Vec<&Value> = items.iter().skip(start).take(limit).copied().collect();
    let body = json!({"object": "list", "data": page,
        "first_id": page.first().and_then(|i| i["id"].as_str()),
        "last_id": page.last().and_then(|i| i["id"].as_str()),
        "has_more": start + page.len() < items.len()});
    super::json(http::StatusCode::OK, &body)
}

fn url_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query.split('&').filter_map(|p| p.split_once('='))
}

fn not_found(id: &str) -> Response<Body> {
    let msg = format!(
        "No response with id '{id}' is kept for this key (responses are kept an hour, on the replica that answered, \
         unless store was false)"
    );
    error::body(404, &msg, "invalid_request_error", None)
}

/// The conversation to keep once it is answered, and the request's input items.
struct Keep {
    gw: Arc<Gateway>,
    owner: String,
    messages: Vec<Message>,
    input_items: Vec<Value>,
}

impl Keep {
    /// Keeps the conversation with its answer, and the response object as it was sent.
    fn answered(mut self, id: &str, done: (&str, &[ToolCall], &[Reasoning]), response: &Value) {
        let (content, tool_calls, reasoning) = done;
        self.messages.push(Message {
            role: "assistant".into(),
            content: content.to_owned(),
            tool_calls: tool_calls.to_vec(),
            reasoning: reasoning.to_vec(),
            ..Default::default()
        });
        let stored = Stored {
            response: Arc::new(response.clone()),
            input: Arc::new(self.input_items),
        };
        self.gw
            .conversations
            .keep(id, &self.owner, self.messages, stored);
    }
}

/// What every form of the answer shares: ids, the time, and what the request set.
struct Answer {
    id: String,
    message_id: String,
    created: u64,
    model: String,
    echo: Echo,
    previous_response_id: Option<String>,
    store: bool,
    namespaces: Namespaces,
}

impl Answer {
    /// The response object; `status` "in_progress", "completed", "incomplete" or "failed".
    fn shell(&self, status: &str, output: Vec<Value>) -> Map<String, Value> {
        let e = &self.echo;
        let mut o = Map::new();
        let mut put = |k: &str, v: Value| {
            o.insert(k.into(), v);
        };
        put("id", json!(self.id));
        put("object", json!("response"));
        put("created_at", json!(self.created));
        put("status", json!(status));
        put("model", json!(self.model));
        put("output", Value::Array(output));
        put("error", Value::Null);
        put("incomplete_details", Value::Null);
        put("instructions", json!(e.instructions));
        put("max_output_tokens", json!(e.max_output_tokens));
        put(
            "parallel_tool_calls",
            json!(e.parallel_tool_calls.unwrap_or(true)),
        );
        put("previous_response_id", json!(self.previous_response_id));
        put("store", json!(self.store));
        put("temperature", json!(e.temperature.map(float)));
        put("top_p", json!(e.top_p.map(float)));
        put(
            "text",
            e.text
                .clone()
                .unwrap_or_else(|| json!({"format": {"type": "text"}})),
        );
        put(
            "tool_choice",
            e.tool_choice.clone().unwrap_or_else(|| json!("auto")),
        );
        put("tools", Value::Array(e.tools.clone()));
        put("metadata", Value::Object(e.metadata.clone()));
        put("user", json!(e.user));
        put("usage", Value::Null);
        o
    }

    /// The finished response object, with its output items in order.
    fn object(&self, output: Vec<Value>, finish_reason: &str, usage: Option<Usage>) -> Value {
        let incomplete = match finish_reason {
            "length" => Some("max_output_tokens"),
            "content_filter" => Some("content_filter"),
            _ => None,
        };
        let status = if incomplete.is_some() {
            "incomplete"
        } else {
            "completed"
        };
        let mut o = self.shell(status, output);
        if let Some(reason) = incomplete {
            o.insert("incomplete_details".into(), json!({"reason": reason}));
        }
        o.insert("usage".into(), usage.map_or(Value::Null, usage_object));
        Value::Object(o)
    }

    /// A message item; `text` is moved into it (an answer's text is not copied once more).
    fn message_item(&self, id: &str, status: &str, text: impl Into<String>) -> Value {
        let content = if status == "in_progress" {
            json!([])
        } else {
            let mut part = output_text("");
            part["text"] = Value::String(text.into());
            json!([part])
        };
        json!({"id": id, "type": "message", "status": status, "role": "assistant",
               "content": content})
    }

    /// The `i`th reasoning block as a reasoning item: its text as the summary, its signature (or redacted data,
    /// marked) as `encrypted_content`, which the client sends back untouched.
    fn reasoning_item(&self, i: usize, r: &Reasoning) -> Value {
        let id = if r.id.is_empty() {
            self.reasoning_id(i)
        } else {
            r.id.clone()
        };
        let mut item = json!({"id": id, "type": "reasoning", "summary": []});
        if !r.text.is_empty() {
            item["summary"] = json!([{"type": "summary_text", "text": r.text}]);
        }
        if let Some(blob) = request::encrypted_content(r) {
            item["encrypted_content"] = json!(blob);
        }
        item
    }

    /// A function call item; a namespace tool's call names its namespace.
    fn function_item(&self, c: &ToolCall, status: &str) -> Value {
        let arguments = if status == "in_progress" {
            ""
        } else {
            c.arguments.as_str()
        };
        let (name, namespace) = self.namespaces.split(&c.name);
        let mut item = json!({"id": format!("fc_{}", c.id), "type": "function_call", "status": status,
                              "call_id": c.id, "name": name, "arguments": arguments});
        if let Some(namespace) = namespace {
            item["namespace"] = Value::from(namespace);
        }
        item
    }

    fn reasoning_id(&self, i: usize) -> String {
        format!("{}{}_{i}", request::GATEWAY_REASONING_ID, &self.id[5..])
    }
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn usage_object(u: Usage) -> Value {
    json!({"input_tokens": u.prompt_tokens,
           "input_tokens_details": {"cached_tokens": u.cached_prompt_tokens, "cache_write_tokens": u.cache_write_tokens},
           "output_tokens": u.completion_tokens,
           "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
           "total_tokens": u.total_tokens})
}

/// A float as the client wrote it (0.2f32 would print as 0.20000000298023224).
fn float(v: f32) -> Value {
    v.to_string()
        .parse::<f64>()
        .map_or(Value::Null, Value::from)
}

/// The most answer a Responses stream keeps (text, reasoning, call arguments) for its closing events, which
/// repeat it: the deltas of a longer answer have gone out, and the stream ends with `response.failed`
/// (`memory_exhausted`) rather than hold it again four times over. 16 times the longest answers models give.
const MAX_KEPT: usize = 8 << 20;

/// Writes one stream's events, numbering them. Output items open in the order their first pieces came
/// (reasoning, the message, function calls) and each closes when the next opens.
struct Events {
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
    super::named_event(event.kind, &event, out);
}

impl Events {
    fn event(&mut self, kind: &str, mut body: Map<String, Value>, out: &mut Vec<u8>) {
        body.insert("type".into(), json!(kind));
        body.insert("sequence_number".into(), json!(self.seq));
        self.seq += 1;
        super::named_event(kind, &body, out);
    }

    /// The next output index.
    fn next_at(&self) -> u32 {
        (self.output.len() + usize::from(self.open.is_some())) as u32
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

impl super::StreamWriter for Events {
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
                index: (streamed + i) as u32,
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

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
