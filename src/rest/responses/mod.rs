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

mod events;
mod reasoning_items;
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
    proto::{GenerateRequest, Message, Reasoning, StreamGenerateRequest, ToolCall, Usage},
};
use events::Events;
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
        let writer = |_: &HeaderMap| Events::new(answer, keep);
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
        if let Some(blob) = reasoning_items::encrypted_content(r) {
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
        format!(
            "{}{}_{i}",
            reasoning_items::GATEWAY_REASONING_ID,
            &self.id[5..]
        )
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

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
