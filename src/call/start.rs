//! What a call carries from its door into the call layer, and what it carries back out: the caller, request id,
//! deadline, cache directives, trace context and API headers read from its headers ([`Start`]); the answer with
//! its response headers ([`Reply`]), or the error with them ([`Failure`]). Headers are HTTP's: gRPC metadata are
//! HTTP/2 headers, and each door writes these into its own shape.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use http::{HeaderMap, HeaderValue};
use tokio::time::Instant;

use crate::{
    admission::auth::Identity,
    core::cache::CacheControl,
    core::call_record::CallRecord,
    core::gateway::Gateway,
    error::GatewayError,
    observe::telemetry,
    routing::deadline::{self, Deadline},
    routing::router::Model,
    transport::standing::{self, Standing, Style},
    transport::trailers::TrailerSlot,
    upstream::api_headers::ApiHeaders,
};

/// What every call reads from its headers before taking the body.
pub(crate) struct Start {
    pub(crate) who: Arc<Identity>,
    /// The client's `x-request-id`, or one made up here; sent upstream, echoed back, logged.
    pub(crate) request_id: String,
    pub(crate) client_timeout: Option<Duration>,
    trailers: Option<Arc<TrailerSlot>>,
    pub(crate) cache_control: CacheControl,
    /// The caller's W3C trace context, when it sent one and tracing is on.
    parent: Option<opentelemetry::Context>,
    /// The caller's API headers (`anthropic-beta`, ...), for upstreams of their dialect.
    pub(crate) api_headers: ApiHeaders,
    /// Where the caller stood against its rate limits once the call was admitted.
    standing: Arc<OnceLock<Standing>>,
}

impl Start {
    /// The call of `who` with these headers; its overhead and cost go into `trailers` when the door has them.
    pub(crate) fn read(
        headers: &HeaderMap,
        who: Arc<Identity>,
        trailers: Option<Arc<TrailerSlot>>,
    ) -> Start {
        let given = headers.get("x-request-id");
        Start {
            who,
            request_id: request_id(given.and_then(|v| v.to_str().ok())),
            client_timeout: deadline::client_timeout(headers),
            trailers,
            cache_control: CacheControl::read(headers),
            parent: telemetry::caller_context(headers),
            api_headers: ApiHeaders::read(headers),
            standing: Arc::default(),
        }
    }

    /// The call was admitted with the caller standing so against its rate limits: for the trailers (or the
    /// headers of a whole REST answer), and for a stream's first headers ([`Start::standing`]).
    pub(crate) fn admitted(&self, standing: Standing) {
        if standing.is_empty() {
            return;
        }
        if let Some(slot) = &self.trailers {
            slot.set_standing(standing);
        }
        let _ = self.standing.set(standing);
    }

    /// Where the standing goes once the call is admitted: a door that writes its stream's headers reads it
    /// when the stream begins (after admission).
    pub(crate) fn standing(&self) -> Arc<OnceLock<Standing>> {
        self.standing.clone()
    }

    /// The span every log line of this call is written in, its spawned tasks included: a child of the caller's
    /// trace when it sent one.
    pub(crate) fn span(&self, rpc: &'static str) -> tracing::Span {
        telemetry::rpc_span(rpc, &self.request_id, &self.who.name, self.parent.as_ref())
    }

    /// The call's record: log line, metrics, usage book, trailers.
    pub(crate) fn record(&self, rpc: &'static str, gw: &Arc<Gateway>) -> CallRecord {
        CallRecord::new(
            rpc,
            gw.clone(),
            self.who.clone(),
            &self.request_id,
            self.trailers.clone(),
        )
    }

    /// The call's deadline: the client's, bounded by the slowest route's request_timeout.
    pub(crate) fn deadline(&self, model: &Model) -> Deadline {
        Deadline::new(Instant::now(), self.client_timeout, model.request_timeout())
    }

    /// An answer as the client gets it: with the request id, and the cache's label when it was asked.
    pub(crate) fn reply<T>(&self, value: T, cache: Option<&'static str>) -> Reply<T> {
        Reply::new(value, &self.request_id, cache)
    }

    /// An error as the client gets it: with the request id, and `retry-after` when it says to wait.
    pub(crate) fn fail(&self, error: GatewayError) -> Failure {
        Failure::new(error, &self.request_id)
    }

    /// A call's failure as the client gets it, after `attempts` upstream attempts: an upstream failure the
    /// gateway already retried says `x-should-retry: false`, which the OpenAI and Anthropic SDKs honour, so their
    /// own retries do not multiply the gateway's (docs/traffic.md, "The combined retry budget").
    pub(crate) fn fail_after(&self, error: GatewayError, attempts: u32) -> Failure {
        let retried = attempts > 0 && error.is_retryable();
        Failure {
            retried,
            ..self.fail(error)
        }
    }
}

/// A call's answer and the headers that go with it (`x-request-id`, `aigw-cache`).
pub(crate) struct Reply<T> {
    pub(crate) value: T,
    pub(crate) headers: HeaderMap,
}

impl<T> Reply<T> {
    /// The answer to the call `request_id`, with the cache's label when it was asked.
    pub(crate) fn new(value: T, request_id: &str, cache: Option<&'static str>) -> Reply<T> {
        let mut headers = HeaderMap::new();
        set_request_id(&mut headers, request_id);
        if let Some(label) = cache {
            headers.insert("aigw-cache", HeaderValue::from_static(label));
        }
        Reply { value, headers }
    }
}

/// A call's error, and what its response headers say with it.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: GatewayError,
    request_id: String,
    /// The gateway already retried it upstream.
    retried: bool,
}

impl Failure {
    pub(crate) fn new(error: GatewayError, request_id: &str) -> Failure {
        Failure {
            error,
            request_id: request_id.to_owned(),
            retried: false,
        }
    }

    /// `x-request-id`; `retry-after` (whole seconds) when the error says to wait; `x-should-retry: false` when
    /// the gateway already retried; and for a refusal by a rate window, that nothing is left of it until the
    /// reset (OpenAI's `x-ratelimit-*` names).
    pub(crate) fn headers(&self) -> HeaderMap {
        self.headers_as(Style::OpenAi)
    }

    /// The same, the rate-limit headers in `style`'s names.
    pub(crate) fn headers_as(&self, style: Style) -> HeaderMap {
        let mut headers = HeaderMap::new();
        set_request_id(&mut headers, &self.request_id);
        if let Some(secs) = self.error.retry_after_secs() {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.retried {
            headers.insert("x-should-retry", HeaderValue::from_static("false"));
        }
        if let GatewayError::ResourceExhausted {
            limit,
            retry_after: Some(wait),
            ..
        } = &self.error
        {
            let what = match *limit {
                "rpm" => Some("requests"),
                "tpm" => Some("tokens"),
                _ => None,
            };
            if let Some(what) = what {
                standing::write_spent(&mut headers, style, what, *wait);
            }
        }
        headers
    }
}

/// What a call's answer or failure is, once the call is over.
pub(crate) type Outcome<T> = Result<Reply<T>, Failure>;

/// Ends a whole (unary) call: its log records the outcome, and the client gets the answer (with its cache
/// label) or the failure.
pub(crate) fn conclude<T>(
    start: &Start,
    log: CallRecord,
    result: Result<(T, Option<&'static str>), GatewayError>,
) -> Outcome<T> {
    match result {
        Ok((value, cached)) => {
            log.finish(Ok(()));
            Ok(start.reply(value, cached))
        }
        Err(e) => {
            let attempts = log.attempts();
            log.finish(Err(&e));
            Err(start.fail_after(e, attempts))
        }
    }
}

/// The caller's identity from its `authorization` header (`Bearer <key>`). A refusal is counted and logged
/// here, before any handler, with empty rpc, model and key labels (the key is unknown).
pub(crate) fn authenticate(
    gw: &Gateway,
    authorization: Option<&[u8]>,
) -> Result<Arc<Identity>, GatewayError> {
    gw.authenticate(authorization).inspect_err(|e| {
        gw.metrics.count_call("", "", "", e.code());
        let code = crate::observe::metrics::code_name(e.code());
        tracing::info!(target: "aigw::rpc", code, error = e.label(), "rejected before the handler");
    })
}

/// The client's `x-request-id` when it is fit to pass on, else a new one.
pub(crate) fn request_id(given: Option<&str>) -> String {
    given
        .filter(|id| valid_request_id(id))
        .map_or_else(|| format!("{:032x}", fastrand::u128(..)), str::to_owned)
}

/// Printable ASCII, at most 128 bytes: anything else is replaced rather than passed upstream or into logs.
fn valid_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Echoes the request id (always printable ASCII: checked or generated in [`request_id`]).
pub(crate) fn set_request_id(headers: &mut HeaderMap, request_id: &str) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", v);
    }
}
