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
/// The whole prelude (length, headers' length, its CRC), which the decoder takes out of the buffer first.
const PRELUDE_BYTES: usize = 12;

pub(crate) struct AwsFrames {
    buf: BytesMut,
    decoder: MessageFrameDecoder,
    max_frame_bytes: usize,
    /// The buffer starts with a frame's prelude (the decoder has not taken it yet).
    at_prelude: bool,
}

impl AwsFrames {
    pub(crate) fn new(max_frame_bytes: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            decoder: MessageFrameDecoder::new(),
            max_frame_bytes,
            at_prelude: true,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame's event; `None` until one has arrived.
    pub(crate) fn next_event(&mut self) -> Result<Option<SseEvent>, String> {
        if self.at_prelude && self.buf.len() >= LENGTH_BYTES {
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
        let held = self.buf.len();
        let message = match self.decoder.decode_frame(&mut self.buf) {
            Ok(DecodedFrame::Complete(message)) => message,
            Ok(DecodedFrame::Incomplete) => {
                // With a whole prelude in the buffer the decoder took it: what follows is the frame's body.
                if held >= PRELUDE_BYTES {
                    self.at_prelude = false;
                }
                return Ok(None);
            }
            Err(e) => return Err(format!("invalid event-stream frame: {e}")),
        };
        self.at_prelude = true;
        Ok(Some(event(&message)))
    }
}

/// One frame with string `headers` and `payload`, as AWS writes them: what the mock upstream's Bedrock streams and
/// the tests' scripted ones are made of.
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut message = Message::new(payload.to_vec());
    for (name, value) in headers {
        message = message.add_header(aws_smithy_types::event_stream::Header::new(
            name.to_string(),
            HeaderValue::String(value.to_string().into()),
        ));
    }
    let mut out = Vec::new();
    // Writing to a Vec fails only for a header past the format's limits (names of 255 bytes, values of 32 KiB).
    let _ = aws_smithy_eventstream::frame::write_message_to(&message, &mut out);
    out
}

/// A ConverseStream event's frame: its `:event-type`, JSON content and `event` message type.
pub fn encode_event(event_type: &str, payload: &[u8]) -> Vec<u8> {
    encode(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload,
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(headers: &[(&str, &str)], payload: &str) -> Vec<u8> {
        encode(headers, payload.as_bytes())
    }

    /// Frames split anywhere come out whole, named by their event type (an exception by its type).
    #[test]
    fn frames_are_read_across_any_split() {
        let event = frame(
            &[
                (":message-type", "event"),
                (":event-type", "contentBlockDelta"),
            ],
            r#"{"delta":{"text":"hi"}}"#,
        );
        let exception = frame(
            &[
                (":message-type", "exception"),
                (":exception-type", "throttlingException"),
            ],
            r#"{"message":"slow down"}"#,
        );
        let bytes = [event, exception].concat();
        let mut frames = AwsFrames::new(1024);
        let mut out = Vec::new();
        for b in &bytes {
            frames.push(std::slice::from_ref(b));
            while let Some(e) = frames.next_event().unwrap() {
                out.push((e.event, e.data));
            }
        }
        assert_eq!(
            out,
            [
                (
                    "contentBlockDelta".to_owned(),
                    r#"{"delta":{"text":"hi"}}"#.to_owned()
                ),
                (
                    "exception:throttlingException".to_owned(),
                    r#"{"message":"slow down"}"#.to_owned()
                ),
            ]
        );
    }

    /// A frame longer than the limit is refused from its first four bytes, before its body is held; a frame
    /// whose checksum is wrong is refused.
    #[test]
    fn oversized_and_corrupt_frames_are_refused() {
        let mut frames = AwsFrames::new(64);
        frames.push(&[0x7f, 0xff, 0xff, 0xff]);
        assert!(frames.next_event().unwrap_err().contains("exceeds"));
        let mut bad = frame(&[(":event-type", "messageStop")], "{}");
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let mut frames = AwsFrames::new(1024);
        frames.push(&bad);
        assert!(frames.next_event().unwrap_err().contains("invalid"));
    }
}
