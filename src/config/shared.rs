//! `[shared]`: state shared by all replicas through Redis (rate windows, token reservations, daily spend, the
//! response cache). Without it each replica keeps its own.

use std::time::Duration;

use serde::Deserialize;

use super::{duration, err, ConfigError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShared {
    /// `redis://host:6379/0` (or `rediss://` for TLS, or `redis+unix:///path/redis.sock` on the same host) ...
    redis_url: Option<String>,
    /// ... or the name of an environment variable holding it (it may carry a password).
    redis_url_env: Option<String>,
    #[serde(default)]
    on_failure: OnFailure,
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    timeout: Duration,
    #[serde(default = "default_prefix")]
    prefix: String,
}

/// What a replica does while Redis cannot be reached.
#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OnFailure {
    /// Go on with this replica's own limits, spend and cache (limits hold per replica until Redis is back).
    #[default]
    Open,
    /// Refuse calls with UNAVAILABLE and report not ready.
    Closed,
}

fn default_timeout() -> Duration {
    Duration::from_millis(100)
}

fn default_prefix() -> String {
    "aigw".into()
}

#[derive(Clone, PartialEq)]
pub(crate) struct SharedConfig {
    pub(crate) redis_url: String,
    pub(crate) on_failure: OnFailure,
    /// Bounds each Redis command; a slower answer counts as a failure.
    pub(crate) timeout: Duration,
    /// Every Redis key starts with `{prefix}:`, so several fleets can share one Redis.
    pub(crate) prefix: String,
}

impl std::fmt::Debug for SharedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedConfig")
            .field("redis_url", &"<redacted>")
            .field("on_failure", &self.on_failure)
            .field("timeout", &self.timeout)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RawShared {
    pub(super) fn check(
        self,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<SharedConfig, ConfigError> {
        let redis_url = match (self.redis_url, self.redis_url_env) {
            (Some(url), None) => url,
            (None, Some(var)) => match env(&var) {
                Some(url) => url,
                None => {
                    return err(format!(
                    "shared.redis_url_env: environment variable {var} is not set (nor {var}_FILE)"
                ))
                }
            },
            _ => return err("shared: set exactly one of redis_url and redis_url_env"),
        };
        const SCHEMES: [&str; 3] = ["redis://", "rediss://", "redis+unix://"];
        if !SCHEMES.iter().any(|s| redis_url.starts_with(s)) {
            return err("shared.redis_url: must start with redis://, rediss:// or redis+unix://");
        }
        if self.timeout.is_zero() {
            return err("shared.timeout: must be above 0");
        }
        if self.prefix.is_empty() || self.prefix.contains(char::is_whitespace) {
            return err("shared.prefix: a non-empty word");
        }
        Ok(SharedConfig {
            redis_url,
            on_failure: self.on_failure,
            timeout: self.timeout,
            prefix: self.prefix,
        })
    }
}
