//! What every REST door's answers share: JSON bodies (with the call's headers), request bodies read into their
//! types, heavy encoding off the async workers, the time of an answer.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use tonic::body::Body;

/// Runs CPU-heavy work (a large answer's encoding) without holding an async worker: on the multi-threaded
/// runtime the worker hands its other tasks to another thread meanwhile, so health probes and other calls do not
/// wait behind it. (Inline on a single-threaded runtime, as in tests.)
pub(super) fn heavy<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// A JSON answer with the call's response headers.
pub(super) fn json_with(headers: HeaderMap, value: &impl serde::Serialize) -> Response<Body> {
    let mut resp = json(StatusCode::OK, value);
    resp.headers_mut().extend(headers);
    resp
}

/// A request body read into its type. The error names the field it is about (`messages[0].content: ...`).
/// Most bodies are fine, so they are read by serde_json alone; only a failing one is read again, tracking its
/// path for the message (tracking it on every call cost an allocation per key).
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).or_else(|_| {
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body))
            .map_err(|e| e.to_string())
    })
}

pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A JSON response.
pub(super) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    // Serializing these types cannot fail (no maps with non-string keys, no failing Serialize impls).
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(Body::new(http_body_util::Full::new(Bytes::from(bytes))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
