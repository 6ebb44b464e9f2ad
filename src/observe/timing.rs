//! Where a call's time went: upstream, the client, waits between attempts, and what is left, the gateway's own
//! overhead. Plain data, filled by the dispatcher and the relay, read by the call's record.

use std::time::Duration;

use prometheus::Histogram;
use tokio::time::Instant;

/// What the dispatcher did for a call, whether it succeeded or not: for its log line and metrics.
#[derive(Debug, Default)]
pub(crate) struct Trail {
    /// The upstream of the last attempt ("" when none was made).
    pub(crate) upstream: String,
    pub(crate) attempts: u32,
    /// Attempts an upstream accepted (2xx) that then failed before the answer's first piece: the provider may
    /// have billed them, so they are booked (estimated) with the call.
    pub(crate) lost: u32,
    /// Waiting on upstream answers, every attempt's.
    pub(crate) upstream_time: Duration,
    /// Waiting for a retry: backoff, an upstream's Retry-After, a route cooling down.
    pub(crate) waited: Duration,
}

/// Where an RPC's time went. Overhead is what is left: end-to-end minus upstream, client and retry waits.
#[derive(Debug)]
pub(crate) struct Timing {
    pub(crate) start: Instant,
    /// Waiting on upstream answers (every attempt, and every read of a stream).
    pub(crate) upstream: Duration,
    /// Blocked on a slow client (a full response channel).
    pub(crate) client_wait: Duration,
    /// Waiting between attempts (see [`Trail::waited`]).
    pub(crate) retry_wait: Duration,
    pub(crate) first_token: Option<Duration>,
    last_delta: Option<Instant>,
    /// The histogram of gaps between deltas, once the model is known.
    pub(crate) gap: Option<Histogram>,
    /// False for InteractiveStream: a session's wall time includes waiting for the user, so "overhead"
    /// would be meaningless there.
    pub(crate) overhead_applies: bool,
}

impl Default for Timing {
    fn default() -> Self {
        Timing::new()
    }
}

impl Timing {
    pub(crate) fn new() -> Timing {
        Timing {
            start: Instant::now(),
            upstream: Duration::ZERO,
            client_wait: Duration::ZERO,
            retry_wait: Duration::ZERO,
            first_token: None,
            last_delta: None,
            gap: None,
            overhead_applies: true,
        }
    }

    /// A piece of the answer was handed to the client's channel at `now`.
    pub(crate) fn delta_sent(&mut self, now: Instant) {
        if self.first_token.is_none() {
            self.first_token = Some(now - self.start);
        }
        if let (Some(last), Some(gap)) = (self.last_delta, &self.gap) {
            gap.observe((now - last).as_secs_f64());
        }
        self.last_delta = Some(now);
    }

    pub(crate) fn overhead(&self) -> Duration {
        self.start
            .elapsed()
            .saturating_sub(self.upstream + self.client_wait + self.retry_wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_between_attempts_are_not_overhead() {
        let mut timing = Timing::new();
        tokio::time::advance(Duration::from_millis(1500)).await;
        timing.upstream = Duration::from_millis(400);
        let trail = Trail {
            upstream: "a".into(),
            attempts: 2,
            upstream_time: Duration::from_millis(100),
            waited: Duration::from_secs(1),
            lost: 0,
        };
        timing.upstream += trail.upstream_time;
        timing.retry_wait += trail.waited;
        assert_eq!(timing.overhead(), Duration::ZERO);
    }
}
