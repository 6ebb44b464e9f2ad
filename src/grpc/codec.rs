//! The protobuf codec of the generated AIService code: prost's, except that a request that does not decode is
//! the client's mistake (`INVALID_ARGUMENT`), where tonic reports `INTERNAL`, which reads as the gateway's bug;
//! and that a request is counted before it is decoded. Two bytes on the wire (an empty message) decode into a
//! 216-byte `Message`: a 4 MiB request of empty messages would take half a gigabyte. So the elements a request
//! could decode into are counted first, reading every length-delimited field as a message where it reads as
//! one (an upper bound: strings that happen to read as messages count too), and more than `MAX_ELEMENTS` is
//! refused, undecoded.

use prost::Message;
use tonic::{
    codec::{BufferSettings, Codec, DecodeBuf},
    Status,
};

pub(crate) struct ProstCodec<T, U>(tonic_prost::ProstCodec<T, U>);

impl<T, U> Default for ProstCodec<T, U> {
    fn default() -> Self {
        ProstCodec(tonic_prost::ProstCodec::default())
    }
}

impl<T, U> Codec for ProstCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = Decoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        Decoder(self.0.decoder())
    }
}

pub(crate) struct Decoder<U>(tonic_prost::ProstDecoder<U>);

impl<U: Message + Default> tonic::codec::Decoder for Decoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        use bytes::Buf;
        let bytes = buf.chunk();
        // The whole message is in one chunk when tonic hands it over; if not, prost's own limits apply.
        if bytes.len() == buf.remaining() {
            countable(bytes)?;
        }
        self.0.decode(buf).map_err(|s| {
            Status::invalid_argument(format!(
                "the message is not valid protobuf for this method: {}",
                s.message()
            ))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// Refuses a request that could decode into more than `MAX_ELEMENTS` elements. A field takes two bytes at
/// least, so a smaller request is not read twice.
pub(crate) fn countable(bytes: &[u8]) -> Result<(), Status> {
    if bytes.len() as u64 > 2 * MAX_ELEMENTS && elements(bytes, 0, MAX_ELEMENTS) > MAX_ELEMENTS {
        return Err(Status::invalid_argument(format!(
            "the request holds more than {MAX_ELEMENTS} protobuf elements (messages, parts, fields), more than \
             the gateway decodes"
        )));
    }
    Ok(())
}

/// The most elements (fields, at every depth) a request may hold: 50,000 messages of a few fields each with
/// room to spare, and at most about 100 MiB decoded (216 bytes each, the largest struct).
pub(crate) const MAX_ELEMENTS: u64 = 500_000;

/// Nested messages are counted this deep (a string read as a message, inside one, inside one...).
pub(crate) const DEPTH: u32 = 8;

/// The fields in `buf` read as a protobuf message, counting those inside each length-delimited field that reads
/// as a message too; stops counting past `cap`. Bytes that are not a message count what was read before.
pub(crate) fn elements(mut buf: &[u8], depth: u32, cap: u64) -> u64 {
    let mut n = 0u64;
    while n <= cap {
        let Some((key, rest)) = varint(buf) else {
            return n;
        };
        let (inner, rest) = match key & 7 {
            0 => (None, varint(rest).map(|(_, rest)| rest)),
            1 => (None, rest.get(8..)),
            5 => (None, rest.get(4..)),
            2 => match varint(rest) {
                Some((len, rest)) => match usize::try_from(len).ok().filter(|&l| l <= rest.len()) {
                    Some(l) => (Some(&rest[..l]), Some(&rest[l..])),
                    None => (None, None),
                },
                None => (None, None),
            },
            _ => (None, None),
        };
        // A field counts once it is whole.
        let Some(rest) = rest else {
            return n;
        };
        n += 1;
        if let Some(inner) = inner.filter(|i| depth < DEPTH && !i.is_empty()) {
            n += elements(inner, depth + 1, cap - n.min(cap));
        }
        buf = rest;
    }
    n
}

/// A base-128 varint and what follows it.
fn varint(buf: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &b) in buf.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, &buf[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{GenerateRequest, Message as Msg};

    #[test]
    fn a_request_is_counted_to_its_nested_fields() {
        let req = GenerateRequest {
            model: "m".into(),
            messages: vec![
                Msg {
                    role: "user".into(),
                    content: "?!".into(),
                    ..Default::default()
                };
                3
            ],
            ..Default::default()
        };
        // model, 3 messages of role and content ("user" and "?!" do not read as messages: 'u' opens a 4-byte
        // field with 3 bytes left, '?' a wire type that does not exist).
        assert_eq!(elements(&req.encode_to_vec(), 0, MAX_ELEMENTS), 1 + 3 * 3);
    }

    #[test]
    fn every_wire_type_is_skipped_by_its_length() {
        // A varint (field 3), a fixed64 (field 1) and a fixed32 (field 2): three elements.
        let wire = [&[0x18, 0x96, 0x01][..], &[0x09; 9], &[0x15; 5]].concat();
        assert_eq!(elements(&wire, 0, MAX_ELEMENTS), 3);
        // Cut short, the last field does not count; a wire type that does not exist ends the count.
        assert_eq!(elements(&wire[..wire.len() - 1], 0, MAX_ELEMENTS), 2);
        assert_eq!(elements(&wire[..3 + 8], 0, MAX_ELEMENTS), 1);
        assert_eq!(
            elements(&[0x08, 0x01, 0x0b, 0x08, 0x01], 0, MAX_ELEMENTS),
            1
        );
        // A ten-byte varint is whole; an eleventh continuation byte is not a varint.
        let long = [&[0x08][..], &[0xff; 9], &[0x01]].concat();
        assert_eq!(elements(&long, 0, MAX_ELEMENTS), 1);
        assert_eq!(varint(&[0x96, 0x01, 0x07]), Some((150, &[0x07][..])));
        assert_eq!(varint(&[0xff; 11]), None);
    }

    #[test]
    fn nesting_is_counted_eight_deep_and_the_count_stops_past_its_cap() {
        // `wrappers` messages, each the only field (2) of the one around it, around one varint field.
        let chain = |wrappers: usize| {
            (0..wrappers).fold(vec![0x08, 0x01], |inner, _| {
                [&[0x12, inner.len() as u8][..], &inner].concat()
            })
        };
        assert_eq!(elements(&chain(3), 0, MAX_ELEMENTS), 4);
        assert_eq!(elements(&chain(8), 0, MAX_ELEMENTS), 9);
        assert_eq!(
            elements(&chain(10), 0, MAX_ELEMENTS),
            9,
            "fields below the eighth level are not read"
        );
        let flat = [0x12u8, 0x00].repeat(100);
        assert_eq!(
            elements(&flat, 0, 10),
            11,
            "one past the cap, then it stops"
        );
        // The cap holds inside nested messages too.
        let nested = [&[0x12u8, 100][..], &[0x08, 0x01].repeat(50)].concat();
        assert_eq!(elements(&nested, 0, 10), 11);
    }

    #[test]
    fn a_request_is_counted_only_past_twice_the_limit_in_bytes() {
        // Empty messages, two bytes each: the limit exactly is not read; one more element is refused.
        let at_limit = [0x12u8, 0x00].repeat(MAX_ELEMENTS as usize);
        assert!(countable(&at_limit).is_ok());
        let over = [0x12u8, 0x00].repeat(MAX_ELEMENTS as usize + 1);
        assert!(countable(&over).is_err());
        // Past twice the limit in bytes, it is the count that decides: the limit exactly is decoded.
        let mut at_limit_longer = [0x12u8, 0x00].repeat(MAX_ELEMENTS as usize - 1);
        at_limit_longer.extend([0x12, 0x01, 0xff]);
        assert!(countable(&at_limit_longer).is_ok());
    }

    /// `bytes` as the body of a gRPC request, decoded by the gateway's codec as tonic's server does.
    async fn decode(bytes: &[u8]) -> Result<Option<GenerateRequest>, tonic::Status> {
        use tokio_stream::StreamExt;
        let frame = [&[0u8][..], &(bytes.len() as u32).to_be_bytes(), bytes].concat();
        let body = http_body_util::Full::new(bytes::Bytes::from(frame));
        let mut codec = ProstCodec::<GenerateRequest, GenerateRequest>::default();
        let mut stream =
            tonic::codec::Streaming::new_request(codec.decoder(), body, None, Some(8 << 20));
        stream.next().await.transpose()
    }

    #[tokio::test]
    async fn the_decoder_counts_before_it_decodes_and_names_bad_protobuf_the_clients() {
        let req = GenerateRequest {
            model: "m".into(),
            messages: vec![Msg::text("user", "hi")],
            ..Default::default()
        };
        assert_eq!(decode(&req.encode_to_vec()).await.unwrap(), Some(req));
        // 600,000 empty messages in one frame: refused by the count, not decoded.
        let flood = [0x12u8, 0x00].repeat(600_000);
        let err = decode(&flood).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("500000 protobuf elements"),
            "{err:?}"
        );
        // A field cut short is the client's mistake, named as such (tonic's own codec says INTERNAL).
        let err = decode(&[0x0a, 0x05, b'm']).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message()
                .starts_with("the message is not valid protobuf"),
            "{err:?}"
        );
    }

    #[test]
    fn a_flood_of_empty_messages_is_refused_before_it_is_decoded() {
        // 600,000 empty messages: 1.2 MB on the wire, 130 MB decoded.
        let wire = [0x12u8, 0x00].repeat(600_000);
        let info = allocation_counter::measure(|| {
            let err = countable(&wire).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(err.message().contains("500000 protobuf elements"));
        });
        assert!(info.bytes_max < 1 << 20, "{} bytes", info.bytes_max);
        assert!(
            countable(&wire[..2 * 400_000]).is_ok(),
            "400,000 are decoded"
        );
        let mut text = vec![0x12, 0xff, 0xff, 0x3f];
        text.resize(4 + 0xfffff, b'?');
        assert!(countable(&text).is_ok(), "a large string is one element");
    }
}
