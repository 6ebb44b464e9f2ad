//! Where a caller stands against its rate limits once a call is admitted — requests and tokens left in the
//! rolling minute, and when the oldest counted one leaves it — as clients read it: OpenAI's
//! `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (on the OpenAI doors, and as gRPC trailers) and
//! Anthropic's `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}` on the Messages door.
//!
//! A caller with a key's and a group's limits (or a model's) is told the tighter of each: the one with less
//! left. Only limits that are set are told.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};

/// One rate window after the admission: its limit, what is left of it, and when it next frees up (the oldest
/// counted request or token leaves the window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) limit: u64,
    pub(crate) remaining: u64,
    pub(crate) reset: Duration,
}

/// The request and token windows, where limits are set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Standing {
    pub(crate) requests: Option<Window>,
    pub(crate) tokens: Option<Window>,
}

/// Whose header names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    OpenAi,
    Anthropic,
}

fn tighter(a: Option<Window>, b: Option<Window>) -> Option<Window> {
    match (a, b) {
        (Some(a), Some(b)) if b.remaining < a.remaining => Some(b),
        (Some(a), _) => Some(a),
        (None, b) => b,
    }
}

impl Standing {
    /// Of two standings (a key's and its group's), each window's tighter one.
    pub(crate) fn tighter(self, other: Standing) -> Standing {
        Standing {
            requests: tighter(self.requests, other.requests),
            tokens: tighter(self.tokens, other.tokens),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none()
    }

    /// Writes the headers in `style`'s names.
    pub(crate) fn write(&self, headers: &mut HeaderMap, style: Style) {
        for (what, window) in [("requests", self.requests), ("tokens", self.tokens)] {
            let Some(w) = window else { continue };
            set(headers, style, what, "limit", HeaderValue::from(w.limit));
            set(
                headers,
                style,
                what,
                "remaining",
                HeaderValue::from(w.remaining),
            );
            set(headers, style, what, "reset", reset(style, w.reset));
        }
    }
}

/// A refusal by the `what` window ("requests" or "tokens"): none left of it, until `wait` has passed.
pub(crate) fn write_spent(headers: &mut HeaderMap, style: Style, what: &str, wait: Duration) {
    set(
        headers,
        style,
        what,
        "remaining",
        HeaderValue::from_static("0"),
    );
    set(headers, style, what, "reset", reset(style, wait));
}

/// One header: `field` ("limit", "remaining", "reset") of the `what` window, in `style`'s name.
fn set(
    headers: &mut HeaderMap,
    style: Style,
    what: &str,
    field: &str,
    value: impl Into<Option<HeaderValue>>,
) {
    if let (Some(name), Some(value)) = (name(style, what, field), value.into()) {
        headers.insert(name, value);
    }
}

/// The header's name, static: an admitted call's headers make no names. OpenAI's are
/// `x-ratelimit-{field}-{what}`, Anthropic's `anthropic-ratelimit-{what}-{field}`.
fn name(style: Style, what: &str, field: &str) -> Option<HeaderName> {
    let name = match (style, what, field) {
        (Style::OpenAi, "requests", "limit") => "x-ratelimit-limit-requests",
        (Style::OpenAi, "requests", "remaining") => "x-ratelimit-remaining-requests",
        (Style::OpenAi, "requests", "reset") => "x-ratelimit-reset-requests",
        (Style::OpenAi, "tokens", "limit") => "x-ratelimit-limit-tokens",
        (Style::OpenAi, "tokens", "remaining") => "x-ratelimit-remaining-tokens",
        (Style::OpenAi, "tokens", "reset") => "x-ratelimit-reset-tokens",
        (Style::Anthropic, "requests", "limit") => "anthropic-ratelimit-requests-limit",
        (Style::Anthropic, "requests", "remaining") => "anthropic-ratelimit-requests-remaining",
        (Style::Anthropic, "requests", "reset") => "anthropic-ratelimit-requests-reset",
        (Style::Anthropic, "tokens", "limit") => "anthropic-ratelimit-tokens-limit",
        (Style::Anthropic, "tokens", "remaining") => "anthropic-ratelimit-tokens-remaining",
        (Style::Anthropic, "tokens", "reset") => "anthropic-ratelimit-tokens-reset",
        _ => return None,
    };
    Some(HeaderName::from_static(name))
}

/// When a window frees up, as `style` writes it: OpenAI's duration, Anthropic's RFC 3339 time.
fn reset(style: Style, after: Duration) -> Option<HeaderValue> {
    let text = match style {
        Style::OpenAi => go_duration(after),
        Style::Anthropic => {
            humantime::format_rfc3339_seconds(SystemTime::now() + after).to_string()
        }
    };
    HeaderValue::try_from(text).ok()
}

/// A duration as OpenAI writes its resets (Go's form): `20ms`, `1s`, `1.5s`, `6m0s`.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m) = (ms / 3_600_000, ms / 60_000 % 60);
    let s = ms % 60_000;
    let secs = if s.is_multiple_of(1000) {
        format!("{}s", s / 1000)
    } else {
        let text = format!("{}.{:03}", s / 1000, s % 1000);
        format!("{}s", text.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_follow_each_providers_pattern() {
        for what in ["requests", "tokens"] {
            for field in ["limit", "remaining", "reset"] {
                let openai = name(Style::OpenAi, what, field).unwrap();
                assert_eq!(openai.as_str(), format!("x-ratelimit-{field}-{what}"));
                let anthropic = name(Style::Anthropic, what, field).unwrap();
                assert_eq!(
                    anthropic.as_str(),
                    format!("anthropic-ratelimit-{what}-{field}")
                );
            }
        }
        assert!(name(Style::OpenAi, "images", "limit").is_none());
    }

    #[test]
    fn resets_are_written_as_openai_writes_them() {
        for (ms, text) in [
            (0, "0ms"),
            (20, "20ms"),
            (1000, "1s"),
            (1500, "1.5s"),
            (59_950, "59.95s"),
            (60_000, "1m0s"),
            (360_000, "6m0s"),
            (3_723_000, "1h2m3s"),
        ] {
            assert_eq!(go_duration(Duration::from_millis(ms)), text);
        }
    }

    #[test]
    fn the_tighter_window_is_told_and_unset_ones_are_not() {
        let w = |limit, remaining| Window {
            limit,
            remaining,
            reset: Duration::from_secs(3),
        };
        let key = Standing {
            requests: Some(w(100, 90)),
            tokens: None,
        };
        let group = Standing {
            requests: Some(w(10, 2)),
            tokens: Some(w(1000, 400)),
        };
        let told = key.tighter(group);
        assert_eq!(told.requests, Some(w(10, 2)));
        assert_eq!(told.tokens, Some(w(1000, 400)));
        let mut headers = HeaderMap::new();
        Standing {
            requests: Some(w(10, 2)),
            tokens: None,
        }
        .write(&mut headers, Style::OpenAi);
        assert_eq!(headers["x-ratelimit-limit-requests"], "10");
        assert_eq!(headers["x-ratelimit-remaining-requests"], "2");
        assert_eq!(headers["x-ratelimit-reset-requests"], "3s");
        assert!(headers.get("x-ratelimit-limit-tokens").is_none());
        let mut headers = HeaderMap::new();
        told.write(&mut headers, Style::Anthropic);
        assert_eq!(headers["anthropic-ratelimit-tokens-remaining"], "400");
        let reset = headers["anthropic-ratelimit-requests-reset"]
            .to_str()
            .unwrap();
        assert!(humantime::parse_rfc3339(reset).is_ok(), "{reset}");
    }
}
