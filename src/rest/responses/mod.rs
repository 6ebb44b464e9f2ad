//! `POST /v1/responses`, OpenAI's Responses API, on the same pipeline as chat completions: the request becomes
//! a `Generate` or `StreamGenerate` call (so every upstream kind serves it, with the same limits, cache,
//! routing, metrics and logs), and the answer goes back as a response object, or as the documented event
//! stream: `response.created`, `response.in_progress`, the message item with its `response.output_text.delta`s,
//! each function call with its arguments events, then `response.completed` (or `response.incomplete` when the
//! output limit cut it); a failure after the start is an `error` event and `response.failed`, never a
//! completion.
//!
//! `store` (true unless the request says false) keeps the conversation for `previous_response_id`
//! (`core::conversations`: an hour, bounded in memory, per replica, for the key that made it).

mod request;

use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use serde_json::{json, Map, Value};
use tonic::{body::Body, metadata::MetadataMap, Status};

use super::error;
use crate::{
    admission::auth::Identity,
    core::gateway::Gateway,
    error::GatewayError,
    grpc::{generate, stream},
    proto::{GenerateRequest, Message, StreamChunk, StreamGenerateRequest, ToolCall, Usage},
};
use request::{parse, Echo, Parsed};

/// The names the Responses door's calls have in logs and metrics.
pub(crate) const RPC_UNARY: &str = "Responses";
pub(crate) const RPC_STREAM: &str = "ResponsesStream";

pub(crate) async fn create(
    gw: Arc<Gateway>,
    who: Arc<Identity>,
    metadata: MetadataMap,
    body: Bytes,
) -> Response<Body> {
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
    } = parsed;
    // The continued conversation, then this input.
    let mut kept = match &previous_response_id {
        None => Vec::new(),
        Some(id) => match gw.conversations.get(id, &who.name) {
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
    };
    let keep = kept.map(|messages| Keep {
        gw: gw.clone(),
        owner: who.name.clone(),
        messages,
    });
    if stream {
        let message = StreamGenerateRequest {
            model,
            messages,
            config,
        };
        let request = super::grpc_request(metadata, who, message);
        match stream::handle(gw, RPC_STREAM, request).await {
            Ok(resp) => events(resp, answer, keep),
            Err(status) => error::status(&status),
        }
    } else {
        let message = GenerateRequest {
            model,
            messages,
            config,
        };
        let handle = |request| generate::handle(gw, RPC_UNARY, request);
        let request = super::grpc_request(metadata, who, message);
        super::unary(request, handle, |resp| {
            let (metadata, done, _) = resp.into_parts();
            let body = answer.object(
                &done.content,
                &done.tool_calls,
                &done.finish_reason,
                done.usage,
            );
            if let Some(keep) = keep {
                keep.answered(&answer.id, &done.content, &done.tool_calls);
            }
            super::json_with(metadata, &body)
        })
        .await
    }
}

/// The conversation to keep once it is answered.
struct Keep {
    gw: Arc<Gateway>,
    owner: String,
    messages: Vec<Message>,
}

impl Keep {
    fn answered(mut self, id: &str, content: &str, tool_calls: &[ToolCall]) {
        self.messages.push(Message {
            role: "assistant".into(),
            content: content.to_owned(),
            tool_calls: tool_calls.to_vec(),
            ..Default::default()
        });
        self.gw.conversations.keep(id, &self.owner, self.messages);
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

    /// The finished response object.
    fn object(
        &self,
        content: &str,
        tool_calls: &[ToolCall],
        finish_reason: &str,
        usage: Option<Usage>,
    ) -> Value {
        let mut output = Vec::new();
        if !content.is_empty() || tool_calls.is_empty() {
            output.push(self.message_item("completed", content));
        }
        output.extend(tool_calls.iter().map(|c| function_item(c, "completed")));
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

    fn message_item(&self, status: &str, text: &str) -> Value {
        let content = if status == "in_progress" {
            json!([])
        } else {
            json!([output_text(text)])
        };
        json!({"id": self.message_id, "type": "message", "status": status, "role": "assistant",
               "content": content})
    }
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn function_item(c: &ToolCall, status: &str) -> Value {
    let arguments = if status == "in_progress" {
        ""
    } else {
        c.arguments.as_str()
    };
    json!({"id": format!("fc_{}", c.id), "type": "function_call", "status": status, "call_id": c.id,
           "name": c.name, "arguments": arguments})
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

/// Writes one stream's events, numbering them.
struct Events {
    answer: Answer,
    seq: u64,
    /// The message item was opened (its first delta came).
    open: bool,
    text: String,
    keep: Option<Keep>,
}

/// `response.output_text.delta`.
#[derive(serde::Serialize)]
struct TextDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: u32,
    content_index: u32,
    delta: &'a str,
    logprobs: &'static [u8],
}

impl Events {
    fn event(&mut self, kind: &str, mut body: Map<String, Value>, out: &mut Vec<u8>) {
        body.insert("type".into(), json!(kind));
        body.insert("sequence_number".into(), json!(self.seq));
        self.seq += 1;
        super::named_event(kind, &body, out);
    }

    fn open_message(&mut self, out: &mut Vec<u8>) {
        self.open = true;
        let item = self.answer.message_item("in_progress", "");
        self.event(
            "response.output_item.added",
            obj(json!({"output_index": 0, "item": item})),
            out,
        );
        let id = self.answer.message_id.clone();
        self.event(
            "response.content_part.added",
            obj(json!({"item_id": id, "output_index": 0, "content_index": 0,
                       "part": output_text("")})),
            out,
        );
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

    fn delta(&mut self, delta: &str) -> Bytes {
        let mut out = Vec::new();
        if !self.open {
            self.open_message(&mut out);
        }
        self.text.push_str(delta);
        // The one event per upstream delta: written from borrowed fields, no JSON tree per chunk.
        let kind = "response.output_text.delta";
        let event = TextDelta {
            kind,
            sequence_number: self.seq,
            item_id: &self.answer.message_id,
            output_index: 0,
            content_index: 0,
            delta,
            logprobs: &[],
        };
        super::named_event(kind, &event, &mut out);
        self.seq += 1;
        Bytes::from(out)
    }

    /// Closes the message (opening it first for an answer with neither text nor calls), sends each call
    /// whole, then the finished response.
    fn last(&mut self, last: &StreamChunk) -> Bytes {
        let mut out = Vec::new();
        let text = std::mem::take(&mut self.text);
        if !self.open && last.tool_calls.is_empty() {
            self.open_message(&mut out);
        }
        let mut index = 0;
        if self.open {
            let id = self.answer.message_id.clone();
            self.event(
                "response.output_text.done",
                obj(
                    json!({"item_id": id, "output_index": 0, "content_index": 0, "text": text,
                           "logprobs": []}),
                ),
                &mut out,
            );
            self.event(
                "response.content_part.done",
                obj(json!({"item_id": id, "output_index": 0, "content_index": 0,
                           "part": output_text(&text)})),
                &mut out,
            );
            let item = self.answer.message_item("completed", &text);
            self.event(
                "response.output_item.done",
                obj(json!({"output_index": 0, "item": item})),
                &mut out,
            );
            index = 1;
        }
        for (i, call) in last.tool_calls.iter().enumerate() {
            let at = index + i;
            let item_id = format!("fc_{}", call.id);
            self.event(
                "response.output_item.added",
                obj(json!({"output_index": at, "item": function_item(call, "in_progress")})),
                &mut out,
            );
            self.event(
                "response.function_call_arguments.delta",
                obj(json!({"item_id": item_id, "output_index": at, "delta": call.arguments})),
                &mut out,
            );
            self.event(
                "response.function_call_arguments.done",
                obj(
                    json!({"item_id": item_id, "output_index": at, "name": call.name,
                           "arguments": call.arguments}),
                ),
                &mut out,
            );
            self.event(
                "response.output_item.done",
                obj(json!({"output_index": at, "item": function_item(call, "completed")})),
                &mut out,
            );
        }
        let response = self
            .answer
            .object(&text, &last.tool_calls, &last.finish_reason, last.usage);
        let kind = if response["status"] == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.event(kind, obj(json!({"response": response})), &mut out);
        if let Some(keep) = self.keep.take() {
            keep.answered(&self.answer.id, &text, &last.tool_calls);
        }
        Bytes::from(out)
    }

    /// A failure after the start: an `error` event, then `response.failed`.
    fn failed(&mut self, status: &Status) -> Bytes {
        let mut out = Vec::new();
        let (_, kind, code) = error::kind(status);
        let code = code.unwrap_or(kind);
        self.event(
            "error",
            obj(json!({"code": code, "message": status.message(), "param": null})),
            &mut out,
        );
        let mut response = self.answer.shell("failed", Vec::new());
        response.insert(
            "error".into(),
            json!({"code": code, "message": status.message()}),
        );
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

fn events(
    resp: tonic::Response<tokio_stream::wrappers::ReceiverStream<Result<StreamChunk, Status>>>,
    answer: Answer,
    keep: Option<Keep>,
) -> Response<Body> {
    let writer = Events {
        answer,
        seq: 0,
        open: false,
        text: String::new(),
        keep,
    };
    super::relay(resp, writer)
}
