//! The upstream APIs the gateway speaks, and every way in which they differ, in one place: the endpoint's path,
//! how the key travels, which of the client's API headers go along, the request body, a whole answer, and the
//! stream's events and how it ends. The HTTP client (`http.rs`) asks its dialect and knows none of them; each
//! answer is the dialect module's (`openai/convert.rs`, `anthropic.rs`, `responses.rs`), which only translates
//! and parses. A new API (Gemini's, Bedrock's) is a variant here, and the compiler names every question it must
//! answer.

use std::borrow::Cow;

use reqwest::header::{HeaderName, AUTHORIZATION};

use crate::{
    config::{UpstreamAuth, UpstreamKind},
    error::GatewayError,
    upstream::{
        answer::{Completion, NoAnswer},
        anthropic,
        api_headers::ApiHeaders,
        bedrock, gemini,
        openai::{
            convert::{self, ChunkError, Piece, Reading},
            embeddings::{self, EmbedAsk, Embeddings, EmbeddingsRequest},
            wire::ChatRequest,
        },
        responses,
    },
};

/// Which API an HTTP upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// OpenAI's chat completions, and the many APIs that copy it.
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
    /// OpenAI's Responses API.
    Responses,
    /// Google's Gemini API (`generateContent`).
    Gemini,
    /// The Gemini API on Google Cloud's Vertex AI: the same requests and answers, its own embeddings (`:predict`)
    /// and OAuth2 access tokens.
    Vertex,
    /// Amazon Bedrock's Converse API, its streams in AWS's event-stream framing.
    Bedrock,
}

impl Dialect {
    /// The dialect of an upstream of this kind (the mock's is OpenAI's).
    pub(crate) fn of(kind: UpstreamKind) -> Dialect {
        match kind {
            UpstreamKind::Anthropic => Self::Anthropic,
            UpstreamKind::Responses => Self::Responses,
            UpstreamKind::Gemini => Self::Gemini,
            UpstreamKind::Vertex => Self::Vertex,
            UpstreamKind::Bedrock => Self::Bedrock,
            UpstreamKind::Openai | UpstreamKind::Mock => Self::OpenAi,
        }
    }

    /// The name its fields and blocks are tagged with (`GenerationConfig.dialect_options`, opaque parts).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
            Self::Responses => "responses",
            Self::Gemini | Self::Vertex => "gemini",
            Self::Bedrock => "bedrock",
        }
    }

    /// `gen_ai.provider.name` in OpenTelemetry's GenAI conventions.
    pub(crate) fn provider(self) -> &'static str {
        match self {
            Self::OpenAi | Self::Responses => "openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gcp.gemini",
            Self::Vertex => "gcp.vertex_ai",
            Self::Bedrock => "aws.bedrock",
        }
    }

    /// The generation endpoint for `model`, under the upstream's base URL: Gemini names the model and the
    /// manner of answer in the path.
    pub(crate) fn path(self, model: &str, stream: bool) -> Cow<'static, str> {
        match self {
            Self::OpenAi => "chat/completions".into(),
            Self::Anthropic => "messages".into(),
            Self::Responses => "responses".into(),
            Self::Gemini | Self::Vertex if stream => {
                format!("{}:streamGenerateContent?alt=sse", gemini::resource(model)).into()
            }
            Self::Gemini | Self::Vertex => {
                format!("{}:generateContent", gemini::resource(model)).into()
            }
            Self::Bedrock => bedrock::path(model, stream).into(),
        }
    }

    /// The embeddings endpoint for `model`; Anthropic's API has none.
    pub(crate) fn embeddings_path(self, model: &str) -> Option<Cow<'static, str>> {
        match self {
            Self::OpenAi | Self::Responses => Some("embeddings".into()),
            Self::Gemini => Some(format!("{}:batchEmbedContents", gemini::resource(model)).into()),
            Self::Vertex => Some(format!("{}:predict", gemini::resource(model)).into()),
            Self::Anthropic | Self::Bedrock => None,
        }
    }

    /// An embeddings request's body.
    pub(crate) fn embeddings_body(
        self,
        model: &str,
        ask: EmbedAsk<'_>,
    ) -> Result<Vec<u8>, GatewayError> {
        match self {
            Self::Gemini => gemini::embed_body(model, ask),
            Self::Vertex => gemini::predict_body(ask),
            _ => serde_json::to_vec(&EmbeddingsRequest::new(model, ask))
                .map_err(|e| GatewayError::Internal(format!("encoding request: {e}"))),
        }
    }

    /// An embeddings answer to `inputs` inputs; the error says what is wrong with it.
    pub(crate) fn embeddings(self, body: &[u8], inputs: usize) -> Result<Embeddings, String> {
        match self {
            Self::Gemini => gemini::embeddings(body, inputs),
            Self::Vertex => gemini::predictions(body, inputs),
            _ => embeddings::parse(body, inputs),
        }
    }

    /// The endpoint that counts a request's input tokens: Anthropic's alone.
    pub(crate) fn count_tokens_path(self) -> Option<&'static str> {
        match self {
            Self::Anthropic => Some("messages/count_tokens"),
            Self::OpenAi | Self::Responses | Self::Gemini | Self::Vertex | Self::Bedrock => None,
        }
    }

    /// The header the key travels in, and its value: Anthropic's `x-api-key`, Google's `x-goog-api-key`; else
    /// `authorization: Bearer`, or Azure's `api-key` when the config says so.
    pub(crate) fn credentials(self, key: &str, auth: UpstreamAuth) -> (HeaderName, String) {
        match (self, auth) {
            (Self::Anthropic, _) => (HeaderName::from_static("x-api-key"), key.to_owned()),
            (Self::Gemini | Self::Vertex, _) => {
                (HeaderName::from_static("x-goog-api-key"), key.to_owned())
            }
            (_, UpstreamAuth::ApiKey) => (HeaderName::from_static("api-key"), key.to_owned()),
            (_, _) => (AUTHORIZATION, format!("Bearer {key}")),
        }
    }

    /// The client's API headers that go to an upstream of this dialect: the Anthropic version it was written
    /// for (Anthropic's current one when it named none) and its betas; OpenAI's betas.
    pub(crate) fn api_headers(
        self,
        api: &ApiHeaders,
    ) -> [Option<(&'static str, reqwest::header::HeaderValue)>; 2] {
        match self {
            Self::Anthropic => {
                let version = api.anthropic_version.clone().unwrap_or(
                    reqwest::header::HeaderValue::from_static(anthropic::VERSION),
                );
                [
                    Some(("anthropic-version", version)),
                    api.anthropic_beta.clone().map(|b| ("anthropic-beta", b)),
                ]
            }
            Self::OpenAi | Self::Responses => {
                [api.openai_beta.clone().map(|b| ("openai-beta", b)), None]
            }
            Self::Gemini | Self::Vertex | Self::Bedrock => [None, None],
        }
    }

    /// Whether a request must name its output limit (Anthropic's and Bedrock's: the dispatcher fills the model's
    /// default).
    pub(crate) fn requires_max_tokens(self) -> bool {
        // Converse takes none, but Claude on Bedrock thinks only within one: a budget needs a limit above it.
        matches!(self, Self::Anthropic | Self::Bedrock)
    }

    /// The request body.
    pub(crate) fn body(self, req: &ChatRequest<'_>) -> Result<Vec<u8>, GatewayError> {
        match self {
            Self::OpenAi => serde_json::to_vec(req),
            Self::Anthropic => return anthropic::body(req),
            Self::Responses => return responses::body(req),
            Self::Gemini | Self::Vertex => return gemini::body(req),
            Self::Bedrock => return bedrock::body(req),
        }
        .map_err(|e| GatewayError::Internal(format!("encoding request: {e}")))
    }

    /// A whole answer from its body (`logprobs`: the request asked for them).
    pub(crate) fn completion(self, body: &[u8], logprobs: bool) -> Result<Completion, NoAnswer> {
        match self {
            Self::OpenAi => convert::completion(body, logprobs).map_err(NoAnswer::Malformed),
            Self::Anthropic => anthropic::completion(body),
            Self::Responses => responses::completion(body).map_err(NoAnswer::Malformed),
            Self::Gemini | Self::Vertex => gemini::completion(body),
            Self::Bedrock => bedrock::completion(body),
        }
    }

    /// A reader for a stream's events.
    pub(crate) fn events(self) -> Events {
        match self {
            Self::OpenAi => Events::Chat,
            Self::Anthropic => Events::Anthropic(Default::default()),
            Self::Responses => Events::Responses(Default::default()),
            Self::Gemini | Self::Vertex => Events::Gemini(Default::default()),
            Self::Bedrock => Events::Bedrock(Default::default()),
        }
    }

    /// How a stream's events are framed on the wire: server-sent events, or AWS's binary event stream.
    pub(crate) fn framing(self) -> Framing {
        match self {
            Self::Bedrock => Framing::AwsEventStream,
            _ => Framing::Sse,
        }
    }
}

/// A dialect's stream being read: what its events said so far, and how it ends — chat chunks at `[DONE]`,
/// Anthropic's events at `message_stop`, the Responses API's at `response.completed` (or `.incomplete`),
/// Gemini's chunks when the body ends after a finish reason.
pub(crate) enum Events {
    Chat,
    Anthropic(anthropic::StreamState),
    Responses(responses::StreamState),
    Gemini(gemini::StreamState),
    Bedrock(bedrock::StreamState),
}

/// How a stream's events are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Sse,
    AwsEventStream,
}

/// What one event said.
pub(crate) enum Said {
    /// A piece of the answer (or nothing to pass on), or why the event is wrong.
    Piece(Result<Piece, ChunkError>),
    /// The answer is over.
    End,
}

impl Events {
    /// The event that ends a stream of this dialect, named when a stream stops short of it.
    pub(crate) fn last_event(&self) -> &'static str {
        match self {
            Self::Chat => "[DONE]",
            Self::Anthropic(_) => "message_stop",
            Self::Responses(_) => "response.completed",
            Self::Gemini(_) => "a finishReason",
            Self::Bedrock(_) => "messageStop",
        }
    }

    /// Whether the body's end is the answer's (Gemini's, after a finish reason: its last chunk's usage and
    /// reason are then put in `reading`); a stream of another dialect is whole only at its end event.
    pub(crate) fn ends_with_body(&self, reading: &mut Reading) -> bool {
        match self {
            Self::Gemini(state) if state.finished => {
                gemini::finish(state, reading);
                true
            }
            Self::Bedrock(state) if state.stopped => {
                bedrock::finish(state, reading);
                true
            }
            _ => false,
        }
    }

    /// Reads one event (its name, `event`, and its data); the answer's id, model, usage and text so far are kept
    /// in `reading`.
    pub(crate) fn read(&mut self, event: &str, data: &str, reading: &mut Reading) -> Said {
        match self {
            Self::Chat if data == "[DONE]" => Said::End,
            Self::Chat => Said::Piece(convert::chunk(data, reading)),
            Self::Anthropic(state) => {
                let piece = anthropic::event(data, state, reading);
                if state.stopped {
                    Said::End
                } else {
                    Said::Piece(piece)
                }
            }
            Self::Responses(state) => {
                let piece = responses::event(data, state, reading);
                if state.stopped {
                    Said::End
                } else {
                    Said::Piece(piece)
                }
            }
            Self::Gemini(state) => Said::Piece(gemini::chunk(data, state, reading)),
            Self::Bedrock(state) => Said::Piece(bedrock::event(event, data, state, reading)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each dialect's answers to the transport's questions, in one table.
    #[test]
    fn each_dialect_names_its_endpoint_its_key_header_and_its_end() {
        use UpstreamAuth::{ApiKey, Bearer};
        let table = [
            (
                UpstreamKind::Openai,
                "chat/completions",
                Some("embeddings"),
                None,
                Bearer,
                ("authorization", "Bearer k"),
                "[DONE]",
                false,
            ),
            (
                UpstreamKind::Openai,
                "chat/completions",
                Some("embeddings"),
                None,
                ApiKey,
                ("api-key", "k"),
                "[DONE]",
                false,
            ),
            (
                UpstreamKind::Responses,
                "responses",
                Some("embeddings"),
                None,
                Bearer,
                ("authorization", "Bearer k"),
                "response.completed",
                false,
            ),
            (
                UpstreamKind::Anthropic,
                "messages",
                None,
                Some("messages/count_tokens"),
                Bearer,
                ("x-api-key", "k"),
                "message_stop",
                true,
            ),
            (
                UpstreamKind::Anthropic,
                "messages",
                None,
                Some("messages/count_tokens"),
                ApiKey,
                ("x-api-key", "k"),
                "message_stop",
                true,
            ),
        ];
        let table = table.into_iter().chain([
            (
                UpstreamKind::Gemini,
                "models/m:generateContent",
                Some("models/m:batchEmbedContents"),
                None,
                Bearer,
                ("x-goog-api-key", "k"),
                "a finishReason",
                false,
            ),
            (
                UpstreamKind::Vertex,
                "models/m:generateContent",
                Some("models/m:predict"),
                None,
                Bearer,
                ("x-goog-api-key", "k"),
                "a finishReason",
                false,
            ),
            (
                UpstreamKind::Bedrock,
                "model/m/converse",
                None,
                None,
                Bearer,
                ("authorization", "Bearer k"),
                "messageStop",
                true,
            ),
        ]);
        for (kind, path, embeddings, count, auth, (header, value), last, max_tokens) in table {
            let d = Dialect::of(kind);
            assert_eq!(d.path("m", false), path, "{kind:?}");
            assert_eq!(d.embeddings_path("m").as_deref(), embeddings, "{kind:?}");
            assert_eq!(d.count_tokens_path(), count, "{kind:?}");
            let (name, text) = d.credentials("k", auth);
            assert_eq!(
                (name.as_str(), text.as_str()),
                (header, value),
                "{kind:?} {auth:?}"
            );
            assert_eq!(d.events().last_event(), last, "{kind:?}");
            assert_eq!(d.requires_max_tokens(), max_tokens, "{kind:?}");
        }
    }

    /// Anthropic's version goes along always (the client's, else the current one), the betas only to their own
    /// API.
    #[test]
    fn api_headers_go_only_to_their_own_api() {
        use reqwest::header::HeaderValue;
        let none = ApiHeaders::default();
        let names = |d: Dialect, api: &ApiHeaders| -> Vec<(&'static str, HeaderValue)> {
            d.api_headers(api).into_iter().flatten().collect()
        };
        let current = HeaderValue::from_static(anthropic::VERSION);
        assert_eq!(
            names(Dialect::Anthropic, &none),
            [("anthropic-version", current)]
        );
        assert!(names(Dialect::OpenAi, &none).is_empty());
        let all = ApiHeaders {
            anthropic_version: Some(HeaderValue::from_static("2024-01-01")),
            anthropic_beta: Some(HeaderValue::from_static("b1")),
            openai_beta: Some(HeaderValue::from_static("assistants=v2")),
        };
        assert_eq!(
            names(Dialect::Anthropic, &all),
            [
                ("anthropic-version", HeaderValue::from_static("2024-01-01")),
                ("anthropic-beta", HeaderValue::from_static("b1"))
            ]
        );
        for d in [Dialect::OpenAi, Dialect::Responses] {
            assert_eq!(
                names(d, &all),
                [("openai-beta", HeaderValue::from_static("assistants=v2"))]
            );
        }
    }
}
