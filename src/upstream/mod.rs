//! Upstreams: where a routed request goes. One value per configured upstream, built once at start.

pub(crate) mod anthropic;
pub mod http;
pub(crate) mod mock;
pub mod openai;
pub(crate) mod reasoning;
pub(crate) mod responses;
pub(crate) mod retry_after;
#[cfg(test)]
pub(crate) mod scripted;
pub mod sse;
pub(crate) mod text;
pub(crate) mod tracecontext;

use std::time::Duration;

use crate::{
    config::{MaxTokensField, UpstreamConfig, UpstreamKind},
    error::GatewayError,
    proto::{Reasoning, ReasoningDelta, TokenLogprob, ToolCall, ToolCallDelta, Usage},
    upstream::openai::embeddings::{EmbedAsk, Embeddings},
    upstream::openai::wire::ChatRequest,
};

/// Headers of the client's that belong to an API, forwarded to upstreams of that dialect: Anthropic's
/// `anthropic-version` and `anthropic-beta` (betas are how new features reach agents first), OpenAI's
/// `OpenAI-Beta`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiHeaders {
    pub(crate) anthropic_version: Option<reqwest::header::HeaderValue>,
    pub(crate) anthropic_beta: Option<reqwest::header::HeaderValue>,
    pub(crate) openai_beta: Option<reqwest::header::HeaderValue>,
}

impl ApiHeaders {
    /// The API headers among a call's metadata.
    pub(crate) fn read(metadata: &tonic::metadata::MetadataMap) -> ApiHeaders {
        let get = |name: &str| {
            metadata
                .get(name)
                .and_then(|v| reqwest::header::HeaderValue::from_bytes(v.as_bytes()).ok())
        };
        ApiHeaders {
            anthropic_version: get("anthropic-version"),
            anthropic_beta: get("anthropic-beta"),
            openai_beta: get("openai-beta"),
        }
    }
}

/// A whole answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub id: String,
    pub model: String,
    pub content: String,
    pub finish_reason: String,
    pub usage: Option<Usage>,
    pub(crate) tool_calls: Vec<ToolCall>,
    pub(crate) logprobs: Vec<TokenLogprob>,
    /// The model's reasoning blocks, in order.
    pub(crate) reasoning: Vec<Reasoning>,
}

/// What a stream yields: the answer's pieces as they arrive (text, reasoning, tool-call pieces), signs of life,
/// then one end with the totals.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StreamEvent {
    /// Never empty: role-only and empty deltas are not forwarded.
    Delta(String),
    /// A piece of reasoning (thinking text, a signature, a redacted block).
    Reasoning(ReasoningDelta),
    /// A piece of a tool call (its id and name first, then its arguments in pieces).
    ToolCall(ToolCallDelta),
    /// The upstream is alive but sent nothing to relay (a role-only chunk, a ping, a comment, usage): resets the
    /// stall timers, and is not yet the answer (a failure before the answer's first piece may be retried).
    Progress,
    End(StreamEnd),
}

impl StreamEvent {
    /// A piece of the answer the client sees (or its end): once one has arrived, the call is never retried.
    pub(crate) fn is_answer(&self) -> bool {
        !matches!(self, Self::Progress)
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct StreamEnd {
    pub(crate) id: String,
    pub(crate) model: String,
    pub(crate) finish_reason: String,
    /// `None` when the upstream sent no usage despite being asked.
    pub(crate) usage: Option<Usage>,
    /// Re-assembled from the stream's pieces, whole.
    pub(crate) tool_calls: Vec<ToolCall>,
    pub(crate) logprobs: Vec<TokenLogprob>,
    /// Re-assembled from the stream's reasoning pieces, a block each.
    pub(crate) reasoning: Vec<Reasoning>,
}

/// A started stream. `next` is cancel-safe: dropping its future loses no event, so callers may `select!` on it.
// One per stream, owned by its relay task: the size gap costs nothing, boxing would cost an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum ChunkStream {
    Http(http::SseStream),
    Mock(mock::MockStream),
    #[cfg(test)]
    Scripted(scripted::ScriptedStream),
}

impl ChunkStream {
    /// The next event; `None` after the end. An error ends the stream.
    pub(crate) async fn next(&mut self) -> Option<Result<StreamEvent, GatewayError>> {
        match self {
            Self::Http(s) => s.next().await,
            Self::Mock(s) => s.next().await.map(Ok),
            #[cfg(test)]
            Self::Scripted(s) => s.next_event().await,
        }
    }
}

/// A configured upstream.
// One per configured upstream, built once and held in an `Arc`: the size gap costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Upstream {
    Http(http::HttpUpstream),
    Mock(mock::MockUpstream),
    /// Unit tests' seam: answers from a script, on the (paused) tokio clock.
    #[cfg(test)]
    Scripted(scripted::Scripted),
}

impl Upstream {
    pub(crate) fn new(cfg: &UpstreamConfig) -> Result<Upstream, GatewayError> {
        Ok(match cfg.kind {
            UpstreamKind::Openai | UpstreamKind::Anthropic | UpstreamKind::Responses => {
                Upstream::Http(http::HttpUpstream::new(cfg)?)
            }
            UpstreamKind::Mock => Upstream::Mock(mock::MockUpstream::new(cfg)),
        })
    }

    /// `gen_ai.provider.name` (OpenTelemetry's GenAI conventions): the API it speaks.
    pub(crate) fn provider(&self) -> &'static str {
        match self {
            Self::Http(u) => u.provider(),
            Self::Mock(_) => "aigw.mock",
            #[cfg(test)]
            Self::Scripted(_) => "aigw.scripted",
        }
    }

    /// The API it speaks, by the name its fields and blocks are tagged with ("openai", "anthropic",
    /// "responses"); the mock and the test script take OpenAI's.
    pub(crate) fn dialect_name(&self) -> &'static str {
        match self {
            Self::Http(u) => u.dialect().name(),
            _ => "openai",
        }
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            Self::Http(u) => u.name(),
            Self::Mock(u) => u.name(),
            #[cfg(test)]
            Self::Scripted(u) => u.name(),
        }
    }

    /// The longest wait the gateway takes on this upstream's word; `None`: it never asks for one.
    pub(crate) fn max_retry_after(&self) -> Option<Duration> {
        match self {
            Self::Http(u) => Some(u.max_retry_after()),
            _ => None,
        }
    }

    /// The configured bound on a whole call (streams included).
    pub(crate) fn request_timeout(&self) -> Duration {
        match self {
            Self::Http(u) => u.request_timeout(),
            Self::Mock(u) => u.request_timeout(),
            #[cfg(test)]
            Self::Scripted(_) => Duration::from_secs(600),
        }
    }

    /// Until when the upstream said it takes no more requests (OpenAI's remaining-requests header at zero).
    pub(crate) fn exhausted_until(
        &self,
        now: tokio::time::Instant,
    ) -> Option<tokio::time::Instant> {
        match self {
            Self::Http(u) => u.exhausted_until(now),
            _ => None,
        }
    }

    /// Whether every request must name its output limit (Anthropic's `max_tokens`).
    pub(crate) fn requires_max_tokens(&self) -> bool {
        match self {
            Self::Http(u) => u.requires_max_tokens(),
            _ => false,
        }
    }

    pub(crate) fn max_tokens_field(&self) -> MaxTokensField {
        match self {
            Self::Http(u) => u.max_tokens_field(),
            _ => MaxTokensField::MaxTokens,
        }
    }

    /// A non-streamed completion. `request_id` travels as `x-request-id`.
    pub(crate) async fn complete(
        &self,
        req: &ChatRequest<'_>,
        request_id: &str,
    ) -> Result<Completion, GatewayError> {
        match self {
            Self::Http(u) => u.complete(req, request_id).await,
            Self::Mock(u) => Ok(u.complete(req).await),
            #[cfg(test)]
            Self::Scripted(u) => u.complete().await,
        }
    }

    /// Embeddings by the upstream's `model`. `request_id` travels as `x-request-id`.
    pub(crate) async fn embed(
        &self,
        model: &str,
        ask: EmbedAsk<'_>,
        request_id: &str,
    ) -> Result<Embeddings, GatewayError> {
        match self {
            Self::Http(u) => u.embed(model, ask, request_id).await,
            Self::Mock(u) => u.embed(model, ask).await,
            #[cfg(test)]
            Self::Scripted(_) => Err(GatewayError::Internal(
                "the scripted upstream makes no embeddings".into(),
            )),
        }
    }

    /// The upstream's count of a Messages request's input tokens, when it counts them (Anthropic's).
    pub(crate) async fn count_tokens(
        &self,
        body: &serde_json::Value,
        request_id: &str,
        api: Option<&ApiHeaders>,
    ) -> Option<Result<u64, GatewayError>> {
        match self {
            Self::Http(u) => u.count_tokens(body, request_id, api).await,
            _ => None,
        }
    }

    /// Starts a stream: returns once the upstream accepted the request (status checked), before any delta.
    pub(crate) async fn stream(
        &self,
        req: &ChatRequest<'_>,
        request_id: &str,
    ) -> Result<ChunkStream, GatewayError> {
        match self {
            Self::Http(u) => u.stream(req, request_id).await.map(ChunkStream::Http),
            Self::Mock(u) => Ok(ChunkStream::Mock(u.stream(req))),
            #[cfg(test)]
            Self::Scripted(u) => u.stream().await.map(ChunkStream::Scripted),
        }
    }
}
