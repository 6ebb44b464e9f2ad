//! Generate and StreamGenerate against a scripted upstream: the request the upstream sees, the answer the
//! client gets, and every row of the error table.

use std::time::Duration;

use crate::common::{upstream::*, *};
use aigw::proto::{GenerationConfig, Message};
use serde_json::json;
use tonic::Code;

async fn generate_status(
    up_reply: Reply,
    req: aigw::proto::GenerateRequest,
) -> (tonic::Status, Upstream) {
    let up = Upstream::start(vec![up_reply]).await;
    let gw = Gateway::without_retries(&up).await;
    let status = gw
        .client()
        .await
        .generate(authed(req, KEY))
        .await
        .expect_err("an error status");
    (status, up)
}

#[tokio::test]
async fn generate_translates_request_and_response() {
    let up = Upstream::start(vec![Reply::json(
        200,
        &completion("Hello, Ann!", "stop", 12, 4),
    )])
    .await;
    let gw = Gateway::in_front_of(&up).await;
    let req = with_config(
        generate("big-alias", "hi"),
        GenerationConfig {
            temperature: Some(0.0),
            max_tokens: Some(50),
            top_p: None,
            stop: vec!["END".into()],
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
    assert_eq!(resp.content, "Hello, Ann!");
    assert_eq!(resp.model, "up-model-2025");
    assert_eq!(resp.finish_reason, "stop");
    assert_eq!(resp.id, "chatcmpl-test");
    let usage = resp.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (12, 4, 16)
    );

    let seen = &up.requests()[0];
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    // The alias resolves to the route's upstream model id; temperature 0 is sent, unset top_p is not.
    assert_eq!(
        seen.body,
        json!({"model": "up-big", "messages": [{"role": "user", "content": "hi"}],
               "temperature": 0.0, "max_tokens": 50, "stop": ["END"]})
    );
}

#[tokio::test]
async fn stream_generate_relays_deltas_then_usage() {
    let mut events = stream_of(&["안녕", "하세요", ""]);
    events.insert(1, chunk("")); // an empty delta is not forwarded
    let up = Upstream::start(vec![Reply::sse(&events)]).await;
    let gw = Gateway::in_front_of(&up).await;
    let mut stream = gw
        .client()
        .await
        .stream_generate(authed(stream_request("small", "hi"), KEY))
        .await
        .unwrap()
        .into_inner();
    let mut chunks = Vec::new();
    while let Some(c) = stream.message().await.unwrap() {
        chunks.push(c);
    }
    let deltas: Vec<&str> = chunks.iter().map(|c| c.delta.as_str()).collect();
    assert_eq!(deltas, ["안녕", "하세요", ""]);
    assert!(chunks[..2]
        .iter()
        .all(|c| !c.is_complete && c.usage.is_none()));
    let last = chunks.last().unwrap();
    assert!(last.is_complete);
    assert_eq!(last.finish_reason, "stop");
    assert_eq!(last.id, "chatcmpl-s");
    assert_eq!(last.usage.unwrap().completion_tokens, 3);
    assert_eq!(
        up.requests()[0].body,
        json!({"model": "up-small", "messages": [{"role": "user", "content": "hi"}],
               "stream": true, "stream_options": {"include_usage": true}})
    );
}

#[tokio::test]
async fn stream_survives_bytes_split_inside_characters_and_lines() {
    // The whole SSE body, cut into 3-byte writes with pauses: cuts fall inside "data:", inside CRLFs and
    // inside multi-byte characters.
    let body: String = stream_of(&["こんにちは", " 世界", " 🌏"])
        .iter()
        .map(|e| format!("data: {e}\r\n\r\n"))
        .collect();
    let mut parts = Vec::new();
    for piece in body.as_bytes().chunks(3) {
        parts.push(Part::Bytes(piece.to_vec()));
        parts.push(Part::Delay(Duration::from_millis(1)));
    }
    let up = Upstream::start(vec![Reply::sse_raw(parts)]).await;
    let gw = Gateway::in_front_of(&up).await;
    let mut stream = gw
        .client()
        .await
        .stream_generate(authed(stream_request("small", "hi"), KEY))
        .await
        .unwrap()
        .into_inner();
    let mut text = String::new();
    let mut complete = false;
    while let Some(c) = stream.message().await.unwrap() {
        text.push_str(&c.delta);
        complete |= c.is_complete;
    }
    assert_eq!(text, "こんにちは 世界 🌏");
    assert!(complete);
}

#[tokio::test]
async fn a_stream_cut_short_ends_with_an_error_not_ok() {
    let cases = [
        (
            "ends without [DONE]",
            Reply::sse(&[chunk("a"), chunk("b")]),
            Code::Unavailable,
            "[DONE]",
        ),
        (
            "reset mid-stream",
            Reply::sse(&[chunk("a"), chunk("b")]).end(End::Reset),
            Code::Unavailable,
            "upstream",
        ),
        (
            "error object in the stream",
            Reply::sse(&[
                chunk("a"),
                chunk("b"),
                json!({"error": {"message": "overloaded"}}).to_string(),
            ]),
            Code::Unavailable,
            "overloaded",
        ),
        (
            "malformed chunk",
            Reply::sse(&[chunk("a"), chunk("b"), "{not json".into()]),
            Code::Unavailable,
            "malformed",
        ),
    ];
    for (name, reply, code, needle) in cases {
        let up = Upstream::start(vec![reply]).await;
        let gw = Gateway::in_front_of(&up).await;
        let mut stream = gw
            .client()
            .await
            .stream_generate(authed(stream_request("small", "hi"), KEY))
            .await
            .unwrap()
            .into_inner();
        let (chunks, status) = read_to_error(&mut stream).await;
        let deltas: Vec<String> = chunks.into_iter().map(|c| c.delta).collect();
        assert_eq!(deltas, ["a", "b"], "{name}");
        assert_eq!(status.code(), code, "{name}: {status:?}");
        assert!(
            status.message().contains(needle),
            "{name}: {}",
            status.message()
        );
    }
}

#[tokio::test]
async fn request_errors_map_to_invalid_argument_without_calling_upstream() {
    let up = Upstream::start(vec![Reply::json(200, &completion("x", "stop", 1, 1))]).await;
    let gw = Gateway::in_front_of(&up).await;
    let mut client = gw.client().await;
    let bad_role = Message {
        role: "wizard".into(),
        content: "x".into(),
        name: String::new(),
        ..Default::default()
    };
    let cfg = |t, m, p| GenerationConfig {
        temperature: t,
        max_tokens: m,
        top_p: p,
        stop: vec![],
        ..Default::default()
    };
    let cases = [
        (
            aigw::proto::GenerateRequest {
                model: "big".into(),
                messages: vec![],
                config: None,
            },
            "messages",
        ),
        (
            aigw::proto::GenerateRequest {
                model: "big".into(),
                messages: vec![bad_role],
                config: None,
            },
            "role",
        ),
        (
            with_config(generate("big", "x"), cfg(Some(2.5), None, None)),
            "temperature",
        ),
        (
            with_config(generate("big", "x"), cfg(None, None, Some(-0.5))),
            "top_p",
        ),
        (
            with_config(generate("big", "x"), cfg(None, Some(0), None)),
            "max_tokens",
        ),
        (
            with_config(generate("small", "x"), cfg(None, Some(101), None)),
            "max_tokens",
        ),
        (generate("no-such-model", "x"), "big, small"),
    ];
    for (req, needle) in cases {
        let status = client.generate(authed(req, KEY)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{needle}: {status:?}");
        assert!(
            status.message().contains(needle),
            "{needle}: {}",
            status.message()
        );
    }
    // A limited key is told only the models it may use.
    let status = client
        .generate(authed(generate("nope", "x"), LIMITED_KEY))
        .await
        .unwrap_err();
    assert!(
        status
            .message()
            .ends_with("models available to this key: small"),
        "{}",
        status.message()
    );
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn auth_errors() {
    let up = Upstream::start(vec![Reply::json(200, &completion("x", "stop", 1, 1))]).await;
    let gw = Gateway::in_front_of(&up).await;
    let mut client = gw.client().await;
    let status = client
        .generate(tonic::Request::new(generate("big", "x")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = client
        .generate(authed(generate("big", "x"), "sk-wrong"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(!status.message().contains("sk-wrong"));
    let status = client
        .stream_generate(authed(stream_request("big", "x"), "sk-wrong"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    // The limited key may use "small" but not "big".
    let status = client
        .generate(authed(generate("big", "x"), LIMITED_KEY))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(client
        .generate(authed(generate("small", "x"), LIMITED_KEY))
        .await
        .is_ok());
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn upstream_statuses_map_to_grpc_codes() {
    let err = |msg: &str| json!({"error": {"message": msg, "type": "x"}}).to_string();
    let cases = [
        (
            Reply::json(400, &err("temperature is wrong")),
            Code::InvalidArgument,
            Some("temperature is wrong"),
        ),
        (
            Reply::json(422, &err("bad field")),
            Code::InvalidArgument,
            Some("bad field"),
        ),
        (
            Reply::json(
                401,
                &err(&format!("Incorrect API key provided: {UPSTREAM_KEY}")),
            ),
            Code::Internal,
            None,
        ),
        (Reply::json(403, &err("forbidden")), Code::Internal, None),
        (
            Reply::json(404, &err("model not found")),
            Code::Internal,
            Some("404"),
        ),
        // Redirects are not followed: the prompt and key go nowhere but the configured upstream.
        (
            Reply::json(307, &err("moved"))
                .header("location", "http://127.0.0.1:1/v1/chat/completions"),
            Code::Internal,
            Some("307"),
        ),
        (
            Reply::json(429, &err("slow down")).header("retry-after", "7"),
            Code::ResourceExhausted,
            Some("retry after 7s"),
        ),
        (
            Reply::json(500, &err("boom")),
            Code::Unavailable,
            Some("500"),
        ),
        (
            Reply::json(502, "<html>bad gateway</html>"),
            Code::Unavailable,
            Some("bad gateway"),
        ),
        (
            Reply::json(503, &err("overloaded")),
            Code::Unavailable,
            Some("overloaded"),
        ),
        (
            Reply::json(200, "{\"choices\": 5}"),
            Code::Unavailable,
            Some("malformed"),
        ),
    ];
    for (reply, code, needle) in cases {
        let status_code = reply.status;
        let (status, up) = generate_status(reply, generate("big", "x")).await;
        assert_eq!(status.code(), code, "HTTP {status_code}: {status:?}");
        if let Some(needle) = needle {
            assert!(
                status.message().contains(needle),
                "HTTP {status_code}: {}",
                status.message()
            );
        }
        assert!(
            !status.message().contains(UPSTREAM_KEY),
            "HTTP {status_code} leaked the upstream key"
        );
        if status_code == 429 {
            assert_eq!(status.metadata().get("retry-after").unwrap(), "7");
        }
        assert_eq!(up.calls(), 1, "HTTP {status_code}");
    }
}

#[tokio::test]
async fn connect_errors_are_unavailable() {
    let (_held, port) = refusing_port();
    let gw = Gateway::start(config(&config_text(
        &format!("http://127.0.0.1:{port}/v1"),
        "",
    )))
    .await;
    let status = gw
        .client()
        .await
        .generate(authed(generate("big", "x"), KEY))
        .await
        .unwrap_err();
    assert_status(&status, Code::Unavailable, "connect");
}

#[tokio::test]
async fn client_deadline_bounds_the_upstream_call() {
    // The upstream never answers; the client's deadline must end the call with DEADLINE_EXCEEDED and drop the
    // upstream request.
    let up = Upstream::start(vec![Reply::never()]).await;
    let gw = Gateway::in_front_of(&up).await;
    let mut client = gw.raw_client();
    let req = authed_with_timeout(generate("big", "x"), KEY, Duration::from_millis(300));
    let status = client.generate(req).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    up.wait_aborted(1).await;

    // Streams: the deadline bounds the whole stream, not only its start.
    let up = Upstream::start(vec![Reply::sse(&[chunk("a")]).end(End::Hang)]).await;
    let gw = Gateway::in_front_of(&up).await;
    // Seconds, so the first chunk (sent at once) arrives before it on any machine.
    let req = authed_with_timeout(stream_request("big", "x"), KEY, Duration::from_secs(3));
    let mut stream = gw
        .raw_client()
        .stream_generate(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().delta, "a");
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    up.wait_aborted(1).await;
}

#[tokio::test]
async fn configured_request_timeout_is_deadline_exceeded() {
    let up = Upstream::start(vec![Reply::never()]).await;
    let gw = Gateway::start(config(&config_text(
        &up.base_url(),
        "request_timeout = \"200ms\"",
    )))
    .await;
    let status = gw
        .client()
        .await
        .generate(authed(generate("big", "x"), KEY))
        .await
        .unwrap_err();
    assert_status(&status, Code::DeadlineExceeded, "request_timeout");
}

#[tokio::test]
async fn cancelling_a_unary_call_drops_the_upstream_request() {
    let up = Upstream::start(vec![Reply::never()]).await;
    let gw = Gateway::in_front_of(&up).await;
    let mut client = gw.client().await;
    let call =
        tokio::spawn(async move { client.generate(authed(generate("big", "x"), KEY)).await });
    eventually("the upstream has the call", || async {
        (up.calls() > 0).then_some(())
    })
    .await;
    call.abort(); // the client gives up: its HTTP/2 stream is reset
    up.wait_aborted(1).await;
}

#[tokio::test]
async fn cancelling_a_stream_drops_the_upstream_request() {
    let up = Upstream::start(vec![Reply::sse(&[chunk("first")]).end(End::Hang)]).await;
    let gw = Gateway::in_front_of(&up).await;
    let mut stream = gw
        .client()
        .await
        .stream_generate(authed(stream_request("big", "x"), KEY))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().delta, "first");
    drop(stream); // the client cancels mid-stream, while the upstream is silent
    up.wait_aborted(1).await;
    assert_eq!(up.calls(), 1);
}
