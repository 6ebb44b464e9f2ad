//! The one log line per RPC (target `aigw::rpc`), written straight into the log buffer in the exact layout
//! tracing-subscriber's fmt layer gives it, text or JSON. The line is the product's, and was about 5% of a
//! unary call's CPU when formatted field by field through tracing's visitor. It goes through `tracing` as
//! before whenever the direct path could differ: before the subscriber is installed (tests with their own),
//! with colours on, inside a span (whose context the line would then carry), or when something else reads
//! events (span export). `RUST_LOG` applies either way.

use std::{
    fmt::Write as _,
    io::Write as _,
    sync::OnceLock,
    time::{SystemTime, UNIX_EPOCH},
};

use super::log_buffer::LogBuffer;

/// Where direct lines go, and in which layout; set once by `telemetry::init` when the direct path is safe.
static DIRECT: OnceLock<(LogBuffer, Layout)> = OnceLock::new();

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    Text,
    Json,
}

pub(super) fn install(logs: LogBuffer, layout: Layout) {
    let _ = DIRECT.set((logs, layout));
}

/// An RPC's line, as `core::call_record` fills it.
pub(crate) struct LogLine<'a> {
    pub rpc: &'a str,
    pub key: &'a str,
    pub request_id: &'a str,
    pub model: &'a str,
    pub upstream: &'a str,
    pub code: &'a str,
    pub error: &'a str,
    pub latency_ms: f64,
    /// Left out for sessions, whose wall time includes waiting for the user.
    pub overhead_us: Option<u64>,
    pub prompt_tokens: i32,
    pub completion_tokens: i32,
    pub cached_prompt_tokens: i32,
    pub reasoning_tokens: i32,
    pub usage_estimated: bool,
    pub cost_usd: f64,
    pub turns: u32,
    pub attempts: u32,
    pub cache: &'a str,
}

impl LogLine<'_> {
    /// Writes the line (if `aigw::rpc` is enabled at info).
    pub(crate) fn write(&self) {
        match DIRECT.get() {
            Some((logs, layout))
                if tracing::enabled!(target: "aigw::rpc", tracing::Level::INFO)
                    && tracing::Span::current().is_none() =>
            {
                let write = |line: &mut Vec<u8>| {
                    line.clear();
                    self.format(*layout, SystemTime::now(), line);
                    logs.write_line(line);
                };
                // A thread's scratch buffer, or a fresh one where there is none (a thread tearing down).
                let reused =
                    LINE.try_with(|line| line.try_borrow_mut().map(|mut line| write(&mut line)));
                if !matches!(reused, Ok(Ok(()))) {
                    write(&mut Vec::new());
                }
            }
            _ => self.through_tracing(),
        }
    }

    fn through_tracing(&self) {
        tracing::info!(
            target: "aigw::rpc",
            rpc = self.rpc,
            key = %self.key,
            request_id = %self.request_id,
            model = %self.model,
            upstream = %self.upstream,
            code = self.code,
            error = self.error,
            latency_ms = format_args!("{:.2}", self.latency_ms),
            overhead_us = self.overhead_us,
            prompt_tokens = self.prompt_tokens,
            completion_tokens = self.completion_tokens,
            cached_prompt_tokens = self.cached_prompt_tokens,
            reasoning_tokens = self.reasoning_tokens,
            usage_estimated = self.usage_estimated,
            cost_usd = format_args!("{:.6}", self.cost_usd),
            turns = self.turns,
            attempts = self.attempts,
            cache = self.cache,
        );
    }

    /// The whole line, newline included, as the fmt layer writes the event above.
    fn format(&self, layout: Layout, now: SystemTime, out: &mut Vec<u8>) {
        match layout {
            Layout::Text => self.text(now, out),
            Layout::Json => self.json(now, out),
        }
    }

    /// `{time}  INFO aigw::rpc: rpc="Generate" key=k ...`: `%` fields as they are, strings quoted as `{:?}`.
    fn text(&self, now: SystemTime, out: &mut Vec<u8>) {
        timestamp(now, out);
        out.extend_from_slice(b"  INFO aigw::rpc: rpc=");
        quoted(self.rpc, out);
        for (name, value) in [
            (" key=", self.key),
            (" request_id=", self.request_id),
            (" model=", self.model),
            (" upstream=", self.upstream),
        ] {
            out.extend_from_slice(name.as_bytes());
            // As the fmt layer writes `%` fields: unescaped. These are config names and a checked id.
            out.extend_from_slice(value.as_bytes());
        }
        for (name, value) in [(" code=", self.code), (" error=", self.error)] {
            out.extend_from_slice(name.as_bytes());
            quoted(value, out);
        }
        let _ = write!(out, " latency_ms={:.2}", self.latency_ms);
        if let Some(us) = self.overhead_us {
            let _ = write!(out, " overhead_us={us}");
        }
        let _ = write!(
            out,
            " prompt_tokens={} completion_tokens={} cached_prompt_tokens={} reasoning_tokens={} \
             usage_estimated={} cost_usd={:.6} turns={} attempts={} cache=",
            self.prompt_tokens,
            self.completion_tokens,
            self.cached_prompt_tokens,
            self.reasoning_tokens,
            self.usage_estimated,
            self.cost_usd,
            self.turns,
            self.attempts,
        );
        quoted(self.cache, out);
        out.push(b'\n');
    }

    /// `{"timestamp":…,"level":"INFO",<fields>,"target":"aigw::rpc"}`: what `json().flatten_event(true)`
    /// writes. `%` and `format_args!` fields are strings there (the two numbers' text needs no escaping).
    fn json(&self, now: SystemTime, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"timestamp\":\"");
        timestamp(now, out);
        out.extend_from_slice(b"\",\"level\":\"INFO\"");
        for (name, value) in [
            ("rpc", self.rpc),
            ("key", self.key),
            ("request_id", self.request_id),
            ("model", self.model),
            ("upstream", self.upstream),
            ("code", self.code),
            ("error", self.error),
        ] {
            json_field(name, value, out);
        }
        let _ = write!(out, ",\"latency_ms\":\"{:.2}\"", self.latency_ms);
        if let Some(us) = self.overhead_us {
            let _ = write!(out, ",\"overhead_us\":{us}");
        }
        let _ = write!(
            out,
            ",\"prompt_tokens\":{},\"completion_tokens\":{},\"cached_prompt_tokens\":{},\
             \"reasoning_tokens\":{},\"usage_estimated\":{},\"cost_usd\":\"{:.6}\",\"turns\":{},\"attempts\":{}",
            self.prompt_tokens,
            self.completion_tokens,
            self.cached_prompt_tokens,
            self.reasoning_tokens,
            self.usage_estimated,
            self.cost_usd,
            self.turns,
            self.attempts,
        );
        json_field("cache", self.cache, out);
        out.extend_from_slice(b",\"target\":\"aigw::rpc\"}\n");
    }
}

thread_local! {
    /// One line's worth of bytes per thread, reused.
    static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A `{:?}` string field, as the text layout shows it.
fn quoted(value: &str, out: &mut Vec<u8>) {
    let _ = write!(out, "{value:?}");
}

fn json_field(name: &str, value: &str, out: &mut Vec<u8>) {
    let _ = write!(out, ",\"{name}\":");
    // serde_json's escaping, the fmt layer's JSON writer's own; writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// `2026-11-30T17:56:28.653484Z`: UTC, microseconds, as tracing-subscriber's default timer writes it. The
/// part up to the second is kept per thread and written again only when the second changes.
fn timestamp(now: SystemTime, out: &mut Vec<u8>) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let reused = SECOND.try_with(|cell| {
        cell.try_borrow_mut().map(|mut kept| {
            let (at, text) = &mut *kept;
            if *at != Some(secs) || text.is_empty() {
                text.clear();
                up_to_the_second(secs, text);
                *at = Some(secs);
            }
            out.extend_from_slice(text.as_bytes());
        })
    });
    if !matches!(reused, Ok(Ok(()))) {
        let mut text = String::new();
        up_to_the_second(secs, &mut text);
        out.extend_from_slice(text.as_bytes());
    }
    let micros = since.subsec_micros();
    let digits = [100_000, 10_000, 1_000, 100, 10, 1].map(|d| b'0' + (micros / d % 10) as u8);
    out.extend_from_slice(&digits);
    out.push(b'Z');
}

/// `2026-11-30T17:56:28.`
fn up_to_the_second(secs: u64, out: &mut String) {
    let (year, month, day) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(i64::MAX));
    let of_day = secs % 86_400;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
    );
}

thread_local! {
    /// The second last written, and its text.
    static SECOND: std::cell::RefCell<(Option<u64>, String)> =
        const { std::cell::RefCell::new((None, String::new())) };
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // doy is 0..366 and mp 0..12, so both fit.
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Both ways of writing a line, for the tests that hold them equal: the line as the fmt layer writes
/// `through_tracing`, and as `format` writes it, each with its timestamp cut out.
#[cfg(test)]
pub(crate) fn both_ways(line: &LogLine<'_>, layout: Layout) -> (String, String) {
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::{layer::SubscriberExt, Layer as _};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    let captured = Captured::default();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(captured.clone())
        .with_ansi(false);
    let subscriber = match layout {
        Layout::Text => tracing_subscriber::registry().with(fmt.boxed()),
        Layout::Json => tracing_subscriber::registry().with(fmt.json().flatten_event(true).boxed()),
    };
    tracing::subscriber::with_default(subscriber, || line.through_tracing());
    let by_tracing = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let mut direct = Vec::new();
    line.format(layout, SystemTime::now(), &mut direct);
    let direct = String::from_utf8(direct).unwrap();
    let untimed = |s: &str| -> String {
        let (before, after) = match layout {
            Layout::Text => ("", s.split_once(' ').map_or("", |(_, rest)| rest)),
            Layout::Json => {
                let rest = s.strip_prefix("{\"timestamp\":\"").unwrap_or(s);
                (
                    "{\"timestamp\":",
                    rest.split_once('"').map_or("", |(_, rest)| rest),
                )
            }
        };
        format!("{before}{after}")
    };
    (untimed(&direct), untimed(&by_tracing))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> LogLine<'static> {
        LogLine {
            rpc: "Generate",
            key: "team-a",
            request_id: "0af7651916cd43dd8448eb211c80319c",
            model: "gpt-4.1",
            upstream: "openai",
            code: "OK",
            error: "",
            latency_ms: 12.3456,
            overhead_us: Some(87),
            prompt_tokens: 12,
            completion_tokens: 34,
            cached_prompt_tokens: 0,
            reasoning_tokens: 5,
            usage_estimated: false,
            cost_usd: 0.000123,
            turns: 1,
            attempts: 2,
            cache: "miss",
        }
    }

    #[test]
    fn the_direct_line_reads_as_the_fmt_layer_writes_it() {
        let session = LogLine {
            rpc: "InteractiveStream",
            overhead_us: None,
            code: "CANCELLED",
            error: "client_gone",
            usage_estimated: true,
            cache: "",
            ..line()
        };
        let odd = LogLine {
            key: "a \"quoted\" key\twith\nbreaks and \x1b[31m colour, ünïcödé \u{85}",
            model: "m\\odel",
            error: "with \"quotes\" \u{7f}",
            latency_ms: -0.0,
            cost_usd: 1e9,
            prompt_tokens: i32::MIN,
            turns: u32::MAX,
            ..line()
        };
        for (l, name) in [(line(), "plain"), (session, "session"), (odd, "odd")] {
            for layout in [Layout::Text, Layout::Json] {
                let (direct, by_tracing) = both_ways(&l, layout);
                assert!(!direct.is_empty() && direct.ends_with('\n'));
                assert_eq!(direct, by_tracing, "{name} {layout:?}");
            }
        }
        let (text, _) = both_ways(&line(), Layout::Text);
        assert_eq!(
            text,
            " INFO aigw::rpc: rpc=\"Generate\" key=team-a request_id=0af7651916cd43dd8448eb211c80319c \
             model=gpt-4.1 upstream=openai code=\"OK\" error=\"\" latency_ms=12.35 overhead_us=87 \
             prompt_tokens=12 completion_tokens=34 cached_prompt_tokens=0 reasoning_tokens=5 \
             usage_estimated=false cost_usd=0.000123 turns=1 attempts=2 cache=\"miss\"\n"
        );
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        let at = |secs: u64, micros: u64| {
            let mut out = Vec::new();
            timestamp(
                UNIX_EPOCH + std::time::Duration::from_micros(secs * 1_000_000 + micros),
                &mut out,
            );
            String::from_utf8(out).unwrap()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        // The same second again (its text is kept), then the next.
        assert_eq!(at(0, 999_999), "1970-01-01T00:00:00.999999Z");
        assert_eq!(at(1, 10), "1970-01-01T00:00:01.000010Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(at(1_796_000_000, 653_484), "2026-11-30T00:53:20.653484Z");
        assert_eq!(at(4_107_542_400, 999_999), "2100-03-01T00:00:00.999999Z");
        assert_eq!(at(253_402_300_799, 0), "9999-12-31T23:59:59.000000Z");
        // And as tracing-subscriber's own timer writes the time now (to the second, which may tick between).
        let mut theirs = String::new();
        tracing_subscriber::fmt::time::FormatTime::format_time(
            &tracing_subscriber::fmt::time::SystemTime,
            &mut tracing_subscriber::fmt::format::Writer::new(&mut theirs),
        )
        .unwrap();
        let mut ours = Vec::new();
        timestamp(SystemTime::now(), &mut ours);
        let ours = String::from_utf8(ours).unwrap();
        assert_eq!(ours.len(), theirs.len());
        assert_eq!(ours[..10], theirs[..10], "{ours} vs {theirs}");
    }
}
