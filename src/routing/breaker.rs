//! A circuit breaker per route: it opens after `consecutive_failures` failures in a row, or when at least
//! `min_requests` calls in the last `window` failed at `failure_ratio` or more. Open, it refuses calls for
//! `cooldown`; then it lets one probe through (half-open): success closes it, failure opens it again. A probe
//! whose outcome never arrives (its call was cancelled) is replaced after another cooldown.
//!
//! Only upstream failures count (5xx, connect and reset errors, stalls, malformed answers); rate limiting is
//! handled by taking the route out of rotation for its Retry-After, and client errors mean the route works.

use std::{collections::VecDeque, sync::Mutex, time::Duration};

use tokio::time::Instant;

use crate::config::BreakerPolicy;

/// Calls are counted per second of the window.
const BUCKET: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    policy: BreakerPolicy,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: State,
    consecutive: u32,
    /// (bucket start, calls, failures), oldest first.
    buckets: VecDeque<(Instant, u32, u32)>,
    /// Open: until when. Half-open: when the probe went out.
    since: Instant,
}

impl Breaker {
    pub(crate) fn new(policy: BreakerPolicy) -> Breaker {
        let inner = Inner {
            state: State::Closed,
            consecutive: 0,
            buckets: VecDeque::new(),
            since: Instant::now(),
        };
        Breaker {
            policy,
            inner: Mutex::new(inner),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn state(&self) -> State {
        self.lock().state
    }

    /// Whether a call may go to this route now; in half-open this claims the probe.
    pub(crate) fn allow(&self, now: Instant) -> bool {
        let mut inner = self.lock();
        match inner.state {
            State::Closed => true,
            State::Open if now >= inner.since => {
                inner.state = State::HalfOpen;
                inner.since = now;
                true
            }
            State::Open => false,
            State::HalfOpen if now >= inner.since + self.policy.cooldown => {
                inner.since = now; // the last probe never reported: send another
                true
            }
            State::HalfOpen => false,
        }
    }

    /// When an open breaker lets its next probe through.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        let inner = self.lock();
        (inner.state == State::Open).then_some(inner.since)
    }

    pub(crate) fn record(&self, now: Instant, success: bool) {
        let mut inner = self.lock();
        let p = &self.policy;
        while inner
            .buckets
            .front()
            .is_some_and(|&(at, _, _)| at + p.window <= now)
        {
            inner.buckets.pop_front();
        }
        match inner.buckets.back_mut() {
            Some((at, calls, failures)) if now < *at + BUCKET => {
                *calls += 1;
                *failures += u32::from(!success);
            }
            _ => inner.buckets.push_back((now, 1, u32::from(!success))),
        }
        if success {
            inner.consecutive = 0;
            if inner.state == State::HalfOpen {
                inner.state = State::Closed;
                inner.buckets.clear();
            }
            return;
        }
        inner.consecutive += 1;
        let (calls, failures) = inner
            .buckets
            .iter()
            .fold((0, 0), |(c, f), &(_, bc, bf)| (c + bc, f + bf));
        let ratio_tripped =
            calls >= p.min_requests && f64::from(failures) >= p.failure_ratio * f64::from(calls);
        if inner.state == State::HalfOpen
            || inner.consecutive >= p.consecutive_failures
            || ratio_tripped
        {
            inner.state = State::Open;
            inner.since = now + p.cooldown;
            inner.consecutive = 0;
            inner.buckets.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            consecutive_failures: 3,
            failure_ratio: 0.5,
            min_requests: 10,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(5),
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_recovers_through_a_probe() {
        let b = Breaker::new(policy());
        let t0 = Instant::now();
        for _ in 0..2 {
            assert!(b.allow(t0));
            b.record(t0, false);
        }
        assert_eq!(b.state(), State::Closed);
        b.record(t0, false);
        assert_eq!(b.state(), State::Open);
        assert!(!b.allow(t0 + Duration::from_secs(4)));
        assert_eq!(b.retry_at(), Some(t0 + Duration::from_secs(5)));
        // After the cooldown exactly one probe goes through.
        let t1 = t0 + Duration::from_secs(5);
        assert!(b.allow(t1));
        assert_eq!(b.state(), State::HalfOpen);
        assert!(!b.allow(t1));
        b.record(t1, true);
        assert_eq!(b.state(), State::Closed);
        assert!(b.allow(t1));
    }

    #[test]
    fn a_failed_probe_opens_it_again_and_a_lost_probe_is_replaced() {
        let b = Breaker::new(policy());
        let t0 = Instant::now();
        for _ in 0..3 {
            b.record(t0, false);
        }
        let t1 = t0 + Duration::from_secs(5);
        assert!(b.allow(t1));
        b.record(t1, false);
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.retry_at(), Some(t1 + Duration::from_secs(5)));
        let t2 = t1 + Duration::from_secs(5);
        assert!(b.allow(t2)); // probe claimed, its call is then cancelled: no record
        assert!(!b.allow(t2 + Duration::from_secs(4)));
        assert!(b.allow(t2 + Duration::from_secs(5)));
    }

    #[test]
    fn opens_on_failure_ratio_with_enough_calls() {
        let b = Breaker::new(policy());
        let t0 = Instant::now();
        // Alternating success and failure: never 3 in a row, but 50% over 10 calls.
        for i in 0..9 {
            b.record(t0 + Duration::from_millis(i * 100), i % 2 == 0);
        }
        assert_eq!(b.state(), State::Closed, "9 calls: below min_requests");
        b.record(t0 + Duration::from_millis(900), false);
        assert_eq!(b.state(), State::Open);
        // Old failures leave the window.
        let b = Breaker::new(policy());
        for i in 0..8 {
            b.record(t0, i % 2 == 0);
        }
        b.record(t0 + Duration::from_secs(11), false);
        b.record(t0 + Duration::from_secs(11), true);
        assert_eq!(b.state(), State::Closed);
    }

    /// Calls let through before the breaker opened report while it is open: they neither extend its cooldown
    /// nor count against the route once a probe has closed it.
    #[test]
    fn late_outcomes_while_open_do_not_reopen_it_or_outlive_the_probe() {
        let b = Breaker::new(policy());
        let t0 = Instant::now();
        for _ in 0..3 {
            b.record(t0, false);
        }
        b.record(t0 + Duration::from_secs(1), false);
        assert_eq!(
            b.retry_at(),
            Some(t0 + Duration::from_secs(5)),
            "one late failure"
        );
        // Eight more, alternating: never three failures in a row, and nine calls are below min_requests.
        for i in 0..8 {
            b.record(t0 + Duration::from_secs(2), i % 2 == 0);
        }
        assert_eq!(b.retry_at(), Some(t0 + Duration::from_secs(5)));
        let t1 = t0 + Duration::from_secs(5);
        assert!(b.allow(t1));
        b.record(t1, true);
        assert_eq!(b.state(), State::Closed);
        // Counted afresh: one failure after the probe is one call of one.
        b.record(t1 + Duration::from_secs(1), false);
        assert_eq!(b.state(), State::Closed);
    }

    /// Opened by the ratio, the calls that tripped it are forgotten.
    #[test]
    fn a_ratio_trip_forgets_the_calls_that_tripped_it() {
        let b = Breaker::new(policy());
        let t0 = Instant::now();
        for i in 0..10 {
            b.record(t0, i % 2 == 0);
        }
        assert_eq!(b.state(), State::Open);
        b.record(t0 + Duration::from_secs(1), false);
        assert_eq!(b.retry_at(), Some(t0 + Duration::from_secs(5)));
    }

    /// The window's edges: calls exactly `window` old have left it, and a call exactly a second after a bucket
    /// opened starts the next bucket (which stays a second longer).
    #[test]
    fn the_window_and_its_buckets_end_exactly_on_time() {
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let b = Breaker::new(policy());
        // Nine calls, five failed, never two in a row: below min_requests.
        for i in 0..9 {
            b.record(t0, i % 2 == 1);
        }
        b.record(at(10), true);
        b.record(at(10), false);
        assert_eq!(
            b.state(),
            State::Closed,
            "the nine have left: 1 failure of 2"
        );

        let b = Breaker::new(policy());
        b.record(t0, true);
        for i in 0..8 {
            b.record(at(1), i % 2 == 1); // 4 failures of 8, in the bucket of t0 + 1 s
        }
        b.record(at(10), true);
        b.record(at(10), false);
        assert_eq!(
            b.state(),
            State::Open,
            "t0's call has left; 5 failures of 10"
        );

        // Calls within a second of a bucket's start join it and leave with it.
        let b = Breaker::new(policy());
        b.record(t0, true);
        for i in 0..8 {
            b.record(t0 + Duration::from_millis(500), i % 2 == 0);
        }
        b.record(at(10), true);
        b.record(at(10), false);
        assert_eq!(
            b.state(),
            State::Closed,
            "the nine left together: 1 failure of 2"
        );
    }

    /// Each call counts its own outcome, the one that opens a bucket and those that join it: 4 failures of 10
    /// is under half (one more would be half; the ratio is judged when a call fails).
    #[test]
    fn a_bucket_counts_each_calls_outcome() {
        let b = Breaker::new(policy());
        let t0 = Instant::now();
        for success in [
            true, true, false, true, false, true, true, false, true, false,
        ] {
            b.record(t0, success);
        }
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn the_default_breaker_stays_closed_for_a_flaky_upstream_and_opens_for_a_dead_one() {
        let cfg = crate::config::Config::parse(
            "[server]\nlisten = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"u\"\nkind = \"mock\"\n\
             [[models]]\nname = \"m\"\nmax_output_tokens = 10\nroutes = [{ upstream = \"u\", model = \"x\" }]\n",
            |_| None,
        )
        .unwrap();
        let policy = cfg.models[0].policy.breaker;
        let b = Breaker::new(policy);
        let mut rng = fastrand::Rng::with_seed(9);
        let t0 = Instant::now();
        // A quarter of 20,000 calls over 200 s fail at random: an ordinary bad day, not an outage.
        for i in 0..20_000u64 {
            let now = t0 + Duration::from_millis(i * 10);
            assert!(b.allow(now), "opened after {i} calls");
            b.record(now, rng.f64() >= 0.25);
        }
        // Every call fails: it opens.
        let t1 = t0 + Duration::from_secs(300);
        for _ in 0..policy.consecutive_failures {
            b.record(t1, false);
        }
        assert_eq!(b.state(), State::Open);
    }
}
