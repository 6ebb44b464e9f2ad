//! Configuration: the TOML file as written ([`RawConfig`]) and the checked form the gateway runs on
//! ([`Config`]). Every check names the field it is about; secrets (client keys, upstream keys) are read from
//! the environment or stored as SHA-256 hashes, and never printed.

mod policy;

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, time::Duration};

pub use policy::{Balance, BreakerPolicy, KeyLimits, Policy, RetryPolicy, StreamLimits};

use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

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
    limits: policy::RawLimits,
    #[serde(default)]
    model_defaults: policy::RawPolicy,
    #[serde(default)]
    keys: Vec<RawKey>,
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
    #[serde(
        default = "defaults::first_token_latency",
        deserialize_with = "duration"
    )]
    first_token_latency: Duration,
    #[serde(default = "defaults::tokens_per_second")]
    tokens_per_second: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    max_output_tokens: u32,
    default_output_tokens: Option<u32>,
    routes: Vec<RawRoute>,
    #[serde(default)]
    policy: policy::RawPolicy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    upstream: String,
    model: String,
    #[serde(default = "defaults::weight")]
    weight: u32,
}

mod defaults {
    use std::time::Duration;
    pub fn grace() -> Duration {
        Duration::from_secs(30)
    }
    pub fn history_messages() -> u32 {
        64
    }
    pub fn history_bytes() -> usize {
        256 * 1024
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn request_timeout() -> Duration {
        Duration::from_secs(600)
    }
    pub fn max_response_bytes() -> usize {
        8 * 1024 * 1024
    }
    pub fn first_token_latency() -> Duration {
        Duration::from_millis(50)
    }
    pub fn tokens_per_second() -> f64 {
        100.0
    }
    pub fn pool_idle_timeout() -> Duration {
        Duration::from_secs(90)
    }
    pub fn pool_max_idle() -> usize {
        64
    }
    pub fn keepalive() -> Duration {
        Duration::from_secs(30)
    }
    pub fn weight() -> u32 {
        1
    }
    /// Output tokens reserved against a key's tpm when a request sets no max_tokens.
    pub const OUTPUT_BUDGET: u32 = 1024;
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

/// The dialect an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    /// OpenAI chat completions over HTTP(S).
    Openai,
    /// The built-in in-process generator.
    Mock,
}

/// Which request field carries the output-token limit: OpenAI's newer models want `max_completion_tokens`,
/// most OpenAI-compatible servers still read `max_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensField {
    #[default]
    MaxTokens,
    MaxCompletionTokens,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub shutdown_grace: Duration,
    pub tls: Option<TlsConfig>,
    pub log_format: LogFormat,
    pub interactive: InteractiveConfig,
    /// Calls in flight in the whole process; more are shed with RESOURCE_EXHAUSTED.
    pub max_in_flight: u32,
    pub keys: Vec<ClientKey>,
    pub upstreams: Vec<UpstreamConfig>,
    pub models: Vec<ModelConfig>,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy)]
pub struct InteractiveConfig {
    pub max_history_messages: u32,
    pub max_history_bytes: usize,
}

/// A client key: its name (what logs show) and the SHA-256 of the secret.
#[derive(Clone)]
pub struct ClientKey {
    pub name: String,
    pub sha256: [u8; 32],
    /// `None`: every model.
    pub models: Option<Vec<String>>,
    /// The key's own limits over `[limits.default]`.
    pub limits: KeyLimits,
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
    pub name: String,
    pub kind: UpstreamKind,
    /// Without the trailing slash; `{base_url}/chat/completions` is called.
    pub base_url: String,
    pub api_key: Option<String>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Idle pooled connections are closed after this long ...
    pub pool_idle_timeout: Duration,
    /// ... and at most this many are kept per host.
    pub pool_max_idle: usize,
    /// TCP keep-alive and HTTP/2 PING interval on upstream connections.
    pub keepalive: Duration,
    pub max_tokens_field: MaxTokensField,
    pub max_response_bytes: usize,
    pub first_token_latency: Duration,
    pub tokens_per_second: f64,
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
    pub name: String,
    pub aliases: Vec<String>,
    pub max_output_tokens: u32,
    /// Output tokens reserved against tpm when the client sets no max_tokens.
    pub default_output_tokens: u32,
    pub routes: Vec<RouteConfig>,
    pub policy: Policy,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    pub model: String,
    /// For `balance = "weighted"`.
    pub weight: u32,
}

/// Hex SHA-256 of a client key, as `aigw hash-key` prints it and `sha256 = "..."` stores it.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text, |var| std::env::var(var).ok())
    }

    /// Parses and validates config text; `env` looks up environment variables (injectable for tests).
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError(format!("config: {e}")))?;
        let upstreams = raw
            .upstreams
            .into_iter()
            .enumerate()
            .map(|(i, u)| check_upstream(i, u, &env))
            .collect::<Result<Vec<_>, _>>()?;
        let mut upstream_index = HashMap::new();
        for (i, u) in upstreams.iter().enumerate() {
            if upstream_index.insert(u.name.clone(), i).is_some() {
                return err(format!("upstreams[{i}].name: '{}' is used twice", u.name));
            }
        }
        let models = check_models(raw.models, raw.model_defaults, &upstream_index)?;
        let keys = check_keys(raw.keys, raw.limits.key_default(), &models, &env)?;
        if raw.limits.max_in_flight == 0 {
            return err("limits.max_in_flight: must be at least 1");
        }
        let i = &raw.interactive;
        if i.max_history_messages < 2 {
            return err("interactive.max_history_messages: must be at least 2 (one user turn and its answer)");
        }
        if i.max_history_bytes < 1024 {
            return err("interactive.max_history_bytes: must be at least 1024");
        }
        Ok(Config {
            listen: raw.server.listen,
            shutdown_grace: raw.server.shutdown_grace,
            tls: raw.server.tls.map(|t| TlsConfig {
                cert: t.cert,
                key: t.key,
                client_ca: t.client_ca,
            }),
            log_format: raw.log.format,
            interactive: InteractiveConfig {
                max_history_messages: i.max_history_messages,
                max_history_bytes: i.max_history_bytes,
            },
            max_in_flight: raw.limits.max_in_flight,
            keys,
            upstreams,
            models,
        })
    }
}

fn check_upstream(
    i: usize,
    u: RawUpstream,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<UpstreamConfig, ConfigError> {
    let at = format!("upstreams[{i}]");
    if u.name.is_empty() {
        return err(format!("{at}.name: must not be empty"));
    }
    let base_url = match (u.kind, u.base_url) {
        (UpstreamKind::Openai, None) => {
            return err(format!("{at}.base_url: required for kind = \"openai\""))
        }
        (UpstreamKind::Openai, Some(url)) => {
            let parsed = reqwest::Url::parse(&url)
                .map_err(|e| ConfigError(format!("{at}.base_url: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return err(format!("{at}.base_url: scheme must be http or https"));
            }
            url.trim_end_matches('/').to_owned()
        }
        (UpstreamKind::Mock, _) => String::new(),
    };
    let api_key = match &u.api_key_env {
        None => None,
        Some(var) => match env(var) {
            Some(v) if !v.is_empty() => Some(v),
            _ => {
                return err(format!(
                    "{at}.api_key_env: environment variable {var} is not set"
                ))
            }
        },
    };
    if !(u.tokens_per_second.is_finite() && u.tokens_per_second > 0.0) {
        return err(format!("{at}.tokens_per_second: must be a positive number"));
    }
    if u.max_response_bytes < 1024 {
        return err(format!("{at}.max_response_bytes: must be at least 1024"));
    }
    Ok(UpstreamConfig {
        name: u.name,
        kind: u.kind,
        base_url,
        api_key,
        connect_timeout: u.connect_timeout,
        request_timeout: u.request_timeout,
        pool_idle_timeout: u.pool_idle_timeout,
        pool_max_idle: u.pool_max_idle,
        keepalive: u.keepalive,
        max_tokens_field: u.max_tokens_field,
        max_response_bytes: u.max_response_bytes,
        first_token_latency: u.first_token_latency,
        tokens_per_second: u.tokens_per_second,
    })
}

fn check_models(
    raw: Vec<RawModel>,
    defaults: policy::RawPolicy,
    upstreams: &HashMap<String, usize>,
) -> Result<Vec<ModelConfig>, ConfigError> {
    // The defaults alone must be valid too, so a bad [model_defaults] is named as such.
    defaults.resolve(policy::RawPolicy::default(), "model_defaults")?;
    let mut names = HashMap::new();
    let mut models = Vec::with_capacity(raw.len());
    for (i, m) in raw.into_iter().enumerate() {
        let at = format!("models[{i}]");
        for (j, name) in std::iter::once(&m.name).chain(&m.aliases).enumerate() {
            let field = if j == 0 {
                "name".to_owned()
            } else {
                format!("aliases[{}]", j - 1)
            };
            if name.is_empty() {
                return err(format!("{at}.{field}: must not be empty"));
            }
            if let Some(other) = names.insert(name.clone(), i) {
                return err(format!(
                    "{at}.{field}: '{name}' is already used by models[{other}]"
                ));
            }
        }
        if m.max_output_tokens == 0 || m.max_output_tokens > i32::MAX as u32 {
            return err(format!(
                "{at}.max_output_tokens: must be between 1 and {}",
                i32::MAX
            ));
        }
        if m.routes.is_empty() {
            return err(format!("{at}.routes: at least one route is required"));
        }
        if m.routes.len() > 64 {
            return err(format!("{at}.routes: at most 64 routes"));
        }
        let routes = m
            .routes
            .into_iter()
            .enumerate()
            .map(|(j, r)| match upstreams.get(&r.upstream) {
                None => err(format!(
                    "{at}.routes[{j}].upstream: no upstream named '{}'",
                    r.upstream
                )),
                Some(_) if r.model.is_empty() => {
                    err(format!("{at}.routes[{j}].model: must not be empty"))
                }
                Some(_) if r.weight == 0 => {
                    err(format!("{at}.routes[{j}].weight: must be at least 1"))
                }
                Some(&upstream) => Ok(RouteConfig {
                    upstream,
                    model: r.model,
                    weight: r.weight,
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let default_output_tokens = m
            .default_output_tokens
            .unwrap_or(defaults::OUTPUT_BUDGET.min(m.max_output_tokens));
        if default_output_tokens == 0 || default_output_tokens > m.max_output_tokens {
            return err(format!(
                "{at}.default_output_tokens: must be between 1 and max_output_tokens"
            ));
        }
        let policy = m.policy.resolve(defaults, &format!("{at}.policy"))?;
        models.push(ModelConfig {
            name: m.name,
            aliases: m.aliases,
            max_output_tokens: m.max_output_tokens,
            default_output_tokens,
            routes,
            policy,
        });
    }
    Ok(models)
}

fn check_keys(
    raw: Vec<RawKey>,
    default_limits: KeyLimits,
    models: &[ModelConfig],
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<ClientKey>, ConfigError> {
    let mut keys: Vec<ClientKey> = Vec::with_capacity(raw.len());
    for (i, k) in raw.into_iter().enumerate() {
        let at = format!("keys[{i}]");
        if k.name.is_empty() {
            return err(format!("{at}.name: must not be empty"));
        }
        if keys.iter().any(|other| other.name == k.name) {
            return err(format!("{at}.name: '{}' is used twice", k.name));
        }
        let sha256 = match (k.sha256, k.env) {
            (Some(hex), None) => parse_hex32(&hex.to_ascii_lowercase()).ok_or_else(|| {
                ConfigError(format!(
                    "{at}.sha256: must be 64 hex digits (aigw hash-key)"
                ))
            })?,
            (None, Some(var)) => match env(&var) {
                Some(secret) if !secret.is_empty() => Sha256::digest(secret.as_bytes()).into(),
                _ => return err(format!("{at}.env: environment variable {var} is not set")),
            },
            _ => return err(format!("{at}: set exactly one of sha256 or env")),
        };
        if keys.iter().any(|other| other.sha256 == sha256) {
            return err(format!(
                "{at}: the same secret is already used by another key"
            ));
        }
        if let Some(allowed) = &k.models {
            for (j, name) in allowed.iter().enumerate() {
                if !models
                    .iter()
                    .any(|m| &m.name == name || m.aliases.contains(name))
                {
                    return err(format!("{at}.models[{j}]: no model named '{name}'"));
                }
            }
        }
        let limits = k.limits.or(default_limits);
        if limits.rpm == Some(0) || limits.tpm == Some(0) || limits.concurrency == Some(0) {
            return err(format!(
                "{at}.limits: a limit of 0 would refuse every call; remove the key instead"
            ));
        }
        keys.push(ClientKey {
            name: k.name,
            sha256,
            models: k.models,
            limits,
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
        [server]
        listen = "127.0.0.1:0"
        [[keys]]
        name = "dev"
        sha256 = "HASH"
        [[upstreams]]
        name = "mock"
        kind = "mock"
        [[models]]
        name = "m"
        aliases = ["m-alias"]
        max_output_tokens = 100
        routes = [{ upstream = "mock", model = "m-up" }]
    "#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let text = text.replace("HASH", &hash_key("secret"));
        Config::parse(&text, |var| (var == "SET").then(|| "value".to_owned()))
    }

    #[test]
    fn the_base_config_is_valid() {
        let cfg = parse(BASE).unwrap();
        assert_eq!(cfg.models[0].routes[0].model, "m-up");
        assert_eq!(
            cfg.keys[0].sha256,
            <[u8; 32]>::from(Sha256::digest(b"secret"))
        );
        assert_eq!(cfg.shutdown_grace, Duration::from_secs(30));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                BASE.replace("kind = \"mock\"", "kind = \"mock\"\nsurprise = 1"),
                "surprise",
            ),
            (
                BASE.replace("upstream = \"mock\"", "upstream = \"nope\""),
                "models[0].routes[0].upstream",
            ),
            (
                BASE.replace("max_output_tokens = 100", "max_output_tokens = 0"),
                "models[0].max_output_tokens",
            ),
            (
                BASE.replace("aliases = [\"m-alias\"]", "aliases = [\"m\"]"),
                "models[0].aliases[0]",
            ),
            (
                BASE.replace("sha256 = \"HASH\"", "sha256 = \"abc\""),
                "keys[0].sha256",
            ),
            (
                BASE.replace("sha256 = \"HASH\"", "env = \"UNSET\""),
                "keys[0].env",
            ),
            (
                BASE.replace("kind = \"mock\"", "kind = \"openai\""),
                "upstreams[0].base_url",
            ),
            (
                BASE.replace(
                    "kind = \"mock\"",
                    "kind = \"openai\"\nbase_url = \"ftp://x\"",
                ),
                "upstreams[0].base_url",
            ),
            (
                BASE.replace(
                    "kind = \"mock\"",
                    "kind = \"mock\"\napi_key_env = \"UNSET\"",
                ),
                "upstreams[0].api_key_env",
            ),
            (
                BASE.replace(
                    "listen = \"127.0.0.1:0\"",
                    "listen = \"127.0.0.1:0\"\nshutdown_grace = \"soon\"",
                ),
                "soon",
            ),
            (
                format!("{BASE}\n[[keys]]\nname = \"x\"\nenv = \"SET\"\nmodels = [\"zz\"]"),
                "keys[1].models[0]",
            ),
        ];
        for (text, field) in cases {
            let e = parse(&text).expect_err(field).to_string();
            assert!(e.contains(field), "error {e:?} should name {field}");
        }
    }

    #[test]
    fn traffic_settings_are_checked_and_merged() {
        let model_policy = |p: &str| format!("{BASE}\n[models.policy]\n{p}");
        let cases = [
            (
                format!("{BASE}\n[model_defaults]\nretry = {{ attempts = 0 }}"),
                "model_defaults.retry.attempts",
            ),
            (
                model_policy("breaker = { failure_ratio = 1.5 }"),
                "models[0].policy.breaker.failure_ratio",
            ),
            (
                model_policy("retry = { backoff = \"9s\", max_backoff = \"1s\" }"),
                "models[0].policy.retry.backoff",
            ),
            (
                model_policy("stream = { idle = \"0s\" }"),
                "models[0].policy.stream",
            ),
            (model_policy("balance = \"random\""), "balance"),
            (
                BASE.replace(
                    "sha256 = \"HASH\"",
                    "sha256 = \"HASH\"\nlimits = { rpm = 0 }",
                ),
                "keys[0].limits",
            ),
            (
                BASE.replace("model = \"m-up\" }", "model = \"m-up\", weight = 0 }"),
                "models[0].routes[0].weight",
            ),
            (
                format!("[limits]\nmax_in_flight = 0\n{BASE}"),
                "limits.max_in_flight",
            ),
        ];
        for (text, field) in cases {
            let e = parse(&text).expect_err(field).to_string();
            assert!(e.contains(field), "error {e:?} should name {field}");
        }
        // A model's policy overrides [model_defaults] field by field; keys fall back to [limits.default].
        let text = format!(
            "[limits.default]\nrpm = 5\n[model_defaults]\nretry = {{ attempts = 7, backoff = \"1s\" }}\n{}",
            model_policy("retry = { attempts = 2 }")
        );
        let cfg = parse(&text).unwrap();
        let retry = cfg.models[0].policy.retry;
        assert_eq!((retry.attempts, retry.backoff), (2, Duration::from_secs(1)));
        let built_in_concurrency = Some(64);
        assert_eq!(
            cfg.keys[0].limits,
            KeyLimits {
                rpm: Some(5),
                tpm: None,
                concurrency: built_in_concurrency
            }
        );
        assert_eq!(
            cfg.models[0].default_output_tokens, 100,
            "the budget is capped by max_output_tokens"
        );
    }

    #[test]
    fn secrets_come_from_the_environment_and_stay_out_of_debug() {
        let text = BASE.replace("sha256 = \"HASH\"", "env = \"SET\"").replace(
            "kind = \"mock\"",
            "kind = \"openai\"\nbase_url = \"https://example.test/v1/\"\napi_key_env = \"SET\"",
        );
        let cfg = parse(&text).unwrap();
        assert_eq!(
            cfg.keys[0].sha256,
            <[u8; 32]>::from(Sha256::digest(b"value"))
        );
        assert_eq!(cfg.upstreams[0].api_key.as_deref(), Some("value"));
        assert_eq!(cfg.upstreams[0].base_url, "https://example.test/v1");
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("value"), "{shown}");
    }

    #[test]
    fn the_shipped_config_is_valid() {
        let text = include_str!("../../config.toml");
        let cfg = Config::parse(text, |_| None).unwrap();
        assert!(cfg.models.iter().any(|m| m.name == "gpt-4.1"));
        assert!(cfg.tls.is_none());
    }

    #[test]
    fn the_container_config_is_valid() {
        let text = include_str!("../../deploy/container.toml");
        let cfg = Config::parse(text, |_| Some("from-env".to_owned())).unwrap();
        assert_eq!(cfg.listen.port(), 443);
        assert!(cfg.tls.is_some());
        assert_eq!(cfg.log_format, LogFormat::Json);
    }
}
