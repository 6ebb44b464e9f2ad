//! `aigw mock-upstream`: an OpenAI-compatible HTTP server (HTTP/1.1 and h2c) that answers
//! `POST …/chat/completions` with the built-in mock's deterministic text, as JSON or as an SSE stream (with the
//! usage chunk when asked and `[DONE]`), paced as configured. It costs next to nothing itself, so a benchmark
//! through it measures the gateway; it is also a real HTTP peer for the gateway's `openai` client.

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::{
    openai::{ChatContent, ChatMessage, ChatRequest},
    proto::Usage,
    upstream::mock::{self, Pacing, Reply},
};

/// Request bodies larger than this are refused.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct MockServerConfig {
    pub first_token_latency: Duration,
    pub tokens_per_second: f64,
    /// Answer with exactly this many tokens (the text repeats as needed); by default the mock's own length.
    pub tokens: Option<usize>,
}

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
}

#[derive(Deserialize)]
struct IncomingMessage {
    role: String,
    #[serde(default)]
    content: String,
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
    content: &'a str,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
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

type Body = BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()).boxed());
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
    let messages = req
        .messages
        .iter()
        .map(|m| ChatMessage {
            role: &m.role,
            content: Some(ChatContent::Text(&m.content)),
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
        ..ChatRequest::default()
    };
    let mut reply = mock::reply(&chat);
    if let Some(n) = tokens.filter(|&n| n > 0) {
        let words: Vec<String> = reply.tokens.iter().cycle().take(n).cloned().collect();
        let cap = chat.max_output_tokens().map_or(n, |m| m as usize);
        reply.finish_reason = if n > cap { "length" } else { "stop" };
        reply.tokens = words.into_iter().take(cap).collect();
        let completion = reply.tokens.len() as i32;
        reply.usage = Usage {
            prompt_tokens: reply.usage.prompt_tokens,
            completion_tokens: completion,
            total_tokens: reply.usage.prompt_tokens + completion,
        };
    }
    reply
}

async fn handle(
    cfg: Arc<MockServerConfig>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if req.method() != Method::POST || !req.uri().path().ends_with("/chat/completions") {
        return Ok(error(
            StatusCode::NOT_FOUND,
            "only POST …/chat/completions is served",
        ));
    }
    let bytes = match Limited::new(req.into_body(), BODY_LIMIT).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(error(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string())),
    };
    let incoming: IncomingRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => return Ok(error(StatusCode::BAD_REQUEST, &e.to_string())),
    };
    let reply = answer(&incoming, cfg.tokens);
    let pacing = Pacing::new(cfg.first_token_latency, cfg.tokens_per_second);
    let start = Instant::now();
    if !incoming.stream {
        pacing
            .token(start, reply.tokens.len().saturating_sub(1))
            .await;
        let text = reply.tokens.concat();
        let body = Completion {
            id: &reply.id,
            object: "chat.completion",
            model: &reply.model,
            choices: [CompletionChoice {
                index: 0,
                message: OutMessage {
                    role: "assistant",
                    content: &text,
                },
                finish_reason: reply.finish_reason,
            }],
            usage: reply.usage.into(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        return Ok(full(StatusCode::OK, "application/json", json));
    }
    let include_usage = incoming.stream_options.is_some_and(|o| o.include_usage);
    let reply = Arc::new(reply);
    let events = futures_util::stream::iter(0..reply.tokens.len() + 3).then(move |i| {
        let reply = reply.clone();
        async move {
            let line = |chunk: &Chunk<'_>| {
                format!(
                    "data: {}\n\n",
                    serde_json::to_string(chunk).unwrap_or_default()
                )
            };
            let chunk = |choices, usage| Chunk {
                id: &reply.id,
                object: "chat.completion.chunk",
                model: &reply.model,
                choices,
                usage,
            };
            let n = reply.tokens.len();
            let text = if i < n {
                pacing.token(start, i).await;
                let delta = OutDelta {
                    content: Some(&reply.tokens[i]),
                };
                line(&chunk(
                    vec![ChunkChoice {
                        index: 0,
                        delta,
                        finish_reason: None,
                    }],
                    None,
                ))
            } else if i == n {
                let delta = OutDelta { content: None };
                line(&chunk(
                    vec![ChunkChoice {
                        index: 0,
                        delta,
                        finish_reason: Some(reply.finish_reason),
                    }],
                    None,
                ))
            } else if i == n + 1 && include_usage {
                line(&chunk(vec![], Some(reply.usage.into())))
            } else if i == n + 1 {
                String::new()
            } else {
                "data: [DONE]\n\n".to_owned()
            };
            Ok::<_, Infallible>(Frame::data(Bytes::from(text)))
        }
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(events)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    Ok(resp)
}

/// Serves until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cfg: MockServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let cfg = Arc::new(cfg);
    crate::httpd::serve(listener, move |req| handle(cfg.clone(), req), shutdown).await
}
