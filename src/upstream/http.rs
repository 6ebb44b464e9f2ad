//! The HTTP upstream client: one pooled `reqwest::Client` per upstream, rustls only. What it sends and how it
//! reads the answer are its dialect's (`dialect.rs`: OpenAI chat completions, Anthropic's Messages API,
//! OpenAI's Responses API); this file is the transport — credentials, headers, status and Retry-After, bounded
//! bodies, quota headers.

use std::{
    borrow::Cow,
    time::{Duration, SystemTime},
};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};

use super::{
    answer::{Completion, NoAnswer},
    dialect::{Dialect, Framing},
    read::{describe, read_bounded, read_prefix, BodyError},
    retry_after,
};
use crate::{
    config::{MaxTokensField, UpstreamAuth, UpstreamConfig},
    error::GatewayError,
    upstream::openai::embeddings::{EmbedAsk, Embeddings},
    upstream::openai::wire::{ChatRequest, ErrorBody},
};

/// How much of an upstream error body is read, and how much of its message is passed on.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
const ERROR_MESSAGE_LIMIT: usize = 512;

pub(crate) struct HttpUpstream {
    name: String,
    dialect: Dialect,
    /// The config's base URL (no trailing slash) and query parameters, which every endpoint's URL has.
    base_url: String,
    query: Vec<(String, String)>,
    /// The generation endpoint, built once, for dialects whose endpoint names neither the model nor the manner
    /// of answer (OpenAI's, Anthropic's, the Responses API's); Gemini's and Bedrock's are built per call.
    fixed_url: Option<reqwest::Url>,
    /// `{base_url}/messages/count_tokens`: Anthropic's alone.
    count_tokens_url: Option<reqwest::Url>,
    /// The key's header (`authorization: Bearer <key>`, or Anthropic's `x-api-key`), its value marked sensitive
    /// so no debug output shows it.
    auth: Option<(HeaderName, HeaderValue)>,
    /// A Google Cloud upstream's OAuth2 access tokens (Vertex AI), fetched and kept apart from the calls.
    google: Option<super::google_auth::GoogleAuth>,
    /// An AWS upstream's credentials and request signing (Bedrock).
    aws: Option<super::aws_auth::AwsAuth>,
    /// The config's extra headers, sent with every request.
    headers: HeaderMap,
    client: reqwest::Client,
    request_timeout: Duration,
    max_tokens_field: MaxTokensField,
    max_response_bytes: usize,
    max_retry_after: Duration,
    /// The upstream said (`x-ratelimit-remaining-requests: 0`) that it takes no more requests until then.
    exhausted_until: std::sync::Mutex<Option<tokio::time::Instant>>,
}

/// Installs ring as rustls' process-wide provider (reqwest takes it from there). Idempotent.
pub fn install_crypto_provider() {
    // Err means a provider is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl HttpUpstream {
    pub(crate) fn new(cfg: &UpstreamConfig) -> Result<Self, GatewayError> {
        install_crypto_provider();
        let setup =
            |detail: String| GatewayError::Internal(format!("upstream '{}': {detail}", cfg.name));
        let dialect = Dialect::of(cfg.kind);
        let url_of = |path: &str| {
            url_of(&cfg.base_url, &cfg.query, path).map_err(|e| setup(format!("base_url: {e}")))
        };
        // Checked once here: every endpoint's URL is the base's with a path added.
        let generation = url_of(&dialect.path("m", false))?;
        let fixed_url = matches!(dialect.path("m", true), Cow::Borrowed(_)).then_some(generation);
        let count_tokens_url = dialect.count_tokens_path().map(url_of).transpose()?;
        let auth = match (&cfg.api_key, cfg.auth) {
            (None, _) | (_, UpstreamAuth::None) => None,
            (Some(key), auth) => {
                let (name, text) = dialect.credentials(key, auth);
                let mut value = HeaderValue::try_from(text)
                    .map_err(|_| setup("the API key is not a valid header value".into()))?;
                value.set_sensitive(true);
                Some((name, value))
            }
        };
        // Built once and shared by every request: pooled keep-alive connections, HTTP/2 where the upstream
        // offers it through ALPN. No overall timeout here: the gateway bounds each call with its own deadline
        // so that the client's grpc-timeout and request_timeout are one mechanism with one error code.
        let mut client = reqwest::Client::builder();
        if cfg.http2 {
            client = client.http2_prior_knowledge();
        }
        let client = client
            .connect_timeout(cfg.connect_timeout)
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle)
            .tcp_nodelay(true)
            .tcp_keepalive(cfg.keepalive)
            // HTTP/2 PINGs find a dead upstream connection even while a stream on it is silent.
            .http2_keep_alive_interval(cfg.keepalive)
            .http2_keep_alive_timeout(Duration::from_secs(20))
            .http2_keep_alive_while_idle(true)
            .user_agent(concat!("aigw/", env!("CARGO_PKG_VERSION")))
            // An API that answers a POST with a redirect is misconfigured: report it rather than resend the
            // prompt (and the key) somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| setup(format!("HTTP client: {e}")))?;
        let google = cfg
            .google
            .as_ref()
            .map(|creds| super::google_auth::GoogleAuth::new(&cfg.name, creds, client.clone()))
            .transpose()
            .map_err(setup)?;
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| setup(format!("headers: '{name}' is not a header name")))?;
            let mut value = HeaderValue::try_from(value.as_str())
                .map_err(|_| setup(format!("headers.{name}: not a header value")))?;
            value.set_sensitive(true); // they may carry credentials
            headers.insert(name, value);
        }
        Ok(Self {
            name: cfg.name.clone(),
            dialect,
            base_url: cfg.base_url.clone(),
            fixed_url,
            query: cfg.query.clone(),
            count_tokens_url,
            auth,
            google,
            aws: cfg
                .aws
                .as_ref()
                .map(|aws| super::aws_auth::AwsAuth::new(&cfg.name, aws)),
            headers,
            client,
            request_timeout: cfg.request_timeout,
            max_tokens_field: cfg.max_tokens_field,
            max_response_bytes: cfg.max_response_bytes,
            max_retry_after: cfg.max_retry_after,
            exhausted_until: std::sync::Mutex::new(None),
        })
    }

    /// `gen_ai.provider.name` in OpenTelemetry's GenAI conventions.
    pub(crate) fn provider(&self) -> &'static str {
        self.dialect.provider()
    }

    /// The API it speaks, by the name its fields and blocks are tagged with.
    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    pub(crate) fn max_retry_after(&self) -> Duration {
        self.max_retry_after
    }

    pub(crate) fn max_tokens_field(&self) -> MaxTokensField {
        self.max_tokens_field
    }

    /// Whether every request must name its output limit (Anthropic's `max_tokens` is required).
    pub(crate) fn requires_max_tokens(&self) -> bool {
        self.dialect.requires_max_tokens()
    }

    /// Until when the upstream said it takes no more requests (its remaining-requests header at zero).
    pub(crate) fn exhausted_until(
        &self,
        now: tokio::time::Instant,
    ) -> Option<tokio::time::Instant> {
        let until = *self
            .exhausted_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        until.filter(|&t| t > now)
    }

    fn unavailable(&self, detail: String) -> GatewayError {
        unavailable(&self.name, detail)
    }

    /// An endpoint's URL: `{base_url}/{path}` with the config's query parameters.
    fn url(&self, path: &str) -> Result<reqwest::Url, GatewayError> {
        url_of(&self.base_url, &self.query, path).map_err(|e| {
            GatewayError::InvalidArgument(format!(
                "upstream '{}': no URL for {path}: {e}",
                self.name
            ))
        })
    }

    fn protocol(&self, detail: String) -> GatewayError {
        GatewayError::UpstreamProtocol {
            upstream: self.name.clone(),
            detail,
        }
    }

    /// A wait read from this upstream's headers, clamped to `max_retry_after` (and logged when it was).
    fn clamp(&self, header: &str, wait: Duration) -> Duration {
        if wait > self.max_retry_after {
            tracing::warn!(
                upstream = %self.name,
                header,
                asked_secs = wait.as_secs(),
                max_retry_after_secs = self.max_retry_after.as_secs(),
                "an upstream wait was clamped to max_retry_after"
            );
        }
        wait.min(self.max_retry_after)
    }

    /// Notes the upstream's own word that its request quota is spent (OpenAI's rate-limit headers).
    fn note_quota(&self, headers: &HeaderMap) {
        if let Some(reset) = retry_after::quota_exhausted(headers) {
            let reset = self.clamp("x-ratelimit-reset-requests", reset);
            let until = tokio::time::Instant::now() + reset;
            let mut slot = self
                .exhausted_until
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *slot = Some(slot.map_or(until, |t| t.max(until)));
        }
    }

    /// Sends the request and checks the status; the body is left to the caller.
    async fn send(
        &self,
        req: &ChatRequest<'_>,
        request_id: &str,
    ) -> Result<reqwest::Response, GatewayError> {
        let dropped = req.left_out(self.dialect.name());
        if !dropped.is_empty() {
            tracing::info!(
                upstream = %self.name,
                dropped = %dropped.join(","),
                "fields and blocks the upstream's API does not take were left out"
            );
        }
        let body = self.dialect.body(req)?;
        let accept = match (req.stream, self.dialect.framing()) {
            (false, _) => "application/json",
            (true, Framing::Sse) => "text/event-stream",
            (true, Framing::AwsEventStream) => "application/vnd.amazon.eventstream",
        };
        let url = match &self.fixed_url {
            Some(url) => url.clone(),
            None => self.url(&self.dialect.path(req.model, req.stream))?,
        };
        self.post(url, body, accept, request_id, req.api_headers)
            .await
    }

    /// Posts a JSON body with the upstream's credentials and headers, and checks the status.
    async fn post(
        &self,
        url: reqwest::Url,
        body: Vec<u8>,
        accept: &'static str,
        request_id: &str,
        api: Option<&super::api_headers::ApiHeaders>,
    ) -> Result<reqwest::Response, GatewayError> {
        // SigV4 signs the URL, the content type and the body as they go out.
        let signature = match &self.aws {
            Some(aws) => aws.sign(&url, "application/json", &body).await?,
            None => Vec::new(),
        };
        let mut builder = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, accept)
            .header("x-request-id", request_id)
            .body(body);
        for (name, value) in signature {
            builder = builder.header(name, value);
        }
        if let Some((name, value)) = &self.auth {
            builder = builder.header(name.clone(), value.clone());
        }
        if let Some(google) = &self.google {
            builder = builder.header(reqwest::header::AUTHORIZATION, google.header().await?);
        }
        if !self.headers.is_empty() {
            builder = builder.headers(self.headers.clone());
        }
        // The client's API headers go to upstreams of their dialect: the version it was written for, its betas.
        let none = super::api_headers::ApiHeaders::default();
        for (name, value) in self
            .dialect
            .api_headers(api.unwrap_or(&none))
            .into_iter()
            .flatten()
        {
            builder = builder.header(name, value);
        }
        if super::tracecontext::enabled() {
            let mut trace = HeaderMap::new();
            super::tracecontext::inject(&mut trace);
            builder = builder.headers(trace);
        }
        let mut resp = builder
            .send()
            .await
            .map_err(|e| self.unavailable(describe(&e)))?;
        let status = resp.status();
        self.note_quota(resp.headers());
        if status.is_success() {
            return Ok(resp);
        }
        let header = retry_after::parse(resp.headers(), SystemTime::now());
        let body = read_prefix(&mut resp, ERROR_BODY_LIMIT).await;
        let retry_after = header
            .or_else(|| Some(("RetryInfo", retry_after::google_retry_info(&body)?)))
            .map(|(header, wait)| self.clamp(header, wait));
        let message = error_message(&body);
        Err(GatewayError::from_upstream_status(
            &self.name,
            status.as_u16(),
            message,
            retry_after,
        ))
    }

    pub(crate) async fn complete(
        &self,
        req: &ChatRequest<'_>,
        request_id: &str,
    ) -> Result<Completion, GatewayError> {
        let resp = self.send(req, request_id).await?;
        let body = self.whole_body(resp).await?;
        self.dialect
            .completion(&body, req.logprobs)
            .map_err(|no| match no {
                NoAnswer::Malformed(detail) => self.protocol(detail),
                NoAnswer::Api { status, message } => {
                    GatewayError::from_upstream_status(&self.name, status, bounded(&message), None)
                }
            })
    }

    /// Embeddings of `ask.input` by the upstream's `model`.
    pub(crate) async fn embed(
        &self,
        model: &str,
        ask: EmbedAsk<'_>,
        request_id: &str,
    ) -> Result<Embeddings, GatewayError> {
        if self.dialect == Dialect::Bedrock {
            return self.embed_on_bedrock(model, ask, request_id).await;
        }
        let Some(path) = self.dialect.embeddings_path(model) else {
            // Config validation keeps embedding models off Anthropic upstreams; this is the backstop.
            return Err(GatewayError::InvalidArgument(format!(
                "upstream '{}' speaks an API the gateway calls for no embeddings",
                self.name
            )));
        };
        let url = self.url(&path)?;
        let body = self.dialect.embeddings_body(model, ask)?;
        let resp = self
            .post(url, body, "application/json", request_id, None)
            .await?;
        let body = self.whole_body(resp).await?;
        self.dialect
            .embeddings(&body, ask.input.len())
            .map_err(|detail| self.protocol(detail))
    }

    /// Embeddings from Bedrock's InvokeModel: one call for Cohere's models, one per input for Titan's (eight at
    /// a time, the vectors kept in the inputs' order).
    async fn embed_on_bedrock(
        &self,
        model: &str,
        ask: EmbedAsk<'_>,
        request_id: &str,
    ) -> Result<Embeddings, GatewayError> {
        use futures_util::{StreamExt, TryStreamExt};
        let url = self.url(&super::bedrock::invoke_path(model))?;
        let bodies = super::bedrock::embed_bodies(model, ask)?;
        let per_body = if bodies.len() == 1 {
            ask.input.len()
        } else {
            1
        };
        let answers: Vec<(Vec<Vec<f32>>, u64)> = futures_util::stream::iter(bodies)
            .map(|body| {
                let url = url.clone();
                async move {
                    let resp = self
                        .post(url, body, "application/json", request_id, None)
                        .await?;
                    let answer = self.whole_body(resp).await?;
                    super::bedrock::embed_answer(&answer, per_body)
                        .map_err(|detail| self.protocol(detail))
                }
            })
            .buffered(8)
            .try_collect()
            .await?;
        let tokens: u64 = answers.iter().map(|(_, n)| n).sum();
        let clamp = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
        Ok(Embeddings {
            vectors: answers.into_iter().flat_map(|(v, _)| v).collect(),
            model: String::new(),
            usage: (tokens > 0).then(|| crate::proto::Usage {
                prompt_tokens: clamp(tokens),
                total_tokens: clamp(tokens),
                ..Default::default()
            }),
        })
    }

    /// Anthropic's count of a Messages request's input tokens (`body` as the client wrote it, for the
    /// upstream's model); `None` for upstreams of other dialects.
    pub(crate) async fn count_tokens(
        &self,
        body: &serde_json::Value,
        request_id: &str,
        api: Option<&super::api_headers::ApiHeaders>,
    ) -> Option<Result<u64, GatewayError>> {
        let url = self.count_tokens_url.clone()?;
        Some(
            async {
                let body = serde_json::to_vec(body)
                    .map_err(|e| GatewayError::Internal(format!("encoding request: {e}")))?;
                let resp = self
                    .post(url, body, "application/json", request_id, api)
                    .await?;
                let answer = self.whole_body(resp).await?;
                serde_json::from_slice::<serde_json::Value>(&answer)
                    .ok()
                    .and_then(|v| v["input_tokens"].as_u64())
                    .ok_or_else(|| self.protocol("count_tokens: no input_tokens".into()))
            }
            .await,
        )
    }

    /// Gemini's count of a request's input tokens (`countTokens`, for the request's model); `None` for upstreams
    /// of other dialects.
    pub(crate) async fn count_request_tokens(
        &self,
        req: &ChatRequest<'_>,
        request_id: &str,
    ) -> Option<Result<u64, GatewayError>> {
        let vertex = match self.dialect {
            Dialect::Gemini => false,
            Dialect::Vertex => true,
            _ => return None,
        };
        Some(
            async {
                let path = format!("{}:countTokens", super::gemini::resource(req.model));
                let body = super::gemini::count_body(req, vertex)?;
                let resp = self
                    .post(self.url(&path)?, body, "application/json", request_id, None)
                    .await?;
                let answer = self.whole_body(resp).await?;
                super::gemini::counted(&answer).map_err(|detail| self.protocol(detail))
            }
            .await,
        )
    }

    /// A non-streamed answer's body, at most `max_response_bytes`.
    async fn whole_body(&self, mut resp: reqwest::Response) -> Result<Vec<u8>, GatewayError> {
        read_bounded(&mut resp, self.max_response_bytes)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge => {
                    self.protocol(format!("body exceeds {} bytes", self.max_response_bytes))
                }
                BodyError::Transport(detail) => self.unavailable(detail),
            })
    }

    pub(crate) async fn stream(
        &self,
        req: &ChatRequest<'_>,
        request_id: &str,
    ) -> Result<SseStream, GatewayError> {
        let resp = self.send(req, request_id).await?;
        Ok(SseStream::new(
            self.name.clone(),
            resp,
            self.max_response_bytes,
            self.dialect,
            req.logprobs,
        ))
    }
}

mod stream;

pub(crate) use stream::SseStream;

/// `{base}/{path}` with `query` added to the path's own parameters.
fn url_of(base: &str, query: &[(String, String)], path: &str) -> Result<reqwest::Url, String> {
    let mut url = reqwest::Url::parse(&format!("{base}/{path}")).map_err(|e| e.to_string())?;
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(url)
}

fn unavailable(upstream: &str, detail: String) -> GatewayError {
    GatewayError::UpstreamUnavailable {
        upstream: upstream.to_owned(),
        detail,
        retry_after: None,
    }
}

/// AWS's error body: `{"message": ...}` (some services spell it `Message`).
#[derive(serde::Deserialize)]
struct AwsError {
    #[serde(alias = "Message")]
    message: String,
}

/// The upstream's error message from an OpenAI (or Google) error body or an AWS one, or the start of whatever
/// text it sent.
fn error_message(body: &[u8]) -> String {
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
        return bounded(&parsed.error.message);
    }
    match serde_json::from_slice::<AwsError>(body) {
        Ok(parsed) => bounded(&parsed.message),
        Err(_) => bounded(String::from_utf8_lossy(body).trim()),
    }
}

/// Cuts text to a size fit for a status message, on a character boundary.
fn bounded(text: &str) -> String {
    match text.char_indices().nth(ERROR_MESSAGE_LIMIT) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_bounded_and_parsed() {
        assert_eq!(
            error_message(br#"{"error":{"message":"bad temperature","type":"x"}}"#),
            "bad temperature"
        );
        assert_eq!(error_message(b"  plain text  "), "plain text");
        assert_eq!(
            error_message(br#"{"message":"Too many tokens, please wait."}"#),
            "Too many tokens, please wait."
        );
        let long = "가".repeat(2000);
        let msg = error_message(long.as_bytes());
        assert_eq!(msg.chars().count(), ERROR_MESSAGE_LIMIT + 1);
    }
}
