//! Logs and traces. Logs: one line per RPC and everything in the RPC's span (request id, key), as text or
//! JSON, level from `RUST_LOG`. Traces: optional OpenTelemetry export over OTLP/HTTP, on when
//! `[tracing] otlp_endpoint` or the standard `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` is set (and
//! `OTEL_SDK_DISABLED` is not `true`), with a server span per RPC and a client span per upstream attempt that
//! carry OpenTelemetry's GenAI attributes. The caller's W3C `traceparent` is the RPC span's parent, and each
//! upstream request carries its attempt's.

use opentelemetry::{propagation::Extractor, trace::TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider, Resource};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

use super::{log_buffer::LogBuffer, log_line};
use crate::{
    config::{LogFormat, TracingConfig},
    proto::Usage,
    upstream::tracecontext,
};

/// Keeps the trace exporter alive; flush it and the log buffer with [`Telemetry::shutdown`] before the
/// process exits.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    logs: LogBuffer,
}

impl Telemetry {
    /// Exports the spans still buffered and writes out the last log lines.
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            let _ = p.shutdown();
        }
        self.logs.flush();
    }

    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            let _ = p.force_flush();
        }
    }
}

/// Installs the global subscriber. Call once, outside the async runtime (the exporter has its own thread).
pub fn init(format: LogFormat, tracing: &TracingConfig) -> Result<Telemetry, String> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal; log collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = LogBuffer::start();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(logs.clone())
        .with_ansi(ansi);
    let (fmt, layout) = match format {
        LogFormat::Text => (fmt.boxed(), log_line::Layout::Text),
        LogFormat::Json => (
            fmt.json().flatten_event(true).boxed(),
            log_line::Layout::Json,
        ),
    };
    let (otel, provider) = match export_to(tracing, |name| std::env::var(name).ok()) {
        None => (None, None),
        Some(endpoint) => {
            crate::upstream::http::install_crypto_provider();
            // An endpoint from the config wins; otherwise the exporter reads OTEL_EXPORTER_OTLP_* itself
            // (endpoint, headers, timeout, compression).
            let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http();
            if let Some(endpoint) = endpoint {
                exporter = exporter.with_endpoint(endpoint);
            }
            let exporter = exporter
                .build()
                .map_err(|e| format!("tracing.otlp_endpoint: {e}"))?;
            // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read by the default resource; a service name
            // in the config wins, and "aigw" is the name when neither says.
            let mut resource = Resource::builder();
            match &tracing.service_name {
                Some(name) => resource = resource.with_service_name(name.clone()),
                None if std::env::var_os("OTEL_SERVICE_NAME").is_none() => {
                    resource = resource.with_service_name("aigw")
                }
                None => {}
            }
            // The sampler comes from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default: parent-based,
            // always on).
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource.build())
                .build();
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            tracecontext::enable();
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("aigw"));
            (Some(layer), Some(provider))
        }
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| format!("logging: {e}"))?;
    // The RPC line is written directly only where it would read exactly as the fmt layer writes it: no
    // colours, and no exporter that also reads events.
    if !ansi && provider.is_none() {
        log_line::install(logs.clone(), layout);
    }
    Ok(Telemetry { provider, logs })
}

/// Whether to export spans, and to which endpoint (`Some(None)`: the one the OTLP variables name).
fn export_to(
    tracing: &TracingConfig,
    var: impl Fn(&str) -> Option<String>,
) -> Option<Option<String>> {
    let env = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return None;
    }
    match &tracing.otlp_endpoint {
        Some(endpoint) => Some(Some(endpoint.clone())),
        None if env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
            || env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() =>
        {
            Some(None)
        }
        None => None,
    }
}

/// Reads `traceparent` / `tracestate` from a call's headers (gRPC metadata are HTTP/2 headers).
struct Metadata<'a>(&'a http::HeaderMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        ["traceparent", "tracestate"]
            .into_iter()
            .filter(|k| self.0.contains_key(*k))
            .collect()
    }
}

/// The caller's trace, if it sent one and tracing is on: the parent of the RPC's span.
pub(crate) fn caller_context(metadata: &http::HeaderMap) -> Option<opentelemetry::Context> {
    if !tracecontext::enabled() || !metadata.contains_key("traceparent") {
        return None;
    }
    Some(opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&Metadata(metadata))
    }))
}

/// An info span with the GenAI attributes both spans carry, empty until recorded (and recorded only when spans
/// are exported, so that log lines, which show span fields, stay as they were).
macro_rules! genai_span {
    ($name:literal, $($field:tt)*) => {
        tracing::info_span!(
            $name,
            $($field)*
            otel.kind = tracing::field::Empty,
            gen_ai.operation.name = tracing::field::Empty,
            gen_ai.request.model = tracing::field::Empty,
            gen_ai.response.id = tracing::field::Empty,
            gen_ai.response.model = tracing::field::Empty,
            gen_ai.response.finish_reasons = tracing::field::Empty,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
            gen_ai.usage.cache_read.input_tokens = tracing::field::Empty,
            gen_ai.usage.cache_creation.input_tokens = tracing::field::Empty,
        )
    };
}

/// The RPC's server span. Its GenAI attributes are recorded as the call goes, when tracing is on.
pub(crate) fn rpc_span(
    rpc: &'static str,
    request_id: &str,
    key: &str,
    parent: Option<&opentelemetry::Context>,
) -> tracing::Span {
    let span = genai_span!(
        "rpc",
        rpc,
        request_id = %request_id,
        key = %key,
        rpc.system = tracing::field::Empty,
        rpc.method = tracing::field::Empty,
    );
    // Recorded only for export, so that log lines (which show span fields) stay as they were.
    if tracecontext::enabled() {
        span.record("otel.kind", "server");
        span.record("rpc.system", "grpc");
        span.record("rpc.method", rpc);
    }
    if let Some(parent) = parent {
        let _ = span.set_parent(parent.clone());
    }
    span
}

/// An upstream attempt's client span, named `{operation} {model}` (`chat gpt-4.1`) as the GenAI conventions ask.
/// Made only when spans are exported or debug lines are written: otherwise nothing would read it, and a span
/// entered on every poll of the attempt was a tenth of a call's CPU. Lines at info and above inside an attempt
/// name the upstream themselves, and stay inside the RPC's span. Debug anywhere counts (the global maximum
/// level): `RUST_LOG=info,aigw::upstream=debug` wants the attempt as its lines' context too.
pub(crate) fn attempt_span(
    upstream: &str,
    attempt: u32,
    provider: &'static str,
    model: &str,
    operation: &'static str,
) -> tracing::Span {
    if !tracecontext::enabled()
        && tracing::level_filters::LevelFilter::current()
            < tracing::level_filters::LevelFilter::DEBUG
    {
        return tracing::Span::none();
    }
    let span = genai_span!(
        "upstream",
        upstream,
        attempt,
        otel.name = tracing::field::Empty,
        gen_ai.provider.name = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    if tracecontext::enabled() {
        span.record("otel.name", format!("{operation} {model}"));
        span.record("otel.kind", "client");
        span.record("gen_ai.operation.name", operation);
        span.record("gen_ai.provider.name", provider);
        span.record("gen_ai.request.model", model);
    }
    span
}

/// The request's side of a call on the RPC span: what was asked for.
pub(crate) fn record_request(span: &tracing::Span, model: &str, operation: &'static str) {
    if tracecontext::enabled() {
        span.record("gen_ai.operation.name", operation);
        span.record("gen_ai.request.model", model);
    }
}

/// What answered: on the RPC span and on the attempt's span. `finish_reasons` is a JSON array in a string
/// (tracing has no array values).
pub(crate) fn record_answer(
    span: &tracing::Span,
    id: &str,
    model: &str,
    finish_reason: &str,
    usage: Option<&Usage>,
) {
    if !tracecontext::enabled() {
        return;
    }
    if !id.is_empty() {
        span.record("gen_ai.response.id", id);
    }
    if !model.is_empty() {
        span.record("gen_ai.response.model", model);
    }
    if !finish_reason.is_empty() {
        span.record(
            "gen_ai.response.finish_reasons",
            serde_json::json!([finish_reason]).to_string(),
        );
    }
    if let Some(u) = usage {
        span.record("gen_ai.usage.input_tokens", i64::from(u.prompt_tokens));
        span.record("gen_ai.usage.output_tokens", i64::from(u.completion_tokens));
        // Parts of input_tokens, as the conventions count them; only when the provider reported them.
        for (name, n) in [
            (
                "gen_ai.usage.cache_read.input_tokens",
                u.cached_prompt_tokens,
            ),
            (
                "gen_ai.usage.cache_creation.input_tokens",
                u.cache_write_tokens,
            ),
        ] {
            if n > 0 {
                span.record(name, i64::from(n));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_follows_the_config_then_the_standard_variables() {
        let cfg = |endpoint: Option<&str>| TracingConfig {
            otlp_endpoint: endpoint.map(str::to_owned),
            service_name: None,
        };
        let with = |pairs: Vec<(&'static str, &'static str)>| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let to = "http://collector:4318/v1/traces";
        assert_eq!(export_to(&cfg(None), with(vec![])), None);
        assert_eq!(
            export_to(&cfg(Some(to)), with(vec![])),
            Some(Some(to.into()))
        );
        let generic = with(vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]);
        assert_eq!(export_to(&cfg(None), generic), Some(None));
        let traces = with(vec![(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces",
        )]);
        assert_eq!(export_to(&cfg(None), traces), Some(None));
        let blank = with(vec![("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]);
        assert_eq!(export_to(&cfg(None), blank), None);
        let disabled = with(vec![("OTEL_SDK_DISABLED", "TRUE")]);
        assert_eq!(export_to(&cfg(Some(to)), disabled), None);
        let none = with(vec![("OTEL_TRACES_EXPORTER", "none")]);
        assert_eq!(export_to(&cfg(Some(to)), none), None);
    }
}
