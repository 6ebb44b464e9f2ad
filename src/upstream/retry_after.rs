//! Waits an upstream asks for, read from its headers: `retry-after-ms` (OpenAI's), `Retry-After` as seconds or
//! an HTTP date (RFC 9110 §10.2.3), and OpenAI's `x-ratelimit-remaining-requests` / `-reset-requests` pair.
//!
//! These are outside input: every value is parsed with checked arithmetic and saturates at [`CEILING`] instead
//! of overflowing, so no header can panic the gateway. The upstream client then clamps the result to its
//! configured `max_retry_after`.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// The longest wait any header can express here; the configured `max_retry_after` is far below it.
pub(crate) const CEILING: Duration = Duration::from_secs(365 * 24 * 3600);

/// The wait an answer asks for, and the header that said it: `retry-after-ms` first (finer), else
/// `Retry-After`. A value that is not a wait (negative, NaN, garbage) counts as absent.
pub(crate) fn parse(headers: &HeaderMap, now: SystemTime) -> Option<(&'static str, Duration)> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(wait) = text("retry-after-ms").and_then(millis) {
        return Some(("retry-after-ms", wait));
    }
    text("retry-after")
        .and_then(|v| retry_after(v, now))
        .map(|wait| ("retry-after", wait))
}

/// The wait a Google error body asks for: its `google.rpc.RetryInfo` detail's `retryDelay` (`"37s"`,
/// `"0.5s"`), which Google's APIs send instead of a Retry-After header.
pub(crate) fn google_retry_info(body: &[u8]) -> Option<Duration> {
    #[derive(serde::Deserialize)]
    struct Body {
        error: Error,
    }
    #[derive(serde::Deserialize)]
    struct Error {
        #[serde(default)]
        details: Vec<Detail>,
    }
    #[derive(serde::Deserialize)]
    struct Detail {
        #[serde(rename = "@type", default)]
        kind: String,
        #[serde(rename = "retryDelay")]
        retry_delay: Option<String>,
    }
    let body: Body = serde_json::from_slice(body).ok()?;
    body.error
        .details
        .iter()
        .filter(|d| d.kind.ends_with("google.rpc.RetryInfo"))
        .find_map(|d| d.retry_delay.as_deref()?.trim().strip_suffix('s'))
        .and_then(|secs| seconds_f64(secs.parse().ok()?))
}

/// How long until the upstream takes requests again, when it says it has none left
/// (`x-ratelimit-remaining-requests: 0`); one second when it does not say when.
pub(crate) fn quota_exhausted(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let remaining = text("x-ratelimit-remaining-requests")?.trim();
    if remaining != "0" {
        return None;
    }
    Some(
        text("x-ratelimit-reset-requests")
            .and_then(reset)
            .unwrap_or(Duration::from_secs(1)),
    )
}

/// `retry-after-ms`: milliseconds, possibly fractional.
pub(crate) fn millis(text: &str) -> Option<Duration> {
    seconds_f64(text.trim().parse::<f64>().ok()? / 1000.0)
}

/// `Retry-After`: delay-seconds (digits; a fraction is tolerated) or an HTTP date, which counts from `now` (a
/// date in the past is no wait).
pub(crate) fn retry_after(text: &str, now: SystemTime) -> Option<Duration> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only: saturate rather than fail on a number too large for u64.
        let secs = text.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(CEILING));
    }
    if let Ok(secs) = text.parse::<f64>() {
        return seconds_f64(secs);
    }
    let when = httpdate::parse_http_date(text).ok()?;
    Some(
        when.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(CEILING),
    )
}

/// OpenAI's reset durations: `1s`, `6m0s`, `20ms`, `1h2m3.5s`.
pub(crate) fn reset(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (scale, unit_len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else if rest.starts_with('h') {
            (3600.0, 1)
        } else if rest.starts_with('m') {
            (60.0, 1)
        } else if rest.starts_with('s') {
            (1.0, 1)
        } else {
            return None;
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    seconds_f64(total)
}

/// A count of seconds from outside: finite and not negative, saturating at [`CEILING`].
fn seconds_f64(secs: f64) -> Option<Duration> {
    if !(secs.is_finite() && secs >= 0.0) {
        return None;
    }
    Some(
        Duration::try_from_secs_f64(secs)
            .unwrap_or(CEILING)
            .min(CEILING),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    /// The ceiling is a year: any wait an upstream names below it passes whole (the configured
    /// `max_retry_after` clamps it later); an empty header is no wait at all.
    #[test]
    fn waits_up_to_a_year_pass_whole_and_an_empty_header_is_none() {
        let now = std::time::SystemTime::now();
        assert_eq!(CEILING, Duration::from_secs(31_536_000));
        for secs in [120u64, 86_400, 31_535_999] {
            assert_eq!(
                retry_after(&secs.to_string(), now),
                Some(Duration::from_secs(secs))
            );
        }
        assert_eq!(retry_after("", now), None);
        assert_eq!(retry_after("  ", now), None);
    }

    #[test]
    fn the_forms_of_a_wait() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let s = Duration::from_secs;
        type Headers = &'static [(&'static str, &'static str)];
        let cases: &[(Headers, Option<(&str, Duration)>)] = &[
            (&[("retry-after", "2")], Some(("retry-after", s(2)))),
            (
                &[("retry-after-ms", "1500")],
                Some(("retry-after-ms", Duration::from_millis(1500))),
            ),
            (
                &[("retry-after-ms", "250"), ("retry-after", "9")],
                Some(("retry-after-ms", Duration::from_millis(250))),
            ),
            (
                &[("retry-after", "Sun, 06 Nov 1994 08:49:47 GMT")],
                Some(("retry-after", s(10))),
            ),
            (
                &[("retry-after", "Sun, 06 Nov 1994 08:49:00 GMT")],
                Some(("retry-after", Duration::ZERO)),
            ),
            (
                &[("retry-after", "0.5")],
                Some(("retry-after", Duration::from_millis(500))),
            ),
            (&[("retry-after", "soon")], None),
            (&[("retry-after", "-3")], None),
            (
                &[("retry-after-ms", "NaN"), ("retry-after", "1")],
                Some(("retry-after", s(1))),
            ),
            (&[], None),
            // Hostile values saturate instead of overflowing.
            (
                &[("retry-after", "18446744073709551615")],
                Some(("retry-after", CEILING)),
            ),
            (
                &[("retry-after", "99999999999999999999999999")],
                Some(("retry-after", CEILING)),
            ),
            (
                &[("retry-after-ms", "1e30")],
                Some(("retry-after-ms", CEILING)),
            ),
            (&[("retry-after-ms", "inf")], None),
            (
                &[("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")],
                Some(("retry-after", CEILING)),
            ),
        ];
        for (pairs, want) in cases {
            assert_eq!(parse(&headers(pairs), now), *want, "{pairs:?}");
        }
    }

    #[test]
    fn an_exhausted_quota_and_its_reset() {
        let ms = Duration::from_millis;
        type Headers = &'static [(&'static str, &'static str)];
        let cases: &[(Headers, Option<Duration>)] = &[
            (
                &[
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-ratelimit-reset-requests", "1s"),
                ],
                Some(ms(1000)),
            ),
            (
                &[
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-ratelimit-reset-requests", "6m0s"),
                ],
                Some(ms(360_000)),
            ),
            (
                &[
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-ratelimit-reset-requests", "20ms"),
                ],
                Some(ms(20)),
            ),
            (
                &[
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-ratelimit-reset-requests", "1h2m3.5s"),
                ],
                Some(ms(3_723_500)),
            ),
            (
                &[
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-ratelimit-reset-requests", "later"),
                ],
                Some(ms(1000)),
            ),
            (&[("x-ratelimit-remaining-requests", "0")], Some(ms(1000))),
            (
                &[
                    ("x-ratelimit-remaining-requests", "3"),
                    ("x-ratelimit-reset-requests", "1s"),
                ],
                None,
            ),
            (&[], None),
            (
                &[
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-ratelimit-reset-requests", "1e300h"),
                ],
                Some(ms(1000)),
            ),
            (
                &[
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-ratelimit-reset-requests", "99999999999999h"),
                ],
                Some(CEILING),
            ),
        ];
        for (pairs, want) in cases {
            assert_eq!(quota_exhausted(&headers(pairs)), *want, "{pairs:?}");
        }
    }
}
