//! AWS's binary event-stream framing (`application/vnd.amazon.eventstream`), which Bedrock's streams come in:
//! each frame's length, headers and CRCs are checked by `aws-smithy-eventstream`'s decoder; a frame is handed
//! on as an event named by its `:event-type` header (an exception frame as `exception:<its :exception-type>`)
//! with its payload as the data. A frame longer than the limit is refused before its bytes are held.

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::{HeaderValue, Message};
use bytes::BytesMut;

use super::sse::SseEvent;

/// The prelude's first field: the frame's whole length, big-endian.
const LENGTH_BYTES: usize = 4;

pub(crate) struct AwsFrames {
    buf: BytesMut,
    decoder: MessageFrameDecoder,
    max_frame_bytes: usize,
}

impl AwsFrames {
    pub(crate) fn new(max_frame_bytes: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            decoder: MessageFrameDecoder::new(),
            max_frame_bytes,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame's event; `None` until one has arrived.
    pub(crate) fn next_event(&mut self) -> Result<Option<SseEvent>, String> {
        if self.buf.len() >= LENGTH_BYTES {
            let mut length = [0u8; LENGTH_BYTES];
            length.copy_from_slice(&self.buf[..LENGTH_BYTES]);
            let length = u32::from_be_bytes(length);
            if usize::try_from(length).map_or(true, |n| n > self.max_frame_bytes) {
                return Err(format!(
                    "an event-stream frame of {length} bytes exceeds {} bytes",
                    self.max_frame_bytes
                ));
            }
        }
        let message = match self.decoder.decode_frame(&mut self.buf) {
            Ok(DecodedFrame::Complete(message)) => message,
            Ok(DecodedFrame::Incomplete) => return Ok(None),
            Err(e) => return Err(format!("invalid event-stream frame: {e}")),
        };
        Ok(Some(event(&message)))
    }
}

fn event(message: &Message) -> SseEvent {
    let header = |name: &str| {
        message
            .headers()
            .iter()
            .find(|h| h.name().as_str() == name)
            .and_then(|h| match h.value() {
                HeaderValue::String(s) => Some(s.as_str().to_owned()),
                _ => None,
            })
            .unwrap_or_default()
    };
    let name = match header(":message-type").as_str() {
        "exception" | "error" => {
            let kind = header(":exception-type");
            let kind = if kind.is_empty() {
                header(":error-code")
            } else {
                kind
            };
            format!("exception:{kind}")
        }
        _ => header(":event-type"),
    };
    SseEvent {
        event: name,
        data: String::from_utf8_lossy(message.payload()).into_owned(),
    }
}
