//! The time a call may take: the client's `grpc-timeout`, bounded by the upstream's `request_timeout`.

use std::time::Duration;

use http::HeaderMap;
use tokio::time::Instant;

use crate::error::GatewayError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline {
    pub(crate) at: Instant,
    /// Whose limit it is, for the error message.
    by_client: bool,
}

impl Deadline {
    /// The earlier of the client's deadline (if any) and `now + request_timeout`.
    pub(crate) fn new(
        now: Instant,
        client: Option<Duration>,
        request_timeout: Duration,
    ) -> Deadline {
        match client {
            Some(t) if t <= request_timeout => Deadline {
                at: now + t,
                by_client: true,
            },
            _ => Deadline {
                at: now + request_timeout,
                by_client: false,
            },
        }
    }

    /// The same limit, capped at `other` (a turn inside a session bounded by the client).
    pub(crate) fn min(self, other: Deadline) -> Deadline {
        if other.at < self.at {
            other
        } else {
            self
        }
    }

    pub(crate) fn exceeded(&self) -> GatewayError {
        GatewayError::DeadlineExceeded(if self.by_client {
            "the client's deadline (grpc-timeout) passed before the upstream answered".into()
        } else {
            "the upstream did not finish within the configured request_timeout".into()
        })
    }
}

/// Runs `fut` until it finishes, the deadline passes or the grace period ends (`stop`). Dropping `fut` drops
/// the upstream request with it.
pub(crate) async fn bounded<T>(
    stop: &tokio_util::sync::CancellationToken,
    deadline: Deadline,
    fut: impl std::future::Future<Output = Result<T, GatewayError>>,
) -> Result<T, GatewayError> {
    tokio::select! {
        biased;
        _ = stop.cancelled() => Err(GatewayError::ShuttingDown),
        _ = tokio::time::sleep_until(deadline.at) => Err(deadline.exceeded()),
        result = fut => result,
    }
}

/// Parses `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n), per the gRPC HTTP/2 spec.
pub(crate) fn client_timeout(metadata: &HeaderMap) -> Option<Duration> {
    parse_grpc_timeout(metadata.get("grpc-timeout")?.to_str().ok()?)
}

pub(crate) fn parse_grpc_timeout(text: &str) -> Option<Duration> {
    // ASCII only: the unit is then one byte, and the split below is on a character boundary (the fuzz harness
    // found the panic; a header value that reaches here is ASCII already, so this is belt and braces).
    if !text.is_ascii() {
        return None;
    }
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_forms() {
        let cases = [
            ("1H", Some(Duration::from_secs(3600))),
            ("2M", Some(Duration::from_secs(120))),
            ("30S", Some(Duration::from_secs(30))),
            ("250m", Some(Duration::from_millis(250))),
            ("99999999u", Some(Duration::from_micros(99_999_999))),
            ("5n", Some(Duration::from_nanos(5))),
            ("123456789S", None),
            ("S", None),
            ("", None),
            ("10x", None),
            ("-1S", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_grpc_timeout(text), want, "{text:?}");
        }
    }

    #[test]
    fn a_sessions_limit_caps_a_turns() {
        let now = Instant::now();
        let turn = Deadline::new(now, None, Duration::from_secs(60));
        let session = Deadline::new(now, Some(Duration::from_secs(5)), Duration::from_secs(60));
        assert_eq!(turn.min(session), session);
        assert_eq!(session.min(turn), session);
    }

    #[test]
    fn the_client_timeout_is_read_from_its_metadata() {
        let mut metadata = HeaderMap::new();
        assert_eq!(client_timeout(&metadata), None);
        metadata.insert("grpc-timeout", "250m".parse().unwrap());
        assert_eq!(client_timeout(&metadata), Some(Duration::from_millis(250)));
    }

    /// `bounded` ends a call at its deadline or when the gateway stops, and otherwise gives the call's result.
    #[tokio::test(start_paused = true)]
    async fn a_bounded_call_ends_at_its_deadline_or_at_shutdown() {
        let stop = tokio_util::sync::CancellationToken::new();
        let deadline = Deadline::new(
            Instant::now(),
            Some(Duration::from_secs(2)),
            Duration::from_secs(60),
        );
        let answer = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(7)
        };
        assert_eq!(bounded(&stop, deadline, answer).await.unwrap(), 7);
        let slow = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok(7)
        };
        let err = bounded(&stop, deadline, slow).await.unwrap_err();
        assert!(matches!(err, GatewayError::DeadlineExceeded(_)), "{err:?}");
        assert_eq!(Instant::now(), deadline.at);
        stop.cancel();
        let later = Deadline::new(Instant::now(), None, Duration::from_secs(60));
        let err = bounded(&stop, later, std::future::pending::<Result<(), _>>())
            .await
            .unwrap_err();
        assert!(matches!(err, GatewayError::ShuttingDown), "{err:?}");
    }

    #[test]
    fn the_earlier_limit_wins_and_is_named() {
        let now = Instant::now();
        let d = Deadline::new(now, Some(Duration::from_secs(1)), Duration::from_secs(60));
        assert_eq!(d.at, now + Duration::from_secs(1));
        assert!(d.exceeded().to_string().contains("grpc-timeout"));
        let d = Deadline::new(now, Some(Duration::from_secs(90)), Duration::from_secs(60));
        assert!(d.exceeded().to_string().contains("request_timeout"));
        // A tie is the client's: it asked for exactly that long.
        let d = Deadline::new(now, Some(Duration::from_secs(60)), Duration::from_secs(60));
        assert!(d.exceeded().to_string().contains("grpc-timeout"));
        assert_eq!(
            Deadline::new(now, None, Duration::from_secs(60)).at,
            now + Duration::from_secs(60)
        );
    }
}
