//! Conversion both ways: a gRPC request to the OpenAI (Anthropic, Responses API) JSON body sent upstream, and the upstream's
//! JSON (a whole completion, one stream chunk) to the gRPC message sent back, encoded. Run:
//! `cargo bench --bench convert`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures stop the test

use std::hint::black_box;

use aigw::{
    config::MaxTokensField,
    proto::{GenerateResponse, GenerationConfig, Message, StreamChunk, Tool, ToolCall},
    upstream::{anthropic, openai::convert, responses},
};
use criterion::{criterion_group, criterion_main, Criterion};
use prost::Message as _;

fn message(role: &str, content: &str) -> Message {
    Message {
        role: role.into(),
        content: content.into(),
        name: String::new(),
        ..Default::default()
    }
}

/// A short prompt, and a 20-message conversation of about 4 KiB.
fn conversations() -> [(&'static str, Vec<Message>); 2] {
    let mut long = vec![message(
        "system",
        "You are a careful assistant. Answer briefly.",
    )];
    for i in 0..19 {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        long.push(message(
            role,
            &format!("{i}: {}", "some \"quoted\" text, and more. ".repeat(6)),
        ));
    }
    [
        (
            "1 message",
            vec![message("user", "Say hello in one short sentence.")],
        ),
        ("20 messages, 4 KiB", long),
    ]
}

fn to_openai(c: &mut Criterion) {
    let config = GenerationConfig {
        temperature: Some(0.7),
        max_tokens: Some(256),
        ..Default::default()
    };
    let mut g = c.benchmark_group("proto to OpenAI JSON");
    for (name, messages) in conversations() {
        g.bench_function(name, |b| {
            b.iter(|| {
                let req = convert::chat_request(
                    "gpt-4.1",
                    black_box(&messages),
                    Some(&config),
                    &Default::default(),
                    MaxTokensField::MaxTokens,
                    true,
                );
                serde_json::to_vec(&req).expect("serializable")
            })
        });
    }
    g.finish();
}

fn from_openai(c: &mut Criterion) {
    let completion = br#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"The image shows a wooden boardwalk path running through a lush green field or meadow. The sky is bright blue with some scattered clouds, giving the scene a serene and peaceful atmosphere.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1117,"completion_tokens":46,"total_tokens":1163,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_fc9f1d7035"}"#;
    let chunk = r#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":{"content":" boardwalk"},"logprobs":null,"finish_reason":null}]}"#;
    let mut g = c.benchmark_group("OpenAI JSON to proto");
    g.bench_function("completion -> GenerateResponse, encoded", |b| {
        b.iter(|| {
            let done = convert::completion(black_box(completion), false).expect("valid");
            GenerateResponse {
                content: done.content,
                model: done.model,
                usage: done.usage,
                finish_reason: done.finish_reason,
                id: done.id,
                usage_estimated: false,
                ..Default::default()
            }
            .encode_to_vec()
        })
    });
    let mut end = convert::Reading::default();
    g.bench_function("stream chunk -> StreamChunk, encoded", |b| {
        b.iter(|| {
            let convert::Piece::Text(delta) =
                convert::chunk(black_box(chunk), &mut end).expect("valid")
            else {
                panic!("the chunk carries text")
            };
            StreamChunk {
                delta,
                ..Default::default()
            }
            .encode_to_vec()
        })
    });
    g.finish();
}

/// A coding agent's turn: a 16 KiB system prompt, 20 tools, and 30 rounds of a question, a tool call and its
/// 2 KiB result: 121 KB of JSON (the group's name holds the estimate it was written to), what Claude Code sends on
/// every turn of a session.
fn agent_turn() -> (Vec<Message>, GenerationConfig) {
    let mut messages = vec![message("system", &"Follow the house rules. ".repeat(700))];
    for i in 0..30 {
        messages.push(message(
            "user",
            &format!("Step {i}: {}", "look at the code. ".repeat(50)),
        ));
        messages.push(Message {
            tool_calls: vec![ToolCall {
                id: format!("toolu_{i:04}"),
                name: "read_file".into(),
                arguments: format!(r#"{{"path": "src/module_{i}.rs", "offset": 0, "limit": 400}}"#),
            }],
            ..message("assistant", "Reading the file.")
        });
        messages.push(Message {
            tool_call_id: format!("toolu_{i:04}"),
            ..message("tool", &"fn main() { println!(\"hi\"); }\n".repeat(64))
        });
    }
    let tools = (0..20)
        .map(|i| Tool {
            name: format!("tool_{i}"),
            description: "Does one thing to the repository, and says what it did.".into(),
            parameters_json: r#"{"type":"object","properties":{"path":{"type":"string"},"limit":{"type":"integer"}},"required":["path"]}"#.into(),
            ..Default::default()
        })
        .collect();
    let config = GenerationConfig {
        max_tokens: Some(32_000),
        tools,
        ..Default::default()
    };
    (messages, config)
}

fn agent_bodies(c: &mut Criterion) {
    let (messages, config) = agent_turn();
    let pass = Default::default();
    let request = |model| {
        convert::chat_request(
            model,
            black_box(&messages),
            Some(&config),
            &pass,
            MaxTokensField::MaxTokens,
            true,
        )
    };
    let (openai, claude) = (request("gpt-4.1"), request("claude-sonnet-4-5"));
    eprintln!(
        "agent turn: {} bytes to OpenAI, {} to Anthropic, {} to the Responses API",
        serde_json::to_vec(&openai).expect("serializable").len(),
        anthropic::body(&claude).expect("serializable").len(),
        responses::body(&request("gpt-5-codex"))
            .expect("serializable")
            .len()
    );
    let mut g = c.benchmark_group("agent turn, 110 KiB");
    g.bench_function("OpenAI JSON", |b| {
        b.iter(|| serde_json::to_vec(&request("gpt-4.1")).expect("serializable"))
    });
    g.bench_function("Anthropic JSON", |b| {
        b.iter(|| anthropic::body(&request("claude-sonnet-4-5")).expect("serializable"))
    });
    g.bench_function("Responses JSON", |b| {
        b.iter(|| responses::body(&request("gpt-5-codex")).expect("serializable"))
    });
    g.finish();
}

criterion_group!(benches, to_openai, from_openai, agent_bodies);
criterion_main!(benches);
