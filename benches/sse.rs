//! SSE decoding: the bytes of an OpenAI stream to events, and to the text deltas the gateway relays (decoder
//! plus chunk JSON), fed whole and in TCP-sized pieces. Run: `cargo bench --bench sse`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures stop the test

use std::hint::black_box;

use aigw::{upstream::openai::convert, upstream::sse::SseDecoder};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const CHUNKS: usize = 256;

/// What an OpenAI-style upstream sends for a 256-token answer: a role chunk, one chunk per token, the finish
/// chunk, the usage chunk and `[DONE]`.
fn stream() -> Vec<u8> {
    let head = r#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":"#;
    let mut out = String::new();
    out.push_str(&format!(
        "data: {head}{{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
    ));
    for i in 0..CHUNKS {
        out.push_str(&format!(
            "data: {head}{{\"content\":\" word{i}\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
        ));
    }
    out.push_str(&format!(
        "data: {head}{{}},\"logprobs\":null,\"finish_reason\":\"stop\"}}]}}\n\n"
    ));
    out.push_str(r#"data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":256,"total_tokens":268}}"#);
    out.push_str("\n\ndata: [DONE]\n\n");
    out.into_bytes()
}

/// Decodes `bytes` pushed in `piece`-sized parts; returns the events seen and the text deltas.
fn decode(bytes: &[u8], piece: usize, parse: bool) -> (usize, usize) {
    let mut decoder = SseDecoder::new(1 << 20);
    let mut end = convert::Reading::default();
    let (mut events, mut deltas) = (0, 0);
    for part in bytes.chunks(piece) {
        decoder.push(part);
        while let Some(event) = decoder.next_event().expect("valid stream") {
            events += 1;
            if parse && event.data != "[DONE]" {
                if let convert::Piece::Text(text) =
                    convert::chunk(&event.data, &mut end).expect("valid chunk")
                {
                    deltas += black_box(text).len().min(1);
                }
            }
        }
    }
    (events, deltas)
}

fn sse(c: &mut Criterion) {
    let bytes = stream();
    assert_eq!(decode(&bytes, 1460, true), (CHUNKS + 4, CHUNKS));
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Elements(CHUNKS as u64));
    g.bench_function("decode 256 events, one push", |b| {
        b.iter(|| decode(black_box(&bytes), bytes.len(), false))
    });
    g.bench_function("decode 256 events, 1460-byte pushes", |b| {
        b.iter(|| decode(black_box(&bytes), 1460, false))
    });
    g.bench_function("decode + chunk JSON, 256 deltas, 1460-byte pushes", |b| {
        b.iter(|| decode(black_box(&bytes), 1460, true))
    });
    g.bench_function("decode 256 events, 7-byte pushes", |b| {
        b.iter(|| decode(black_box(&bytes), 7, false))
    });
    g.finish();
}

criterion_group!(benches, sse);
criterion_main!(benches);
