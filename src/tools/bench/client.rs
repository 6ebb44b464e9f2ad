//! One benchmark call against a target: the gateway over gRPC (tonic, the same stubs any client generates) or
//! an OpenAI-style endpoint over REST (JSON or SSE), with the same prompt and output size.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use bytes::Bytes;
use tokio::{sync::mpsc, time::Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{metadata::MetadataValue, transport::Channel, Code};

use super::record::{Outcome, Recorder, Status};
use crate::{
    proto::{
        ai_service_client::AiServiceClient, interactive_request::Action,
        interactive_response::Event, GenerateRequest, GenerationConfig, InteractiveRequest,
        InteractiveResponse, Message, SessionStart, StreamGenerateRequest, UserTurn,
    },
    upstream::openai::wire::{
        ChatChunk, ChatCompletion, ChatContent, ChatMessage, ChatRequest, StreamOptions,
    },
    upstream::sse::SseDecoder,
};

/// The calls a benchmark can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    /// `Generate`, or a non-streamed chat completion over REST.
    Generate,
    /// `StreamGenerate`, or an SSE chat completion over REST.
    Stream,
    /// `InteractiveStream`: a session of `turns` turns; each turn is counted as a call.
    Interactive,
    /// `InteractiveStream` sessions opened and held without a turn until the run ends (memory per stream).
    Idle,
}

impl Rpc {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Generate => "generate",
            Self::Stream => "stream",
            Self::Interactive => "interactive",
            Self::Idle => "idle",
        }
    }
}

/// What every call sends.
#[derive(Debug, Clone)]
pub struct Workload {
    pub rpc: Rpc,
    pub model: String,
    pub prompt: String,
    pub max_tokens: Option<u32>,
    /// Turns per interactive session.
    pub turns: u32,
    /// Bounds each call (sent as grpc-timeout; a REST call is dropped after it).
    pub timeout: Duration,
}

/// Where the calls go. One per run, so the gap between the variants' sizes costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Target {
    Grpc {
        channels: Vec<Channel>,
        next: AtomicUsize,
        auth: Option<MetadataValue<tonic::metadata::Ascii>>,
        /// Both requests, built once: each call sends a copy.
        generate: GenerateRequest,
        stream: StreamGenerateRequest,
    },
    Rest {
        client: reqwest::Client,
        url: reqwest::Url,
        auth: Option<reqwest::header::HeaderValue>,
        /// The request body, encoded once.
        body: Bytes,
    },
}

fn user(content: &str) -> Message {
    Message {
        role: "user".into(),
        content: content.into(),
        name: String::new(),
        ..Default::default()
    }
}

/// A gRPC message's size on the wire: the message and its 5-byte length prefix.
fn framed(m: &impl prost::Message) -> u64 {
    m.encoded_len() as u64 + 5
}

fn overhead_us(meta: &tonic::metadata::MetadataMap) -> Option<u64> {
    meta.get("aigw-overhead-us")?.to_str().ok()?.parse().ok()
}

impl Target {
    /// `connections` HTTP/2 connections to a gRPC target, used in turn; one HTTP/1.1 pool for a REST target.
    pub(crate) async fn grpc(
        url: &str,
        connections: usize,
        key: Option<&str>,
        work: &Workload,
    ) -> Result<Target, String> {
        let endpoint = Channel::from_shared(url.to_owned())
            .map_err(|e| format!("target {url}: {e}"))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5));
        let mut channels = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            channels.push(
                endpoint
                    .connect()
                    .await
                    .map_err(|e| format!("connecting to {url}: {e}"))?,
            );
        }
        let auth = key
            .map(|k| format!("Bearer {k}").parse())
            .transpose()
            .map_err(|_| "the key is not a valid header value".to_owned())?;
        let config = Some(GenerationConfig {
            max_tokens: work
                .max_tokens
                .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
            ..Default::default()
        });
        Ok(Target::Grpc {
            channels,
            next: AtomicUsize::new(0),
            auth,
            generate: GenerateRequest {
                model: work.model.clone(),
                messages: vec![user(&work.prompt)],
                config: config.clone(),
            },
            stream: StreamGenerateRequest {
                model: work.model.clone(),
                messages: vec![user(&work.prompt)],
                config,
            },
        })
    }

    /// `base_url` as in the gateway's config: `{base_url}/chat/completions` is called.
    pub(crate) fn rest(
        base_url: &str,
        key: Option<&str>,
        headers: &[String],
        work: &Workload,
    ) -> Result<Target, String> {
        crate::upstream::http::install_crypto_provider();
        let mut extra = reqwest::header::HeaderMap::new();
        for line in headers {
            let parsed = line.split_once(':').and_then(|(name, value)| {
                Some((
                    reqwest::header::HeaderName::try_from(name.trim()).ok()?,
                    reqwest::header::HeaderValue::try_from(value.trim()).ok()?,
                ))
            });
            let (name, value) =
                parsed.ok_or_else(|| format!("--header {line:?}: expected `name: value`"))?;
            extra.append(name, value);
        }
        let url = reqwest::Url::parse(&format!(
            "{}/chat/completions",
            base_url.trim_end_matches('/')
        ))
        .map_err(|e| format!("target {base_url}: {e}"))?;
        let auth = key
            .map(|k| reqwest::header::HeaderValue::try_from(format!("Bearer {k}")))
            .transpose()
            .map_err(|_| "the key is not a valid header value".to_owned())?;
        let stream = match work.rpc {
            Rpc::Generate => false,
            Rpc::Stream => true,
            Rpc::Interactive | Rpc::Idle => {
                return Err("REST targets take --rpc generate or stream".into())
            }
        };
        let request = ChatRequest {
            model: &work.model,
            messages: vec![ChatMessage {
                role: "user",
                content: Some(ChatContent::Text(&work.prompt)),
                ..ChatMessage::default()
            }],
            max_tokens: work.max_tokens,
            stream,
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
            ..ChatRequest::default()
        };
        let body = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(usize::MAX)
            .default_headers(extra)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Target::Rest {
            client,
            url,
            auth,
            body: body.into(),
        })
    }

    /// Makes one call (an interactive session: `turns` calls) and records it. `start` is when it was meant to
    /// start; `stop` ends idle sessions.
    pub(crate) async fn call(
        &self,
        work: &Workload,
        start: Instant,
        stop: Instant,
        rec: &Recorder,
    ) {
        match self {
            Target::Grpc {
                channels,
                next,
                auth,
                generate,
                stream,
            } => {
                let i = next.fetch_add(1, Ordering::Relaxed) % channels.len();
                let mut client = AiServiceClient::new(channels[i].clone());
                let grpc = Grpc {
                    auth: auth.as_ref(),
                    timeout: work.timeout,
                };
                match work.rpc {
                    Rpc::Generate => rec.record(start, grpc.generate(&mut client, generate).await),
                    Rpc::Stream => rec.record(start, grpc.stream(&mut client, stream).await),
                    Rpc::Interactive | Rpc::Idle => {
                        grpc.session(&mut client, work, start, stop, rec).await
                    }
                }
            }
            Target::Rest {
                client,
                url,
                auth,
                body,
            } => {
                let outcome = rest_call(client, url, auth.as_ref(), body.clone(), work).await;
                rec.record(start, outcome)
            }
        }
    }
}

struct Grpc<'a> {
    auth: Option<&'a MetadataValue<tonic::metadata::Ascii>>,
    timeout: Duration,
}

impl Grpc<'_> {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        req.set_timeout(self.timeout);
        if let Some(auth) = self.auth {
            req.metadata_mut().insert("authorization", auth.clone());
        }
        req
    }

    async fn generate(
        &self,
        client: &mut AiServiceClient<Channel>,
        msg: &GenerateRequest,
    ) -> Outcome {
        let sent = framed(msg);
        match client.generate(self.request(msg.clone())).await {
            Ok(resp) => Outcome {
                status: Status::Ok,
                first_token: None,
                done: Instant::now(),
                chunks: 0,
                request_bytes: sent,
                response_bytes: framed(resp.get_ref()),
                // tonic merges a unary call's trailers into its metadata.
                overhead_us: overhead_us(resp.metadata()),
            },
            Err(status) => Outcome::failed(Status::Grpc(status.code()), sent),
        }
    }

    async fn stream(
        &self,
        client: &mut AiServiceClient<Channel>,
        msg: &StreamGenerateRequest,
    ) -> Outcome {
        let sent = framed(msg);
        let mut stream = match client.stream_generate(self.request(msg.clone())).await {
            Ok(resp) => resp.into_inner(),
            Err(status) => return Outcome::failed(Status::Grpc(status.code()), sent),
        };
        let mut out = Outcome::failed(Status::Failed("NO_FINAL_CHUNK"), sent);
        loop {
            match stream.message().await {
                Ok(Some(chunk)) => {
                    out.response_bytes += framed(&chunk);
                    if !chunk.delta.is_empty() {
                        out.chunks += 1;
                        out.first_token.get_or_insert_with(Instant::now);
                    }
                    if chunk.is_complete {
                        out.status = Status::Ok;
                    }
                }
                Ok(None) => break,
                Err(status) => {
                    out.status = Status::Grpc(status.code());
                    break;
                }
            }
        }
        out.done = Instant::now();
        if out.status == Status::Ok {
            out.overhead_us = stream
                .trailers()
                .await
                .ok()
                .flatten()
                .as_ref()
                .and_then(overhead_us);
        }
        out
    }

    /// An interactive session: start it, send the turns one after another (each recorded from when it was
    /// sent; the first from `start`), close it. Idle sessions are held open until `stop` instead.
    async fn session(
        &self,
        client: &mut AiServiceClient<Channel>,
        work: &Workload,
        start: Instant,
        stop: Instant,
        rec: &Recorder,
    ) {
        let (tx, rx) = mpsc::channel(2);
        let session_start = InteractiveRequest {
            action: Some(Action::Start(SessionStart {
                model: work.model.clone(),
                config: Some(GenerationConfig {
                    max_tokens: work
                        .max_tokens
                        .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        };
        let mut sent = framed(&session_start);
        let _ = tx.send(session_start).await;
        let mut stream = match client
            .interactive_stream(self.request(ReceiverStream::new(rx)))
            .await
        {
            Ok(resp) => resp.into_inner(),
            Err(status) => {
                return rec.record(start, Outcome::failed(Status::Grpc(status.code()), sent))
            }
        };
        let started = match stream.message().await {
            Ok(Some(InteractiveResponse {
                event: Some(Event::Started(_)),
                ..
            })) => Instant::now(),
            Ok(_) => {
                return rec.record(start, Outcome::failed(Status::Failed("NOT_STARTED"), sent))
            }
            Err(status) => {
                return rec.record(start, Outcome::failed(Status::Grpc(status.code()), sent))
            }
        };
        if work.rpc == Rpc::Idle {
            rec.record(
                start,
                Outcome {
                    status: Status::Ok,
                    first_token: None,
                    done: started,
                    chunks: 0,
                    request_bytes: sent,
                    response_bytes: 0,
                    overhead_us: None,
                },
            );
            tokio::time::sleep_until(stop).await;
        } else {
            let mut turn_start = start;
            for _ in 0..work.turns {
                let turn = InteractiveRequest {
                    action: Some(Action::Turn(UserTurn {
                        content: work.prompt.clone(),
                        name: String::new(),
                        ..Default::default()
                    })),
                };
                sent += framed(&turn);
                if tx.send(turn).await.is_err() {
                    break;
                }
                let outcome = read_turn(&mut stream, sent).await;
                let ok = outcome.status == Status::Ok;
                rec.record(turn_start, outcome);
                if !ok {
                    return;
                }
                sent = 0;
                turn_start = Instant::now();
            }
        }
        drop(tx); // the client half-closes; the server ends the session
        while let Ok(Some(_)) = stream.message().await {}
    }
}

/// Reads one turn's deltas up to its `TurnComplete` (or `TurnError`).
async fn read_turn(stream: &mut tonic::Streaming<InteractiveResponse>, sent: u64) -> Outcome {
    let mut out = Outcome::failed(Status::Failed("SESSION_ENDED"), sent);
    loop {
        match stream.message().await {
            Ok(Some(msg)) => {
                out.response_bytes += framed(&msg);
                match msg.event {
                    Some(Event::Delta(d)) if !d.delta.is_empty() => {
                        out.chunks += 1;
                        out.first_token.get_or_insert_with(Instant::now);
                    }
                    Some(Event::Complete(_)) => {
                        out.status = Status::Ok;
                        break;
                    }
                    Some(Event::Error(e)) => {
                        out.status = Status::Grpc(Code::from_i32(e.code));
                        break;
                    }
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(status) => {
                out.status = Status::Grpc(status.code());
                break;
            }
        }
    }
    out.done = Instant::now();
    out
}

/// One chat completion over REST: the JSON answer parsed, or the SSE stream read to `[DONE]`.
async fn rest_call(
    client: &reqwest::Client,
    url: &reqwest::Url,
    auth: Option<&reqwest::header::HeaderValue>,
    body: Bytes,
    work: &Workload,
) -> Outcome {
    use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
    let sent = body.len() as u64;
    let mut builder = client
        .post(url.clone())
        .header(CONTENT_TYPE, "application/json")
        .timeout(work.timeout)
        .body(body);
    if let Some(auth) = auth {
        builder = builder.header(AUTHORIZATION, auth.clone());
    }
    let mut resp = match builder.send().await {
        Ok(resp) => resp,
        Err(e) if e.is_timeout() => return Outcome::failed(Status::Failed("TIMEOUT"), sent),
        Err(_) => return Outcome::failed(Status::Failed("CONNECTION"), sent),
    };
    if resp.status() != reqwest::StatusCode::OK {
        return Outcome::failed(Status::Http(resp.status().as_u16()), sent);
    }
    let mut out = Outcome::failed(Status::Failed("BODY"), sent);
    if work.rpc == Rpc::Generate {
        match resp.bytes().await {
            Ok(bytes) => {
                out.response_bytes = bytes.len() as u64;
                if serde_json::from_slice::<ChatCompletion>(&bytes).is_ok() {
                    out.status = Status::Ok;
                }
            }
            Err(_) => out.status = Status::Failed("BODY"),
        }
        out.done = Instant::now();
        return out;
    }
    let mut decoder = SseDecoder::new(1 << 20);
    'read: loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                out.response_bytes += bytes.len() as u64;
                decoder.push(&bytes);
            }
            Ok(None) | Err(_) => break, // without [DONE]: the stream failed
        }
        while let Ok(Some(event)) = decoder.next_event() {
            if event.data == "[DONE]" {
                out.status = Status::Ok;
                break 'read;
            }
            let Ok(chunk) = serde_json::from_str::<ChatChunk>(&event.data) else {
                out.status = Status::Failed("BAD_CHUNK");
                break 'read;
            };
            let has_text = chunk
                .choices
                .first()
                .and_then(|c| c.delta.content.as_ref())
                .is_some_and(|t| !t.0.is_empty());
            if has_text {
                out.chunks += 1;
                out.first_token.get_or_insert_with(Instant::now);
            }
        }
    }
    out.done = Instant::now();
    out
}

impl std::str::FromStr for Rpc {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "generate" => Self::Generate,
            "stream" => Self::Stream,
            "interactive" => Self::Interactive,
            "idle" => Self::Idle,
            _ => return Err("one of: generate, stream, interactive, idle".into()),
        })
    }
}
