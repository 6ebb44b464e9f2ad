//! `aigw mock-upstream` as a real HTTP peer: the gateway's OpenAI client against it, JSON and SSE.

use std::time::Duration;

use crate::common::*;
use aigw::tools::mock_server::{serve, MockServerConfig, StreamShape};

async fn mock(tokens: Option<usize>) -> std::net::SocketAddr {
    mock_shaped(tokens, StreamShape::Text).await
}

async fn mock_shaped(tokens: Option<usize>, shape: StreamShape) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = MockServerConfig {
        shape,
        first_token_latency: Duration::ZERO,
        tokens_per_second: 1e6,
        tokens,
    };
    tokio::spawn(serve(listener, cfg, std::future::pending()));
    addr
}

#[tokio::test]
async fn the_gateway_speaks_to_the_mock_upstream() {
    let addr = mock(Some(40)).await;
    let gw = Gateway::start(config(&config_text(&format!("http://{addr}/v1"), ""))).await;
    let mut client = gw.client().await;
    let resp = client
        .generate(authed(generate("big", "hi"), KEY))
        .await
        .unwrap()
        .into_inner();
    assert!(
        resp.content.starts_with("Reply 1 to \"hi\""),
        "{}",
        resp.content
    );
    let usage = resp.usage.unwrap();
    assert_eq!(usage.completion_tokens, 40);
    assert!(!resp.usage_estimated);
    assert_eq!(resp.model, "up-big");

    let mut s = client
        .stream_generate(authed(stream_request("big", "hi"), KEY))
        .await
        .unwrap()
        .into_inner();
    let mut chunks = Vec::new();
    while let Some(c) = s.message().await.unwrap() {
        chunks.push(c);
    }
    let last = chunks.pop().unwrap();
    assert_eq!(chunks.len(), 40, "one chunk per token");
    assert!(last.is_complete && !last.usage_estimated);
    assert_eq!(last.usage.unwrap().completion_tokens, 40);
    assert_eq!(last.finish_reason, "stop");
}

#[tokio::test]
async fn max_tokens_cuts_the_answer() {
    let addr = mock(Some(40)).await;
    let gw = Gateway::start(config(&config_text(&format!("http://{addr}/v1"), ""))).await;
    let req = with_config(
        generate("big", "hi"),
        aigw::proto::GenerationConfig {
            max_tokens: Some(5),
            ..Default::default()
        },
    );
    let resp = gw
        .client()
        .await
        .generate(authed(req, KEY))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            resp.usage.unwrap().completion_tokens,
            resp.finish_reason.as_str()
        ),
        (5, "length")
    );
}

/// `http2 = true`: the upstream is spoken to in HTTP/2 from the first byte (h2c here), unary and streamed.
#[tokio::test]
async fn an_upstream_can_be_spoken_to_in_http2() {
    let addr = mock(Some(12)).await;
    let text = config_text(&format!("http://{addr}/v1"), "http2 = true");
    let gw = Gateway::start(config(&text)).await;
    let mut client = gw.client().await;
    let resp = client
        .generate(authed(generate("big", "hi"), KEY))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.usage.unwrap().completion_tokens, 12);
    let mut s = client
        .stream_generate(authed(stream_request("big", "hi"), KEY))
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(c) = s.message().await.unwrap() {
        n += usize::from(!c.is_complete);
    }
    assert_eq!(n, 12);
    // What an HTTP/1.1-only upstream sees is HTTP/2's connection preface, not a request.
    let up = crate::common::upstream::Upstream::start(vec![]).await;
    let gw = Gateway::start(config(&config_with(
        &up.base_url(),
        "http2 = true",
        "retry = { attempts = 1 }",
    )))
    .await;
    let err = gw
        .client()
        .await
        .generate(authed(generate("big", "hi"), KEY))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    let seen = up.requests();
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("PRI", "*")
    );
}

/// `--shape reasoning` and `--shape tools` (bench/streams.py's streams): each piece reaches the client as what it
/// is, one chunk each.
#[tokio::test]
async fn shaped_streams_arrive_as_reasoning_and_tool_pieces() {
    for (shape, reasoning, text, calls) in [
        (StreamShape::Reasoning, 30, 10, 0),
        (StreamShape::Tools, 0, 0, 40),
    ] {
        let addr = mock_shaped(Some(40), shape).await;
        let gw = Gateway::start(config(&config_text(&format!("http://{addr}/v1"), ""))).await;
        let mut s = gw
            .client()
            .await
            .stream_generate(authed(stream_request("big", "hi"), KEY))
            .await
            .unwrap()
            .into_inner();
        let mut chunks = Vec::new();
        while let Some(c) = s.message().await.unwrap() {
            chunks.push(c);
        }
        let last = chunks.pop().unwrap();
        let count =
            |f: fn(&aigw::proto::StreamChunk) -> bool| chunks.iter().filter(|c| f(c)).count();
        assert_eq!(count(|c| c.reasoning.is_some()), reasoning, "{shape:?}");
        assert_eq!(count(|c| !c.delta.is_empty()), text, "{shape:?}");
        assert_eq!(
            count(|c| !c.tool_call_deltas.is_empty()),
            calls,
            "{shape:?}"
        );
        assert_eq!(chunks.len(), 40, "{shape:?}: one chunk per piece");
        assert_eq!(last.tool_calls.len(), usize::from(calls > 0), "{shape:?}");
    }
}
