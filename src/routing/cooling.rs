//! Cooling a route down when its upstream keeps refusing calls for their rate.
//!
//! A 429 is about the request that got it: that request waits its Retry-After before its own retry, and other
//! calls go on. Only a sustained signal takes the whole route out of rotation: at least [`MIN_LIMITED`]
//! rate-limited answers in the last [`WINDOW`] that are also at least half of the route's answers in it. The
//! route then cools for the Retry-After of the answer that tipped it (one second if it gave none), already
//! clamped to the upstream's `max_retry_after`. An upstream's remaining-requests header at zero cools it too
//! (see `upstream::retry_after`).
//!
//! A cooling route is not refused: it is tried after routes that are not cooling, and a call whose every route
//! is cooling waits for the first to warm up if that comes before its deadline, else goes at once and lets the
//! upstream decide.

use std::{collections::VecDeque, sync::Mutex, time::Duration};

use tokio::time::Instant;

/// How far back answers count.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);
/// Rate-limited answers needed (and they must be half of all answers) before a route cools.
pub(crate) const MIN_LIMITED: u32 = 3;
/// How long a route cools when the answer that tipped it named no wait.
pub(crate) const DEFAULT_COOL: Duration = Duration::from_secs(1);
const BUCKET: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub(crate) struct Cooling {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// (bucket start, answers, rate-limited answers), oldest first.
    buckets: VecDeque<(Instant, u32, u32)>,
    until: Option<Instant>,
}

impl Cooling {
    /// Counts one answer of the route; `limited` carries a 429's wait (if it named one). Returns the end of
    /// the cool-down this answer started, if it started one.
    pub(crate) fn record(
        &self,
        now: Instant,
        limited: Option<Option<Duration>>,
    ) -> Option<Instant> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while inner
            .buckets
            .front()
            .is_some_and(|&(at, _, _)| at + WINDOW <= now)
        {
            inner.buckets.pop_front();
        }
        let hit = u32::from(limited.is_some());
        match inner.buckets.back_mut() {
            Some((at, answers, limits)) if now < *at + BUCKET => {
                *answers += 1;
                *limits += hit;
            }
            _ => inner.buckets.push_back((now, 1, hit)),
        }
        let wait = limited?;
        let (answers, limits) = inner
            .buckets
            .iter()
            .fold((0, 0), |(a, l), &(_, ba, bl)| (a + ba, l + bl));
        if limits < MIN_LIMITED || limits * 2 < answers {
            return None;
        }
        let until = now + wait.unwrap_or(DEFAULT_COOL);
        inner.until = Some(inner.until.map_or(until, |t| t.max(until)));
        // The next cool-down needs a signal of its own.
        inner.buckets.clear();
        Some(until)
    }

    /// When the route warms up again, if it is cooling now.
    pub(crate) fn until(&self, now: Instant) -> Option<Instant> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.until.filter(|&t| t > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITED: Option<Option<Duration>> = Some(None);

    #[test]
    fn one_429_cools_nothing() {
        let c = Cooling::default();
        let t0 = Instant::now();
        assert_eq!(c.record(t0, Some(Some(Duration::from_secs(30)))), None);
        assert_eq!(c.until(t0), None);
    }

    #[test]
    fn a_share_of_429s_like_a_flaky_upstream_cools_nothing() {
        // One answer in five rate limited, for a minute: an ordinary error rate, not a rate limit.
        let c = Cooling::default();
        let t0 = Instant::now();
        for i in 0..600u64 {
            let at = t0 + Duration::from_millis(i * 100);
            let limited = (i % 5 == 0).then_some(Some(Duration::from_secs(1)));
            assert_eq!(c.record(at, limited), None, "answer {i}");
        }
    }

    #[test]
    fn a_majority_of_429s_cools_the_route_for_the_last_wait() {
        let c = Cooling::default();
        let t0 = Instant::now();
        assert_eq!(c.record(t0, None), None);
        assert_eq!(c.record(t0, LIMITED), None);
        assert_eq!(c.record(t0, LIMITED), None);
        let wait = Some(Duration::from_secs(2));
        assert_eq!(
            c.record(t0, Some(wait)),
            Some(t0 + Duration::from_secs(2)),
            "3 of 4 answers rate limited"
        );
        assert_eq!(c.until(t0), Some(t0 + Duration::from_secs(2)));
        assert_eq!(c.until(t0 + Duration::from_secs(2)), None);
        // The next cool-down needs three more.
        assert_eq!(c.record(t0 + Duration::from_secs(3), LIMITED), None);
    }

    /// Half of the answers, not less: 3 rate limited of 7 leaves the route warm, 3 of 6 cools it.
    #[test]
    fn the_threshold_is_half_of_the_answers() {
        let t0 = Instant::now();
        let c = Cooling::default();
        for _ in 0..4 {
            c.record(t0, None);
        }
        c.record(t0, LIMITED);
        c.record(t0, LIMITED);
        assert_eq!(c.record(t0, LIMITED), None, "3 of 7");
        let c = Cooling::default();
        for _ in 0..3 {
            c.record(t0, None);
        }
        c.record(t0, LIMITED);
        c.record(t0, LIMITED);
        assert_eq!(c.record(t0, LIMITED), Some(t0 + DEFAULT_COOL), "3 of 6");
    }

    /// Answers within a second of a bucket's start share it, and leave the window with it: ten seconds after
    /// the bucket began, not after each answer.
    #[test]
    fn answers_share_a_bucket_for_a_second_and_leave_with_it() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        // Half a second in: the same bucket, gone at t0 + 10 s with the first answers (four good answers keep
        // the share under half meanwhile).
        let c = Cooling::default();
        for _ in 0..4 {
            c.record(t0, None);
        }
        c.record(t0, LIMITED);
        c.record(t0 + ms(500), LIMITED);
        assert_eq!(c.record(t0 + ms(500), LIMITED), None, "3 of 7");
        assert_eq!(
            c.record(t0 + ms(10_200), LIMITED),
            None,
            "only this one is left"
        );
        // A bucket of its own from a second in (four good answers at t0 keep the share under half until then):
        // still there at t0 + 10.5 s, when the first has gone.
        for later in [ms(1_000), ms(5_000)] {
            let c = Cooling::default();
            for _ in 0..4 {
                c.record(t0, None);
            }
            c.record(t0, LIMITED);
            c.record(t0 + later, LIMITED);
            assert_eq!(c.record(t0 + later, LIMITED), None, "3 of 7");
            let at = t0 + ms(10_500);
            assert_eq!(
                c.record(at, LIMITED),
                Some(at + DEFAULT_COOL),
                "{later:?}: 3 of 3"
            );
        }
    }

    #[test]
    fn old_answers_leave_the_window() {
        let c = Cooling::default();
        let t0 = Instant::now();
        c.record(t0, LIMITED);
        c.record(t0, LIMITED);
        let later = t0 + WINDOW;
        assert_eq!(c.record(later, LIMITED), None, "the first two are out");
        assert_eq!(c.record(later, LIMITED), None);
        assert_eq!(c.record(later, LIMITED), Some(later + DEFAULT_COOL));
    }
}
