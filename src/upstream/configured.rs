//! A configured upstream, whichever dialect it speaks, and the stream it answers with.

use std::time::Duration;

#[cfg(test)]
use crate::upstream::scripted;
use crate::{
    config::{MaxTokensField, UpstreamConfig, UpstreamKind},
    error::GatewayError,
    proto::{GenerationConfig, Message},
    upstream::{
        answer::{Completion, StreamEvent},
        api_headers::ApiHeaders,
        http, mock,
        openai::{
            convert,
            embeddings::{EmbedAsk, Embeddings},
            wire::ChatRequest,
        },
        pass_through::PassThrough,
    },
};

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
            UpstreamKind::Openai
            | UpstreamKind::Anthropic
            | UpstreamKind::Responses
            | UpstreamKind::Gemini
            | UpstreamKind::Vertex
            | UpstreamKind::Bedrock => Upstream::Http(http::HttpUpstream::new(cfg)?),
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

    /// A call's request as this upstream takes it, for its `model`: the output limit in the field it reads, and
    /// `default_output_tokens` (the limit admission reserved for) when its API requires one and the call set none.
    pub(crate) fn chat_request<'a>(
        &self,
        model: &'a str,
        messages: &'a [Message],
        config: Option<&'a GenerationConfig>,
        pass: &PassThrough,
        stream: bool,
        default_output_tokens: u32,
    ) -> ChatRequest<'a> {
        let (field, required) = match self {
            Self::Http(u) => (u.max_tokens_field(), u.requires_max_tokens()),
            _ => (MaxTokensField::MaxTokens, false),
        };
        let mut req = convert::chat_request(model, messages, config, pass, field, stream);
        if required && req.max_output_tokens().is_none() {
            req.max_tokens = Some(default_output_tokens);
        }
        req
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

    /// The upstream's count of a request's input tokens, when its API counts a request of the gateway's own
    /// shape (Gemini's `countTokens`).
    pub(crate) async fn count_request_tokens(
        &self,
        req: &ChatRequest<'_>,
        request_id: &str,
    ) -> Option<Result<u64, GatewayError>> {
        match self {
            Self::Http(u) => u.count_request_tokens(req, request_id).await,
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
