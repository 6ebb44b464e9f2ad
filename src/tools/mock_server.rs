//! `aigw mock-upstream`: an OpenAI-compatible HTTP server (HTTP/1.1 and h2c) that answers
//! `POST …/chat/completions` as the built-in mock does (its deterministic text; a call of an offered tool; an
//! object valid against a `json_schema` response format), as JSON or as an SSE stream (with the usage chunk when
//! asked and `[DONE]`), paced as configured, and `POST …/embeddings` with the mock's vectors. It costs next to nothing itself, so a benchmark
//! through it measures the gateway; it is also a real HTTP peer for the gateway's `openai` client. With
//! [`ChaosConfig`] it injects faults (see `chaos`) and serves its score at `GET /stats`.

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::{
    proto::Usage,
    tools::chaos::{Chaos, ChaosConfig, Fate, StreamFault},
    upstream::mock::{self, Pacing, Reply},
    upstream::openai::wire::{ChatContent, ChatMessage, ChatRequest},
};

/// Request bodies larger than this are refused.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct MockServerConfig {
    pub first_token_latency: Duration,
    pub tokens_per_second: f64,
    /// Answer with exactly this many tokens (the text repeats as needed); by default the mock's own length.
    pub tokens: Option<usize>,
    /// What a stream's pieces are: text, reasoning then text, or a tool call's arguments.
    pub shape: StreamShape,
    /// The API whose stream every POST gets (see `dialects`); OpenAI's chat completions by default.
    pub dialect: MockDialect,
}

/// What a streamed answer's pieces are, for benchmarks of reasoning- and tool-heavy streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StreamShape {
    /// Every token as `content`.
    #[default]
    Text,
    /// The first three quarters of the tokens as `reasoning_content`, the rest as `content`.
    Reasoning,
    /// Every token as a piece of one tool call's `arguments` (the first piece names the call).
    Tools,
}

impl std::str::FromStr for StreamShape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "reasoning" => Ok(Self::Reasoning),
            "tools" => Ok(Self::Tools),
            _ => Err(format!(
                "'{s}' is not a stream shape (text, reasoning, tools)"
            )),
        }
    }
}

/// A chat-completions request: what the in-process mock reads of one (text, tools, response format), so the
/// standalone mock answers as it does.
#[derive(Deserialize)]
struct IncomingRequest {
    model: String,
    messages: Vec<IncomingMessage>,
    #[serde(default)]
    stream: bool,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    stop: Vec<String>,
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    tools: Vec<serde_json::Value>,
    tool_choice: Option<serde_json::Value>,
    response_format: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct IncomingMessage {
    role: String,
    /// A string, or parts whose text is read.
    #[serde(default)]
    content: serde_json::Value,
}

impl IncomingMessage {
    fn text(&self) -> String {
        match &self.content {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(parts) => {
                parts.iter().filter_map(|p| p["text"].as_str()).collect()
            }
            _ => String::new(),
        }
    }
}

#[derive(Deserialize)]
struct IncomingEmbeddings {
    model: String,
    input: EmbedInput,
    dimensions: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EmbedInput {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    /// Unix seconds, as OpenAI's API always sends it (strict clients refuse an answer without it).
    created: u64,
    model: &'a str,
    choices: [CompletionChoice<'a>; 1],
    usage: OutUsage,
}

#[derive(Serialize)]
struct CompletionChoice<'a> {
    index: u32,
    message: OutMessage<'a>,
    finish_reason: &'a str,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<serde_json::Value>,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<OutUsage>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: OutDelta<'a>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct OutDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[OutCallPiece<'a>; 1]>,
}

/// A piece of a streamed tool call: the first names it, the rest add arguments.
#[derive(Serialize)]
struct OutCallPiece<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: OutFunctionPiece<'a>,
}

#[derive(Serialize)]
struct OutFunctionPiece<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Serialize)]
struct OutUsage {
    prompt_tokens: i32,
    completion_tokens: i32,
    total_tokens: i32,
}

impl From<Usage> for OutUsage {
    fn from(u: Usage) -> Self {
        OutUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
        }
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let body = Full::new(body.into()).map_err(|never: Infallible| match never {});
    let mut resp = Response::new(body.boxed());
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({"error": {"message": message, "type": "invalid_request_error"}});
    full(status, "application/json", body.to_string())
}

/// The mock's answer, resized to `tokens` when set.
fn answer(req: &IncomingRequest, tokens: Option<usize>) -> Reply {
    let texts: Vec<String> = req.messages.iter().map(IncomingMessage::text).collect();
    let messages = req
        .messages
        .iter()
        .zip(&texts)
        .map(|(m, text)| ChatMessage {
            role: &m.role,
            content: Some(ChatContent::Text(text)),
            ..ChatMessage::default()
        })
        .collect();
    let chat = ChatRequest {
        model: &req.model,
        messages,
        max_tokens: req.max_tokens,
        max_completion_tokens: req.max_completion_tokens,
        stop: &req.stop,
        stream: req.stream,
        tools: req.tools.clone(),
        tool_choice: req.tool_choice.clone(),
        response_format: req.response_format.clone(),
        ..ChatRequest::default()
    };
    let mut reply = mock::reply(&chat);
    if let Some(n) = tokens.filter(|&n| n > 0) {
        let words: Vec<String> = reply.tokens.iter().cycle().take(n).cloned().collect();
        let cap = chat.max_output_tokens().map_or(n, |m| m as usize);
        reply.finish_reason = if n > cap { "length" } else { "stop" };
        reply.tokens = words.into_iter().take(cap).collect();
        let completion = i32::try_from(reply.tokens.len()).unwrap_or(i32::MAX);
        reply.usage = Usage {
            prompt_tokens: reply.usage.prompt_tokens,
            completion_tokens: completion,
            total_tokens: reply.usage.prompt_tokens + completion,
            ..Default::default()
        };
    }
    reply
}

/// A whole tool call as chat completions writes it.
fn call_json(c: &crate::proto::ToolCall) -> serde_json::Value {
    serde_json::json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}})
}

/// A call's pieces as a stream carries them: the first with its id and name, then its arguments a few
/// characters at a time.
fn call_pieces(calls: &[crate::proto::ToolCall]) -> Vec<OutCallPiece<'_>> {
    let mut pieces = Vec::new();
    for (i, c) in calls.iter().enumerate() {
        pieces.push(OutCallPiece {
            index: u32::try_from(i).unwrap_or(u32::MAX),
            id: Some(&c.id),
            kind: Some("function"),
            function: OutFunctionPiece {
                name: Some(&c.name),
                arguments: "",
            },
        });
        let mut rest = c.arguments.as_str();
        while !rest.is_empty() {
            let mut at = rest.len().min(12);
            while !rest.is_char_boundary(at) {
                at += 1;
            }
            let (piece, tail) = rest.split_at(at);
            pieces.push(OutCallPiece {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                id: None,
                kind: None,
                function: OutFunctionPiece {
                    name: None,
                    arguments: piece,
                },
            });
            rest = tail;
        }
    }
    pieces
}

/// `POST …/embeddings`: the mock's deterministic vectors, as OpenAI answers them (floats).
fn embed(bytes: &[u8]) -> Response<Body> {
    let incoming: IncomingEmbeddings = match serde_json::from_slice(bytes) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let input = match incoming.input {
        EmbedInput::One(text) => vec![text],
        EmbedInput::Many(texts) => texts,
    };
    let ask = crate::upstream::openai::embeddings::EmbedAsk {
        input: &input,
        dimensions: incoming.dimensions,
        user: "",
    };
    let done = mock::embed::embed(&incoming.model, ask);
    let data: Vec<serde_json::Value> = done
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| serde_json::json!({"object": "embedding", "index": i, "embedding": v}))
        .collect();
    let tokens = done.usage.map_or(0, |u| u.prompt_tokens);
    let body = serde_json::json!({"object": "list", "data": data, "model": done.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
    full(StatusCode::OK, "application/json", body.to_string())
}

/// Stand-ins for an emoji's two UTF-16 halves: private-use characters that serde_json writes as they are,
/// replaced by the `\ud83d` and `\ude00` escapes after encoding (serde_json cannot write a lone surrogate).
const HIGH: char = '\u{E000}';
const LOW: char = '\u{E001}';

fn with_surrogate_escapes(json: String) -> String {
    if json.contains([HIGH, LOW]) {
        json.replace(HIGH, r"\ud83d").replace(LOW, r"\ude00")
    } else {
        json
    }
}

/// An injected error, as an OpenAI-style error body with the configured waits.
fn injected(status: u16, retry_after: Option<Duration>) -> Response<Body> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut resp = error(code, "injected fault");
    if let Some(wait) = retry_after {
        let headers = resp.headers_mut();
        let secs = wait.as_millis().div_ceil(1000).to_string();
        if let Ok(v) = secs.parse() {
            headers.insert(header::RETRY_AFTER, v);
        }
        if let Ok(v) = wait.as_millis().to_string().parse() {
            headers.insert("retry-after-ms", v);
        }
    }
    resp
}

mod dialects;
mod handle;

pub use dialects::MockDialect;
use handle::handle;

/// Serves until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cfg: MockServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    serve_with_chaos(listener, cfg, ChaosConfig::default(), shutdown).await
}

/// Serves until `shutdown`, injecting the faults `chaos` asks for.
pub async fn serve_with_chaos(
    listener: tokio::net::TcpListener,
    cfg: MockServerConfig,
    chaos: ChaosConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let canned = dialects::stream(cfg.dialect, cfg.shape, cfg.tokens.unwrap_or(256));
    let state = Arc::new((cfg, Chaos::new(chaos), canned));
    // A test peer, not a front door: no first-request or idle deadline worth having, a generous cap.
    let limits = crate::transport::accept::ConnLimits {
        first_request: Duration::from_secs(3600),
        idle: Duration::from_secs(3600),
        max_connections: 100_000,
    };
    crate::transport::httpd::serve(
        listener,
        limits,
        None,
        move |req| handle(state.clone(), req),
        shutdown,
    )
    .await
}
