//! Failures as the REST door answers them: the HTTP status and `{"error": {...}}` body OpenAI would send, from
//! the gateway's error ([`GatewayError::http`]).

use bytes::Bytes;
use http::{Response, StatusCode};
use tonic::body::Body;

use super::wire::{ErrorBody, ErrorObject};
use crate::{call::start::Failure, error::GatewayError};

/// A refused or failed call: its HTTP status and error body; `retry-after`, `x-should-retry` and `x-request-id`
/// go along.
pub(crate) fn failure(failure: &Failure) -> Response<Body> {
    let (http, kind, code) = failure.error.http();
    let mut resp = body(http, &failure.error.message(), kind, code);
    resp.headers_mut().extend(failure.headers());
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
pub(crate) fn event(error: &GatewayError) -> Bytes {
    let (_, kind, code) = error.http();
    super::wire::sse_event(&object(&error.message(), kind, code))
}
