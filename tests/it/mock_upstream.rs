//! `aigw mock-upstream` as a real HTTP peer: the gateway's OpenAI client against it, JSON and SSE.

use std::time::Duration;

use crate::common::*;
use aigw::tools::mock_server::{serve, MockDialect, MockServerConfig, StreamShape};

async fn mock(tokens: Option<usize>) -> std::net::SocketAddr {
    mock_shaped(tokens, StreamShape::Text).await
}

async fn mock_shaped(tokens: Option<usize>, shape: StreamShape) -> std::net::SocketAddr {
    mock_speaking(tokens, shape, MockDialect::Openai).await
}

async fn mock_speaking(
    tokens: Option<usize>,
    shape: StreamShape,
    dialect: MockDialect,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = MockServerConfig {
        dialect,
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

/// The standalone mock answers as the in-process one does: a call of an offered tool (whole, or streamed in
/// pieces), an object valid against a `json_schema` format, the tool's result read back, and embeddings.
#[tokio::test]
async fn tools_json_formats_and_embeddings_as_the_in_process_mock() {
    let addr = mock(None).await;
    let text = config_text(&format!("http://{addr}/v1"), "")
        + r#"
        [[models]]
        name = "emb"
        kind = "embedding"
        routes = [{ upstream = "scripted", model = "text-embedding-3-small" }]
        "#;
    let gw = Gateway::start(config(&text)).await;
    let post = |path: &'static str, body: serde_json::Value| {
        let gw = &gw;
        async move {
            let (status, text) = post_json(gw, path, KEY, &body).await;
            assert_eq!(status, 200, "{text}");
            text
        }
    };
    let weather = serde_json::json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let called: serde_json::Value = serde_json::from_str(
        &post(
            "/v1/chat/completions",
            serde_json::json!({"model": "big", "tools": weather,
            "messages": [{"role": "user", "content": "weather in Paris"}]}),
        )
        .await,
    )
    .unwrap();
    let call = &called["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather", "{called}");
    assert_eq!(called["choices"][0]["finish_reason"], "tool_calls");
    let args: serde_json::Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string(), "{args}");
    // Streamed: the call's id and name first, then its arguments in pieces.
    let streamed = post(
        "/v1/chat/completions",
        serde_json::json!({"model": "big", "tools": weather,
        "stream": true, "messages": [{"role": "user", "content": "weather in Paris"}]}),
    )
    .await;
    let pieces = streamed.matches("\"tool_calls\"").count();
    assert!(pieces >= 3, "{streamed}");
    // The tool's result read back, as parts.
    let answered: serde_json::Value = serde_json::from_str(
        &post("/v1/chat/completions", serde_json::json!({"model": "big", "tools": weather,
            "messages": [{"role": "user", "content": "weather in Paris"},
                {"role": "assistant", "content": null, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": call["id"], "content": [{"type": "text", "text": "sunny"}]}]}))
        .await,
    )
    .unwrap();
    let said = answered["choices"][0]["message"]["content"]
        .as_str()
        .unwrap();
    assert!(said.contains("sunny"), "{said}");
    // A JSON schema.
    let schema = serde_json::json!({"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city", "days"]}}});
    let formatted: serde_json::Value = serde_json::from_str(
        &post(
            "/v1/chat/completions",
            serde_json::json!({"model": "big", "response_format": schema,
            "messages": [{"role": "user", "content": "weather in Paris for 3 days"}]}),
        )
        .await,
    )
    .unwrap();
    let object: serde_json::Value = serde_json::from_str(
        formatted["choices"][0]["message"]["content"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(object, serde_json::json!({"city": "Paris", "days": 3}));
    // Embeddings.
    let embedded: serde_json::Value = serde_json::from_str(
        &post(
            "/v1/embeddings",
            serde_json::json!({"model": "emb", "input": ["one", "two"]}),
        )
        .await,
    )
    .unwrap();
    assert_eq!(embedded["data"].as_array().unwrap().len(), 2, "{embedded}");
    assert!(embedded["data"][0]["embedding"].as_array().unwrap().len() > 8);
}

/// `--dialect`: the same stream in Anthropic's, Gemini's and Bedrock's words, which the gateway reads as those
/// upstreams' (what `bench/streams.py --dialects` measures): every piece arrives, of the kind the shape says.
#[tokio::test]
async fn the_mock_speaks_each_dialect() {
    use MockDialect::*;
    for (dialect, kind, extra) in [
        (Anthropic, "anthropic", "api_key_env = \"TEST_UPSTREAM_KEY\""),
        (Gemini, "gemini", "api_key_env = \"TEST_UPSTREAM_KEY\""),
        (
            Bedrock,
            "bedrock",
            "region = \"us-east-1\"\naccess_key_id_env = \"TEST_AWS_KEY_ID\"\nsecret_access_key_env = \"TEST_AWS_SECRET\"",
        ),
    ] {
        for shape in [StreamShape::Text, StreamShape::Reasoning, StreamShape::Tools] {
            let addr = mock_speaking(Some(40), shape, dialect).await;
            let base = if dialect == Gemini {
                format!("http://{addr}/v1beta")
            } else {
                format!("http://{addr}")
            };
            let gw = Gateway::start(config(&format!(
                r#"
                [server]
                listen = "127.0.0.1:0"
                [[keys]]
                name = "tester"
                env = "TEST_KEY"
                [[upstreams]]
                name = "up"
                kind = "{kind}"
                base_url = "{base}"
                {extra}
                [[models]]
                name = "big"
                max_output_tokens = 1000
                routes = [{{ upstream = "up", model = "m" }}]
                "#
            )))
            .await;
            let mut s = gw
                .client()
                .await
                .stream_generate(authed(stream_request("big", "hi"), KEY))
                .await
                .unwrap()
                .into_inner();
            let (mut text, mut thoughts, mut args) = (0, 0, 0);
            let mut last = None;
            while let Some(c) = s.message().await.unwrap() {
                text += usize::from(!c.delta.is_empty());
                thoughts += usize::from(c.reasoning.as_ref().is_some_and(|r| !r.text.is_empty()));
                args += c.tool_call_deltas.iter().filter(|d| !d.arguments.is_empty()).count();
                last = Some(c);
            }
            let last = last.unwrap();
            assert!(last.is_complete, "{kind} {shape:?}");
            let expected = match (shape, dialect) {
                (StreamShape::Text, _) => (40, 0, 0),
                (StreamShape::Reasoning, _) => (10, 30, 0),
                // Gemini sends a function call whole: one piece.
                (StreamShape::Tools, Gemini) => (0, 0, 1),
                (StreamShape::Tools, _) => (0, 0, 40),
            };
            assert_eq!((text, thoughts, args), expected, "{kind} {shape:?}");
        }
    }
}

/// The mock's answers carry every field OpenAI's API always sends (`id`, `object`, `created`, `model`,
/// `choices`), whole and as stream chunks: a strict client (litellm-rs, for one) refuses an answer without
/// `created`, and `bench/peers.py` puts such clients in front of this mock.
#[tokio::test]
async fn the_mock_answers_with_every_field_openai_always_sends() {
    let addr = mock(Some(4)).await;
    aigw::upstream::http::install_crypto_provider();
    let client = reqwest::Client::new();
    let ask = |stream: bool| {
        client
            .post(format!("http://{addr}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(
                serde_json::json!({"model": "m", "stream": stream,
                    "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
            )
            .send()
    };
    let required = |v: &serde_json::Value, object: &str| {
        assert_eq!(v["object"], object, "{v}");
        assert!(v["id"].is_string() && v["model"].is_string(), "{v}");
        assert!(
            v["created"].as_u64().is_some_and(|t| t > 1_700_000_000),
            "{v}"
        );
        assert!(v["choices"].is_array(), "{v}");
    };
    let whole: serde_json::Value =
        serde_json::from_slice(&ask(false).await.unwrap().bytes().await.unwrap()).unwrap();
    required(&whole, "chat.completion");
    let text = ask(true).await.unwrap().text().await.unwrap();
    let chunks: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks.len() >= 4, "{text}");
    for chunk in &chunks {
        required(chunk, "chat.completion.chunk");
    }
}
