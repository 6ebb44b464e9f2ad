//! A streamed answer being read from the upstream's HTTP body: SSE events in, the dialect's chunks or events
//! parsed into [`StreamEvent`]s out, within the body's byte limit.

use super::{bounded, unavailable};
use crate::upstream::read::describe;
use crate::{
    error::GatewayError,
    upstream::{
        answer::StreamEvent,
        dialect::{Dialect, Events, Framing, Said},
        event_stream::AwsFrames,
        openai::convert::{ChunkError, Piece, Reading},
        sse::{SseDecoder, SseEvent},
    },
};

/// The stream's framing being decoded: server-sent events, or AWS's event-stream frames (Bedrock's).
enum Decoder {
    Sse(SseDecoder),
    Aws(AwsFrames),
}

impl Decoder {
    fn push(&mut self, bytes: &[u8]) {
        match self {
            Self::Sse(d) => d.push(bytes),
            Self::Aws(d) => d.push(bytes),
        }
    }

    fn next_event(&mut self) -> Result<Option<SseEvent>, String> {
        match self {
            Self::Sse(d) => d.next_event().map_err(|e| e.to_string()),
            Self::Aws(d) => d.next_event(),
        }
    }
}

/// A streamed chat completion being read: SSE events in, [`StreamEvent`]s out.
pub(crate) struct SseStream {
    upstream: String,
    resp: reqwest::Response,
    decoder: Decoder,
    /// Id, model, finish reason and usage, collected from the chunks as they pass; the text joiner.
    reading: Reading,
    /// What the dialect's events tell across events, and how its stream ends.
    events: Events,
    done: bool,
    /// The end arrived while a half surrogate pair was held back: its U+FFFD went out first, the end is next.
    ended: bool,
}

impl SseStream {
    /// Reads `resp` in `dialect`'s framing, no event over `max_event_bytes`.
    pub(super) fn new(
        upstream: String,
        resp: reqwest::Response,
        max_event_bytes: usize,
        dialect: Dialect,
        logprobs: bool,
    ) -> SseStream {
        let decoder = match dialect.framing() {
            Framing::Sse => Decoder::Sse(SseDecoder::new(max_event_bytes)),
            Framing::AwsEventStream => Decoder::Aws(AwsFrames::new(max_event_bytes)),
        };
        SseStream {
            upstream,
            resp,
            decoder,
            reading: Reading {
                logprobs,
                ..Reading::default()
            },
            events: dialect.events(),
            done: false,
            ended: false,
        }
    }

    pub(crate) async fn next(&mut self) -> Option<Result<StreamEvent, GatewayError>> {
        if self.done {
            return None;
        }
        let result = self.read().await;
        // The end itself, or an error, ends the stream.
        self.done = matches!(result, Ok(StreamEvent::End(_)) | Err(_));
        Some(result)
    }

    async fn read(&mut self) -> Result<StreamEvent, GatewayError> {
        if let Some(piece) = self.reading.queued.pop_front() {
            if let Some(event) = self.relayed(Ok(piece))? {
                return Ok(event);
            }
        }
        if self.ended {
            return Ok(StreamEvent::End(std::mem::take(&mut self.reading.end)));
        }
        // Bytes that made no event (an SSE comment, half an event) are a sign of life too.
        let mut fed = false;
        loop {
            while let Some(event) = self.decoder.next_event().map_err(|e| self.protocol(e))? {
                if let Some(out) = self.on_event(&event.event, event.data)? {
                    return Ok(out);
                }
            }
            if fed {
                return Ok(StreamEvent::Progress);
            }
            // Response::chunk is cancel-safe: a dropped call loses no bytes.
            match self.resp.chunk().await {
                Ok(Some(bytes)) => {
                    self.decoder.push(&bytes);
                    fed = true;
                }
                Ok(None) if self.events.ends_with_body(&mut self.reading) => {
                    return Ok(self.end());
                }
                Ok(None) => {
                    let last = self.events.last_event();
                    return Err(self.unavailable(format!("the stream ended before {last}")));
                }
                Err(e) => return Err(self.unavailable(format!("stream broken: {}", describe(&e)))),
            }
        }
    }

    /// The end of the answer; a half surrogate pair still held back goes out first, as U+FFFD.
    fn end(&mut self) -> StreamEvent {
        match self.reading.text.finish() {
            Some(c) => {
                self.ended = true;
                StreamEvent::Delta(c.to_string())
            }
            None => StreamEvent::End(std::mem::take(&mut self.reading.end)),
        }
    }

    fn on_event(&mut self, event: &str, data: String) -> Result<Option<StreamEvent>, GatewayError> {
        let piece = match self.events.read(event, &data, &mut self.reading) {
            Said::End => return Ok(Some(self.end())),
            Said::Piece(piece) => piece,
        };
        match piece {
            Err(ChunkError::Invalid(_)) if event == "error" => {
                Err(self.unavailable(format!("error event: {}", bounded(&data))))
            }
            piece => self.relayed(piece),
        }
    }

    /// A piece of the answer as the stream's event.
    fn relayed(
        &self,
        piece: Result<Piece, ChunkError>,
    ) -> Result<Option<StreamEvent>, GatewayError> {
        match piece {
            Ok(Piece::Text(text)) => Ok(Some(StreamEvent::Delta(text))),
            Ok(Piece::Reasoning(r)) => Ok(Some(StreamEvent::Reasoning(r))),
            Ok(Piece::ToolCall(c)) => Ok(Some(StreamEvent::ToolCall(c))),
            Ok(Piece::Progress) => Ok(Some(StreamEvent::Progress)),
            Ok(Piece::Nothing) => Ok(None),
            Err(ChunkError::Malformed(detail)) => Err(self.protocol(detail)),
            Err(ChunkError::Invalid(e)) => Err(self.protocol(format!("invalid chunk JSON: {e}"))),
            Err(ChunkError::Overloaded(message)) => Err(GatewayError::UpstreamOverloaded {
                upstream: self.upstream.clone(),
                message: bounded(&message),
                retry_after: None,
            }),
            Err(ChunkError::Upstream(message)) => {
                Err(self.unavailable(format!("error in stream: {}", bounded(&message))))
            }
        }
    }

    fn unavailable(&self, detail: String) -> GatewayError {
        unavailable(&self.upstream, detail)
    }

    fn protocol(&self, detail: String) -> GatewayError {
        GatewayError::UpstreamProtocol {
            upstream: self.upstream.clone(),
            detail,
        }
    }
}
