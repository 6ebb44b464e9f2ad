//! Shared test harness: the gateway in-process on 127.0.0.1:0, a tonic client, a scripted upstream.

// Test helpers: a failed set-up step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code)]

pub mod bedrock;
pub mod gemini;
pub mod redis;
pub mod redis_topologies;
pub mod signer;
pub mod upstream;

use std::{net::SocketAddr, time::Duration};

use aigw::{
    config::Config,
    proto::StreamChunk,
    proto::{
        ai_service_client::AiServiceClient, GenerateRequest, GenerationConfig, Message,
        StreamGenerateRequest,
    },
    server::Server,
};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{metadata::MetadataValue, transport::Channel, Request};

pub const KEY: &str = "sk-test-client";
pub const LIMITED_KEY: &str = "sk-test-limited";
pub const UPSTREAM_KEY: &str = "sk-upstream-secret-0123456789";
pub const ADMIN_KEY: &str = "admin-key-0123456789";
pub const AWS_SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLEsessiontoken==";

/// A config with one OpenAI-style upstream at `base_url`, two models on it, and two client keys (one limited
/// to model "small").
pub fn config_text(base_url: &str, extra_upstream: &str) -> String {
    config_with(base_url, extra_upstream, "")
}

/// The same, with `[model_defaults]` settings (e.g. `retry = { attempts = 1 }`).
pub fn config_with(base_url: &str, extra_upstream: &str, model_defaults: &str) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        shutdown_grace = "30s"
        [model_defaults]
        {model_defaults}
        [interactive]
        max_history_messages = 8
        max_history_bytes = 4096
        [[keys]]
        name = "tester"
        env = "TEST_KEY"
        [[keys]]
        name = "limited"
        env = "TEST_LIMITED_KEY"
        models = ["small"]
        [[upstreams]]
        name = "scripted"
        kind = "openai"
        base_url = "{base_url}"
        api_key_env = "TEST_UPSTREAM_KEY"
        {extra_upstream}
        [[models]]
        name = "big"
        aliases = ["big-alias"]
        max_output_tokens = 1000
        routes = [{{ upstream = "scripted", model = "up-big" }}]
        [[models]]
        name = "small"
        max_output_tokens = 100
        routes = [{{ upstream = "scripted", model = "up-small" }}]
        "#
    )
}

/// A config with only the built-in mock upstream (model "big"). `server_extra` follows `listen` in `[server]`:
/// more keys, or a `[server.tls]` table.
pub fn mock_config_text(server_extra: &str, tokens_per_second: u32) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        {server_extra}
        [[keys]]
        name = "tester"
        env = "TEST_KEY"
        [[upstreams]]
        name = "mock"
        kind = "mock"
        first_token_latency = "0s"
        tokens_per_second = {tokens_per_second}
        [[models]]
        name = "big"
        max_output_tokens = 100
        routes = [{{ upstream = "mock", model = "big" }}]
        "#
    )
}

/// Model "m" (alias "m-alias"; $2 in / $8 out per million tokens; one attempt per call) on the scripted
/// upstream at `base_url`, and key "tester" with `key_limits`. `top` is added before the keys (tables such as
/// `[admin]` or `[shared]`), `model_extra` inside the model (e.g. `cache = { ... }`).
pub fn priced_config_text(
    base_url: &str,
    top: &str,
    key_limits: &str,
    model_extra: &str,
) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        shutdown_grace = "30s"
        {top}
        [[keys]]
        name = "tester"
        env = "TEST_KEY"
        limits = {{ {key_limits} }}
        [[upstreams]]
        name = "a"
        kind = "openai"
        base_url = "{base_url}"
        api_key_env = "TEST_UPSTREAM_KEY"
        [[models]]
        name = "m"
        aliases = ["m-alias"]
        max_output_tokens = 2000
        price = {{ input_per_million = 2.0, output_per_million = 8.0 }}
        routes = [{{ upstream = "a", model = "up" }}]
        {model_extra}
        [models.policy]
        retry = {{ attempts = 1 }}
        "#
    )
}

/// Asserts a status's code and that its message says `needle`.
pub fn assert_status(status: &tonic::Status, code: tonic::Code, needle: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(needle),
        "{:?} does not say {needle:?}",
        status.message()
    );
}

/// Reads a stream that must fail: the chunks before the error (none may be the last), and the error status.
pub async fn read_to_error(
    stream: &mut tonic::Streaming<StreamChunk>,
) -> (Vec<StreamChunk>, tonic::Status) {
    let mut chunks = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(chunk)) => {
                assert!(!chunk.is_complete, "a failing stream must not complete");
                chunks.push(chunk);
            }
            Ok(None) => panic!("the stream ended with OK"),
            Err(status) => return (chunks, status),
        }
    }
}

pub fn env(var: &str) -> Option<String> {
    match var {
        "TEST_KEY" => Some(KEY.into()),
        "TEST_LIMITED_KEY" => Some(LIMITED_KEY.into()),
        "TEST_UPSTREAM_KEY" => Some(UPSTREAM_KEY.into()),
        "TEST_ADMIN_KEY" => Some(ADMIN_KEY.into()),
        "TEST_AWS_KEY_ID" => Some(bedrock::ACCESS_KEY_ID.into()),
        "TEST_AWS_SECRET" => Some(bedrock::SECRET_ACCESS_KEY.into()),
        "TEST_AWS_SESSION_TOKEN" => Some(AWS_SESSION_TOKEN.into()),
        _ => None,
    }
}

/// Parses a test config; the admin listener always takes a free port (tests never share fixed ports).
pub fn config(text: &str) -> Config {
    let mut cfg = Config::parse(text, env).expect("test config is valid");
    cfg.admin_listen = "127.0.0.1:0".parse().unwrap();
    cfg
}

pub type RawChannel = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    tonic::body::Body,
>;

/// A running gateway; dropping it does not stop it, `shutdown` does.
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The core, for what a test drives directly (the per-minute scaling tick).
    pub core: std::sync::Arc<aigw::core::gateway::Gateway>,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<()>,
}

impl Gateway {
    pub async fn start(config: Config) -> Gateway {
        Gateway::serve(Server::bind(&config).await.expect("gateway binds")).await
    }

    /// Starts from the config file at `path` (its variables from `env`), which `POST /v1/reload` reads again.
    pub async fn start_from_file(path: &std::path::Path) -> Gateway {
        let config = Config::load_with(path, env).expect("test config is valid");
        let server = Server::bind(&config).await.expect("gateway binds");
        Gateway::serve(server.reload_from_with(path.to_owned(), std::sync::Arc::new(env))).await
    }

    async fn serve(server: Server) -> Gateway {
        let addr = server.local_addr().unwrap();
        let admin = server.admin_addr().unwrap();
        let core = server.gateway().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(async {
                    let _ = stopped.await;
                })
                .await
                .expect("gateway serves");
        });
        Gateway {
            addr,
            admin,
            core,
            stop: Some(stop),
            task,
        }
    }

    /// Starts a gateway in front of `upstream`.
    pub async fn in_front_of(upstream: &upstream::Upstream) -> Gateway {
        Gateway::start(config(&config_text(&upstream.base_url(), ""))).await
    }

    /// Starts a gateway in front of `upstream` that tries each call once: for tests of what a single upstream
    /// answer maps to.
    pub async fn without_retries(upstream: &upstream::Upstream) -> Gateway {
        Gateway::start(config(&config_with(
            &upstream.base_url(),
            "",
            "retry = { attempts = 1 }",
        )))
        .await
    }

    pub async fn client(&self) -> AiServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        AiServiceClient::new(channel)
    }

    /// A client over a bare hyper HTTP/2 connection: unlike tonic's `Channel` it runs no client-side timer for
    /// `grpc-timeout`, so the test sees the status the gateway sends when a deadline passes.
    pub fn raw_client(&self) -> AiServiceClient<RawChannel> {
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build_http();
        AiServiceClient::with_origin(http, format!("http://{}", self.addr).parse().unwrap())
    }

    /// Begins the graceful shutdown (as SIGTERM would).
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn user(content: &str) -> Message {
    Message {
        role: "user".into(),
        content: content.into(),
        name: String::new(),
        ..Default::default()
    }
}

/// The assistant's turn that made `calls` (after saying `content`, if anything).
pub fn assistant_calls(content: &str, calls: Vec<aigw::proto::ToolCall>) -> Message {
    Message {
        role: "assistant".into(),
        content: content.into(),
        tool_calls: calls,
        ..Default::default()
    }
}

/// The result of tool call `id`.
pub fn tool_result(id: &str, content: &str) -> Message {
    Message {
        role: "tool".into(),
        tool_call_id: id.into(),
        content: content.into(),
        ..Default::default()
    }
}

pub fn generate(model: &str, content: &str) -> GenerateRequest {
    GenerateRequest {
        model: model.into(),
        messages: vec![user(content)],
        config: None,
    }
}

pub fn stream_request(model: &str, content: &str) -> StreamGenerateRequest {
    StreamGenerateRequest {
        model: model.into(),
        messages: vec![user(content)],
        config: None,
    }
}

pub fn with_config(mut req: GenerateRequest, config: GenerationConfig) -> GenerateRequest {
    req.config = Some(config);
    req
}

/// Wraps a message with `authorization: Bearer <key>`.
pub fn authed<T>(msg: T, key: &str) -> Request<T> {
    let mut req = Request::new(msg);
    let value: MetadataValue<_> = format!("Bearer {key}").parse().unwrap();
    req.metadata_mut().insert("authorization", value);
    req
}

/// Same, with a client deadline sent as `grpc-timeout` metadata only. (`Request::set_timeout` would also
/// start tonic's client-side timer, which races the server's answer; here only the gateway enforces it.)
pub fn authed_with_timeout<T>(msg: T, key: &str, timeout: Duration) -> Request<T> {
    let mut req = authed(msg, key);
    let value: MetadataValue<_> = format!("{}m", timeout.as_millis()).parse().unwrap();
    req.metadata_mut().insert("grpc-timeout", value);
    req
}

/// A plain HTTP client for the admin listener.
pub fn http() -> reqwest::Client {
    aigw::upstream::http::install_crypto_provider();
    reqwest::Client::new()
}

/// POST of a JSON body to the gateway's port with the bearer `key`: (status, body).
pub async fn post_json(
    gw: &Gateway,
    path: &str,
    key: &str,
    body: &serde_json::Value,
) -> (u16, String) {
    let resp = http()
        .post(format!("http://{}{path}", gw.addr))
        .bearer_auth(key)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// GET on the gateway's admin listener, with the admin key when given: (status, body).
pub async fn admin_get(gw: &Gateway, path: &str, admin_key: Option<&str>) -> (u16, String) {
    let mut req = http().get(format!("http://{}{path}", gw.admin));
    if let Some(key) = admin_key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The value of one series in the Prometheus text (labels as the exporter orders them: alphabetically).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Polls `check` every 10 ms until it gives a value. Bounded by two minutes as a guard against a hang, never as
/// a speed requirement: a busy machine only polls longer.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let guard = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < guard,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the gateway has booked a cost for `key` on `model` (the cost metric): its spend counts against
/// budgets from then on. Budget tests wait for this, not for a refusal, so no call spends while they wait.
pub async fn cost_booked(gw: &Gateway, key: &str, model: &str) {
    let series = format!(r#"aigw_cost_usd_total{{key="{key}",model="{model}"}}"#);
    eventually("the call's cost is booked", || async {
        let (_, text) = admin_get(gw, "/metrics", None).await;
        text.contains(&series).then_some(())
    })
    .await;
}

/// A loopback port that refuses connections: bound but never listening, and held (with the returned socket) so
/// that no other test can take it meanwhile.
pub fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// `PUT /v1/keys/{key}/limits` with the admin key: the status and the body.
pub async fn put_limits(gw: &Gateway, key: &str, body: serde_json::Value) -> (u16, String) {
    let resp = http()
        .put(format!("http://{}/v1/keys/{key}/limits", gw.admin))
        .bearer_auth(ADMIN_KEY)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The whole seconds of a refusal's `retry-after`.
pub fn retry_after_secs(status: &tonic::Status) -> u64 {
    status
        .metadata()
        .get("retry-after")
        .expect("a retry-after")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A session on `model` (`InteractiveStream`, system prompt "Be brief.") that says each of `turns` in order
/// and reads each answer to its end: the answers' text, or the first turn's error message.
pub async fn session_turns(
    gw: &Gateway,
    model: &str,
    turns: &[&str],
) -> Vec<Result<String, String>> {
    session_turns_as(gw, KEY, model, turns).await
}

/// Same, as the caller whose key (or token) is `key`.
pub async fn session_turns_as(
    gw: &Gateway,
    key: &str,
    model: &str,
    turns: &[&str],
) -> Vec<Result<String, String>> {
    use aigw::proto::{
        interactive_request::Action, interactive_response::Event, InteractiveRequest, SessionStart,
        UserTurn,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let request = |action| InteractiveRequest {
        action: Some(action),
    };
    tx.send(request(Action::Start(SessionStart {
        model: model.into(),
        system_prompt: "Be brief.".into(),
        ..Default::default()
    })))
    .await
    .unwrap();
    let mut events = gw
        .client()
        .await
        .interactive_stream(authed(tokio_stream::wrappers::ReceiverStream::new(rx), key))
        .await
        .unwrap()
        .into_inner();
    let mut answers = Vec::new();
    for turn in turns {
        tx.send(request(Action::Turn(UserTurn {
            content: (*turn).into(),
            ..Default::default()
        })))
        .await
        .unwrap();
        let mut text = String::new();
        let answer = loop {
            match events
                .message()
                .await
                .unwrap()
                .expect("the session ended early")
                .event
            {
                Some(Event::Delta(d)) => text.push_str(&d.delta),
                Some(Event::Complete(_)) => break Ok(text),
                Some(Event::Error(e)) => break Err(e.message),
                _ => {}
            }
        };
        answers.push(answer);
    }
    answers
}

/// `Generate` of `content` on `model` as a browser's gRPC-Web client sends it with `key` (HTTP/1.1, binary
/// frames): the answer, or the code and message of a refusal (a trailers-only answer).
pub async fn grpc_web_generate(
    gw: &Gateway,
    key: &str,
    model: &str,
    content: &str,
) -> Result<aigw::proto::GenerateResponse, (tonic::Code, String)> {
    use prost::Message;
    let msg = generate(model, content).encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    framed.extend_from_slice(&msg);
    let resp = http()
        .post(format!("http://{}/holysheepai.AIService/Generate", gw.addr))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .bearer_auth(key)
        .body(framed)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    if let Some(code) = resp.headers().get("grpc-status") {
        let code = tonic::Code::from(code.to_str().unwrap().parse::<i32>().unwrap());
        return Err((
            code,
            resp.headers()["grpc-message"].to_str().unwrap().to_owned(),
        ));
    }
    let body = resp.bytes().await.unwrap();
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    let trailers = std::str::from_utf8(&body[5 + len + 5..]).unwrap();
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    Ok(aigw::proto::GenerateResponse::decode(&body[5..5 + len]).unwrap())
}

/// `Generate` on `model` asking "How many dots?" of a PNG given inline, for an answer in a JSON schema
/// (`{"n": integer}`): an image and structured output in one request.
pub fn image_for_json(model: &str) -> GenerateRequest {
    use aigw::proto::{
        content_part::Part, response_format::Format, ContentPart, ImageData, JsonSchema,
        ResponseFormat,
    };
    let mut req = generate(model, "");
    req.messages[0].parts = vec![
        ContentPart {
            part: Some(Part::Text("How many dots?".into())),
        },
        ContentPart {
            part: Some(Part::Image(ImageData {
                data: b"\x89PNG".to_vec(),
                mime_type: "image/png".into(),
                detail: String::new(),
            })),
        },
    ];
    req.config = Some(GenerationConfig {
        response_format: Some(ResponseFormat {
            format: Some(Format::JsonSchema(JsonSchema {
                name: "count".into(),
                schema_json: r#"{"type":"object","properties":{"n":{"type":"integer"}}}"#.into(),
                ..Default::default()
            })),
        }),
        ..Default::default()
    });
    req
}

/// `n` gateways on the config `text` (which shares their state through Redis), each once it has reached Redis.
pub async fn replicas(text: &str, n: usize) -> Vec<Gateway> {
    let mut fleet = Vec::new();
    for _ in 0..n {
        let gw = Gateway::start(config(text)).await;
        eventually("the replica reaches Redis", || async {
            let (_, metrics) = admin_get(&gw, "/metrics", None).await;
            (metric(&metrics, "aigw_shared_state_up") == 1.0).then_some(())
        })
        .await;
        fleet.push(gw);
    }
    fleet
}
