//! The checks that turn the raw file into the validated config; each error names its field.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::{AwsConfig, AwsKeys, GoogleCredentials, GroupConfig, Price, RawHeader, UpstreamAuth};

use super::{
    defaults, err, parse_hex32, policy, ClientKey, ConfigError, KeyLimits, ModelConfig, ModelKind,
    RawKey, RawModel, RawUpstream, RouteConfig, UpstreamConfig, UpstreamKind,
};

/// The Gemini API's own address, for `kind = "gemini"` without a `base_url`.
const GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";

pub(super) fn upstream(
    i: usize,
    u: RawUpstream,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<UpstreamConfig, ConfigError> {
    let at = format!("upstreams[{i}]");
    if u.name.is_empty() {
        return err(format!("{at}.name: must not be empty"));
    }
    let aws = aws(&at, &u, env)?;
    let base_url = match (u.kind, u.base_url) {
        (UpstreamKind::Openai | UpstreamKind::Anthropic | UpstreamKind::Responses, None) => {
            return err(format!(
                "{at}.base_url: required for kind = \"openai\", \"anthropic\" and \"responses\""
            ))
        }
        (UpstreamKind::Gemini, None) => GEMINI_BASE_URL.to_owned(),
        (UpstreamKind::Vertex, base) => vertex_base_url(&at, base, &u.project, &u.location)?,
        (UpstreamKind::Bedrock, base) => {
            let region = word(&at, "region", &u.region, "bedrock")?;
            match base {
                Some(url) => http_url(&at, url)?,
                None => format!("https://bedrock-runtime.{region}.amazonaws.com"),
            }
        }
        (
            UpstreamKind::Openai
            | UpstreamKind::Anthropic
            | UpstreamKind::Responses
            | UpstreamKind::Gemini,
            Some(url),
        ) => http_url(&at, url)?,
        (UpstreamKind::Mock, _) => String::new(),
    };
    if u.kind == UpstreamKind::Vertex && u.api_key_env.is_some() {
        return err(format!(
            "{at}.api_key_env: kind = \"vertex\" signs in with OAuth2 (credentials_file, \
             GOOGLE_APPLICATION_CREDENTIALS or the metadata server); for an API key use kind = \"gemini\""
        ));
    }
    let api_key = match &u.api_key_env {
        None => None,
        Some(var) => match env(var) {
            Some(v) if !v.is_empty() => Some(v),
            _ => {
                return err(format!(
                    "{at}.api_key_env: environment variable {var} is not set (nor {var}_FILE)"
                ))
            }
        },
    };
    if !(u.tokens_per_second.is_finite() && u.tokens_per_second > 0.0) {
        return err(format!("{at}.tokens_per_second: must be a positive number"));
    }
    if u.max_retry_after > std::time::Duration::from_secs(3600) {
        return err(format!("{at}.max_retry_after: must be at most 1h"));
    }
    if u.max_response_bytes < 1024 {
        return err(format!("{at}.max_response_bytes: must be at least 1024"));
    }
    let mut headers = Vec::with_capacity(u.headers.len());
    for (name, value) in u.headers {
        let value = match value {
            RawHeader::Value(v) => v,
            RawHeader::Env { env: var } => match env(&var) {
                Some(v) if !v.is_empty() => v,
                _ => {
                    return err(format!(
                    "{at}.headers.{name}: environment variable {var} is not set (nor {var}_FILE)"
                ))
                }
            },
        };
        let valid = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
            && reqwest::header::HeaderValue::from_str(&value).is_ok();
        if !valid {
            return err(format!(
                "{at}.headers.{name}: not a valid header name and value"
            ));
        }
        headers.push((name, value));
    }
    let auth = u.auth.unwrap_or(UpstreamAuth::Bearer);
    let google = match (u.kind, u.credentials_file) {
        (UpstreamKind::Vertex, Some(path)) => Some(GoogleCredentials::ServiceAccount(path.into())),
        (UpstreamKind::Vertex, None) => Some(match env("GOOGLE_APPLICATION_CREDENTIALS") {
            Some(path) if !path.is_empty() => GoogleCredentials::ServiceAccount(path.into()),
            _ => GoogleCredentials::Metadata(match env("GCE_METADATA_HOST") {
                Some(host) if !host.is_empty() => format!("http://{host}"),
                _ => "http://metadata.google.internal".to_owned(),
            }),
        }),
        (_, Some(_)) => return err(format!("{at}.credentials_file: only for kind = \"vertex\"")),
        (_, None) => None,
    };
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
        http2: u.http2,
        max_retry_after: u.max_retry_after,
        first_token_latency: u.first_token_latency,
        tokens_per_second: u.tokens_per_second,
        auth,
        headers,
        query: u.query.into_iter().collect(),
        google,
        aws,
    })
}

/// A Bedrock upstream's region and the access key its config names (all three variables, or none: the
/// standard chain); another kind takes none of them.
fn aws(
    at: &str,
    u: &RawUpstream,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<AwsConfig>, ConfigError> {
    let named = [
        ("region", u.region.is_some()),
        ("access_key_id_env", u.access_key_id_env.is_some()),
        ("secret_access_key_env", u.secret_access_key_env.is_some()),
        ("session_token_env", u.session_token_env.is_some()),
    ];
    if u.kind != UpstreamKind::Bedrock {
        return match named.iter().find(|(_, set)| *set) {
            Some((field, _)) => err(format!("{at}.{field}: only for kind = \"bedrock\"")),
            None => Ok(None),
        };
    }
    if u.api_key_env.is_some() {
        return err(format!(
            "{at}.api_key_env: kind = \"bedrock\" signs its requests with AWS credentials \
             (access_key_id_env and secret_access_key_env, or the standard AWS chain)"
        ));
    }
    let region = word(at, "region", &u.region, "bedrock")?;
    let read = |field: &str, var: &Option<String>| -> Result<Option<String>, ConfigError> {
        match var {
            None => Ok(None),
            Some(var) => match env(var) {
                Some(v) if !v.is_empty() => Ok(Some(v)),
                _ => err(format!(
                    "{at}.{field}: environment variable {var} is not set (nor {var}_FILE)"
                )),
            },
        }
    };
    let id = read("access_key_id_env", &u.access_key_id_env)?;
    let secret = read("secret_access_key_env", &u.secret_access_key_env)?;
    let token = read("session_token_env", &u.session_token_env)?;
    let keys = match (id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => Some(AwsKeys {
            access_key_id,
            secret_access_key,
            session_token: token,
        }),
        (None, None) if token.is_none() => None,
        _ => {
            return err(format!(
                "{at}.access_key_id_env: set with secret_access_key_env (and session_token_env only with both)"
            ))
        }
    };
    Ok(Some(AwsConfig { region, keys }))
}

/// A name that goes into a host or a path (a region, a project): letters, digits, '-' and '_', and required
/// for `kind`.
fn word(at: &str, field: &str, value: &Option<String>, kind: &str) -> Result<String, ConfigError> {
    match value {
        Some(v)
            if !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            Ok(v.clone())
        }
        Some(_) => err(format!("{at}.{field}: letters, digits, '-' and '_' only")),
        None => err(format!("{at}.{field}: required for kind = \"{kind}\"")),
    }
}

/// A base URL: http or https, without its trailing slash.
fn http_url(at: &str, url: String) -> Result<String, ConfigError> {
    let parsed =
        reqwest::Url::parse(&url).map_err(|e| ConfigError(format!("{at}.base_url: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return err(format!("{at}.base_url: scheme must be http or https"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// A Vertex AI upstream's base: `{base_url}/projects/{project}/locations/{location}/publishers/google`, the
/// base by default the location's endpoint (`https://{location}-aiplatform.googleapis.com/v1`; the global one
/// for `global`).
fn vertex_base_url(
    at: &str,
    base_url: Option<String>,
    project: &Option<String>,
    location: &Option<String>,
) -> Result<String, ConfigError> {
    let project = word(at, "project", project, "vertex")?;
    let location = word(at, "location", location, "vertex")?;
    let base = match base_url {
        Some(url) => http_url(at, url)?,
        None if location == "global" => "https://aiplatform.googleapis.com/v1".to_owned(),
        None => format!("https://{location}-aiplatform.googleapis.com/v1"),
    };
    Ok(format!(
        "{base}/projects/{project}/locations/{location}/publishers/google"
    ))
}

pub(super) fn models(
    raw: Vec<RawModel>,
    defaults: policy::RawPolicy,
    upstreams: &HashMap<String, usize>,
    upstream_configs: &[UpstreamConfig],
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
            if name.matches('*').count() > 1 {
                return err(format!(
                    "{at}.{field}: '{name}' has more than one '*' (one stands for any text)"
                ));
            }
            if let Some(other) = names.insert(name.clone(), i) {
                return err(format!(
                    "{at}.{field}: '{name}' is already used by models[{other}]"
                ));
            }
        }
        let max_output_tokens = match m.kind {
            ModelKind::Chat => match m.max_output_tokens {
                None => return err(format!("{at}.max_output_tokens: required for a chat model")),
                Some(n) if n == 0 || n > i32::MAX as u32 => {
                    return err(format!(
                        "{at}.max_output_tokens: must be between 1 and {}",
                        i32::MAX
                    ))
                }
                Some(n) => n,
            },
            ModelKind::Embedding => {
                if m.max_output_tokens.is_some()
                    || m.default_output_tokens.is_some()
                    || m.context_window.is_some()
                    || !m.context_fallbacks.is_empty()
                {
                    return err(format!(
                        "{at}: an embedding model takes no max_output_tokens, default_output_tokens, \
                         context_window or context_fallbacks"
                    ));
                }
                // Nothing is generated; admission reserves the input alone (`call::ask::Ask::reserve`).
                1
            }
        };
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
                Some(&u)
                    if m.kind == ModelKind::Embedding
                        && upstream_configs[u].kind == UpstreamKind::Anthropic =>
                {
                    err(format!(
                        "{at}.routes[{j}].upstream: '{}' speaks Anthropic's API, which has no embeddings",
                        r.upstream
                    ))
                }
                Some(&upstream) => Ok(RouteConfig {
                    upstream,
                    model: r.model,
                    weight: r.weight,
                    strict: r.strict,
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let default_output_tokens = m
            .default_output_tokens
            .unwrap_or(defaults::OUTPUT_BUDGET.min(max_output_tokens));
        if default_output_tokens == 0 || default_output_tokens > max_output_tokens {
            return err(format!(
                "{at}.default_output_tokens: must be between 1 and max_output_tokens"
            ));
        }
        if m.context_window.is_some_and(|w| w <= default_output_tokens) {
            return err(format!(
                "{at}.context_window: must be larger than the output it reserves ({default_output_tokens} tokens)"
            ));
        }
        let policy = m.policy.resolve(defaults, &format!("{at}.policy"))?;
        let input = m.price.input_per_million;
        let price = Price {
            input,
            output: m.price.output_per_million,
            cached_input: m.price.cached_input_per_million.unwrap_or(input),
            cache_write: m.price.cache_write_per_million.unwrap_or(input),
        };
        let all = [
            price.input,
            price.output,
            price.cached_input,
            price.cache_write,
        ];
        if !all.iter().all(|p| p.is_finite() && *p >= 0.0) {
            return err(format!("{at}.price: prices must be 0 or more"));
        }
        let cache = m.cache.map(|c| c.check(&at)).transpose()?;
        models.push(ModelConfig {
            cache,
            name: m.name,
            kind: m.kind,
            aliases: m.aliases,
            max_output_tokens,
            default_output_tokens,
            context_window: m.context_window,
            context_fallbacks: m.context_fallbacks,
            routes,
            policy,
            price,
        });
    }
    for (i, m) in models.iter().enumerate() {
        for (j, name) in m.context_fallbacks.iter().enumerate() {
            let target = models
                .iter()
                .find(|o| &o.name == name || o.aliases.contains(name));
            match target {
                None => {
                    return err(format!(
                        "models[{i}].context_fallbacks[{j}]: no model named '{name}'"
                    ))
                }
                Some(t) if t.context_window.is_none() || m.context_window.is_none() => {
                    return err(format!(
                        "models[{i}].context_fallbacks[{j}]: both models need a context_window"
                    ))
                }
                Some(_) => {}
            }
        }
    }
    Ok(models)
}

/// How deep groups nest (organisation → division → team).
pub(crate) const MAX_GROUP_DEPTH: usize = 4;

/// `[[groups]]`: unique names, parents that exist without a circle, and limits that can admit a call.
pub(super) fn groups(
    mut raw: Vec<GroupConfig>,
    models: &[ModelConfig],
) -> Result<Vec<GroupConfig>, ConfigError> {
    for g in &mut raw {
        let at = format!("groups '{}'", g.name);
        for (j, name) in g.models.iter().flatten().enumerate() {
            if !models
                .iter()
                .any(|m| &m.name == name || m.aliases.contains(name))
            {
                return err(format!("{at}.models[{j}]: no model named '{name}'"));
            }
        }
        g.model_limits =
            policy::check_model_limits(&at, std::mem::take(&mut g.model_limits), models)?;
    }
    for (i, g) in raw.iter().enumerate() {
        if g.name.trim().is_empty() {
            return err(format!("groups[{i}].name: must not be empty"));
        }
        if raw[..i].iter().any(|other| other.name == g.name) {
            return err(format!("groups[{i}]: another group is named '{}'", g.name));
        }
        // Up the parents: each names a group, and the chain ends (no circle) within MAX_GROUP_DEPTH levels.
        let mut up = g.parent.as_deref();
        for depth in 1.. {
            let Some(parent) = up else { break };
            let Some(p) = raw.iter().find(|other| other.name == parent) else {
                return err(format!("groups[{i}].parent: no group named '{parent}'"));
            };
            if depth >= MAX_GROUP_DEPTH || p.name == g.name {
                return err(format!(
                    "groups[{i}].parent: groups nest at most {MAX_GROUP_DEPTH} deep, without a circle"
                ));
            }
            up = p.parent.as_deref();
        }
        let l = g.limits;
        if l.rpm == Some(0) || l.tpm == Some(0) || l.concurrency == Some(0) || l.bad_budget() {
            return err(format!(
                "groups[{i}].limits: a limit of 0 would refuse every call of its keys"
            ));
        }
    }
    Ok(raw)
}

pub(super) fn keys(
    raw: Vec<RawKey>,
    default_limits: KeyLimits,
    models: &[ModelConfig],
    groups: &[GroupConfig],
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
                _ => {
                    return err(format!(
                        "{at}.env: environment variable {var} is not set (nor {var}_FILE)"
                    ))
                }
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
        let no_budget = limits.bad_budget();
        if limits.rpm == Some(0)
            || limits.tpm == Some(0)
            || limits.concurrency == Some(0)
            || no_budget
        {
            return err(format!(
                "{at}.limits: a limit of 0 would refuse every call; remove the key instead"
            ));
        }
        if let Some(g) = &k.group {
            if !groups.iter().any(|group| &group.name == g) {
                return err(format!("{at}.group: no group named '{g}'"));
            }
        }
        keys.push(ClientKey {
            model_limits: policy::check_model_limits(&at, k.model_limits, models)?,
            name: k.name,
            sha256,
            models: k.models,
            limits,
            group: k.group,
        });
    }
    Ok(keys)
}
