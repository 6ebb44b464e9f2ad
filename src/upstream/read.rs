//! Reading what an upstream sends, within bounds, and saying what went wrong in transport without the URL.

pub(crate) enum BodyError {
    TooLarge,
    Transport(String),
}

/// Reads a whole body, refusing to hold more than `limit` bytes.
pub(crate) async fn read_bounded(
    resp: &mut reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| BodyError::Transport(describe(&e)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The first `limit` bytes of a body (all of it when shorter; what arrived when the transport failed): an error
/// body is read for its message, and a huge one must neither be held nor lose the message.
pub(crate) async fn read_prefix(resp: &mut reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == limit {
            break;
        }
    }
    body
}

/// A transport error and its causes, without the URL (which may carry query parameters).
pub(crate) fn describe(err: &reqwest::Error) -> String {
    let mut out = if err.is_connect() {
        "connect failed".to_owned()
    } else if err.is_timeout() {
        "timed out".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
