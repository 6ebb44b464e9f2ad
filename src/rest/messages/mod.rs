//! `POST /v1/messages`, Anthropic's Messages API, on the same pipeline as the other doors: the request becomes
//! a `Generate` or `StreamGenerate` call (any configured upstream serves it, OpenAI-style ones included), and
//! the answer goes back as an Anthropic message, or as its event stream: `message_start`, per content block
//! `content_block_start` / `content_block_delta` (`text_delta`, `input_json_delta`) / `content_block_stop`, then
//! `message_delta` with the stop reason and usage, and `message_stop`. Keys come as `x-api-key` or bearer;
//! `anthropic-version` is accepted (any). Errors are Anthropic's `{"type": "error", "error": {...}}`, and a
//! stream that fails after it started ends with an `error` event, never `message_stop`.

mod request;

use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use serde_json::{json, Value};
use tonic::{body::Body, metadata::MetadataMap, Status};

use super::error;
use crate::{
    admission::auth::Identity,
    core::gateway::Gateway,
    error::GatewayError,
    grpc::{generate, stream},
    proto::{GenerateRequest, StreamChunk, StreamGenerateRequest, ToolCall, Usage},
    upstream::anthropic::{self, stop_reason},
};
use request::parse;

/// The names the Messages door's calls have in logs and metrics.
pub(crate) const RPC_UNARY: &str = "Messages";
pub(crate) const RPC_STREAM: &str = "MessagesStream";

pub(crate) async fn create(
    gw: Arc<Gateway>,
    who: Arc<Identity>,
    metadata: MetadataMap,
    body: Bytes,
) -> Response<Body> {
    let parsed = match parse(&body) {
        Ok(p) => p,
        Err(e) => return gateway_error(&e),
    };
    let id = format!("msg_{:032x}", fastrand::u128(..));
    let model = parsed.model.clone();
    if parsed.stream {
        let message = StreamGenerateRequest {
            model: parsed.model,
            messages: parsed.messages,
            config: Some(parsed.config),
        };
        let request = super::grpc_request(metadata, who, message);
        match stream::handle(gw, RPC_STREAM, request).await {
            Ok(resp) => events(resp, id, model),
            Err(status) => status_error(&status),
        }
    } else {
        let message = GenerateRequest {
            model: parsed.model,
            messages: parsed.messages,
            config: Some(parsed.config),
        };
        let handle = |request| generate::handle(gw, RPC_UNARY, request);
        let answer = |resp: tonic::Response<crate::proto::GenerateResponse>| {
            let (metadata, done, _) = resp.into_parts();
            let mut content = Vec::new();
            if !done.content.is_empty() || done.tool_calls.is_empty() {
                content.push(json!({"type": "text", "text": done.content}));
            }
            content.extend(done.tool_calls.iter().map(tool_use));
            let body = json!({"id": id, "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": stop_reason(&done.finish_reason),
                "stop_sequence": null, "usage": usage(done.usage.unwrap_or_default())});
            super::json_with(metadata, &body)
        };
        let request = super::grpc_request(metadata, who, message);
        super::unary_or(request, handle, answer, status_error).await
    }
}

fn tool_use(c: &ToolCall) -> Value {
    anthropic::tool_use_block(&c.id, &c.name, &c.arguments)
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

fn status_error(status: &Status) -> Response<Body> {
    let (http, _, _) = error::kind(status);
    let mut resp = json_status(http, &error_body(http, status.message()));
    resp.headers_mut()
        .extend(status.metadata().clone().into_headers());
    resp
}

fn json_status(http: u16, body: &Value) -> Response<Body> {
    let status =
        http::StatusCode::from_u16(http).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    super::json(status, body)
}

/// Writes one stream's events.
struct Events {
    id: String,
    model: String,
    /// The text block was opened (its first delta came).
    open: bool,
}

/// `content_block_delta` with a `text_delta`.
#[derive(serde::Serialize)]
struct TextDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: TextDeltaBody<'a>,
}

#[derive(serde::Serialize)]
struct TextDeltaBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

fn event(kind: &str, data: &Value, out: &mut Vec<u8>) {
    super::named_event(kind, data, out);
}

impl Events {
    fn open_text(&mut self, out: &mut Vec<u8>) {
        self.open = true;
        event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
            out,
        );
    }
}

impl super::StreamWriter for Events {
    fn start(&mut self) -> Bytes {
        let mut out = Vec::new();
        // The prompt's count is known only at the end: message_delta carries it.
        let message = json!({"id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0}});
        event(
            "message_start",
            &json!({"type": "message_start", "message": message}),
            &mut out,
        );
        Bytes::from(out)
    }

    fn delta(&mut self, text: &str) -> Bytes {
        let mut out = Vec::new();
        if !self.open {
            self.open_text(&mut out);
        }
        // The one event per upstream delta: written from borrowed fields, no JSON tree per chunk.
        let event = TextDelta {
            kind: "content_block_delta",
            index: 0,
            delta: TextDeltaBody {
                kind: "text_delta",
                text,
            },
        };
        super::named_event(event.kind, &event, &mut out);
        Bytes::from(out)
    }

    fn last(&mut self, last: &StreamChunk) -> Bytes {
        let mut out = Vec::new();
        if !self.open && last.tool_calls.is_empty() {
            self.open_text(&mut out);
        }
        let mut index = 0;
        if self.open {
            event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
                &mut out,
            );
            index = 1;
        }
        for (i, call) in last.tool_calls.iter().enumerate() {
            let at = index + i;
            event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": at,
                        "content_block": {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}}),
                &mut out,
            );
            event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": at,
                        "delta": {"type": "input_json_delta", "partial_json": anthropic::tool_input(&call.arguments).to_string()}}),
                &mut out,
            );
            event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": at}),
                &mut out,
            );
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
    fn failed(&mut self, status: &Status) -> Bytes {
        let mut out = Vec::new();
        let (http, _, _) = error::kind(status);
        event("error", &error_body(http, status.message()), &mut out);
        Bytes::from(out)
    }
}

fn events(
    resp: tonic::Response<tokio_stream::wrappers::ReceiverStream<Result<StreamChunk, Status>>>,
    id: String,
    model: String,
) -> Response<Body> {
    let writer = Events {
        id,
        model,
        open: false,
    };
    super::relay(resp, writer)
}
