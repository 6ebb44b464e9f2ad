//! The one error type of the request path, its gRPC status and its short metric label.
//!
//! Every variant maps to exactly one gRPC code in `GatewayError::code`; the match is exhaustive on purpose,
//! so adding a variant forces a decision about its status.

use std::time::Duration;

use tonic::{Code, Status};

/// Everything that can end a request, from the client's key to the upstream's last byte.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GatewayError {
    /// No `authorization: Bearer` metadata, or a key the gateway does not know.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The key is known but may not use this model.
    #[error("key '{key}' may not use model '{model}'")]
    PermissionDenied { key: String, model: String },
    /// A request field is out of range or malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The prompt (estimated) plus the tokens asked for cannot fit the model's context window: refused before
    /// any upstream call.
    #[error("this request needs about {needed} tokens ({prompt} in the prompt, estimated, plus {output} to generate), more than model '{model}''s context window of {window}")]
    ContextLengthExceeded {
        model: String,
        window: u32,
        needed: u64,
        prompt: u64,
        output: u64,
    },
    /// The model is not configured (or not visible to this key); lists the models the key may use.
    #[error("unknown model '{requested}'; models available to this key: {}", available.join(", "))]
    UnknownModel {
        requested: String,
        available: Vec<String>,
    },
    /// A limit of the gateway's own was reached; `limit` names it for metrics.
    #[error("{message}")]
    ResourceExhausted {
        message: String,
        retry_after: Option<Duration>,
        limit: &'static str,
    },
    /// `[shared] on_failure = "closed"` and Redis cannot be reached: the call is refused rather than admitted
    /// without the fleet's limits.
    #[error("the shared state (Redis) is unavailable; calls are refused until it is back")]
    SharedStateUnavailable,
    /// The upstream answered 429 (after any retries).
    #[error("upstream '{upstream}' is rate limiting the gateway")]
    UpstreamRateLimited {
        upstream: String,
        retry_after: Option<Duration>,
    },
    /// The upstream refused the request as malformed (400, 413, 422): its own message is passed on.
    #[error("upstream '{upstream}' rejected the request: {message}")]
    UpstreamRejected { upstream: String, message: String },
    /// The upstream refused the gateway's credentials (401, 403). The upstream's body is not passed on: it can
    /// echo part of the gateway's key.
    #[error("upstream '{upstream}' refused the gateway's credentials (HTTP {status}); check its api_key_env, or its AWS or Google credentials")]
    UpstreamAuth { upstream: String, status: u16 },
    /// The upstream answered with a status that points at the gateway's configuration (404 and others).
    #[error("upstream '{upstream}' answered HTTP {status}: {message}")]
    UpstreamMisconfigured {
        upstream: String,
        status: u16,
        message: String,
    },
    /// 5xx, connect or reset errors, an error event inside the stream, a stream cut short. `retry_after` is
    /// the upstream's own wait (a 503's Retry-After), already clamped to the upstream's `max_retry_after`.
    #[error("upstream '{upstream}' unavailable: {detail}")]
    UpstreamUnavailable {
        upstream: String,
        detail: String,
        retry_after: Option<Duration>,
    },
    /// The upstream said it is overloaded (Anthropic's 529 `overloaded_error`): not about this request nor the
    /// route's health, retried like a 503; the Messages door passes it on as 529, the OpenAI doors as 503.
    #[error("upstream '{upstream}' is overloaded: {message}")]
    UpstreamOverloaded {
        upstream: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The upstream sent something that is not the protocol it speaks (bad JSON, oversized event, ...).
    #[error("upstream '{upstream}' sent a malformed response: {detail}")]
    UpstreamProtocol { upstream: String, detail: String },
    /// The client's `grpc-timeout` or the configured request timeout passed.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The client cancelled (or cancelled an interactive turn).
    #[error("{0}")]
    Cancelled(String),
    /// The server is draining and its grace period ran out.
    #[error("the gateway is shutting down; retry on another replica")]
    ShuttingDown,
    /// A bug or an impossible state; the message is safe to show.
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    /// The gRPC code this error is reported with.
    pub(crate) fn code(&self) -> Code {
        match self {
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied { .. } => Code::PermissionDenied,
            Self::InvalidArgument(_)
            | Self::ContextLengthExceeded { .. }
            | Self::UnknownModel { .. }
            | Self::UpstreamRejected { .. } => Code::InvalidArgument,
            Self::ResourceExhausted { .. } | Self::UpstreamRateLimited { .. } => {
                Code::ResourceExhausted
            }
            Self::UpstreamAuth { .. } | Self::UpstreamMisconfigured { .. } | Self::Internal(_) => {
                Code::Internal
            }
            Self::UpstreamUnavailable { .. }
            | Self::UpstreamOverloaded { .. }
            | Self::UpstreamProtocol { .. }
            | Self::SharedStateUnavailable
            | Self::ShuttingDown => Code::Unavailable,
            Self::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Self::Cancelled(_) => Code::Cancelled,
        }
    }

    /// The HTTP status and OpenAI error `type` / `code` of the REST door: what OpenAI itself answers for the
    /// same condition, where it has one; upstream failures are the gateway's, so 5xx (SDKs retry 5xx and 429).
    pub(crate) fn http(&self) -> (u16, &'static str, Option<&'static str>) {
        const INVALID: &str = "invalid_request_error";
        const SERVER: &str = "server_error";
        match self {
            Self::Unauthenticated(_) => (401, INVALID, Some("invalid_api_key")),
            Self::PermissionDenied { .. } => (403, "permission_error", Some("model_not_allowed")),
            Self::InvalidArgument(_) => (400, INVALID, None),
            Self::ContextLengthExceeded { .. } => (400, INVALID, Some("context_length_exceeded")),
            Self::UnknownModel { .. } => (404, INVALID, Some("model_not_found")),
            Self::ResourceExhausted { limit, .. } => match *limit {
                "budget" => (429, "insufficient_quota", Some("insufficient_quota")),
                // The gateway's own memory, not the client's quota: another replica may have room.
                "memory" => (503, SERVER, Some("memory_exhausted")),
                "tpm" => (429, "tokens", Some("rate_limit_exceeded")),
                _ => (429, "requests", Some("rate_limit_exceeded")),
            },
            Self::UpstreamRateLimited { .. } => (429, "requests", Some("rate_limit_exceeded")),
            Self::UpstreamRejected { .. } => (400, INVALID, Some("upstream_rejected")),
            Self::UpstreamAuth { .. } | Self::UpstreamMisconfigured { .. } => {
                (502, SERVER, Some("upstream_misconfigured"))
            }
            Self::UpstreamUnavailable { .. } | Self::UpstreamProtocol { .. } => {
                (502, SERVER, Some("upstream_unavailable"))
            }
            Self::SharedStateUnavailable | Self::ShuttingDown => {
                (503, SERVER, Some("service_unavailable"))
            }
            Self::UpstreamOverloaded { .. } => (503, SERVER, Some("upstream_overloaded")),
            Self::DeadlineExceeded(_) => (504, "timeout", Some("deadline_exceeded")),
            // nginx's "client closed request": the client has gone and will not read it.
            Self::Cancelled(_) => (499, INVALID, Some("cancelled")),
            Self::Internal(_) => (500, SERVER, None),
        }
    }

    /// A short, bounded label for logs and metrics (never a request value).
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "unauthenticated",
            Self::PermissionDenied { .. } => "permission_denied",
            Self::InvalidArgument(_) => "invalid_argument",
            Self::ContextLengthExceeded { .. } => "context_length_exceeded",
            Self::UnknownModel { .. } => "unknown_model",
            // The limit that refused: what the log line and the error metric name.
            Self::ResourceExhausted { limit, .. } => match *limit {
                "concurrency" => "limit_concurrency",
                "rpm" => "limit_rpm",
                "tpm" => "limit_tpm",
                "budget" => "limit_budget",
                "max_in_flight" => "limit_max_in_flight",
                "memory" => "limit_memory",
                _ => "resource_exhausted",
            },
            Self::UpstreamRateLimited { .. } => "upstream_rate_limited",
            Self::UpstreamRejected { .. } => "upstream_rejected",
            Self::UpstreamAuth { .. } => "upstream_auth",
            Self::UpstreamMisconfigured { .. } => "upstream_misconfigured",
            Self::UpstreamUnavailable { .. } => "upstream_unavailable",
            Self::UpstreamOverloaded { .. } => "upstream_overloaded",
            Self::UpstreamProtocol { .. } => "upstream_protocol",
            Self::DeadlineExceeded(_) => "deadline_exceeded",
            Self::Cancelled(_) => "cancelled",
            Self::ShuttingDown => "shutting_down",
            Self::SharedStateUnavailable => "shared_state_unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// Whether another attempt (same route after a wait, or another route) may succeed. Upstream trouble
    /// qualifies: 429, 408, 5xx (but 501, 505), connect and reset errors, stalls, error events, and a malformed
    /// answer (the next one may be well formed; it is still no sign that the route is down).
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::UpstreamRateLimited { .. }
                | Self::UpstreamUnavailable { .. }
                | Self::UpstreamOverloaded { .. }
                | Self::UpstreamProtocol { .. }
        )
    }

    /// Whether this outcome says the route itself is failing (for its circuit breaker): `Some(false)` for a
    /// failure, `Some(true)` for proof that the route works (it judged the request), `None` for neither.
    /// Only transport failures, 5xx and stalls count against a route: what the upstream sent (malformed,
    /// refused, odd Unicode) is about that call, and a 429 is about the account's rate, not the route's health.
    pub(crate) fn route_health(&self) -> Option<bool> {
        match self {
            Self::UpstreamUnavailable { .. } => Some(false),
            Self::UpstreamRejected { .. } => Some(true),
            _ => None,
        }
    }

    /// When the client may retry: the gateway's own limits, and an upstream's 429 or 503 that said when.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::ResourceExhausted { retry_after, .. }
            | Self::UpstreamRateLimited { retry_after, .. }
            | Self::UpstreamUnavailable { retry_after, .. }
            | Self::UpstreamOverloaded { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Classifies a non-success upstream HTTP status. `message` is the upstream's own error message, already
    /// bounded in size; it is dropped for credential failures.
    pub(crate) fn from_upstream_status(
        upstream: &str,
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    ) -> Self {
        let upstream = upstream.to_owned();
        match status {
            400 | 413 | 422 => Self::UpstreamRejected { upstream, message },
            401 | 403 => Self::UpstreamAuth { upstream, status },
            429 => Self::UpstreamRateLimited {
                upstream,
                retry_after,
            },
            529 => Self::UpstreamOverloaded {
                upstream,
                message,
                retry_after,
            },
            408 | 500 | 502..=504 | 506..=599 => Self::UpstreamUnavailable {
                upstream,
                detail: format!("HTTP {status}: {message}"),
                retry_after,
            },
            _ => Self::UpstreamMisconfigured {
                upstream,
                status,
                message,
            },
        }
    }
}

impl GatewayError {
    /// The message every door answers with: the error, and the wait when there is one.
    pub(crate) fn message(&self) -> String {
        match self.retry_after_secs() {
            Some(secs) => format!("{self}; retry after {secs}s"),
            None => self.to_string(),
        }
    }

    /// The wait as `retry-after` says it: whole seconds.
    pub(crate) fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after().map(whole_seconds)
    }
}

impl From<GatewayError> for Status {
    fn from(err: GatewayError) -> Status {
        let code = err.code();
        let message = err.message();
        let Some(wait) = err.retry_after() else {
            return Status::new(code, message);
        };
        let secs = whole_seconds(wait);
        // The wait travels three ways: in the message, as `retry-after` metadata (whole seconds, as in HTTP)
        // and as a google.rpc.RetryInfo detail that gRPC client libraries understand.
        let mut details = tonic_types::ErrorDetails::new();
        details.set_retry_info(Some(wait));
        let mut status =
            <Status as tonic_types::StatusExt>::with_error_details(code, message, details);
        if let Ok(value) = secs.to_string().parse() {
            status.metadata_mut().insert("retry-after", value);
        }
        status
    }
}

/// A wait in whole seconds for people and `retry-after`: rounded up, at least 1, so a client that obeys it
/// is never early.
fn whole_seconds(wait: Duration) -> u64 {
    u64::try_from(wait.as_millis().div_ceil(1000).max(1)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(status: u16) -> GatewayError {
        GatewayError::from_upstream_status("u", status, "m".into(), None)
    }

    #[test]
    fn upstream_statuses_map_to_the_design_table() {
        let table = [
            (400, Code::InvalidArgument),
            (413, Code::InvalidArgument),
            (422, Code::InvalidArgument),
            (401, Code::Internal),
            (403, Code::Internal),
            (404, Code::Internal),
            (501, Code::Internal),
            (408, Code::Unavailable),
            (429, Code::ResourceExhausted),
            (500, Code::Unavailable),
            (502, Code::Unavailable),
            (503, Code::Unavailable),
            (504, Code::Unavailable),
        ];
        for (status, code) in table {
            assert_eq!(up(status).code(), code, "HTTP {status}");
        }
    }

    #[test]
    fn credential_failures_do_not_carry_the_upstream_body() {
        let err = GatewayError::from_upstream_status(
            "openai",
            401,
            "Incorrect API key sk-abc".into(),
            None,
        );
        assert!(!err.to_string().contains("sk-abc"), "{err}");
    }

    #[test]
    fn retry_after_travels_as_metadata_and_detail() {
        let err = GatewayError::UpstreamRateLimited {
            upstream: "u".into(),
            retry_after: Some(Duration::from_secs(7)),
        };
        let status = Status::from(err);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.metadata().get("retry-after").unwrap(), "7");
        let details = tonic_types::StatusExt::get_error_details(&status);
        assert_eq!(
            details.retry_info().unwrap().retry_delay,
            Some(Duration::from_secs(7))
        );
        assert!(status.message().contains("retry after 7s"));
        let err = GatewayError::UpstreamRateLimited {
            upstream: "u".into(),
            retry_after: Some(Duration::from_millis(1200)),
        };
        assert_eq!(
            Status::from(err).metadata().get("retry-after").unwrap(),
            "2",
            "rounded up, never early"
        );
    }

    /// Every variant's whole mapping in one table: gRPC code, the REST door's HTTP status, type and code, the
    /// metric label, whether it is retried, what it says of the route's health, and whether it carries a wait.
    #[test]
    fn every_error_maps_as_the_design_table_says() {
        use GatewayError as E;
        let wait = Some(Duration::from_secs(3));
        let u = || "u".to_owned();
        let limit = |limit| E::ResourceExhausted {
            message: "m".into(),
            retry_after: wait,
            limit,
        };
        /// error, gRPC code, (HTTP status, type, code), label, retried, route health, carries a wait
        type Row = (
            E,
            Code,
            (u16, &'static str, Option<&'static str>),
            &'static str,
            bool,
            Option<bool>,
            bool,
        );
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            (E::Unauthenticated("m"), Code::Unauthenticated, (401, "invalid_request_error", Some("invalid_api_key")), "unauthenticated", false, None, false),
            (E::PermissionDenied { key: "k".into(), model: "m".into() }, Code::PermissionDenied, (403, "permission_error", Some("model_not_allowed")), "permission_denied", false, None, false),
            (E::InvalidArgument("m".into()), Code::InvalidArgument, (400, "invalid_request_error", None), "invalid_argument", false, None, false),
            (E::ContextLengthExceeded { model: "m".into(), window: 1, needed: 2, prompt: 1, output: 1 }, Code::InvalidArgument, (400, "invalid_request_error", Some("context_length_exceeded")), "context_length_exceeded", false, None, false),
            (E::UnknownModel { requested: "x".into(), available: vec![] }, Code::InvalidArgument, (404, "invalid_request_error", Some("model_not_found")), "unknown_model", false, None, false),
            (limit("concurrency"), Code::ResourceExhausted, (429, "requests", Some("rate_limit_exceeded")), "limit_concurrency", false, None, true),
            (limit("rpm"), Code::ResourceExhausted, (429, "requests", Some("rate_limit_exceeded")), "limit_rpm", false, None, true),
            (limit("tpm"), Code::ResourceExhausted, (429, "tokens", Some("rate_limit_exceeded")), "limit_tpm", false, None, true),
            (limit("budget"), Code::ResourceExhausted, (429, "insufficient_quota", Some("insufficient_quota")), "limit_budget", false, None, true),
            (limit("max_in_flight"), Code::ResourceExhausted, (429, "requests", Some("rate_limit_exceeded")), "limit_max_in_flight", false, None, true),
            (limit("memory"), Code::ResourceExhausted, (503, "server_error", Some("memory_exhausted")), "limit_memory", false, None, true),
            (limit("other"), Code::ResourceExhausted, (429, "requests", Some("rate_limit_exceeded")), "resource_exhausted", false, None, true),
            (E::SharedStateUnavailable, Code::Unavailable, (503, "server_error", Some("service_unavailable")), "shared_state_unavailable", false, None, false),
            (E::UpstreamRateLimited { upstream: u(), retry_after: wait }, Code::ResourceExhausted, (429, "requests", Some("rate_limit_exceeded")), "upstream_rate_limited", true, None, true),
            (E::UpstreamRejected { upstream: u(), message: "m".into() }, Code::InvalidArgument, (400, "invalid_request_error", Some("upstream_rejected")), "upstream_rejected", false, Some(true), false),
            (E::UpstreamAuth { upstream: u(), status: 401 }, Code::Internal, (502, "server_error", Some("upstream_misconfigured")), "upstream_auth", false, None, false),
            (E::UpstreamMisconfigured { upstream: u(), status: 404, message: "m".into() }, Code::Internal, (502, "server_error", Some("upstream_misconfigured")), "upstream_misconfigured", false, None, false),
            (E::UpstreamUnavailable { upstream: u(), detail: "d".into(), retry_after: wait }, Code::Unavailable, (502, "server_error", Some("upstream_unavailable")), "upstream_unavailable", true, Some(false), true),
            (E::UpstreamOverloaded { upstream: u(), message: "m".into(), retry_after: wait }, Code::Unavailable, (503, "server_error", Some("upstream_overloaded")), "upstream_overloaded", true, None, true),
            (E::UpstreamProtocol { upstream: u(), detail: "d".into() }, Code::Unavailable, (502, "server_error", Some("upstream_unavailable")), "upstream_protocol", true, None, false),
            (E::DeadlineExceeded("m".into()), Code::DeadlineExceeded, (504, "timeout", Some("deadline_exceeded")), "deadline_exceeded", false, None, false),
            (E::Cancelled("m".into()), Code::Cancelled, (499, "invalid_request_error", Some("cancelled")), "cancelled", false, None, false),
            (E::ShuttingDown, Code::Unavailable, (503, "server_error", Some("service_unavailable")), "shutting_down", false, None, false),
            (E::Internal("m".into()), Code::Internal, (500, "server_error", None), "internal", false, None, false),
        ];
        for (err, code, http, label, retryable, health, waits) in table {
            assert_eq!(err.code(), code, "{err:?}");
            assert_eq!(err.http(), http, "{err:?}");
            assert_eq!(err.label(), label, "{err:?}");
            assert_eq!(err.is_retryable(), retryable, "{err:?}");
            assert_eq!(err.route_health(), health, "{err:?}");
            assert_eq!(
                err.retry_after(),
                if waits { wait } else { None },
                "{err:?}"
            );
            let status = Status::from(err.clone());
            assert_eq!(
                status.metadata().get("retry-after").is_some(),
                waits,
                "{err:?}"
            );
        }
    }

    /// An upstream status maps to one variant; the statuses at the ranges' ends included.
    #[test]
    fn upstream_statuses_pick_their_variant() {
        let kind = |status| match up(status) {
            GatewayError::UpstreamRejected { .. } => "rejected",
            GatewayError::UpstreamAuth { .. } => "auth",
            GatewayError::UpstreamRateLimited { .. } => "rate limited",
            GatewayError::UpstreamOverloaded { .. } => "overloaded",
            GatewayError::UpstreamUnavailable { .. } => "unavailable",
            GatewayError::UpstreamMisconfigured { .. } => "misconfigured",
            other => panic!("{other:?}"),
        };
        for (status, want) in [
            (400, "rejected"),
            (413, "rejected"),
            (422, "rejected"),
            (401, "auth"),
            (403, "auth"),
            (404, "misconfigured"),
            (408, "unavailable"),
            (429, "rate limited"),
            (500, "unavailable"),
            (501, "misconfigured"),
            (502, "unavailable"),
            (504, "unavailable"),
            (505, "misconfigured"),
            (506, "unavailable"),
            (529, "overloaded"),
            (599, "unavailable"),
            (600, "misconfigured"),
        ] {
            assert_eq!(kind(status), want, "HTTP {status}");
        }
        // A wait is whole seconds, rounded up and at least one: a client that obeys it is never early.
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1000)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1001)), 2);
    }

    /// A refusal by one of the gateway's own limits names that limit in the log line and the error metric.
    #[test]
    fn a_limit_refusal_names_its_limit() {
        for (limit, label) in [
            ("concurrency", "limit_concurrency"),
            ("rpm", "limit_rpm"),
            ("tpm", "limit_tpm"),
            ("budget", "limit_budget"),
            ("max_in_flight", "limit_max_in_flight"),
            ("memory", "limit_memory"),
        ] {
            let e = GatewayError::ResourceExhausted {
                message: "m".into(),
                retry_after: None,
                limit,
            };
            assert_eq!(e.label(), label);
        }
    }
}
