//! Anthropic's shapes of what the gateway answers: thinking, tool-use and usage blocks, the models list, errors
//! (`{"type": "error", "error": {...}}`, with Anthropic's types and its 529 for an overloaded provider).

use http::Response;
use serde_json::{json, Value};
use tonic::body::Body;

use crate::{
    call::start::Failure,
    error::GatewayError,
    proto::{Reasoning, ToolCall, Usage},
    upstream::anthropic,
};

/// A reasoning block as Anthropic writes it: signed thinking, or redacted data.
pub(super) fn thinking_block(r: &Reasoning) -> Value {
    if r.redacted.is_empty() {
        json!({"type": "thinking", "thinking": r.text, "signature": r.signature})
    } else {
        json!({"type": "redacted_thinking", "data": r.redacted})
    }
}

pub(super) fn tool_use(c: &ToolCall) -> Value {
    anthropic::tool_use_block(&tool_use_id(&c.id), &c.name, &c.arguments)
}

/// A tool call's id as Anthropic's clients expect it (`toolu_…`): another provider's id (`call_…`) gets the
/// prefix. The client sends it back as it got it, and the upstream only matches results to calls within the
/// request, so the id needs no way back.
pub(super) fn tool_use_id(id: &str) -> std::borrow::Cow<'_, str> {
    if id.starts_with("toolu_") {
        std::borrow::Cow::Borrowed(id)
    } else {
        std::borrow::Cow::Owned(format!("toolu_{id}"))
    }
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
pub(super) fn usage(u: Usage) -> Value {
    let cached = u.cached_prompt_tokens.max(0);
    let written = u.cache_write_tokens.max(0);
    json!({"input_tokens": (u.prompt_tokens - cached - written).max(0), "output_tokens": u.completion_tokens,
           "cache_read_input_tokens": cached, "cache_creation_input_tokens": written})
}

/// Anthropic's error type for an HTTP status.
pub(super) fn error_type(http: u16) -> &'static str {
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

pub(super) fn error_body(http: u16, message: &str) -> Value {
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
pub(super) fn failure(failure: &Failure) -> Response<Body> {
    let (http, _, _) = failure.error.http();
    // Anthropic's own word for an overloaded provider, passed on as such.
    let overloaded = matches!(failure.error, GatewayError::UpstreamOverloaded { .. });
    let http = if overloaded { 529 } else { http };
    let mut resp = json_status(http, &error_body(http, &failure.error.message()));
    resp.headers_mut()
        .extend(failure.headers_as(crate::transport::standing::Style::Anthropic));
    resp
}

pub(super) fn json_status(http: u16, body: &Value) -> Response<Body> {
    let status =
        http::StatusCode::from_u16(http).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    crate::rest::json(status, body)
}
