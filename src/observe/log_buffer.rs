//! The buffer log lines go through on their way to stderr: the fmt layer's lines and the RPC lines written
//! straight into it (`log_line`).

use std::{
    io::{BufWriter, Stderr, Write},
    sync::{Arc, Mutex},
    time::Duration,
};

/// How long a log line may wait in the buffer.
const LOG_FLUSH_EVERY: Duration = Duration::from_millis(100);
const LOG_BUFFER_BYTES: usize = 64 * 1024;

/// Log lines go to stderr through one 64 KiB buffer, written out when full and at least every 100 ms by a
/// flusher thread: one `write` per batch instead of one per line (a line per RPC made that syscall a
/// measurable share of a call's CPU). A line waits at most 100 ms; [`super::telemetry::Telemetry::shutdown`] writes the rest.
#[derive(Clone)]
pub(super) struct LogBuffer(Arc<Mutex<BufWriter<Stderr>>>);

impl LogBuffer {
    pub(super) fn start() -> LogBuffer {
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

    pub(super) fn flush(&self) {
        let _ = self.lock().flush();
    }

    /// One whole line, under one lock, as the fmt layer hands over its lines.
    pub(super) fn write_line(&self, line: &[u8]) {
        let _ = self.lock().write_all(line);
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
