//! The fuzz harness: property tests, on stable Rust, of every parser of outside bytes — the SSE decoder, OpenAI
//! chunks and completions, Anthropic events, the REST request parsers (which must also never hold more than
//! the memory budget charges a body: measured by a thread-local counting allocator, `allocation-counter`), the
//! Retry-After parser, `grpc-timeout` and the surrogate joiner; and the one writer that must match another byte for byte, the RPC log line. Each
//! property runs a bounded number of cases in `cargo test` (`PROPTEST_CASES` raises it for a longer hunt); a
//! failing input is shrunk and written to `src/fuzz.regressions`, which is
//! committed, so it is replayed first on every later run. Inputs that once crashed the gateway are also kept
//! below as named regression tests.

use proptest::{
    prelude::*,
    test_runner::{Config, FileFailurePersistence},
};

use crate::{
    observe::log_line::{self, Layout, LogLine},
    upstream::openai::convert::{self, Reading},
    upstream::{
        anthropic,
        retry_after::{self, CEILING},
        sse::{SseDecoder, SseError, SseEvent},
    },
};

fn config() -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(256),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "src/fuzz.regressions",
        ))),
        ..Config::default()
    }
}

/// Bytes that look like an event stream often enough to reach every branch, and sometimes do not.
fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data: ".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"event: message_delta".to_vec()),
        Just(b": keep-alive".to_vec()),
        Just(b"id: 7".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(b"[DONE]".to_vec()),
        Just("안녕 😀".as_bytes().to_vec()),
        Just(br#"{"choices":[{"delta":{"content":"hi"}}]}"#.to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

/// All events of `input` fed in pieces cut at `cuts`, and the error that stopped it, if any.
fn decode(input: &[u8], cuts: &[usize]) -> (Vec<SseEvent>, Option<SseError>) {
    let mut d = SseDecoder::new(1 << 20);
    let mut events = Vec::new();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.push(input.len());
    points.sort_unstable();
    let mut at = 0;
    for p in points {
        d.push(&input[at..p]);
        at = p;
        loop {
            match d.next_event() {
                Ok(Some(e)) => events.push(e),
                Ok(None) => break,
                Err(e) => return (events, Some(e)),
            }
        }
    }
    (events, None)
}

/// A JSON document of bounded depth and size, with the field names upstreams use.
fn json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    let key = prop_oneof![
        Just("choices".to_owned()),
        Just("delta".to_owned()),
        Just("content".to_owned()),
        Just("tool_calls".to_owned()),
        Just("index".to_owned()),
        Just("function".to_owned()),
        Just("arguments".to_owned()),
        Just("logprobs".to_owned()),
        Just("usage".to_owned()),
        Just("error".to_owned()),
        Just("type".to_owned()),
        Just("text".to_owned()),
        Just("message".to_owned()),
        Just("content_block".to_owned()),
        Just("partial_json".to_owned()),
        "[a-z_]{1,10}",
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A request body built to make a door's decoder allocate: one element repeated many times (tiny messages,
/// content blocks, tools, unknown values), a random tree in an unknown field, and numbers out of range.
fn hostile_body() -> impl Strategy<Value = Vec<u8>> {
    let element = prop_oneof![
        Just(r#"{"role":"user","content":""}"#),
        Just(r#"{"role":"user","content":[{"type":"text","text":""}]}"#),
        Just(
            r#"{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}"#
        ),
        Just(r#"{"type":"function","function":{"name":"f","parameters":{}}}"#),
        Just(r#"{"type":"x"}"#),
        Just("[]"),
        Just("{}"),
        Just("0"),
        Just(r#""""#),
    ];
    let field = prop_oneof![
        Just("messages"),
        Just("input"),
        Just("tools"),
        Just("content"),
        Just("stop"),
        Just("unknown"),
    ];
    let number = prop_oneof![
        Just("1e308".to_owned()),
        Just("-1".to_owned()),
        Just("18446744073709551616".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
    ];
    let numeric = prop_oneof![
        Just("max_tokens"),
        Just("max_output_tokens"),
        Just("max_completion_tokens"),
        Just("n"),
        Just("top_logprobs"),
        Just("dimensions"),
        Just("temperature"),
        Just("budget_tokens"),
    ];
    (element, 0..3000usize, field, json(), numeric, number).prop_map(
        |(element, times, field, tree, numeric, number)| {
            let many = vec![element; times].join(",");
            format!(
                r#"{{"model":"m","max_tokens":5,"messages":[{{"role":"user","content":"hi"}}],"input":"hi",
                "{field}":[{many}],"extra":{tree},"{numeric}":{number}}}"#
            )
            .into_bytes()
        },
    )
}

/// Text as a JavaScript server sends it: UTF-16 units, escaped `\uXXXX`, cut into pieces anywhere.
fn js_pieces(text: &str, cuts: &[usize]) -> Vec<String> {
    let units: Vec<u16> = text.encode_utf16().collect();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (units.len() + 1)).collect();
    points.push(units.len());
    points.sort_unstable();
    let mut at = 0;
    points
        .into_iter()
        .map(|p| {
            let piece: String = units[at..p].iter().map(|u| format!("\\u{u:04x}")).collect();
            at = p;
            piece
        })
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sse_events_do_not_depend_on_where_the_bytes_split(
        input in sse_bytes(),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        prop_assert_eq!(decode(&input, &cuts), decode(&input, &[]));
    }

    #[test]
    fn openai_chunks_never_panic(data in prop_oneof![".{0,64}", json().prop_map(|v| v.to_string())]) {
        let mut reading = Reading { logprobs: true, ..Reading::default() };
        let _ = convert::chunk(&data, &mut reading);
        let _ = convert::completion(data.as_bytes(), true);
    }

    #[test]
    fn openai_chunk_shapes_never_panic(choice in json(), usage in json()) {
        let data = serde_json::json!({"id": "x", "choices": [choice], "usage": usage}).to_string();
        let _ = convert::chunk(&data, &mut Reading { logprobs: true, ..Reading::default() });
    }

    #[test]
    fn anthropic_events_never_panic(kind in prop_oneof![
        Just("message_start"), Just("content_block_start"), Just("content_block_delta"),
        Just("message_delta"), Just("message_stop"), Just("error"), Just("ping"), Just("other"),
    ], body in json()) {
        let mut event = match body {
            serde_json::Value::Object(m) => serde_json::Value::Object(m),
            other => serde_json::json!({"delta": other}),
        };
        event["type"] = serde_json::Value::from(kind);
        let mut state = anthropic::StreamState::default();
        let _ = anthropic::event(&event.to_string(), &mut state, &mut Reading::default());
        let _ = anthropic::completion(event.to_string().as_bytes());
    }

    #[test]
    fn rest_requests_never_panic(body in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        json().prop_map(|v| v.to_string().into_bytes()),
        (json(), json()).prop_map(|(m, extra)| serde_json::json!({
            "model": "m", "messages": [m], "stream": extra.is_object(), "tools": extra,
        }).to_string().into_bytes()),
    ]) {
        let _ = crate::rest::parse_request(&body);
    }

    /// Decoding a request body never holds more at its peak than the memory budget charges the body
    /// (`core::memory::json_charge`), whichever door reads it: the budget's accounting is an upper bound.
    #[test]
    fn decoding_a_request_holds_no_more_than_its_charge(body in prop_oneof![
        hostile_body(),
        json().prop_map(|v| v.to_string().into_bytes()),
    ]) {
        let charge = crate::core::memory::json_charge(&body);
        type Parser = fn(&[u8]) -> bool;
        let doors: [(&str, Parser); 3] = [
            ("chat", |b| crate::rest::parse_request(b).is_ok()),
            ("responses", |b| crate::rest::parse_responses(b).is_ok()),
            ("messages", |b| crate::rest::parse_messages(b).is_ok()),
        ];
        for (door, parse) in doors {
            let info = allocation_counter::measure(|| {
                std::hint::black_box(parse(&body));
            });
            prop_assert!(
                info.bytes_max <= charge,
                "{door}: {} bytes at the peak, charged {charge}, for a body of {}",
                info.bytes_max,
                body.len()
            );
        }
    }

    #[test]
    fn grpc_requests_never_panic(body in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        prop::collection::vec(prop_oneof![Just(0x12u8), Just(0x00), Just(0x0a), Just(0x02), any::<u8>()], 0..256),
    ]) {
        use crate::grpc::codec::{elements, DEPTH, MAX_ELEMENTS};
        use prost::Message as _;
        // A field takes two bytes at least, at each depth counted.
        let n = elements(&body, 0, MAX_ELEMENTS);
        prop_assert!(n <= (body.len() as u64 / 2) * u64::from(DEPTH + 1), "{n} elements in {} bytes", body.len());
        let _ = crate::grpc::codec::countable(&body);
        let _ = crate::proto::GenerateRequest::decode(&body[..]);
    }

    #[test]
    fn waits_from_headers_never_panic_and_stay_bounded(text in prop_oneof![
        ".{0,40}", "[0-9]{1,40}", "-?[0-9]{0,20}\\.?[0-9]{0,5}(e[0-9]{1,3})?",
        "[0-9]{1,6}(h|m|s|ms)([0-9]{1,6}(m|s|ms))?",
    ]) {
        let now = std::time::SystemTime::now();
        for wait in [
            retry_after::retry_after(&text, now),
            retry_after::millis(&text),
            retry_after::reset(&text),
        ].into_iter().flatten() {
            prop_assert!(wait <= CEILING);
        }
    }

    /// Not a parser, but a writer whose output must never drift: the RPC line written directly reads byte for
    /// byte as the fmt layer writes it, for any names and numbers.
    #[test]
    fn the_rpc_line_reads_the_same_both_ways(
        names in prop::collection::vec(".{0,12}", 7),
        numbers in prop::collection::vec(any::<i32>(), 4),
        counts in (any::<u32>(), any::<u32>(), any::<bool>(), prop::option::of(any::<u64>())),
        floats in (any::<f64>(), any::<f64>()),
    ) {
        let line = LogLine {
            rpc: &names[0], key: &names[1], request_id: &names[2], model: &names[3], upstream: &names[4],
            code: &names[5], error: &names[6], latency_ms: floats.0, overhead_us: counts.3,
            prompt_tokens: numbers[0], completion_tokens: numbers[1], cached_prompt_tokens: numbers[2],
            reasoning_tokens: numbers[3], usage_estimated: counts.2, cost_usd: floats.1, turns: counts.0,
            attempts: counts.1, cache: &names[0],
        };
        for layout in [Layout::Text, Layout::Json] {
            let (direct, by_tracing) = log_line::both_ways(&line, layout);
            prop_assert_eq!(direct, by_tracing);
        }
    }

    #[test]
    fn grpc_timeouts_never_panic(text in ".{0,12}") {
        let _ = crate::routing::deadline::parse_grpc_timeout(&text);
    }

    #[test]
    fn text_split_by_utf16_unit_arrives_whole(
        text in "\\PC{0,24}",
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut reading = Reading::default();
        let mut got = String::new();
        for piece in js_pieces(&text, &cuts) {
            let data = format!(r#"{{"choices":[{{"index":0,"delta":{{"content":"{piece}"}}}}]}}"#);
            if let convert::Piece::Text(t) = convert::chunk(&data, &mut reading).unwrap() {
                got.push_str(&t);
            }
        }
        got.extend(reading.text.finish());
        prop_assert_eq!(got, text);
    }
}

/// Inputs that once took the gateway down, kept as they were reported.
#[test]
fn regressions() {
    let now = std::time::SystemTime::now();
    // A 429 with this Retry-After panicked adding it to an Instant.
    assert_eq!(
        retry_after::retry_after("18446744073709551615", now),
        Some(CEILING)
    );
    // retry-after-ms: 1e30 panicked in Duration::from_secs_f64.
    assert_eq!(retry_after::millis("1e30"), Some(CEILING));
    // Found by this harness: a non-ASCII last character split the text inside it.
    assert_eq!(
        crate::routing::deadline::parse_grpc_timeout("1\u{f5929}"),
        None
    );
    // An emoji's halves in two events failed the stream ("unexpected end of hex escape").
    let mut reading = Reading::default();
    let a = convert::chunk(
        r#"{"choices":[{"delta":{"content":"\ud83d"}}]}"#,
        &mut reading,
    );
    let b = convert::chunk(
        r#"{"choices":[{"delta":{"content":"\ude00"}}]}"#,
        &mut reading,
    );
    assert_eq!(
        (a.unwrap(), b.unwrap()),
        (convert::Piece::Progress, convert::Piece::Text("😀".into()))
    );
}
