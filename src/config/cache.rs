//! `[cache]` (the response cache's bounds) and a model's `cache = {...}` (whether and how it caches).

use std::time::Duration;

use serde::Deserialize;

use super::{duration, err, ConfigError};

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CacheConfig {
    /// The cache's size across all models, counted as answer text plus a fixed allowance per entry and chunk.
    #[serde(default = "default_max_bytes")]
    pub(crate) max_bytes: usize,
    #[serde(default = "default_max_entries")]
    pub(crate) max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_bytes: default_max_bytes(),
            max_entries: default_max_entries(),
        }
    }
}

fn default_max_bytes() -> usize {
    64 * 1024 * 1024
}

fn default_max_entries() -> usize {
    10_000
}

impl CacheConfig {
    pub(super) fn check(self) -> Result<CacheConfig, ConfigError> {
        if self.max_bytes < 4096 {
            return err("cache.max_bytes: at least 4096");
        }
        if self.max_entries == 0 {
            return err("cache.max_entries: at least 1");
        }
        Ok(self)
    }
}

/// A model's caching, as written: `cache = { ttl = "10m", any_temperature = false, hits = "free", scope = "key" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModelCache {
    #[serde(default = "default_ttl", deserialize_with = "duration")]
    ttl: Duration,
    #[serde(default)]
    any_temperature: bool,
    #[serde(default)]
    hits: Hits,
    #[serde(default)]
    scope: Scope,
}

/// Whose answers a caller may be given.
#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Scope {
    /// Only answers to its own key's requests: another key's hit would tell it what was asked before, and cost.
    #[default]
    Key,
    /// Any key's answers to the same request.
    All,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Hits {
    /// A hit costs the key nothing: no tokens against tpm, no spend.
    #[default]
    Free,
    /// A hit is charged the kept answer's usage, as if the upstream had answered.
    Cost,
}

fn default_ttl() -> Duration {
    Duration::from_secs(600)
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModelCache {
    pub(crate) ttl: Duration,
    /// Keep answers to requests at any temperature, not only 0.
    pub(crate) any_temperature: bool,
    /// Charge a hit the kept usage (tpm, spend, cost metrics); otherwise hits are free.
    pub(crate) charge_hits: bool,
    /// Answers are kept per key (the default); false: one key's answer is a hit for every key.
    pub(crate) per_key: bool,
}

impl ModelCache {
    /// The caller as the cache keys it: the key's identity when answers are kept per key, else no one.
    pub(crate) fn scope<'a>(&self, caller: &'a str) -> &'a str {
        if self.per_key {
            caller
        } else {
            ""
        }
    }
}

impl RawModelCache {
    pub(super) fn check(self, at: &str) -> Result<ModelCache, ConfigError> {
        if self.ttl.is_zero() {
            return err(format!("{at}.cache.ttl: must be above 0"));
        }
        Ok(ModelCache {
            ttl: self.ttl,
            any_temperature: self.any_temperature,
            charge_hits: self.hits == Hits::Cost,
            per_key: self.scope == Scope::Key,
        })
    }
}
