//! A response object as the Responses API writes it (its output items: reasoning, the message, function calls), and
//! what is kept of an answered call for `previous_response_id`.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::request::{Echo, Namespaces};
use crate::{
    core::{conversations::Stored, gateway::Gateway},
    proto::{Message, Reasoning, ToolCall, Usage},
};

/// The conversation to keep once it is answered, and the request's input items.
pub(super) struct Keep {
    pub(super) gw: Arc<Gateway>,
    pub(super) owner: String,
    pub(super) messages: Vec<Message>,
    pub(super) input_items: Vec<Value>,
}

impl Keep {
    /// Keeps the conversation with its answer, and the response object as it was sent.
    pub(super) fn answered(
        mut self,
        id: &str,
        done: (&str, &[ToolCall], &[Reasoning]),
        response: &Value,
    ) {
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
pub(super) struct Answer {
    pub(super) id: String,
    pub(super) message_id: String,
    pub(super) created: u64,
    pub(super) model: String,
    pub(super) echo: Echo,
    pub(super) previous_response_id: Option<String>,
    pub(super) store: bool,
    pub(super) namespaces: Namespaces,
}

impl Answer {
    /// The response object; `status` "in_progress", "completed", "incomplete" or "failed".
    pub(super) fn shell(&self, status: &str, output: Vec<Value>) -> Map<String, Value> {
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
    pub(super) fn object(
        &self,
        output: Vec<Value>,
        finish_reason: &str,
        usage: Option<Usage>,
    ) -> Value {
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
    pub(super) fn message_item(&self, id: &str, status: &str, text: impl Into<String>) -> Value {
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
    pub(super) fn reasoning_item(&self, i: usize, r: &Reasoning) -> Value {
        let id = if r.id.is_empty() {
            self.reasoning_id(i)
        } else {
            r.id.clone()
        };
        let mut item = json!({"id": id, "type": "reasoning", "summary": []});
        if !r.text.is_empty() {
            item["summary"] = json!([{"type": "summary_text", "text": r.text}]);
        }
        if let Some(blob) = super::reasoning_items::encrypted_content(r) {
            item["encrypted_content"] = json!(blob);
        }
        item
    }

    /// A function call item; a namespace tool's call names its namespace.
    pub(super) fn function_item(&self, c: &ToolCall, status: &str) -> Value {
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

    pub(super) fn reasoning_id(&self, i: usize) -> String {
        format!(
            "{}{}_{i}",
            super::reasoning_items::GATEWAY_REASONING_ID,
            &self.id[5..]
        )
    }
}

pub(super) fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

pub(super) fn usage_object(u: Usage) -> Value {
    json!({"input_tokens": u.prompt_tokens,
           "input_tokens_details": {"cached_tokens": u.cached_prompt_tokens, "cache_write_tokens": u.cache_write_tokens},
           "output_tokens": u.completion_tokens,
           "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
           "total_tokens": u.total_tokens})
}

/// A float as the client wrote it (0.2f32 would print as 0.20000000298023224).
pub(super) fn float(v: f32) -> Value {
    v.to_string()
        .parse::<f64>()
        .map_or(Value::Null, Value::from)
}

pub(super) fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
