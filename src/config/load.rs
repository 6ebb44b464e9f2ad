//! Reading a config file into the checked [`Config`]: the TOML parsed, every field checked and named when it is
//! wrong, secrets looked up by the variables the file names (or the files `<VAR>_FILE` names); and the helpers
//! the checks share (key hashes, the development admin key).

use sha2::{Digest, Sha256};

use super::*;

/// Hex SHA-256 of a client key, as `aigw hash-key` prints it and `sha256 = "..."` stores it.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// SHA-256 of `aigw-dev-admin-key`, the default config's documented development admin key.
const DEV_ADMIN_KEY_SHA256: [u8; 32] = [
    0xea, 0x52, 0xc0, 0xfd, 0xc3, 0xe3, 0x3b, 0x88, 0x23, 0xb7, 0xea, 0x8c, 0xbe, 0x12, 0xab, 0x08,
    0x64, 0xc7, 0x04, 0x3f, 0x24, 0x56, 0xfc, 0xb3, 0x97, 0x3a, 0x58, 0xa5, 0x95, 0x83, 0x67, 0x48,
];

pub(super) fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A secret named by the config: the environment variable `var`, or else the file that `<var>_FILE` names
/// (the containers' convention for secrets mounted as files: Kubernetes, Docker and Compose secrets), its
/// trailing newline trimmed.
pub(crate) fn env_or_file(var: &str) -> Option<String> {
    if let Ok(value) = std::env::var(var) {
        return Some(value);
    }
    let path = std::env::var_os(format!("{var}_FILE"))?;
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.trim_end_matches(['\r', '\n']).to_owned())
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        Self::load_with(path, env_or_file)
    }

    /// Reads and validates a config file, looking variables up with `env`.
    pub fn load_with(
        path: &std::path::Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text, env)
    }

    /// Parses and validates config text; `env` looks up environment variables (injectable for tests).
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError(format!("config: {e}")))?;
        let upstreams = raw
            .upstreams
            .into_iter()
            .enumerate()
            .map(|(i, u)| check::upstream(i, u, &env))
            .collect::<Result<Vec<_>, _>>()?;
        let mut upstream_index = HashMap::new();
        for (i, u) in upstreams.iter().enumerate() {
            if upstream_index.insert(u.name.clone(), i).is_some() {
                return err(format!("upstreams[{i}].name: '{}' is used twice", u.name));
            }
        }
        let models = check::models(raw.models, raw.model_defaults, &upstream_index, &upstreams)?;
        let groups = check::groups(raw.groups, &models)?;
        let keys = check::keys(raw.keys, raw.limits.key_default(), &models, &groups, &env)?;
        let jwt = raw.auth.check(raw.limits.key_default(), &models, &groups)?;
        let admin_key = match (&raw.admin.key_env, &raw.admin.key_sha256) {
            (Some(_), Some(_)) => return err("admin: set key_env or key_sha256, not both"),
            (None, None) => None,
            (None, Some(hex)) => {
                let hash = parse_hex32(&hex.to_ascii_lowercase()).ok_or_else(|| {
                    ConfigError("admin.key_sha256: must be 64 hex digits (aigw hash-key)".into())
                })?;
                // The development key is documented, so anyone may know it: loopback only.
                if hash == DEV_ADMIN_KEY_SHA256 && !raw.admin.listen.ip().is_loopback() {
                    return err(format!(
                        "admin.key_sha256: the development admin key (aigw-dev-admin-key) is public; it is \
                         only accepted on a loopback admin listener, not {}",
                        raw.admin.listen
                    ));
                }
                Some(hash)
            }
            (Some(var), None) => match env(var) {
                Some(key) if key.len() >= 16 => Some(Sha256::digest(key.as_bytes()).into()),
                Some(_) => {
                    return err(format!(
                        "admin.key_env: the key in {var} is shorter than 16 characters"
                    ))
                }
                None => {
                    return err(format!(
                        "admin.key_env: environment variable {var} is not set (nor {var}_FILE)"
                    ))
                }
            },
        };
        if let Some(url) = &raw.tracing.otlp_endpoint {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| ConfigError(format!("tracing.otlp_endpoint: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return err("tracing.otlp_endpoint: scheme must be http or https");
            }
        }
        let sc = &raw.scaling;
        if !(sc.capacity_rpm_per_replica.is_finite() && sc.capacity_rpm_per_replica > 0.0) {
            return err("scaling.capacity_rpm_per_replica: must be above 0");
        }
        if !(sc.headroom.is_finite() && sc.headroom >= 0.0) || sc.horizon.as_secs() < 60 {
            return err("scaling: headroom must be 0 or more and horizon at least 1m");
        }
        if sc.min_replicas == 0 || sc.min_replicas > sc.max_replicas {
            return err("scaling.min_replicas: must be at least 1 and at most max_replicas");
        }
        if raw.limits.max_in_flight == 0 {
            return err("limits.max_in_flight: must be at least 1");
        }
        if raw.limits.memory_budget_mib < 16 {
            return err("limits.memory_budget_mib: must be at least 16 (a 4 MiB body needs more than that to parse)");
        }
        let i = &raw.interactive;
        if i.max_history_messages < 2 {
            return err("interactive.max_history_messages: must be at least 2 (one user turn and its answer)");
        }
        if i.max_history_bytes < 1024 {
            return err("interactive.max_history_bytes: must be at least 1024");
        }
        let limits = |max_connections| ConnLimits {
            first_request: raw.server.first_request_timeout,
            idle: raw.server.idle_timeout,
            max_connections,
        };
        if raw.server.first_request_timeout.is_zero() || raw.server.idle_timeout.is_zero() {
            return err("server: first_request_timeout and idle_timeout must be longer than 0");
        }
        if raw.server.max_connections == 0 || raw.admin.max_connections == 0 {
            return err("server.max_connections and admin.max_connections: must be at least 1");
        }
        let connections = limits(raw.server.max_connections);
        let admin_connections = limits(raw.admin.max_connections);
        Ok(Config {
            listen: raw.server.listen,
            shutdown_grace: raw.server.shutdown_grace,
            tls: raw.server.tls.map(|t| TlsConfig {
                cert: t.cert,
                key: t.key,
                client_ca: t.client_ca,
            }),
            log_format: raw.log.format,
            admin_listen: raw.admin.listen,
            admin_key,
            state_file: raw.admin.state_file.clone(),
            usage_records: match raw.usage_records.clone() {
                Some(r) if r.path.is_none() && r.otlp_endpoint.is_none() => {
                    return err("usage_records: set path, otlp_endpoint or both")
                }
                other => other,
            },
            key_defaults: raw.limits.key_default(),
            connections,
            admin_connections,
            scaling: raw.scaling,
            tracing: raw.tracing,
            interactive: InteractiveConfig {
                max_history_messages: i.max_history_messages,
                max_history_bytes: i.max_history_bytes,
            },
            max_in_flight: raw.limits.max_in_flight,
            memory_budget: u64::from(raw.limits.memory_budget_mib) << 20,
            cache: raw.cache.check()?,
            shared: raw.shared.map(|s| s.check(&env)).transpose()?,
            cors: raw.cors.map(cors::RawCors::check).transpose()?,
            keys,
            groups,
            jwt,
            upstreams,
            models,
        })
    }
}
