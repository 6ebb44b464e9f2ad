//! `POST /v1/messages`, Anthropic's Messages API, on the same pipeline as the other doors: the request becomes
//! a whole or streamed call of the call layer (any configured upstream serves it, OpenAI-style ones included), and
//! the answer goes back as an Anthropic message, or as its event stream: `message_start`, per content block
//! (thinking, text, tool use, in the order their first pieces came) `content_block_start` /
//! `content_block_delta` (`thinking_delta`, `signature_delta`, `text_delta`, `input_json_delta`, each as it
//! arrives) / `content_block_stop`, `event: ping` during silences, then `message_delta` with the stop reason and
//! usage, and `message_stop`. Keys come as `x-api-key` or bearer;
//! `anthropic-version` is accepted (any). Errors are Anthropic's `{"type": "error", "error": {...}}`, and a
//! stream that fails after it started ends with an `error` event, never `message_stop`.

mod request;
/// For the fuzz harness.
#[cfg(test)]
pub(crate) use request::parse as parse_request;

use bytes::Bytes;
use http::{HeaderMap, Response};
use serde_json::{json, Value};
use tonic::body::Body;

use super::Caller;
use crate::{
    admission::auth::Identity,
    call::start::{Failure, Reply},
    core::gateway::Gateway,
    error::GatewayError,
    proto::{GenerateRequest, Reasoning, StreamChunk, StreamGenerateRequest, ToolCall, Usage},
    upstream::anthropic::{self, stop_reason},
};
use request::parse;

/// The names the Messages door's calls have in logs and metrics.
pub(crate) const RPC_UNARY: &str = "Messages";
pub(crate) const RPC_STREAM: &str = "MessagesStream";

pub(crate) async fn create(caller: Caller, body: Bytes) -> Response<Body> {
    let parsed = match parse(&body) {
        Ok(p) => p,
        Err(e) => return gateway_error(&e),
    };
    let id = format!("msg_{:032x}", fastrand::u128(..));
    let model = parsed.model.clone();
    // What only Anthropic takes, named when a route of the model speaks another API (the upstream that
    // answers leaves it out, and its log says so).
    let dropped = if parsed.foreign.is_empty()
        || caller
            .gw
            .catalog()
            .router
            .speaks_everywhere(&model, "anthropic")
    {
        None
    } else {
        http::HeaderValue::try_from(parsed.foreign.join(", ")).ok()
    };
    let input_estimate = estimate(&parsed.messages, &parsed.config);
    let mut resp = if parsed.stream {
        let message = StreamGenerateRequest {
            model: parsed.model,
            messages: parsed.messages,
            config: Some(parsed.config),
        };
        let writer = |_: &HeaderMap| Events {
            id,
            model,
            input_estimate,
            next: 0,
            open: None,
            tool_blocks: Vec::new(),
            any: false,
        };
        caller.stream(RPC_STREAM, message, writer, failure).await
    } else {
        let message = GenerateRequest {
            model: parsed.model,
            messages: parsed.messages,
            config: Some(parsed.config),
        };
        let answer = |reply: Reply<crate::proto::GenerateResponse>| {
            let Reply {
                value: done,
                headers,
            } = reply;
            let mut content: Vec<Value> = done.reasoning.iter().map(thinking_block).collect();
            if !done.content.is_empty() || done.tool_calls.is_empty() {
                content.push(json!({"type": "text", "text": done.content}));
            }
            content.extend(done.tool_calls.iter().map(tool_use));
            let body = json!({"id": id, "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": stop_reason(&done.finish_reason),
                "stop_sequence": null, "usage": usage(done.usage.unwrap_or_default())});
            super::json_with(headers, &body)
        };
        caller.generate(RPC_UNARY, message, answer, failure).await
    };
    if let Some(dropped) = dropped {
        resp.headers_mut().insert("aigw-dropped", dropped);
    }
    resp
}

/// A reasoning block as Anthropic writes it: signed thinking, or redacted data.
fn thinking_block(r: &Reasoning) -> Value {
    if r.redacted.is_empty() {
        json!({"type": "thinking", "thinking": r.text, "signature": r.signature})
    } else {
        json!({"type": "redacted_thinking", "data": r.redacted})
    }
}

fn tool_use(c: &ToolCall) -> Value {
    anthropic::tool_use_block(&tool_use_id(&c.id), &c.name, &c.arguments)
}

/// A tool call's id as Anthropic's clients expect it (`toolu_…`): another provider's id (`call_…`) gets the
/// prefix. The client sends it back as it got it, and the upstream only matches results to calls within the
/// request, so the id needs no way back.
fn tool_use_id(id: &str) -> std::borrow::Cow<'_, str> {
    if id.starts_with("toolu_") {
        std::borrow::Cow::Borrowed(id)
    } else {
        std::borrow::Cow::Owned(format!("toolu_{id}"))
    }
}

/// The gateway's estimate of a request's input tokens (about 4 bytes a token, 4 per message, the tools'
/// definitions counted as text): what `count_tokens` answers and `message_start` reports before the upstream's
/// count arrives with `message_delta`.
fn estimate(messages: &[crate::proto::Message], config: &crate::proto::GenerationConfig) -> u64 {
    let tools = config
        .tools
        .iter()
        .map(|t| t.name.len() + t.description.len() + t.parameters_json.len());
    crate::admission::estimate::estimate_tokens(
        messages
            .iter()
            .map(crate::upstream::openai::extras::size)
            .chain(tools),
        0,
    )
}

/// `POST /v1/messages/count_tokens`: the request's input tokens as the model's first Anthropic route counts them
/// (the body as the client sent it, for that route's model, with the client's API headers), else as the gateway
/// estimates them (the same estimate its limits reserve; also when the upstream cannot be reached); errors in
/// Anthropic's shape.
pub(crate) async fn count_tokens(
    gw: &Gateway,
    who: &Identity,
    headers: &HeaderMap,
    body: &[u8],
) -> Response<Body> {
    let parsed = match request::parse_to_count(body) {
        Ok(p) => p,
        Err(e) => return gateway_error(&e),
    };
    // The model must be one this key may use, as for the call itself.
    let catalog = gw.catalog();
    let model = match catalog.router.resolve(&parsed.model, who) {
        Ok(model) => model.clone(),
        Err(e) => return gateway_error(&e),
    };
    let counter = model
        .routes
        .iter()
        .find(|r| r.upstream.dialect_name() == "anthropic");
    if let Some(route) = counter {
        let mut sent: Value = serde_json::from_slice(body).unwrap_or_default();
        sent["model"] = Value::from(route.upstream_model(&parsed.model));
        let api = crate::upstream::api_headers::ApiHeaders::read(headers);
        let given = headers.get("x-request-id").and_then(|v| v.to_str().ok());
        let request_id = crate::call::start::request_id(given);
        match route
            .upstream
            .count_tokens(&sent, &request_id, Some(&api))
            .await
        {
            Some(Ok(n)) => return super::json(http::StatusCode::OK, &json!({"input_tokens": n})),
            // The request itself is wrong: the client hears why.
            Some(Err(e @ GatewayError::UpstreamRejected { .. })) => return gateway_error(&e),
            Some(Err(e)) => {
                tracing::info!(upstream = %route.upstream.name(), error = %e, "count_tokens estimated instead");
            }
            None => {}
        }
    }
    let n = estimate(&parsed.messages, &parsed.config);
    super::json(http::StatusCode::OK, &json!({"input_tokens": n}))
}

/// `GET /v1/models` as Anthropic answers it.
pub(crate) fn model_list(names: &[&str]) -> Value {
    json!({"data": names.iter().map(|n| model_object(n)).collect::<Vec<_>>(), "has_more": false,
           "first_id": names.first(), "last_id": names.last()})
}

pub(crate) fn model_object(name: &str) -> Value {
    json!({"type": "model", "id": name, "display_name": name, "created_at": "1970-01-01T00:00:00Z"})
}

/// Anthropic counts cache reads and writes apart from `input_tokens`.
fn usage(u: Usage) -> Value {
    let cached = u.cached_prompt_tokens.max(0);
    let written = u.cache_write_tokens.max(0);
    json!({"input_tokens": (u.prompt_tokens - cached - written).max(0), "output_tokens": u.completion_tokens,
           "cache_read_input_tokens": cached, "cache_creation_input_tokens": written})
}

/// Anthropic's error type for an HTTP status.
fn error_type(http: u16) -> &'static str {
    match http {
        400 | 405 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

fn error_body(http: u16, message: &str) -> Value {
    json!({"type": "error", "error": {"type": error_type(http), "message": message}})
}

/// A refusal the door or the core made, in Anthropic's shape.
pub(crate) fn gateway_error(e: &GatewayError) -> Response<Body> {
    let (http, _, _) = e.http();
    refusal(http, &e.to_string())
}

/// An HTTP refusal (wrong method, body too large), in Anthropic's shape.
pub(crate) fn refusal(http: u16, message: &str) -> Response<Body> {
    json_status(http, &error_body(http, message))
}

/// A failed call in Anthropic's shape, with the failure's headers.
fn failure(failure: &Failure) -> Response<Body> {
    let (http, _, _) = failure.error.http();
    // Anthropic's own word for an overloaded provider, passed on as such.
    let overloaded = matches!(failure.error, GatewayError::UpstreamOverloaded { .. });
    let http = if overloaded { 529 } else { http };
    let mut resp = json_status(http, &error_body(http, &failure.error.message()));
    resp.headers_mut().extend(failure.headers());
    resp
}

fn json_status(http: u16, body: &Value) -> Response<Body> {
    let status =
        http::StatusCode::from_u16(http).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    super::json(status, body)
}

/// Writes one stream's events. Content blocks are numbered as they open: thinking, text and tool-use blocks in
/// the order their first pieces came, each closed when the next opens.
struct Events {
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
const UNOPENED: u32 = u32::MAX;

/// What an open content block holds.
#[derive(Clone, Copy, PartialEq)]
enum Block {
    Text,
    /// The reasoning block of this index.
    Thinking(u32),
    Tool,
}

/// `content_block_delta` with a `text_delta`, `thinking_delta`, `signature_delta` or `input_json_delta`.
#[derive(serde::Serialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: DeltaBody<'a>,
}

#[derive(serde::Serialize)]
#[serde(tag = "type")]
enum DeltaBody<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
}

fn event(kind: &str, data: &Value, out: &mut Vec<u8>) {
    super::named_event(kind, data, out);
}

fn delta(index: u32, body: DeltaBody<'_>, out: &mut Vec<u8>) {
    let event = BlockDelta {
        kind: "content_block_delta",
        index,
        delta: body,
    };
    super::named_event(event.kind, &event, out);
}

impl Events {
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

impl super::StreamWriter for Events {
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
