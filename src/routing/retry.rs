//! Retry timing and the retry budget.
//!
//! Backoff is "full jitter": before retry n the wait is uniform in [0, min(max, base * 2^(n-1))], which
//! spreads clients that failed together instead of having them retry in lockstep. The budget caps retries at
//! a share of the model's requests over the last 10 s (plus a small floor), so an outage cannot multiply the
//! load on the upstreams by the number of attempts.

use std::{collections::VecDeque, sync::Mutex, time::Duration};

use tokio::time::Instant;

use crate::config::RetryPolicy;

const BUDGET_WINDOW: Duration = Duration::from_secs(10);
const BUCKET: Duration = Duration::from_secs(1);

/// The wait before retry `n` (1-based), given a uniform random `unit` in [0, 1).
pub(crate) fn backoff(policy: &RetryPolicy, n: u32, unit: f64) -> Duration {
    let exp = 2u32.saturating_pow(n.saturating_sub(1).min(30));
    let cap = policy.backoff.saturating_mul(exp).min(policy.max_backoff);
    cap.mul_f64(unit.clamp(0.0, 1.0))
}

#[derive(Debug)]
pub(crate) struct RetryBudget {
    ratio: f64,
    floor: f64,
    /// (bucket start, requests, retries), oldest first.
    buckets: Mutex<VecDeque<(Instant, u32, u32)>>,
}

impl RetryBudget {
    pub(crate) fn new(policy: &RetryPolicy) -> RetryBudget {
        RetryBudget {
            ratio: policy.budget_ratio,
            floor: policy.budget_min_per_second * BUDGET_WINDOW.as_secs_f64(),
            buckets: Mutex::default(),
        }
    }

    fn with<T>(&self, now: Instant, f: impl FnOnce(&mut VecDeque<(Instant, u32, u32)>) -> T) -> T {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        while b
            .front()
            .is_some_and(|&(at, _, _)| at + BUDGET_WINDOW <= now)
        {
            b.pop_front();
        }
        if b.back().is_none_or(|&(at, _, _)| now >= at + BUCKET) {
            b.push_back((now, 0, 0));
        }
        f(&mut b)
    }

    /// Counts a call to the model (its first attempt).
    pub(crate) fn record_request(&self, now: Instant) {
        self.with(now, |b| {
            if let Some(last) = b.back_mut() {
                last.1 += 1;
            }
        });
    }

    /// Takes one retry from the budget if there is one left.
    pub(crate) fn try_retry(&self, now: Instant) -> bool {
        self.with(now, |b| {
            let (requests, retries) = b
                .iter()
                .fold((0, 0), |(q, r), &(_, bq, br)| (q + bq, r + br));
            let allowed = self.ratio * f64::from(requests) + self.floor;
            if f64::from(retries) + 1.0 > allowed {
                return false;
            }
            if let Some(last) = b.back_mut() {
                last.2 += 1;
            }
            true
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(ratio: f64, floor: f64) -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            budget_ratio: ratio,
            budget_min_per_second: floor,
        }
    }

    #[test]
    fn backoff_is_capped_full_jitter() {
        let p = policy(0.2, 1.0);
        let ms = Duration::from_millis;
        assert_eq!(backoff(&p, 1, 0.999_999), ms(100).mul_f64(0.999_999));
        assert_eq!(backoff(&p, 3, 0.5), ms(200));
        assert_eq!(backoff(&p, 10, 0.5), ms(500)); // capped at 1 s, then jittered
        assert_eq!(backoff(&p, 99, 1.0), ms(1000));
        assert_eq!(backoff(&p, 2, 0.0), Duration::ZERO);
    }

    #[test]
    fn the_budget_caps_retries_at_a_share_of_requests() {
        let b = RetryBudget::new(&policy(0.5, 0.0));
        let t0 = Instant::now();
        for _ in 0..4 {
            b.record_request(t0);
        }
        assert!(b.try_retry(t0));
        assert!(b.try_retry(t0));
        assert!(!b.try_retry(t0), "4 requests allow 2 retries");
        // Ten seconds later the window has moved on.
        let t1 = t0 + Duration::from_secs(10);
        b.record_request(t1);
        b.record_request(t1);
        assert!(b.try_retry(t1));
        assert!(!b.try_retry(t1));
    }

    /// The window's edges: a bucket ten seconds old is gone, and a call a whole second after a bucket opened
    /// starts the next one (so it stays a second longer).
    #[test]
    fn the_window_drops_a_bucket_at_ten_seconds_and_opens_one_each_second() {
        let b = RetryBudget::new(&policy(0.5, 0.0));
        let t0 = Instant::now();
        for _ in 0..4 {
            b.record_request(t0);
        }
        assert!(b.try_retry(t0 + Duration::from_millis(9_999)));
        assert!(
            !b.try_retry(t0 + Duration::from_secs(10)),
            "the requests of ten seconds ago no longer count"
        );
        let b = RetryBudget::new(&policy(1.0, 0.0));
        b.record_request(t0);
        b.record_request(t0 + Duration::from_secs(1));
        assert!(
            b.try_retry(t0 + Duration::from_secs(10)),
            "the second call opened its own bucket, still in the window"
        );
        assert!(!b.try_retry(t0 + Duration::from_secs(10)));
        // A call within the second joins its bucket and leaves with it.
        let b = RetryBudget::new(&policy(1.0, 0.0));
        b.record_request(t0);
        b.record_request(t0 + Duration::from_millis(500));
        assert!(
            !b.try_retry(t0 + Duration::from_secs(10)),
            "both calls left with the bucket of t0"
        );
    }

    #[test]
    fn the_floor_lets_a_quiet_model_retry() {
        let b = RetryBudget::new(&policy(0.0, 0.2)); // 2 retries per 10 s whatever the traffic
        let t0 = Instant::now();
        assert!(b.try_retry(t0));
        assert!(b.try_retry(t0));
        assert!(!b.try_retry(t0));
    }

    /// Requests at `per_second` for 60 s against an upstream failing a share `fail` of attempts, three
    /// attempts each, under the default policy: (retries wanted, retries refused by the budget).
    fn simulate(per_second: u64, fail: f64) -> (u32, u32) {
        let cfg = crate::config::Config::parse(
            "[server]\nlisten = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"u\"\nkind = \"mock\"\n\
             [[models]]\nname = \"m\"\nmax_output_tokens = 10\nroutes = [{ upstream = \"u\", model = \"x\" }]\n",
            |_| None,
        )
        .unwrap();
        let policy = cfg.models[0].policy.retry;
        let b = RetryBudget::new(&policy);
        let mut rng = fastrand::Rng::with_seed(5);
        let t0 = Instant::now();
        let (mut wanted, mut refused) = (0, 0);
        for i in 0..per_second * 60 {
            let now = t0 + Duration::from_micros(i * 1_000_000 / per_second);
            b.record_request(now);
            for _ in 1..policy.attempts {
                if rng.f64() >= fail {
                    break;
                }
                wanted += 1;
                if !b.try_retry(now) {
                    refused += 1;
                    break;
                }
            }
        }
        (wanted, refused)
    }

    #[test]
    fn the_default_budget_covers_ordinary_error_rates_and_bites_in_an_outage() {
        for fail in [0.1, 0.2, 0.4] {
            for rate in [5, 100, 2000] {
                let (wanted, refused) = simulate(rate, fail);
                assert_eq!(
                    refused, 0,
                    "{fail} failing at {rate}/s: {refused} of {wanted} refused"
                );
            }
        }
        // An outage: every attempt fails. Retries stay near half the requests plus the floor.
        let (wanted, refused) = simulate(1000, 1.0);
        let granted = wanted - refused;
        assert!(
            granted <= 60_000 * 6 / 10 + 10 * 60 + 100,
            "an outage got {granted} retries for 60000 requests"
        );
    }
}
