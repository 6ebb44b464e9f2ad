//! Traffic-control settings: per-key limits, and per-model retries, circuit breaker, balancing and stream
//! limits. A model's `[models.policy]` fields override `[model_defaults]`, which override the built-in
//! defaults below, field by field.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::ConfigError;

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    super::duration(d).map(Some)
}

/// Per-key limits; an unset field falls back to `[limits.default]`, and an unset default means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyLimits {
    /// Requests admitted in any rolling 60 s.
    pub(crate) rpm: Option<u32>,
    /// Tokens (reserved, then actual) in any rolling 60 s.
    pub(crate) tpm: Option<u64>,
    /// Calls in flight at once; a stream counts until it ends.
    pub(crate) concurrency: Option<u32>,
    /// Spend per UTC day, from the models' prices; refused once reached, until midnight UTC.
    pub(crate) daily_budget_usd: Option<f64>,
    /// Spend per UTC calendar month; refused once reached, until the 1st of the next month (UTC).
    pub(crate) monthly_budget_usd: Option<f64>,
}

/// `[[groups]]`: limits that a group's keys share (a team's rpm, tpm, concurrency and budgets), on top of
/// each key's own. An unset limit is no limit (`[limits.default]` is for keys).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub(crate) name: String,
    /// The group this one is part of (a team's organisation): its limits apply to this group's calls too.
    pub(crate) parent: Option<String>,
    /// The models its keys may use (names or aliases), on top of each key's own list; `None`: every model.
    pub(crate) models: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) limits: KeyLimits,
    #[serde(default)]
    pub(crate) model_limits: ModelLimits,
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

/// `model_limits = { "gpt-4.1" = { rpm = 10, tpm = 20000, concurrency = 2 } }`: limits on the calls to one model,
/// on top of the key's (group's, token caller's) own. Once checked, keyed by the model's configured name.
pub(crate) type ModelLimits = std::collections::BTreeMap<String, KeyLimits>;

/// Checks `model_limits` at `at`: each names a model (or alias, taken to its model), sets only rpm, tpm and
/// concurrency, and none is 0.
pub(super) fn check_model_limits(
    at: &str,
    raw: ModelLimits,
    models: &[super::ModelConfig],
) -> Result<ModelLimits, ConfigError> {
    let mut out = ModelLimits::new();
    for (name, limits) in raw {
        let Some(model) = models
            .iter()
            .find(|m| m.name == name || m.aliases.contains(&name))
        else {
            return Err(ConfigError(format!(
                "{at}.model_limits: no model named '{name}'"
            )));
        };
        if limits.daily_budget_usd.is_some() || limits.monthly_budget_usd.is_some() {
            return Err(ConfigError(format!(
                "{at}.model_limits.{name}: takes rpm, tpm and concurrency (budgets are the key's)"
            )));
        }
        if limits.rpm == Some(0) || limits.tpm == Some(0) || limits.concurrency == Some(0) {
            return Err(ConfigError(format!(
                "{at}.model_limits.{name}: a limit of 0 would refuse every call; leave the model out of `models` instead"
            )));
        }
        if out.insert(model.name.clone(), limits).is_some() {
            return Err(ConfigError(format!(
                "{at}.model_limits: '{}' is named twice (by name and alias)",
                model.name
            )));
        }
    }
    Ok(out)
}

impl KeyLimits {
    pub(crate) fn or(self, default: KeyLimits) -> KeyLimits {
        KeyLimits {
            rpm: self.rpm.or(default.rpm),
            tpm: self.tpm.or(default.tpm),
            concurrency: self.concurrency.or(default.concurrency),
            daily_budget_usd: self.daily_budget_usd.or(default.daily_budget_usd),
            monthly_budget_usd: self.monthly_budget_usd.or(default.monthly_budget_usd),
        }
    }

    /// Whether a budget is not a positive, finite amount.
    pub(crate) fn bad_budget(&self) -> bool {
        [self.daily_budget_usd, self.monthly_budget_usd]
            .iter()
            .flatten()
            .any(|b| !(b.is_finite() && *b > 0.0))
    }

    /// Whether any rate or budget is set (the ones checked per request).
    pub(crate) fn any_rate_or_budget(&self) -> bool {
        self.rpm.is_some()
            || self.tpm.is_some()
            || self.daily_budget_usd.is_some()
            || self.monthly_budget_usd.is_some()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    #[serde(default = "default_max_in_flight")]
    pub(crate) max_in_flight: u32,
    #[serde(default = "default_memory_budget_mib")]
    pub(crate) memory_budget_mib: u32,
    #[serde(default)]
    default: KeyLimits,
}

impl RawLimits {
    /// `[limits.default]` over the built-in defaults, field by field.
    pub(crate) fn key_default(&self) -> KeyLimits {
        self.default.or(default_key_limits())
    }
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_in_flight: default_max_in_flight(),
            memory_budget_mib: default_memory_budget_mib(),
            default: KeyLimits::default(),
        }
    }
}

fn default_max_in_flight() -> u32 {
    4096
}

/// Half the reference deployment's 1 GiB memory limit: room for the process's own ~11 MiB, the caches and the
/// streams' buffers beside the requests being parsed.
fn default_memory_budget_mib() -> u32 {
    512
}

/// Without any configuration a key may have 64 calls in flight and no rate limit.
fn default_key_limits() -> KeyLimits {
    KeyLimits {
        concurrency: Some(64),
        ..KeyLimits::default()
    }
}

/// How a model's calls are spread over its routes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Balance {
    /// Routes in order: the first available one; the next on a retryable failure.
    #[default]
    Fallback,
    /// At random, in proportion to each route's `weight`.
    Weighted,
    /// The available route with the fewest calls in flight (ties: config order).
    LeastInFlight,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    balance: Option<Balance>,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    breaker: RawBreaker,
    #[serde(default)]
    stream: RawStream,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    attempts: Option<u32>,
    #[serde(default, deserialize_with = "opt_duration")]
    backoff: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    max_backoff: Option<Duration>,
    budget_ratio: Option<f64>,
    budget_min_per_second: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    consecutive_failures: Option<u32>,
    failure_ratio: Option<f64>,
    min_requests: Option<u32>,
    #[serde(default, deserialize_with = "opt_duration")]
    window: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    cooldown: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    /// `first_token` is its name before reasoning models made the first event matter more than the first token.
    #[serde(default, deserialize_with = "opt_duration", alias = "first_token")]
    first_event: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    idle: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    total: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    keepalive: Option<Duration>,
}

/// Retries of one call, before its first chunk reached the client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RetryPolicy {
    /// Tries in all, the first included (1 = no retry).
    pub(crate) attempts: u32,
    /// Backoff before retry n (1-based) is uniform in [0, min(max_backoff, backoff * 2^(n-1))] ("full jitter").
    pub(crate) backoff: Duration,
    pub(crate) max_backoff: Duration,
    /// Retries may be at most this share of the model's requests over the last 10 s ...
    pub(crate) budget_ratio: f64,
    /// ... plus this many per second, so a quiet model can still retry.
    pub(crate) budget_min_per_second: f64,
}

/// The circuit breaker of each route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BreakerPolicy {
    /// Opens after this many failures in a row ...
    pub(crate) consecutive_failures: u32,
    /// ... or when at least `min_requests` calls in `window` failed at this ratio.
    pub(crate) failure_ratio: f64,
    pub(crate) min_requests: u32,
    pub(crate) window: Duration,
    /// Open this long, then one probe call decides (half-open).
    pub(crate) cooldown: Duration,
}

/// Time limits on a stream. Every upstream event counts as a sign of life: reasoning, tool-call pieces, pings,
/// role-only chunks, comments, text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamLimits {
    /// Longest silence before the answer's first piece (from the request, then from each sign of life);
    /// retryable, since nothing reached the client yet.
    pub(crate) first_event: Duration,
    /// Longest silence once the answer has begun; ends the stream.
    pub(crate) idle: Duration,
    /// The whole stream.
    pub(crate) total: Duration,
    /// A silence this long sends the client a keep-alive (SSE comment, Anthropic `ping`, gRPC heartbeat chunk).
    pub(crate) keepalive: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Policy {
    pub(crate) balance: Balance,
    pub(crate) retry: RetryPolicy,
    pub(crate) breaker: BreakerPolicy,
    pub(crate) stream: StreamLimits,
}

impl RawPolicy {
    /// `self` over `defaults` over the built-in defaults, checked; `at` names the section for errors.
    pub(super) fn resolve(self, defaults: RawPolicy, at: &str) -> Result<Policy, ConfigError> {
        let (r, dr) = (self.retry, defaults.retry);
        let (b, db) = (self.breaker, defaults.breaker);
        let (s, ds) = (self.stream, defaults.stream);
        let secs = Duration::from_secs;
        let policy = Policy {
            balance: self.balance.or(defaults.balance).unwrap_or_default(),
            retry: RetryPolicy {
                attempts: r.attempts.or(dr.attempts).unwrap_or(3),
                backoff: r
                    .backoff
                    .or(dr.backoff)
                    .unwrap_or(Duration::from_millis(250)),
                max_backoff: r.max_backoff.or(dr.max_backoff).unwrap_or(secs(8)),
                // An upstream failing 40% of attempts needs 0.4 + 0.16 retries per request with three
                // attempts: 0.6 of the requests, plus a floor for quiet models, covers that and still caps
                // an outage at 1.6x the load instead of 3x.
                budget_ratio: r.budget_ratio.or(dr.budget_ratio).unwrap_or(0.6),
                budget_min_per_second: r
                    .budget_min_per_second
                    .or(dr.budget_min_per_second)
                    .unwrap_or(10.0),
            },
            breaker: BreakerPolicy {
                // Ten in a row: a sustained signal. Five happen every few hundred calls to an upstream failing
                // a quarter of them, and an open breaker on a model's only route refuses everyone.
                consecutive_failures: b
                    .consecutive_failures
                    .or(db.consecutive_failures)
                    .unwrap_or(10),
                failure_ratio: b.failure_ratio.or(db.failure_ratio).unwrap_or(0.5),
                min_requests: b.min_requests.or(db.min_requests).unwrap_or(20),
                window: b.window.or(db.window).unwrap_or(secs(30)),
                cooldown: b.cooldown.or(db.cooldown).unwrap_or(secs(30)),
            },
            stream: StreamLimits {
                // Reasoning models think for minutes, some of them silently.
                first_event: s.first_event.or(ds.first_event).unwrap_or(secs(300)),
                idle: s.idle.or(ds.idle).unwrap_or(secs(300)),
                total: s.total.or(ds.total).unwrap_or(secs(30 * 60)),
                keepalive: s.keepalive.or(ds.keepalive).unwrap_or(secs(15)),
            },
        };
        let p = &policy;
        let fail = |field: &str, what: &str| Err(ConfigError(format!("{at}.{field}: {what}")));
        if p.retry.attempts == 0 {
            return fail("retry.attempts", "must be at least 1 (1 means no retry)");
        }
        if p.retry.backoff > p.retry.max_backoff {
            return fail("retry.backoff", "must not exceed retry.max_backoff");
        }
        if !(0.0..=1.0).contains(&p.retry.budget_ratio) {
            return fail("retry.budget_ratio", "must be between 0 and 1");
        }
        if !(p.retry.budget_min_per_second.is_finite() && p.retry.budget_min_per_second >= 0.0) {
            return fail("retry.budget_min_per_second", "must be 0 or more");
        }
        if p.breaker.consecutive_failures == 0 {
            return fail("breaker.consecutive_failures", "must be at least 1");
        }
        if !(p.breaker.failure_ratio > 0.0 && p.breaker.failure_ratio <= 1.0) {
            return fail("breaker.failure_ratio", "must be in (0, 1]");
        }
        if p.breaker.window.is_zero() || p.breaker.cooldown.is_zero() {
            return fail("breaker", "window and cooldown must be longer than 0");
        }
        if p.stream.first_event.is_zero()
            || p.stream.idle.is_zero()
            || p.stream.total.is_zero()
            || p.stream.keepalive.is_zero()
        {
            return fail(
                "stream",
                "first_event, idle, total and keepalive must be longer than 0",
            );
        }
        Ok(policy)
    }
}
