//! W3C trace context on the way out: with tracing on, each upstream request carries `traceparent` (and
//! `tracestate`) naming its attempt span, so the provider's own traces join the caller's. Off, nothing is
//! looked up: a flag read per request.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::Injector;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;

static ON: AtomicBool = AtomicBool::new(false);

/// Called once by the telemetry set-up when spans are exported (and the W3C propagator installed).
pub(crate) fn enable() {
    ON.store(true, Ordering::Relaxed);
}

pub(crate) fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

struct Headers<'a>(&'a mut HeaderMap);

impl Injector for Headers<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The current span's context as `traceparent` / `tracestate`, when tracing is on.
pub(crate) fn inject(headers: &mut HeaderMap) {
    if !enabled() {
        return;
    }
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut Headers(headers))
    });
}
