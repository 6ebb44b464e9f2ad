//! Hostile clients: connections that never speak, crowds of them, and connections left idle, on the gateway's
//! port and on the admin port. Closing is awaited with a generous guard against hangs, never timed.

use std::{net::SocketAddr, time::Duration};

use crate::common::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Guards a wait for the gateway to act: long enough for a loaded machine, short enough to end a hung test.
const HANG_GUARD: Duration = Duration::from_secs(120);

fn hardened(server: &str, admin: &str) -> aigw::config::Config {
    let text = mock_config_text(server, 1_000_000).replace(
        "[[keys]]",
        &format!("[admin]\nlisten = \"127.0.0.1:0\"\n{admin}\n[[keys]]"),
    );
    config(&text)
}

/// Opens a connection and sends `first` (maybe nothing).
async fn connect(addr: SocketAddr, first: &[u8]) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    if !first.is_empty() {
        tcp.write_all(first).await.unwrap();
    }
    tcp
}

/// Reads until the peer closes the connection; whatever it answered on the way is returned.
async fn until_closed(mut tcp: TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(HANG_GUARD, async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the gateway kept a silent connection open");
    got
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[tokio::test]
async fn connections_that_never_send_a_request_are_closed_on_both_ports() {
    let gw = Gateway::start(hardened(r#"first_request_timeout = "1s""#, "")).await;
    let mut silent = Vec::new();
    for addr in [gw.addr, gw.admin] {
        for first in [
            &b""[..],
            b"G",
            H2_PREFACE,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
        ] {
            for _ in 0..5 {
                silent.push(connect(addr, first).await);
            }
        }
    }
    let closed = futures_util::future::join_all(silent.into_iter().map(until_closed)).await;
    assert_eq!(closed.len(), 40);
    let (_, metrics) = admin_get(&gw, "/metrics", None).await;
    for listener in ["grpc", "admin"] {
        let series = format!(
            r#"aigw_connections_closed_total{{listener="{listener}",reason="first_request_timeout"}}"#
        );
        assert!(metric(&metrics, &series) >= 20.0, "{series}");
    }
}

#[tokio::test]
async fn a_crowd_of_silent_connections_cannot_starve_callers() {
    // A cap of 16 on each port, and 60 silent connections at each: the newest evict the oldest silent ones.
    let gw = Gateway::start(hardened(
        r#"max_connections = 16
        first_request_timeout = "60s""#,
        "max_connections = 16",
    ))
    .await;
    let mut crowd = Vec::new();
    for addr in [gw.addr, gw.admin] {
        for _ in 0..60 {
            crowd.push(connect(addr, b"").await);
        }
    }
    // A real call and the probes are still answered.
    let resp = gw
        .client()
        .await
        .generate(authed(generate("big", "hi"), KEY))
        .await
        .unwrap();
    assert!(!resp.into_inner().content.is_empty());
    let (status, _) = admin_get(&gw, "/healthz", None).await;
    assert_eq!(status, 200);
    let (_, metrics) = admin_get(&gw, "/metrics", None).await;
    for listener in ["grpc", "admin"] {
        let series =
            format!(r#"aigw_connections_closed_total{{listener="{listener}",reason="evicted"}}"#);
        assert!(metric(&metrics, &series) >= 44.0, "{series}");
        let open = format!(r#"aigw_connections_open{{listener="{listener}"}}"#);
        assert!(metric(&metrics, &open) <= 17.0, "{open}");
    }
    drop(crowd);
}

#[tokio::test]
async fn an_idle_connection_is_closed_but_a_long_call_is_not_cut() {
    let gw = Gateway::start(hardened(r#"idle_timeout = "1s""#, "")).await;
    // One request, answered, then nothing: the connection is closed after the idle timeout.
    let mut tcp = connect(
        gw.admin,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    )
    .await;
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    until_closed(tcp).await;

    // A stream slower than the idle timeout (the mock's answer at 10 tokens a second) is answered whole.
    let slow = mock_config_text(r#"idle_timeout = "1s""#, 10);
    let gw = Gateway::start(config(&slow)).await;
    let mut stream = gw
        .client()
        .await
        .stream_generate(authed(stream_request("big", "tell me a long story"), KEY))
        .await
        .unwrap()
        .into_inner();
    let mut complete = false;
    while let Some(chunk) = stream.message().await.unwrap() {
        complete |= chunk.is_complete;
    }
    assert!(complete);
}

/// Model "m" on a scripted upstream, one attempt per call, with an admin key.
async fn scripted(script: Vec<upstream::Reply>) -> (upstream::Upstream, Gateway) {
    let up = upstream::Upstream::start(script).await;
    let admin = "[admin]\nlisten = \"127.0.0.1:0\"\nkey_env = \"TEST_ADMIN_KEY\"";
    let gw = Gateway::start(config(&priced_config_text(&up.base_url(), admin, "", ""))).await;
    (up, gw)
}

/// A stream whose every chunk carries one character and a 1 MB logprob token.
fn logprob_flood(chunks: usize) -> upstream::Reply {
    let token = "x".repeat(1 << 20);
    let mut events = vec![upstream::role_chunk()];
    for _ in 0..chunks {
        events.push(
            serde_json::json!({"id": "s", "model": "up", "choices": [{"index": 0, "delta": {"content": "a"},
                "logprobs": {"content": [{"token": token, "logprob": -0.1, "top_logprobs": []}]},
                "finish_reason": null}]})
            .to_string(),
        );
    }
    events.push(upstream::finish_chunk("stop"));
    events.push("[DONE]".into());
    upstream::Reply::sse(&events)
}

#[tokio::test]
async fn unrequested_logprobs_are_dropped_and_requested_ones_are_bounded() {
    let (_up, gw) = scripted(vec![logprob_flood(12)]).await;
    // Not asked for: the answer arrives whole, and its final message carries no logprobs.
    let mut s = gw
        .client()
        .await
        .stream_generate(authed(stream_request("m", "hi"), KEY))
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(c) = s.message().await.unwrap() {
        last = Some(c);
    }
    let last = last.unwrap();
    assert!(last.is_complete && last.logprobs.is_empty());

    // Asked for: past 4 MiB of them the stream ends with a clear error, not a 12 MB message.
    let mut req = stream_request("m", "hi");
    req.config = Some(aigw::proto::GenerationConfig {
        logprobs: true,
        ..Default::default()
    });
    let mut s = gw
        .client()
        .await
        .stream_generate(authed(req, KEY))
        .await
        .unwrap()
        .into_inner();
    let (_, status) = read_to_error(&mut s).await;
    assert_status(
        &status,
        tonic::Code::Unavailable,
        "logprobs over 4194304 bytes",
    );
}

#[tokio::test]
async fn bad_input_gets_the_right_status() {
    let long = format!(r#"{{"error":{{"message":"{}"}}}}"#, "x".repeat(100_000));
    let (_up, gw) = scripted(vec![upstream::Reply::json(400, &long)]).await;
    // An upstream error body over 64 KB still gives its message's start, bounded.
    let status = gw
        .client()
        .await
        .generate(authed(generate("m", "hi"), KEY))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("xxxxxxxx"),
        "{}",
        status.message()
    );
    assert!(status.message().len() < 2048);

    // A request that is not protobuf is the client's error.
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    static GARBAGE: [u8; 8] = [0, 0, 0, 0, 3, 0x0A, 0xFF, 0xFF];
    let req = http::Request::post(format!("http://{}/holysheepai.AIService/Generate", gw.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {KEY}"))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            &GARBAGE,
        )))
        .unwrap();
    let resp = http.request(req).await.unwrap();
    let code = match resp.headers().get("grpc-status") {
        Some(code) => code.to_str().unwrap().to_owned(),
        None => {
            use http_body_util::BodyExt;
            let trailers = resp
                .into_body()
                .collect()
                .await
                .unwrap()
                .trailers()
                .cloned();
            trailers.unwrap()["grpc-status"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(code, "3", "INVALID_ARGUMENT");

    // Image URLs other than http(s) and data are refused by name.
    let mut req = generate("m", "");
    req.messages[0].content.clear();
    req.messages[0].parts = vec![aigw::proto::ContentPart {
        part: Some(aigw::proto::content_part::Part::ImageUrl(
            aigw::proto::ImageUrl {
                url: "file:///etc/passwd".into(),
                detail: String::new(),
            },
        )),
    }];
    let status = gw
        .client()
        .await
        .generate(authed(req, KEY))
        .await
        .unwrap_err();
    assert_status(
        &status,
        tonic::Code::InvalidArgument,
        "only http, https and data URLs",
    );

    // One Bearer rule on every door: the scheme's case does not matter, on the admin API too.
    let (status, _) = admin_get_with(&gw, "/v1/usage", &format!("bearer {ADMIN_KEY}")).await;
    assert_eq!(status, 200);
    let mut lower = authed(generate("m", "hi"), KEY);
    lower
        .metadata_mut()
        .insert("authorization", format!("bEaReR {KEY}").parse().unwrap());
    assert_ne!(
        gw.client()
            .await
            .generate(lower)
            .await
            .map_err(|s| s.code())
            .err(),
        Some(tonic::Code::Unauthenticated)
    );
}

async fn admin_get_with(gw: &Gateway, path: &str, authorization: &str) -> (u16, String) {
    let resp = http()
        .get(format!("http://{}{path}", gw.admin))
        .header("authorization", authorization)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// A body whose parse would take more than the memory budget is refused before it is parsed: 503 with the
/// limit named, nothing sent upstream; a normal call goes on, and the budget is all given back.
#[tokio::test]
async fn a_body_that_would_take_more_than_the_memory_budget_is_refused_before_parsing() {
    let text = mock_config_text("", 100_000) + "\n[limits]\nmemory_budget_mib = 16\n";
    let gw = Gateway::start(config(&text)).await;
    // 40,000 empty messages: 1.2 MB of body, charged about 80 MB to parse (a JSON value costs far more parsed
    // than its few bytes).
    let tiny = serde_json::json!({"role": "user", "content": ""});
    let body = serde_json::json!({"model": "big", "messages": vec![tiny; 40_000]});
    let (status, text) = post_json(&gw, "/v1/chat/completions", KEY, &body).await;
    assert_eq!(status, 503, "{text}");
    let error: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["error"]["code"], "memory_exhausted", "{text}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limits.memory_budget_mib"),
        "{text}"
    );
    let small =
        serde_json::json!({"model": "big", "messages": [{"role": "user", "content": "hi"}]});
    let (status, text) = post_json(&gw, "/v1/chat/completions", KEY, &small).await;
    assert_eq!(status, 200, "{text}");
    let (_, metrics) = admin_get(&gw, "/metrics", None).await;
    assert_eq!(metric(&metrics, "aigw_memory_held_bytes"), 0.0);
    assert_eq!(
        metric(
            &metrics,
            "aigw_limit_rejections_total{key=\"tester\",limit=\"memory\"}"
        ),
        1.0
    );
}

/// Every count a request carries has a bound, checked before any upstream call, and the refusal names the
/// field and its limit.
#[tokio::test]
async fn counts_and_sizes_past_their_bounds_are_refused_by_name() {
    use aigw::proto::{content_part::Part, ContentPart, GenerationConfig, ReasoningConfig, Tool};
    let (up, gw) = scripted(vec![]).await;
    let refused = |req: aigw::proto::GenerateRequest| {
        let gw = &gw;
        async move {
            gw.client()
                .await
                .generate(authed(req, KEY))
                .await
                .unwrap_err()
        }
    };
    // More elements than the gateway decodes: refused from the wire, before 600,000 Messages are built.
    let mut flood = generate("m", "hi");
    flood.messages = vec![aigw::proto::Message::default(); 600_000];
    assert_status(
        &refused(flood).await,
        tonic::Code::InvalidArgument,
        "more than 500000 protobuf elements",
    );
    let mut many = generate("m", "hi");
    many.messages = vec![user("x"); 50_001];
    assert_status(
        &refused(many).await,
        tonic::Code::InvalidArgument,
        "messages: at most 50000 messages",
    );
    let mut parts = generate("m", "");
    parts.messages[0].content.clear();
    let text = ContentPart {
        part: Some(Part::Text("x".into())),
    };
    parts.messages[0].parts = vec![text; 10_001];
    assert_status(
        &refused(parts).await,
        tonic::Code::InvalidArgument,
        "messages[0].parts: at most 10000",
    );
    let tool = |i: usize| Tool {
        name: format!("t{i}"),
        ..Default::default()
    };
    let tools = with_config(
        generate("m", "hi"),
        GenerationConfig {
            tools: (0..1_025).map(tool).collect(),
            ..Default::default()
        },
    );
    assert_status(
        &refused(tools).await,
        tonic::Code::InvalidArgument,
        "config.tools: at most 1024 tools",
    );
    let thinking = with_config(
        generate("m", "hi"),
        GenerationConfig {
            reasoning: Some(ReasoningConfig {
                mode: "enabled".into(),
                budget_tokens: Some(1_048_577),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    assert_status(
        &refused(thinking).await,
        tonic::Code::InvalidArgument,
        "config.reasoning.budget_tokens: 1048577 is above 1048576",
    );
    assert_eq!(up.calls(), 0);
}
