//! Logs and traces. Logs: one line per RPC and everything in the RPC's span (request id, key), as text or
//! JSON, level from `RUST_LOG`. Traces: optional OpenTelemetry export over OTLP/HTTP (off unless
//! `[tracing] otlp_endpoint` is set), with a span per RPC and per upstream attempt.

use std::{
    io::{BufWriter, Stderr, Write},
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{trace::SdkTracerProvider, Resource};
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

use crate::config::{LogFormat, TracingConfig};

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
    Ok(Telemetry { provider, logs })
}

/// How long a log line may wait in the buffer.
const LOG_FLUSH_EVERY: Duration = Duration::from_millis(100);
const LOG_BUFFER_BYTES: usize = 64 * 1024;

/// Log lines go to stderr through one 64 KiB buffer, written out when full and at least every 100 ms by a
/// flusher thread: one `write` per batch instead of one per line (a line per RPC made that syscall a
/// measurable share of a call's CPU). A line waits at most 100 ms; [`Telemetry::shutdown`] writes the rest.
#[derive(Clone)]
struct LogBuffer(Arc<Mutex<BufWriter<Stderr>>>);

impl LogBuffer {
    fn start() -> LogBuffer {
        let buffer = LogBuffer(Arc::new(Mutex::new(BufWriter::with_capacity(
            LOG_BUFFER_BYTES,
            std::io::stderr(),
        ))));
        let flusher = buffer.clone();
        // Detached: it lives as long as the process and holds nothing but the buffer.
        let _ = std::thread::Builder::new()
            .name("aigw-log-flush".into())
            .spawn(move || loop {
                std::thread::sleep(LOG_FLUSH_EVERY);
                flusher.flush();
            });
        buffer
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BufWriter<Stderr>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn flush(&self) {
        let _ = self.lock().flush();
    }
}

/// tracing-subscriber formats a whole event, then hands it over with one `write_all`: one lock per line, so
/// lines never interleave.
impl Write for &LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.lock().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.lock().write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.lock().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = &'a LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}
