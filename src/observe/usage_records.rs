//! Usage records: one JSON line per call (time, request id, key, model, upstream, tokens, cost, code, latency),
//! appended to `[usage_records] path`, so spend can be audited and billed outside the gateway; and, with
//! `otlp_endpoint`, the same record exported as an OpenTelemetry log record (event `aigw.usage`, the fields as
//! attributes) through a batching exporter of its own.
//!
//! Lines go through a bounded queue to a writer thread, so the request path never waits on the disk. The
//! writer batches them (one `write` per batch, flushed at least every 100 ms and at shutdown) and rotates the
//! file when it passes `max_bytes`: `usage.jsonl` becomes `usage.jsonl.1`, `.1` becomes `.2`, and so on up to
//! `keep` files. If the disk falls so far behind that the queue (65,536 records) is full, a record is dropped
//! and counted in `aigw_usage_records_dropped_total` rather than slowing calls down.

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender, TrySendError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

const QUEUE: usize = 65_536;
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// One call, as billed.
#[derive(Debug, Serialize)]
pub(crate) struct Record<'a> {
    /// Unix milliseconds at the call's end.
    pub(crate) time_ms: u128,
    pub(crate) request_id: &'a str,
    pub(crate) rpc: &'a str,
    pub(crate) key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) group: Option<&'a str>,
    pub(crate) model: &'a str,
    pub(crate) upstream: &'a str,
    pub(crate) code: &'a str,
    pub(crate) prompt_tokens: i32,
    pub(crate) completion_tokens: i32,
    /// Parts of `prompt_tokens` and `completion_tokens`, priced apart; left out when zero.
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) cached_prompt_tokens: i32,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) cache_write_tokens: i32,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) reasoning_tokens: i32,
    pub(crate) usage_estimated: bool,
    pub(crate) cost_usd: f64,
    pub(crate) latency_ms: f64,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

pub(crate) fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Where records go: the queue to the writer thread, and the OTLP logger.
pub(crate) struct Records {
    /// None without a file. `close` sends an empty line, the writer's signal to finish.
    tx: Option<SyncSender<Vec<u8>>>,
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    otlp: Option<(
        opentelemetry_sdk::logs::SdkLoggerProvider,
        opentelemetry_sdk::logs::SdkLogger,
    )>,
    dropped: prometheus::IntCounter,
}

/// An OTLP/HTTP log exporter to `endpoint`, batching on a thread of its own.
fn otlp_logger(
    endpoint: &str,
) -> Result<
    (
        opentelemetry_sdk::logs::SdkLoggerProvider,
        opentelemetry_sdk::logs::SdkLogger,
    ),
    String,
> {
    use opentelemetry::logs::LoggerProvider as _;
    use opentelemetry_otlp::WithExportConfig;
    crate::upstream::http::install_crypto_provider();
    let exporter = opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| format!("usage_records.otlp_endpoint: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "aigw".to_owned()))
        .build();
    let provider = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let logger = provider.logger("aigw.usage");
    Ok((provider, logger))
}

impl Records {
    /// Opens (or creates) the file and starts the writer thread, and the OTLP exporter when asked.
    pub(crate) fn start(
        cfg: &crate::config::UsageRecordsConfig,
        dropped: prometheus::IntCounter,
    ) -> Result<Records, String> {
        let otlp = cfg.otlp_endpoint.as_deref().map(otlp_logger).transpose()?;
        let Some(path) = cfg.path.as_deref() else {
            return Ok(Records {
                tx: None,
                writer: std::sync::Mutex::new(None),
                otlp,
                dropped,
            });
        };
        let mut records = Self::file(path, cfg.max_bytes, cfg.keep, dropped)?;
        records.otlp = otlp;
        Ok(records)
    }

    fn file(
        path: &Path,
        max_bytes: u64,
        keep: usize,
        dropped: prometheus::IntCounter,
    ) -> Result<Records, String> {
        let file =
            open(path).map_err(|e| format!("usage_records.path: {}: {e}", path.display()))?;
        let size = file.metadata().map_or(0, |m| m.len());
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        let mut writer = Writer {
            path: path.to_owned(),
            out: std::io::BufWriter::with_capacity(64 * 1024, file),
            size,
            max_bytes,
            keep,
        };
        let handle = std::thread::Builder::new()
            .name("aigw-usage-records".into())
            .spawn(move || loop {
                match rx.recv_timeout(FLUSH_EVERY) {
                    Ok(line) if line.is_empty() => {
                        writer.flush();
                        return;
                    }
                    Ok(line) => writer.write(&line),
                    Err(RecvTimeoutError::Timeout) => writer.flush(),
                    Err(RecvTimeoutError::Disconnected) => {
                        writer.flush();
                        return;
                    }
                }
            })
            .map_err(|e| format!("usage records: {e}"))?;
        Ok(Records {
            tx: Some(tx),
            writer: std::sync::Mutex::new(Some(handle)),
            otlp: None,
            dropped,
        })
    }

    pub(crate) fn add(&self, record: &Record<'_>) {
        if let Some((_, logger)) = &self.otlp {
            emit(logger, record);
        }
        // Without a file (OTLP alone) there is no line to write.
        let Some(tx) = &self.tx else { return };
        let Ok(mut line) = serde_json::to_vec(record) else {
            return;
        };
        line.push(b'\n');
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(line) {
            self.dropped.inc();
        }
    }

    /// Writes out what is queued and stops the writer (at shutdown); later records are dropped.
    pub(crate) fn close(&self) {
        if let Some((provider, _)) = &self.otlp {
            let _ = provider.force_flush();
        }
        if let Some(tx) = &self.tx {
            // Behind everything queued; blocks only while the queue is full.
            let _ = tx.send(Vec::new());
        }
        if let Some(handle) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = handle.join();
        }
    }
}

/// The record as an OpenTelemetry log record: event `aigw.usage`, every field an attribute.
fn emit(logger: &opentelemetry_sdk::logs::SdkLogger, r: &Record<'_>) {
    use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _};
    let mut log = logger.create_log_record();
    log.set_event_name("aigw.usage");
    log.set_body(AnyValue::from(format!(
        "usage {} {} {}",
        r.key, r.model, r.code
    )));
    let text = |v: &str| AnyValue::from(v.to_owned());
    log.add_attribute("request_id", text(r.request_id));
    log.add_attribute("rpc", text(r.rpc));
    log.add_attribute("key", text(r.key));
    if let Some(g) = r.group {
        log.add_attribute("group", text(g));
    }
    log.add_attribute("gen_ai.request.model", text(r.model));
    log.add_attribute("upstream", text(r.upstream));
    log.add_attribute("code", text(r.code));
    log.add_attribute(
        "gen_ai.usage.input_tokens",
        AnyValue::from(i64::from(r.prompt_tokens)),
    );
    log.add_attribute(
        "gen_ai.usage.output_tokens",
        AnyValue::from(i64::from(r.completion_tokens)),
    );
    for (name, n) in [
        (
            "gen_ai.usage.cache_read.input_tokens",
            r.cached_prompt_tokens,
        ),
        (
            "gen_ai.usage.cache_creation.input_tokens",
            r.cache_write_tokens,
        ),
        ("reasoning_tokens", r.reasoning_tokens),
    ] {
        if n > 0 {
            log.add_attribute(name, AnyValue::from(i64::from(n)));
        }
    }
    log.add_attribute("usage_estimated", AnyValue::from(r.usage_estimated));
    log.add_attribute("cost_usd", AnyValue::from(r.cost_usd));
    log.add_attribute("latency_ms", AnyValue::from(r.latency_ms));
    logger.emit(log);
}

fn open(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

struct Writer {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    size: u64,
    max_bytes: u64,
    keep: usize,
}

impl Writer {
    fn write(&mut self, line: &[u8]) {
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate();
        }
        if let Err(e) = self.out.write_all(line) {
            tracing::error!(error = %e, "usage records: write failed");
            return;
        }
        self.size += line.len() as u64;
    }

    fn flush(&mut self) {
        let _ = self.out.flush();
    }

    /// `path` -> `path.1` -> `path.2` ... the oldest beyond `keep` removed; then a fresh `path`.
    fn rotate(&mut self) {
        self.flush();
        let numbered = |n: usize| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        let _ = std::fs::remove_file(numbered(self.keep));
        for n in (1..self.keep).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        if self.keep > 0 {
            let _ = std::fs::rename(&self.path, numbered(1));
        } else {
            let _ = std::fs::remove_file(&self.path);
        }
        match open(&self.path) {
            Ok(file) => {
                self.out = std::io::BufWriter::with_capacity(64 * 1024, file);
                self.size = 0;
            }
            Err(e) => {
                tracing::error!(error = %e, "usage records: cannot open a new file after rotation")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> Record<'_> {
        Record {
            time_ms: 1,
            request_id: id,
            rpc: "Generate",
            key: "k",
            group: None,
            model: "m",
            upstream: "u",
            code: "OK",
            prompt_tokens: 3,
            completion_tokens: 4,
            cached_prompt_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            usage_estimated: false,
            cost_usd: 0.5,
            latency_ms: 1.0,
        }
    }

    /// Every record lands, in order, as one JSON line; past `max_bytes` the file rotates, keeping `keep`.
    #[test]
    fn records_are_lines_and_the_file_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.jsonl");
        let dropped = prometheus::IntCounter::new("d", "d").unwrap();
        let records = Records::file(&path, 1_000, 2, dropped.clone()).unwrap();
        for i in 0..30 {
            records.add(&record(&format!("req-{i:02}")));
        }
        records.close(); // the writer drains the queue, flushes and ends
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let all: Vec<String> = [".2", ".1", ""]
            .iter()
            .flat_map(|suffix| {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                read(Path::new(&p))
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        let ids: Vec<String> = all
            .iter()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        // Kept: the newest records, in order, across the current file and two rotated ones.
        assert!(
            !ids.is_empty() && ids.windows(2).all(|w| w[0] < w[1]),
            "{ids:?}"
        );
        assert_eq!(ids.last().map(String::as_str), Some("req-29"));
        let mut third = path.clone().into_os_string();
        third.push(".3");
        assert!(!Path::new(&third).exists(), "at most `keep` rotated files");
        assert!(std::fs::metadata(&path).unwrap().len() <= 1_000);
        assert_eq!(dropped.get(), 0);
    }
}
