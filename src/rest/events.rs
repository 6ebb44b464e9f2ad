//! A streamed answer as a door's server-sent events: each door's `StreamWriter` writes the opening, text,
//! reasoning, tool-call pieces, keep-alives, the end or a failure in its own events; `relay` reads the call's
//! chunks through it.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response};
use tonic::body::Body;

use crate::{
    call::{self, start::Reply},
    error::GatewayError,
    proto::StreamChunk,
};

/// How a door writes a stream's events: an opening, one event (or a few) per piece of the answer as it comes
/// (text, reasoning, a piece of a tool call), keep-alives during silences, the end, or a failure after the
/// start.
pub(super) trait StreamWriter: Send + 'static {
    fn start(&mut self) -> Bytes;
    fn text(&mut self, text: &str) -> Bytes;
    fn reasoning(&mut self, r: &crate::proto::ReasoningDelta) -> Bytes;
    fn tool_call(&mut self, c: &crate::proto::ToolCallDelta) -> Bytes;
    /// The upstream is silent (thinking): an SSE comment, which every client skips and every proxy sees.
    fn keepalive(&mut self) -> Bytes {
        Bytes::from_static(b": keep-alive\n\n")
    }
    fn last(&mut self, last: &StreamChunk) -> Bytes;
    fn failed(&mut self, error: &GatewayError) -> Bytes;
    /// Why the writer cannot go on (it keeps more of the answer than it may), ending the stream with it.
    fn overflow(&self) -> Option<GatewayError> {
        None
    }
}

/// One chunk of the stream as the door's events.
pub(super) fn write_chunk<W: StreamWriter>(writer: &mut W, c: &StreamChunk) -> Bytes {
    // The usual chunk holds one piece: written straight out.
    if c.reasoning.is_none() && c.tool_call_deltas.is_empty() && !c.heartbeat {
        return writer.text(&c.delta);
    }
    let mut out = Vec::new();
    if c.heartbeat {
        out.extend_from_slice(&writer.keepalive());
    }
    if let Some(r) = &c.reasoning {
        out.extend_from_slice(&writer.reasoning(r));
    }
    if !c.delta.is_empty() {
        out.extend_from_slice(&writer.text(&c.delta));
    }
    for call in &c.tool_call_deltas {
        out.extend_from_slice(&writer.tool_call(call));
    }
    Bytes::from(out)
}

/// A streamed answer as the door's events: the opening, then one write per chunk until the last chunk or an
/// error, after which nothing more is read.
pub(super) fn relay<W: StreamWriter>(
    reply: Reply<call::stream::Chunks>,
    mut writer: W,
) -> Response<Body> {
    use tokio_stream::StreamExt;
    let Reply {
        value: chunks,
        headers,
    } = reply;
    let first = writer.start();
    let mut done = false;
    let rest = chunks.map_while(move |chunk| {
        if done {
            return None;
        }
        Some(match chunk {
            Ok(c) if !c.is_complete => {
                let out = write_chunk(&mut writer, &c);
                match writer.overflow() {
                    None => out,
                    Some(error) => {
                        // Nothing more is read: the upstream request is dropped with the stream.
                        done = true;
                        [out, writer.failed(&error)].concat().into()
                    }
                }
            }
            Ok(last) => {
                done = true;
                writer.last(&last)
            }
            Err(error) => {
                done = true;
                writer.failed(&error)
            }
        })
    });
    event_stream(headers, first, rest)
}

/// `event: <kind>\ndata: <json>\n\n`, as the Responses and Messages streams name their events.
pub(super) fn named_event(kind: &str, data: &impl serde::Serialize, out: &mut Vec<u8>) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Serializing these values cannot fail: no maps with non-string keys, no failing Serialize impls.
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"\n\n");
}

/// A streamed answer: `first`, then `rest`, as server-sent events with the call's metadata as headers.
pub(super) fn event_stream(
    extra: HeaderMap,
    first: Bytes,
    rest: impl tokio_stream::Stream<Item = Bytes> + Send + 'static,
) -> Response<Body> {
    use tokio_stream::StreamExt;
    let frames = tokio_stream::once(first)
        .chain(rest)
        .map(|bytes| Ok::<_, std::convert::Infallible>(http_body::Frame::data(bytes)));
    let mut resp = Response::new(Body::new(http_body_util::StreamBody::new(frames)));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.extend(extra);
    resp
}
