//! `[shared]`: state shared by all replicas through Redis (rate windows, token reservations, daily spend, the
//! response cache). Without it each replica keeps its own. Redis is one node (`redis_url`), a Redis Cluster
//! (`cluster_nodes`), or a primary that Redis Sentinel watches and fails over (`sentinels`).

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
    /// A Redis Cluster: some of its nodes' URLs (the rest are found from them) ...
    cluster_nodes: Option<Vec<String>>,
    /// ... or a variable holding them, separated by commas (they may carry a password).
    cluster_nodes_env: Option<String>,
    /// Redis Sentinel: the sentinels' URLs, and the name of the primary they watch ...
    sentinels: Option<Vec<String>>,
    sentinel_master: Option<String>,
    /// ... and a variable holding the primary's password, if it has one.
    sentinel_password_env: Option<String>,
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

/// Where the shared state lives.
#[derive(Clone, PartialEq)]
pub(crate) enum RedisTarget {
    Node(String),
    Cluster(Vec<String>),
    Sentinel {
        sentinels: Vec<String>,
        master: String,
        password: Option<String>,
    },
}

#[derive(Clone, PartialEq)]
pub(crate) struct SharedConfig {
    pub(crate) redis: RedisTarget,
    pub(crate) on_failure: OnFailure,
    /// Bounds each Redis command; a slower answer counts as a failure.
    pub(crate) timeout: Duration,
    /// Every Redis key starts with `{prefix}:`, so several fleets can share one Redis.
    pub(crate) prefix: String,
}

impl std::fmt::Debug for SharedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedConfig")
            .field(
                "redis",
                &match &self.redis {
                    RedisTarget::Node(_) => "node <redacted>",
                    RedisTarget::Cluster(_) => "cluster <redacted>",
                    RedisTarget::Sentinel { .. } => "sentinel <redacted>",
                },
            )
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
        let from_env = |field: &str, var: &str| {
            env(var).ok_or_else(|| {
                ConfigError(format!(
                    "shared.{field}: environment variable {var} is not set (nor {var}_FILE)"
                ))
            })
        };
        let list = |text: String| -> Vec<String> {
            text.split(',')
                .map(|u| u.trim().to_owned())
                .filter(|u| !u.is_empty())
                .collect()
        };
        let redis = match (
            (self.redis_url, self.redis_url_env),
            (self.cluster_nodes, self.cluster_nodes_env),
            (self.sentinels, self.sentinel_master),
        ) {
            ((Some(url), None), (None, None), (None, None)) => RedisTarget::Node(url),
            ((None, Some(var)), (None, None), (None, None)) => {
                RedisTarget::Node(from_env("redis_url_env", &var)?)
            }
            ((None, None), (Some(nodes), None), (None, None)) => RedisTarget::Cluster(nodes),
            ((None, None), (None, Some(var)), (None, None)) => {
                RedisTarget::Cluster(list(from_env("cluster_nodes_env", &var)?))
            }
            ((None, None), (None, None), (Some(sentinels), Some(master))) => {
                let password = self
                    .sentinel_password_env
                    .map(|var| from_env("sentinel_password_env", &var))
                    .transpose()?;
                RedisTarget::Sentinel {
                    sentinels,
                    master,
                    password,
                }
            }
            _ => {
                return err(
                    "shared: set exactly one of redis_url, redis_url_env, cluster_nodes, cluster_nodes_env, \
                     or sentinels with sentinel_master",
                )
            }
        };
        const SCHEMES: [&str; 3] = ["redis://", "rediss://", "redis+unix://"];
        let urls: Vec<&String> = match &redis {
            RedisTarget::Node(url) => vec![url],
            RedisTarget::Cluster(nodes) => nodes.iter().collect(),
            RedisTarget::Sentinel { sentinels, .. } => sentinels.iter().collect(),
        };
        if urls.is_empty()
            || urls
                .iter()
                .any(|u| !SCHEMES.iter().any(|s| u.starts_with(s)))
        {
            return err("shared.redis_url: must start with redis://, rediss:// or redis+unix://");
        }
        if self.timeout.is_zero() {
            return err("shared.timeout: must be above 0");
        }
        if self.prefix.is_empty() || self.prefix.contains(char::is_whitespace) {
            return err("shared.prefix: a non-empty word");
        }
        Ok(SharedConfig {
            redis,
            on_failure: self.on_failure,
            timeout: self.timeout,
            prefix: self.prefix,
        })
    }
}
