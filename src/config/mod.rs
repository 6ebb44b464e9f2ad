//! Configuration: the TOML file as written (`RawConfig`) and the checked form the gateway runs on
//! ([`Config`]). Every check names the field it is about; secrets (client keys, upstream keys) are read from
//! the environment or stored as SHA-256 hashes, and never printed.

mod cache;
mod check;
mod cors;
mod jwt;
mod load;
mod ops;
mod policy;
mod shared;

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, time::Duration};

pub(crate) use cache::{CacheConfig, ModelCache};
pub(crate) use check::MAX_GROUP_DEPTH;
pub(crate) use cors::{CorsConfig, Origins};
pub(crate) use jwt::JwtIssuer;
pub(crate) use load::env_or_file;
pub use load::hash_key;
use load::parse_hex32;
use ops::RawAdmin;
pub use ops::{ScalingConfig, TracingConfig, UsageRecordsConfig};
pub(crate) use policy::{
    Balance, BreakerPolicy, KeyLimits, ModelLimits, Policy, RetryPolicy, StreamLimits,
};
pub use policy::{GroupConfig, MaxTokensField};
pub(crate) use shared::{OnFailure, RedisTarget, SharedConfig};

use serde::{Deserialize, Deserializer};

/// A configuration error; the message names the field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Human-readable durations: "30s", "250ms", "2m", "1h 30m".
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| serde::de::Error::custom(format!("'{text}': {e}")))
}

// ---- The file as written -------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    #[serde(default)]
    interactive: RawInteractive,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    scaling: ScalingConfig,
    #[serde(default)]
    tracing: TracingConfig,
    usage_records: Option<UsageRecordsConfig>,
    #[serde(default)]
    limits: policy::RawLimits,
    #[serde(default)]
    cache: CacheConfig,
    shared: Option<shared::RawShared>,
    cors: Option<cors::RawCors>,
    #[serde(default)]
    model_defaults: policy::RawPolicy,
    #[serde(default)]
    groups: Vec<GroupConfig>,
    #[serde(default)]
    keys: Vec<RawKey>,
    #[serde(default)]
    auth: jwt::RawAuth,
    #[serde(default)]
    upstreams: Vec<RawUpstream>,
    #[serde(default)]
    models: Vec<RawModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: SocketAddr,
    #[serde(default = "defaults::grace", deserialize_with = "duration")]
    shutdown_grace: Duration,
    tls: Option<RawTls>,
    #[serde(
        default = "defaults::first_request_timeout",
        deserialize_with = "duration"
    )]
    first_request_timeout: Duration,
    #[serde(default = "defaults::idle_timeout", deserialize_with = "duration")]
    idle_timeout: Duration,
    #[serde(default = "defaults::max_connections")]
    max_connections: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInteractive {
    #[serde(default = "defaults::history_messages")]
    max_history_messages: u32,
    #[serde(default = "defaults::history_bytes")]
    max_history_bytes: usize,
}

impl Default for RawInteractive {
    fn default() -> Self {
        Self {
            max_history_messages: defaults::history_messages(),
            max_history_bytes: defaults::history_bytes(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default)]
    format: LogFormat,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: String,
    sha256: Option<String>,
    env: Option<String>,
    models: Option<Vec<String>>,
    #[serde(default)]
    limits: KeyLimits,
    /// The group (team) whose limits this key shares with its other keys.
    group: Option<String>,
    #[serde(default)]
    model_limits: ModelLimits,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    name: String,
    kind: UpstreamKind,
    base_url: Option<String>,
    api_key_env: Option<String>,
    #[serde(default = "defaults::connect_timeout", deserialize_with = "duration")]
    connect_timeout: Duration,
    #[serde(default = "defaults::request_timeout", deserialize_with = "duration")]
    request_timeout: Duration,
    #[serde(default = "defaults::pool_idle_timeout", deserialize_with = "duration")]
    pool_idle_timeout: Duration,
    #[serde(default = "defaults::pool_max_idle")]
    pool_max_idle: usize,
    #[serde(default = "defaults::keepalive", deserialize_with = "duration")]
    keepalive: Duration,
    #[serde(default)]
    max_tokens_field: MaxTokensField,
    #[serde(default = "defaults::max_response_bytes")]
    max_response_bytes: usize,
    #[serde(default)]
    http2: bool,
    #[serde(default = "defaults::max_retry_after", deserialize_with = "duration")]
    max_retry_after: Duration,
    #[serde(
        default = "defaults::first_token_latency",
        deserialize_with = "duration"
    )]
    first_token_latency: Duration,
    #[serde(default = "defaults::tokens_per_second")]
    tokens_per_second: f64,
    /// How the key is sent: "bearer" (`authorization: Bearer`, the default for OpenAI-style), "api-key"
    /// (Azure OpenAI's `api-key` header) or "none".
    auth: Option<UpstreamAuth>,
    /// Extra headers: a value, or `{ env = "VAR" }` to read it from the environment (never logged).
    #[serde(default)]
    headers: std::collections::BTreeMap<String, RawHeader>,
    /// Query parameters added to every request (e.g. Azure's `api-version`).
    #[serde(default)]
    query: std::collections::BTreeMap<String, String>,
    /// Vertex AI: the Google Cloud project and location the models are called in.
    project: Option<String>,
    location: Option<String>,
    /// Vertex AI: a service account's JSON key; without it, `GOOGLE_APPLICATION_CREDENTIALS`'s, else the
    /// metadata server's token.
    credentials_file: Option<String>,
    /// Bedrock: the AWS region the models are called in.
    region: Option<String>,
    /// Bedrock: variables holding an access key (all three read through `env`); without them, the standard
    /// AWS credential chain.
    access_key_id_env: Option<String>,
    secret_access_key_env: Option<String>,
    session_token_env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamAuth {
    Bearer,
    ApiKey,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawHeader {
    Value(String),
    Env { env: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    #[serde(default)]
    kind: ModelKind,
    #[serde(default)]
    aliases: Vec<String>,
    /// Required for chat models; embedding models have no output.
    max_output_tokens: Option<u32>,
    default_output_tokens: Option<u32>,
    /// Tokens the model can take in all (prompt and output).
    context_window: Option<u32>,
    /// Larger-window models a request that does not fit goes to instead, tried in order.
    #[serde(default)]
    context_fallbacks: Vec<String>,
    #[serde(default)]
    price: RawPrice,
    routes: Vec<RawRoute>,
    #[serde(default)]
    policy: policy::RawPolicy,
    cache: Option<cache::RawModelCache>,
}

/// Dollars per million tokens.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    #[serde(default)]
    input_per_million: f64,
    #[serde(default)]
    output_per_million: f64,
    /// Prompt tokens read from the provider's cache; the input price when unset.
    cached_input_per_million: Option<f64>,
    /// Prompt tokens written to the provider's cache; the input price when unset.
    cache_write_per_million: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    upstream: String,
    model: String,
    #[serde(default = "defaults::weight")]
    weight: u32,
    #[serde(default)]
    strict: bool,
}

mod defaults {
    use std::time::Duration;
    pub(crate) fn first_request_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub(crate) fn idle_timeout() -> Duration {
        Duration::from_secs(300)
    }
    pub(crate) fn max_connections() -> usize {
        10_000
    }
    pub(crate) fn grace() -> Duration {
        Duration::from_secs(30)
    }
    pub(crate) fn history_messages() -> u32 {
        64
    }
    pub(crate) fn history_bytes() -> usize {
        256 * 1024
    }
    pub(crate) fn connect_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub(crate) fn request_timeout() -> Duration {
        Duration::from_secs(600)
    }
    pub(crate) fn max_response_bytes() -> usize {
        8 * 1024 * 1024
    }
    pub(crate) fn max_retry_after() -> Duration {
        Duration::from_secs(60)
    }
    pub(crate) fn first_token_latency() -> Duration {
        Duration::from_millis(50)
    }
    pub(crate) fn tokens_per_second() -> f64 {
        100.0
    }
    pub(crate) fn pool_idle_timeout() -> Duration {
        Duration::from_secs(90)
    }
    pub(crate) fn pool_max_idle() -> usize {
        64
    }
    pub(crate) fn keepalive() -> Duration {
        Duration::from_secs(30)
    }
    pub(crate) fn weight() -> u32 {
        1
    }
    /// Output tokens reserved against a key's tpm when a request sets no max_tokens.
    pub(crate) const OUTPUT_BUDGET: u32 = 1024;
}

// ---- The checked form ----------------------------------------------------------------------------------------

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// What a model does: chat (Generate, StreamGenerate, InteractiveStream, the chat and Responses doors) or
/// embeddings (Embed, `POST /v1/embeddings`). Each is refused the other's calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ModelKind {
    #[default]
    Chat,
    Embedding,
}

/// The dialect an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum UpstreamKind {
    /// OpenAI chat completions over HTTP(S).
    Openai,
    /// Anthropic's Messages API over HTTP(S) (`{base_url}/messages`, `x-api-key`).
    Anthropic,
    /// OpenAI's Responses API over HTTP(S) (`{base_url}/responses`): what Codex and agent SDKs speak, with
    /// encrypted reasoning and hosted tools.
    Responses,
    /// Google's Gemini API over HTTP(S) (`{base_url}/models/{model}:generateContent`, `x-goog-api-key`);
    /// `base_url` defaults to Google's.
    Gemini,
    /// Amazon Bedrock's Converse API (`{base_url}/model/{model}/converse`, `converse-stream`), SigV4-signed.
    Bedrock,
    /// Gemini on Google Cloud's Vertex AI: the same API under
    /// `{base_url}/projects/{project}/locations/{location}/publishers/google`, with OAuth2 access tokens.
    Vertex,
    /// The built-in in-process generator.
    Mock,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub(crate) shutdown_grace: Duration,
    pub tls: Option<TlsConfig>,
    pub log_format: LogFormat,
    /// The admin HTTP listener: /metrics, /healthz, /readyz, and the usage API.
    pub admin_listen: SocketAddr,
    /// SHA-256 of the admin key; without one the usage API is off.
    pub(crate) admin_key: Option<[u8; 32]>,
    /// `[admin] state_file`: keys made through the admin API, kept across restarts.
    pub(crate) state_file: Option<std::path::PathBuf>,
    /// `[limits.default]`, for keys made at run time.
    pub(crate) key_defaults: KeyLimits,
    /// What a connection may hold, on the gateway's port and on the admin port.
    pub(crate) connections: ConnLimits,
    pub(crate) admin_connections: ConnLimits,
    pub scaling: ScalingConfig,
    pub tracing: TracingConfig,
    /// One JSON line per call, when set.
    pub(crate) usage_records: Option<UsageRecordsConfig>,
    pub(crate) interactive: InteractiveConfig,
    /// Calls in flight in the whole process; more are shed with RESOURCE_EXHAUSTED.
    pub(crate) max_in_flight: u32,
    /// Bytes that requests being read and parsed may hold together (`core::memory`).
    pub(crate) memory_budget: u64,
    /// The response cache's bounds (used when a model caches).
    pub(crate) cache: CacheConfig,
    /// Redis, when rate windows, spend and the cache are shared by the replicas.
    pub(crate) shared: Option<SharedConfig>,
    /// Browser origins allowed to call (gRPC-Web, REST); none when absent.
    pub(crate) cors: Option<CorsConfig>,
    pub keys: Vec<ClientKey>,
    pub(crate) groups: Vec<GroupConfig>,
    /// `[[auth.jwt]]`: the identity providers whose tokens are accepted beside the keys.
    pub(crate) jwt: Vec<JwtIssuer>,
    pub upstreams: Vec<UpstreamConfig>,
    pub models: Vec<ModelConfig>,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA (mutual TLS).
    pub(crate) client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct InteractiveConfig {
    pub(crate) max_history_messages: u32,
    pub(crate) max_history_bytes: usize,
}

/// A client key: its name (what logs show) and the SHA-256 of the secret.
#[derive(Clone)]
pub struct ClientKey {
    pub(crate) name: String,
    pub(crate) sha256: [u8; 32],
    /// `None`: every model.
    pub(crate) models: Option<Vec<String>>,
    /// The key's own limits over `[limits.default]`.
    pub(crate) limits: KeyLimits,
    /// Its group, whose limits it shares.
    pub(crate) group: Option<String>,
    /// Limits on its calls to one model, by the model's name.
    pub(crate) model_limits: ModelLimits,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("name", &self.name)
            .field("models", &self.models)
            .finish()
    }
}

#[derive(Clone)]
pub struct UpstreamConfig {
    pub(crate) name: String,
    pub(crate) kind: UpstreamKind,
    /// Without the trailing slash; `{base_url}/chat/completions` is called (`{base_url}/messages` for Anthropic).
    pub(crate) base_url: String,
    pub(crate) api_key: Option<String>,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    /// Idle pooled connections are closed after this long ...
    pub(crate) pool_idle_timeout: Duration,
    /// ... and at most this many are kept per host.
    pub(crate) pool_max_idle: usize,
    /// TCP keep-alive and HTTP/2 PING interval on upstream connections.
    pub(crate) keepalive: Duration,
    pub(crate) max_tokens_field: MaxTokensField,
    pub(crate) max_response_bytes: usize,
    /// Speak HTTP/2 from the first byte (h2c on `http://`), one multiplexed connection instead of an HTTP/1.1
    /// pool: streams cost the gateway a third less CPU, unary calls a little more (BENCHMARKS.md).
    pub(crate) http2: bool,
    /// The longest wait taken from this upstream's Retry-After / retry-after-ms / rate-limit reset headers:
    /// longer ones are clamped (and logged), so a hostile or broken upstream cannot hold calls for days.
    pub(crate) max_retry_after: Duration,
    pub(crate) first_token_latency: Duration,
    pub(crate) tokens_per_second: f64,
    /// How the key goes: `authorization: Bearer`, `api-key`, or not at all (Anthropic: always `x-api-key`).
    pub(crate) auth: UpstreamAuth,
    /// Extra headers, values resolved (some from the environment: never logged).
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) query: Vec<(String, String)>,
    /// Where a Vertex AI upstream's access tokens come from.
    pub(crate) google: Option<GoogleCredentials>,
    /// A Bedrock upstream's region and credentials.
    pub(crate) aws: Option<AwsConfig>,
}

/// An AWS upstream's region, and the access key the config names (else the standard credential chain's).
#[derive(Clone, PartialEq)]
pub(crate) struct AwsConfig {
    pub(crate) region: String,
    pub(crate) keys: Option<AwsKeys>,
}

#[derive(Clone, PartialEq)]
pub(crate) struct AwsKeys {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    pub(crate) session_token: Option<String>,
}

impl std::fmt::Debug for AwsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsConfig")
            .field("region", &self.region)
            .field("keys", &self.keys.as_ref().map(|_| "<from env>"))
            .finish()
    }
}

/// Where a Google Cloud upstream gets its OAuth2 access tokens.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum GoogleCredentials {
    /// A service account's JSON key file: a signed JWT is exchanged at its `token_uri`.
    ServiceAccount(std::path::PathBuf),
    /// The metadata server of the machine the gateway runs on (`http://metadata.google.internal`, or
    /// `GCE_METADATA_HOST`).
    Metadata(String),
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<from env>"))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub(crate) name: String,
    pub(crate) kind: ModelKind,
    pub(crate) aliases: Vec<String>,
    pub(crate) max_output_tokens: u32,
    /// Output tokens reserved against tpm when the client sets no max_tokens.
    pub(crate) default_output_tokens: u32,
    /// Prompt and output together; a request that cannot fit is refused before any upstream call.
    pub(crate) context_window: Option<u32>,
    pub(crate) context_fallbacks: Vec<String>,
    pub(crate) routes: Vec<RouteConfig>,
    pub(crate) policy: Policy,
    pub(crate) price: Price,
    /// Set when the model's answers are cached.
    pub(crate) cache: Option<ModelCache>,
}

#[derive(Debug, Clone)]
pub(crate) struct RouteConfig {
    /// Index into [`Config::upstreams`].
    pub(crate) upstream: usize,
    pub(crate) model: String,
    /// For `balance = "weighted"`.
    pub(crate) weight: u32,
    /// Refuse a request rather than leave out what the client sent that the upstream's API cannot take.
    pub(crate) strict: bool,
}

/// Dollars per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Price {
    pub(crate) input: f64,
    pub(crate) output: f64,
    pub(crate) cached_input: f64,
    pub(crate) cache_write: f64,
}

impl Price {
    /// Cached and written prompt tokens at their own prices, the rest of the prompt at the input price.
    pub(crate) fn cost(&self, usage: &crate::proto::Usage) -> f64 {
        let n = |v: i32| f64::from(v.max(0));
        let cached = n(usage.cached_prompt_tokens);
        let written = n(usage.cache_write_tokens);
        let plain = (n(usage.prompt_tokens) - cached - written).max(0.0);
        (plain * self.input
            + cached * self.cached_input
            + written * self.cache_write
            + n(usage.completion_tokens) * self.output)
            / 1e6
    }
}

/// What a listener lets a connection hold (see `transport::accept`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnLimits {
    /// A connection that has not sent a whole first request by then is closed.
    pub(crate) first_request: Duration,
    /// A connection with no request in flight for this long is closed.
    pub(crate) idle: Duration,
    pub(crate) max_connections: usize,
}

#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod tests;
