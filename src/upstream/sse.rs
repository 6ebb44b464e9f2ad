//! Server-sent events decoding, per the WHATWG event-stream rules, on raw bytes.
//!
//! Bytes arrive split anywhere (inside a line, inside a CRLF, inside a multi-byte UTF-8 character), so the
//! decoder buffers bytes, never strings, and turns only a whole event's data into text. Lines end with LF,
//! CRLF or a lone CR; a blank line dispatches the event; `:` starts a comment (keep-alive); several `data:`
//! lines join with `\n`. The buffer is bounded: an event larger than `max_event_bytes` is an error rather than
//! an unbounded allocation.

use bytes::{Buf, BytesMut};

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; empty for the default "message" type.
    pub(crate) event: String,
    pub data: String,
}

/// Why the byte stream is not a valid event stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an SSE event exceeded {0} bytes")]
    TooLarge(usize),
    #[error("SSE event data is not valid UTF-8")]
    NotUtf8,
}

/// Incremental decoder: feed it bytes with [`SseDecoder::push`], take events with [`SseDecoder::next_event`].
#[derive(Debug)]
pub struct SseDecoder {
    buf: BytesMut,
    /// How far `buf` has been scanned for a line end without finding one.
    scanned: usize,
    /// A CR ended the last line; a LF right after it belongs to the same line end.
    skip_lf: bool,
    event: String,
    data: Vec<u8>,
    has_data: bool,
    max_event_bytes: usize,
}

impl SseDecoder {
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            scanned: 0,
            skip_lf: false,
            event: String::new(),
            data: Vec::new(),
            has_data: false,
            max_event_bytes,
        }
    }

    /// Appends bytes read from the upstream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event, `Ok(None)` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, SseError> {
        loop {
            if self.skip_lf && !self.buf.is_empty() {
                if self.buf[0] == b'\n' {
                    self.buf.advance(1);
                }
                self.skip_lf = false;
            }
            let Some(pos) =
                memchr::memchr2(b'\n', b'\r', &self.buf[self.scanned..]).map(|p| p + self.scanned)
            else {
                self.scanned = self.buf.len();
                if self.buf.len() + self.data.len() > self.max_event_bytes {
                    return Err(SseError::TooLarge(self.max_event_bytes));
                }
                return Ok(None);
            };
            let line = self.buf.split_to(pos + 1);
            self.scanned = 0;
            self.skip_lf = line[pos] == b'\r';
            if let Some(event) = self.line(&line[..pos])? {
                return Ok(Some(event));
            }
        }
    }

    fn line(&mut self, line: &[u8]) -> Result<Option<SseEvent>, SseError> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return Ok(None); // comment / keep-alive
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
                if self.data.len() > self.max_event_bytes {
                    return Err(SseError::TooLarge(self.max_event_bytes));
                }
            }
            b"event" => {
                self.event = std::str::from_utf8(value)
                    .map_err(|_| SseError::NotUtf8)?
                    .to_owned();
            }
            _ => {} // id, retry and unknown fields do not matter to a one-shot completion stream
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Result<Option<SseEvent>, SseError> {
        let event = std::mem::take(&mut self.event);
        if !std::mem::take(&mut self.has_data) {
            return Ok(None); // an event with no data is not dispatched
        }
        let data =
            String::from_utf8(std::mem::take(&mut self.data)).map_err(|_| SseError::NotUtf8)?;
        Ok(Some(SseEvent { event, data }))
    }

    /// Bytes received but not yet part of a dispatched event (a stream that ends here was cut short).
    #[cfg(test)]
    pub(crate) fn has_partial_event(&self) -> bool {
        !self.buf.is_empty() || self.has_data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(data: &str) -> SseEvent {
        SseEvent {
            event: String::new(),
            data: data.to_owned(),
        }
    }

    /// Feeds `input` split at every given cut, collecting every event.
    fn decode_split(input: &[u8], cuts: &[usize]) -> Result<Vec<SseEvent>, SseError> {
        let mut dec = SseDecoder::new(1024);
        let mut out = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            dec.push(&input[start..cut]);
            start = cut;
            while let Some(e) = dec.next_event()? {
                out.push(e);
            }
        }
        Ok(out)
    }

    #[test]
    fn table() {
        let named = |event: &str, data: &str| SseEvent {
            event: event.to_owned(),
            data: data.to_owned(),
        };
        let cases: Vec<(&str, &[u8], Vec<SseEvent>)> = vec![
            ("one event", b"data: hello\n\n", vec![ev("hello")]),
            ("no space after colon", b"data:hello\n\n", vec![ev("hello")]),
            (
                "only one leading space is stripped",
                b"data:  two\n\n",
                vec![ev(" two")],
            ),
            (
                "CRLF",
                b"data: a\r\n\r\ndata: b\r\n\r\n",
                vec![ev("a"), ev("b")],
            ),
            ("lone CR", b"data: a\r\rdata: b\r\r", vec![ev("a"), ev("b")]),
            ("multi-line data", b"data: a\ndata: b\n\n", vec![ev("a\nb")]),
            (
                "comments and keep-alives",
                b": ping\n\n:\ndata: x\n: mid\n\n",
                vec![ev("x")],
            ),
            (
                "event name",
                b"event: error\ndata: {}\n\n",
                vec![named("error", "{}")],
            ),
            (
                "id and retry ignored",
                b"id: 7\nretry: 100\ndata: x\n\n",
                vec![ev("x")],
            ),
            ("field without colon", b"data\n\n", vec![ev("")]),
            ("no data, no event", b"event: x\n\n", vec![]),
            ("unterminated event waits", b"data: x\n", vec![]),
            ("done marker", b"data: [DONE]\n\n", vec![ev("[DONE]")]),
            (
                "utf-8",
                "data: 안녕하세요 你好 こんにちは\n\n".as_bytes(),
                vec![ev("안녕하세요 你好 こんにちは")],
            ),
        ];
        for (name, input, want) in cases {
            // Every split point must give the same events: whole, and in two pieces cut anywhere.
            assert_eq!(decode_split(input, &[]).unwrap(), want, "{name}");
            for cut in 1..input.len() {
                assert_eq!(
                    decode_split(input, &[cut]).unwrap(),
                    want,
                    "{name}, cut at {cut}"
                );
            }
            let bytewise: Vec<usize> = (1..input.len()).collect();
            assert_eq!(
                decode_split(input, &bytewise).unwrap(),
                want,
                "{name}, byte by byte"
            );
        }
    }

    #[test]
    fn oversized_events_are_an_error_not_a_buffer() {
        let mut dec = SseDecoder::new(16);
        dec.push(b"data: 0123456789abcdefghij");
        assert_eq!(dec.next_event(), Err(SseError::TooLarge(16)));
        let mut dec = SseDecoder::new(16);
        dec.push(b"data: 0123456789\ndata: 0123456789\n");
        assert_eq!(dec.next_event(), Err(SseError::TooLarge(16)));
    }

    #[test]
    fn an_event_of_exactly_the_limit_is_decoded_and_a_partial_line_counts_toward_it() {
        let mut dec = SseDecoder::new(16);
        dec.push(b"data: 0123456789abcdef\n\n");
        assert_eq!(dec.next_event(), Ok(Some(ev("0123456789abcdef"))));
        // Ten bytes of data, and ten of a line not yet ended: over sixteen before the line is whole.
        let mut dec = SseDecoder::new(16);
        dec.push(b"data: 0123456789\ndata: 0123");
        assert_eq!(dec.next_event(), Err(SseError::TooLarge(16)));
        let mut dec = SseDecoder::new(16);
        dec.push(b"data: 0123456789\ndata: ");
        assert_eq!(dec.next_event(), Ok(None), "16 bytes so far");
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        assert_eq!(
            decode_split(b"data: \xff\xfe\n\n", &[]),
            Err(SseError::NotUtf8)
        );
        assert_eq!(
            decode_split(b"event: \xff\ndata: x\n\n", &[]),
            Err(SseError::NotUtf8)
        );
    }

    #[test]
    fn partial_events_are_visible() {
        let mut dec = SseDecoder::new(64);
        dec.push(b"data: x\n");
        assert_eq!(dec.next_event(), Ok(None));
        assert!(dec.has_partial_event());
        dec.push(b"\n");
        assert_eq!(dec.next_event(), Ok(Some(ev("x"))));
        assert!(!dec.has_partial_event());
    }
}
