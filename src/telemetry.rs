//! Logs and traces. Logs: one line per RPC and everything in the RPC's span (request id, key), as text or
//! JSON, level from `RUST_LOG`. Traces: optional OpenTelemetry export over OTLP/HTTP (off unless
//! `[tracing] otlp_endpoint` is set), with a span per RPC and per upstream attempt.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{trace::SdkTracerProvider, Resource};
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

use crate::config::{LogFormat, TracingConfig};

/// Keeps the trace exporter alive; flush it with [`Telemetry::shutdown`] before the process exits.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered.
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            let _ = p.shutdown();
        }
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
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    let (otel, provider) = match &tracing.otlp_endpoint {
        None => (None, None),
        Some(endpoint) => {
            crate::upstream::http::install_crypto_provider();
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(endpoint.clone())
                .with_timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(|e| format!("tracing.otlp_endpoint: {e}"))?;
            let resource = Resource::builder()
                .with_service_name(tracing.service_name.clone())
                .build();
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build();
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
    Ok(Telemetry { provider })
}
