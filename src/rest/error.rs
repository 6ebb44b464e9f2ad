//! Failures as the REST door answers them: the HTTP status and `{"error": {...}}` body OpenAI would send,
//! taken from the gateway's error when the status carries one ([`GatewayError::http`]), else from the code.

use bytes::Bytes;
use http::{Response, StatusCode};
use tonic::{body::Body, Code, Status};

use super::wire::{ErrorBody, ErrorObject};
use crate::error::GatewayError;

/// HTTP status, OpenAI error type and code for a status the gateway did not make itself.
fn by_code(code: Code) -> (u16, &'static str, Option<&'static str>) {
    match code {
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
            (400, "invalid_request_error", None)
        }
        Code::Unauthenticated => (401, "invalid_request_error", Some("invalid_api_key")),
        Code::PermissionDenied => (403, "permission_error", None),
        Code::NotFound => (404, "invalid_request_error", None),
        Code::AlreadyExists | Code::Aborted => (409, "invalid_request_error", None),
        Code::ResourceExhausted => (429, "requests", Some("rate_limit_exceeded")),
        Code::Cancelled => (499, "invalid_request_error", Some("cancelled")),
        Code::Unimplemented => (501, "server_error", None),
        Code::Unavailable => (503, "server_error", None),
        Code::DeadlineExceeded => (504, "timeout", None),
        Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => (500, "server_error", None),
    }
}

/// HTTP status, OpenAI error type and code of a failed call.
pub(crate) fn kind(status: &Status) -> (u16, &'static str, Option<&'static str>) {
    GatewayError::of(status).map_or_else(|| by_code(status.code()), GatewayError::http)
}

/// A refused or failed call: its HTTP status and error body; `retry-after` and `x-request-id` go along.
pub(crate) fn status(status: &Status) -> Response<Body> {
    let (http, kind, code) = kind(status);
    let mut resp = body(http, status.message(), kind, code);
    resp.headers_mut()
        .extend(status.metadata().clone().into_headers());
    resp
}

pub(crate) fn gateway(err: &GatewayError) -> Response<Body> {
    let (http, kind, code) = err.http();
    body(http, &err.to_string(), kind, code)
}

/// An error response the door makes itself (unknown path, wrong method, body too large).
pub(crate) fn body(http: u16, message: &str, kind: &str, code: Option<&str>) -> Response<Body> {
    let status = StatusCode::from_u16(http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    super::json(status, &object(message, kind, code))
}

fn object<'a>(message: &'a str, kind: &'a str, code: Option<&'a str>) -> ErrorBody<'a> {
    ErrorBody {
        error: ErrorObject {
            message,
            kind,
            param: None,
            code,
        },
    }
}

/// The event that ends a stream which failed after it started: OpenAI's error object as a `data:` event (the
/// SDKs raise it), and no `[DONE]`, so a broken stream never looks complete.
pub(crate) fn event(status: &Status) -> Bytes {
    let (_, kind, code) = kind(status);
    super::wire::sse_event(&object(status.message(), kind, code))
}
