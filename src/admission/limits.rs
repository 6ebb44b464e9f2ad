//! Per-key limits (requests and tokens per rolling minute, calls in flight) and the process-wide in-flight cap.
//!
//! Rates are sliding-window logs, so "60 rpm" means at most 60 admissions in *any* 60 s — not 60 per clock minute,
//! which lets 120 through around a minute boundary. Entries less than [`GRAIN`] apart are merged into the later
//! one: that bounds memory to 60 s / GRAIN entries per key whatever the traffic, and errs on the safe side (a
//! merged entry expires up to GRAIN later). A rejection says exactly when the call would fit.
//!
//! Tokens are reserved before the call (a prompt estimate plus max_tokens, or the model's default output
//! budget) and reconciled with the real usage after it; a call that fails before reaching the upstream gives
//! its reservation back, a cancelled one keeps it (the upstream may have done the work).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

use crate::{config::KeyLimits, error::GatewayError};

pub(crate) const WINDOW: Duration = Duration::from_secs(60);
pub(crate) const GRAIN: Duration = Duration::from_millis(50);

/// A sliding-window log of amounts (1 per request, or tokens).
#[derive(Debug, Default)]
pub(crate) struct Log {
    entries: VecDeque<(Instant, u64)>,
    total: u64,
}

impl Log {
    /// The amount in the window ending now.
    pub(crate) fn total(&mut self, now: Instant) -> u64 {
        self.expire(now);
        self.total
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, amount)) = self.entries.front() {
            if at + WINDOW > now {
                break;
            }
            self.total = self.total.saturating_sub(amount);
            self.entries.pop_front();
        }
    }

    /// Ok if `amount` fits under `limit` now; else how long until it would (None: never, it exceeds the limit).
    fn check(&mut self, now: Instant, amount: u64, limit: u64) -> Result<(), Option<Duration>> {
        self.expire(now);
        if amount > limit {
            return Err(None);
        }
        let excess = self.total.saturating_add(amount).saturating_sub(limit);
        if excess == 0 {
            return Ok(());
        }
        let mut freed = 0;
        for &(at, n) in &self.entries {
            freed += n;
            if freed >= excess {
                return Err(Some(at + WINDOW - now));
            }
        }
        Err(None)
    }

    /// Records `amount` at `now`; returns the time of the entry that holds it.
    pub(crate) fn add(&mut self, now: Instant, amount: u64) -> Instant {
        // Saturating: a hostile usage report cannot wrap a window back to empty.
        self.total = self.total.saturating_add(amount);
        match self.entries.back_mut() {
            Some((at, n)) if now < *at + GRAIN => {
                *at = now.max(*at);
                *n = n.saturating_add(amount);
                *at
            }
            _ => {
                self.entries.push_back((now, amount));
                now
            }
        }
    }

    /// Corrects the amount recorded in the entry at or after `at` (where a reservation went), if still in the window.
    fn adjust(&mut self, at: Instant, delta: i64) {
        let i = self.entries.partition_point(|&(t, _)| t < at);
        if let Some((_, n)) = self.entries.get_mut(i) {
            let new = (i128::from(*n) + i128::from(delta)).clamp(0, i128::from(u64::MAX)) as u64;
            self.total = self.total.saturating_sub(*n).saturating_add(new);
            *n = new;
        }
    }
}

/// One key's limit state. Locks are held for a few arithmetic steps, never across an await.
#[derive(Debug)]
pub(crate) struct KeyLimiter {
    name: String,
    /// "key", or "group" for the limits a group's keys share.
    what: &'static str,
    /// rpm, tpm and the budget can change at run time (usage API); concurrency is fixed at start.
    limits: Mutex<KeyLimits>,
    /// (UTC day number, dollars spent that day).
    spend: Mutex<(u64, f64)>,
    /// (UTC month as YYYYMM, dollars spent that month).
    month_spend: Mutex<(u64, f64)>,
    requests: Mutex<Log>,
    tokens: Arc<Mutex<Log>>,
    in_flight: Option<Arc<Semaphore>>,
}

/// What an admitted call holds until it ends: its concurrency permits and its token reservation.
#[derive(Debug)]
pub(crate) struct Admission {
    _global: Option<OwnedSemaphorePermit>,
    _key: Option<OwnedSemaphorePermit>,
    /// The key's group's slot, when the group has a concurrency limit.
    _group: Option<OwnedSemaphorePermit>,
    reserved: Reserved,
    /// Tokens attempts spent that gave no answer (accepted, then lost): counted on top of the answer's.
    lost: u64,
}

/// The token reservations of one request: the key's, and its group's when it has one. A pair, not a list, so
/// admitting a call allocates nothing for it.
#[derive(Debug, Default)]
pub(crate) struct Reserved {
    pub(crate) key: Option<Reservation>,
    pub(crate) group: Option<Reservation>,
}

impl Reserved {
    /// Every reservation made becomes the real figure.
    pub(crate) fn reconcile(&mut self, total_tokens: u64) {
        for r in [self.key.take(), self.group.take()].into_iter().flatten() {
            r.reconcile(total_tokens);
        }
    }
}

/// Tokens held against a key's tpm until the call's real usage is known: in this replica's window, or in the
/// fleet's (Redis).
#[derive(Debug)]
pub(crate) struct Reservation(Held);

#[derive(Debug)]
enum Held {
    Local {
        tokens: Arc<Mutex<Log>>,
        at: Instant,
        amount: u64,
    },
    Shared(crate::admission::shared::SharedReservation),
}

impl Reservation {
    pub(crate) fn shared(r: crate::admission::shared::SharedReservation) -> Reservation {
        Reservation(Held::Shared(r))
    }

    /// Replaces the reserved amount with the real one.
    pub(crate) fn reconcile(self, total_tokens: u64) {
        match self.0 {
            Held::Local { tokens, at, amount } => {
                let mut log = tokens.lock().unwrap_or_else(|p| p.into_inner());
                log.adjust(at, total_tokens as i64 - amount as i64);
            }
            Held::Shared(r) => r.reconcile(total_tokens),
        }
    }
}

impl Admission {
    /// A turn's rates on top of its session's permits.
    pub(crate) fn for_turn(reserved: Reserved) -> Admission {
        Admission {
            _global: None,
            _key: None,
            _group: None,
            reserved,
            lost: 0,
        }
    }

    /// Adds the rate part (a request and its token reservations) to the permits.
    pub(crate) fn with_rates(mut self, reserved: Reserved) -> Admission {
        self.reserved = reserved;
        self
    }

    /// Adds the key's group's concurrency slot.
    pub(crate) fn with_group_slot(mut self, slot: Option<OwnedSemaphorePermit>) -> Admission {
        self._group = slot;
        self
    }

    /// The call finished with this many tokens in all: the reservations become the real figure (with what lost
    /// attempts spent).
    pub(crate) fn reconcile(&mut self, total_tokens: u64) {
        self.reserved
            .reconcile(total_tokens.saturating_add(self.lost));
    }

    /// The call got no answer: only what lost attempts spent counts.
    pub(crate) fn release(&mut self) {
        self.reconcile(0);
    }

    /// Attempts that reached an upstream and gave no answer spent about this many tokens.
    pub(crate) fn add_lost(&mut self, tokens: u64) {
        self.lost = self.lost.saturating_add(tokens);
    }
}

impl KeyLimiter {
    pub(crate) fn new(name: &str, limits: KeyLimits) -> KeyLimiter {
        KeyLimiter {
            name: name.to_owned(),
            what: "key",
            limits: Mutex::new(limits),
            spend: Mutex::new((0, 0.0)),
            month_spend: Mutex::new((0, 0.0)),
            requests: Mutex::default(),
            tokens: Arc::default(),
            in_flight: limits
                .concurrency
                .map(|n| Arc::new(Semaphore::new(n as usize))),
        }
    }

    fn exhausted(
        &self,
        limit: &'static str,
        what: String,
        retry_after: Option<Duration>,
    ) -> GatewayError {
        GatewayError::ResourceExhausted {
            message: format!("{} '{}': {what}", self.what, self.name),
            retry_after,
            limit,
        }
    }

    /// The refusals, worded once for the local windows and the shared ones.
    pub(crate) fn budget_spent(&self, budget: f64, spent: f64, wall: SystemTime) -> GatewayError {
        let what = format!("daily budget of ${budget:.2} spent (${spent:.4} today, UTC)");
        self.exhausted("budget", what, Some(until_utc_midnight(wall)))
    }

    pub(crate) fn monthly_budget_spent(
        &self,
        budget: f64,
        spent: f64,
        wall: SystemTime,
    ) -> GatewayError {
        let what = format!("monthly budget of ${budget:.2} spent (${spent:.4} this month, UTC)");
        self.exhausted("budget", what, Some(until_next_utc_month(wall)))
    }

    pub(crate) fn rpm_reached(&self, rpm: u32, wait: Option<Duration>) -> GatewayError {
        self.exhausted("rpm", format!("{rpm} requests per minute reached"), wait)
    }

    pub(crate) fn tpm_reached(&self, tpm: u64, wait: Duration) -> GatewayError {
        self.exhausted(
            "tpm",
            format!("{tpm} tokens per minute reached"),
            Some(wait),
        )
    }

    pub(crate) fn tpm_too_small(&self, tpm: u64, tokens: u64) -> GatewayError {
        let what = format!(
            "this request may use {tokens} tokens, more than the key's {tpm} per minute; lower max_tokens"
        );
        self.exhausted("tpm", what, None)
    }

    /// A group's shared limiter: its refusals name the group.
    pub(crate) fn group(name: &str, limits: KeyLimits) -> KeyLimiter {
        KeyLimiter {
            what: "group",
            ..KeyLimiter::new(name, limits)
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Its name in the fleet's state: a group's cannot meet a key's.
    pub(crate) fn store_name(&self) -> String {
        if self.what == "key" {
            self.name.clone()
        } else {
            format!("{}:{}", self.what, self.name)
        }
    }

    pub(crate) fn limits(&self) -> KeyLimits {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the rates and the budgets to `new`'s; concurrency stays as configured.
    pub(crate) fn set_limits(&self, new: KeyLimits) {
        let mut l = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        *l = KeyLimits {
            concurrency: l.concurrency,
            ..new
        };
    }

    /// Adds spend to the key's UTC day and month.
    pub(crate) fn add_spend(&self, usd: f64, wall: SystemTime) {
        for (cell, period) in [
            (&self.spend, utc_day(wall)),
            (&self.month_spend, u64::from(utc_month(wall))),
        ] {
            let mut spend = cell.lock().unwrap_or_else(|p| p.into_inner());
            if spend.0 != period {
                *spend = (period, 0.0);
            }
            spend.1 += usd;
        }
    }

    /// Takes in the fleet's spend that an admission in Redis reported (it includes this replica's): while Redis
    /// is up it is not read here, but if Redis goes away this replica goes on from what the fleet had spent, not
    /// from its own share alone. So an outage lets each replica spend at most what was left when it last asked.
    pub(crate) fn saw_fleet_spend(&self, day: f64, month: f64, wall: SystemTime) {
        for (cell, period, fleet) in [
            (&self.spend, utc_day(wall), day),
            (&self.month_spend, u64::from(utc_month(wall)), month),
        ] {
            let mut spend = cell.lock().unwrap_or_else(|p| p.into_inner());
            if spend.0 != period {
                *spend = (period, 0.0);
            }
            if fleet.is_finite() && fleet > spend.1 {
                spend.1 = fleet;
            }
        }
    }

    fn spent(cell: &Mutex<(u64, f64)>, period: u64) -> f64 {
        let spend = cell.lock().unwrap_or_else(|p| p.into_inner());
        if spend.0 == period {
            spend.1
        } else {
            0.0
        }
    }

    pub(crate) fn spent_today(&self, wall: SystemTime) -> f64 {
        Self::spent(&self.spend, utc_day(wall))
    }

    pub(crate) fn spent_this_month(&self, wall: SystemTime) -> f64 {
        Self::spent(&self.month_spend, u64::from(utc_month(wall)))
    }

    /// Admits a call that reserves `tokens` against this replica's windows alone, or says which limit refused
    /// it and when to retry. (The gateway composes the two parts itself, the rates possibly shared:
    /// `Gateway::admit`.)
    #[cfg(test)]
    pub(crate) fn admit(
        &self,
        now: Instant,
        tokens: u64,
        global: &Arc<Semaphore>,
    ) -> Result<Admission, GatewayError> {
        let admission = self.permits(global)?;
        let key = self.rates(now, SystemTime::now(), tokens)?;
        Ok(admission.with_rates(Reserved { key, group: None }))
    }

    /// The concurrency part alone: what an InteractiveStream session holds for its whole life.
    pub(crate) fn permits(&self, global: &Arc<Semaphore>) -> Result<Admission, GatewayError> {
        let global =
            global
                .clone()
                .try_acquire_owned()
                .map_err(|_| GatewayError::ResourceExhausted {
                    message:
                        "the gateway is at its limit of calls in flight (limits.max_in_flight)"
                            .into(),
                    retry_after: Some(Duration::from_secs(1)),
                    limit: "max_in_flight",
                })?;
        Ok(Admission {
            _global: Some(global),
            _key: self.slot()?,
            _group: None,
            reserved: Reserved::default(),
            lost: 0,
        })
    }

    /// A slot under this limiter's concurrency limit, if it has one.
    pub(crate) fn slot(&self) -> Result<Option<OwnedSemaphorePermit>, GatewayError> {
        match &self.in_flight {
            None => Ok(None),
            Some(sem) => Ok(Some(sem.clone().try_acquire_owned().map_err(|_| {
                let n = self.limits().concurrency.unwrap_or_default();
                self.exhausted(
                    "concurrency",
                    format!("{n} calls already in flight (concurrency limit)"),
                    Some(Duration::from_secs(1)),
                )
            })?)),
        }
    }

    /// The rate part alone: one request and its token reservation (each turn of a session).
    pub(crate) fn rates(
        &self,
        now: Instant,
        wall: SystemTime,
        tokens: u64,
    ) -> Result<Option<Reservation>, GatewayError> {
        let limits = self.limits();
        if let Some(budget) = limits.daily_budget_usd {
            let spent = self.spent_today(wall);
            if spent >= budget {
                return Err(self.budget_spent(budget, spent, wall));
            }
        }
        if let Some(budget) = limits.monthly_budget_usd {
            let spent = self.spent_this_month(wall);
            if spent >= budget {
                return Err(self.monthly_budget_spent(budget, spent, wall));
            }
        }
        // Check both rates before recording either, so a refused call leaves no trace.
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let mut log = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rpm) = limits.rpm {
            if let Err(wait) = requests.check(now, 1, u64::from(rpm)) {
                return Err(self.rpm_reached(rpm, wait));
            }
        }
        if let Some(tpm) = limits.tpm {
            match log.check(now, tokens, tpm) {
                Ok(()) => {}
                Err(None) => return Err(self.tpm_too_small(tpm, tokens)),
                Err(Some(wait)) => return Err(self.tpm_reached(tpm, wait)),
            }
        }
        // Recorded whether or not a limit is set, so that one set or lowered at run time counts the calls and
        // tokens already in its window. (GRAIN bounds each log to 1,200 entries whatever the traffic.)
        requests.add(now, 1);
        Ok(Some(Reservation(Held::Local {
            tokens: self.tokens.clone(),
            at: log.add(now, tokens),
            amount: tokens,
        })))
    }
}

pub(crate) fn utc_day(wall: SystemTime) -> u64 {
    wall.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// How long until 00:00 UTC on the 1st of the next month.
fn until_next_utc_month(wall: SystemTime) -> Duration {
    let ym = i64::from(utc_month(wall));
    let (year, month) = (ym / 100, ym % 100);
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let start = days_from_civil(ny, nm, 1) * 86_400;
    let now = wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    Duration::from_secs((start - now).max(1) as u64)
}

/// The UTC calendar month of `wall`, as YYYYMM.
pub(crate) fn utc_month(wall: SystemTime) -> u32 {
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = utc_day(wall) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year * 100 + month) as u32
}

fn until_utc_midnight(wall: SystemTime) -> Duration {
    let secs = wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Duration::from_secs(86_400 - secs % 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rpm: Option<u32>, tpm: Option<u64>, concurrency: Option<u32>) -> KeyLimiter {
        KeyLimiter::new(
            "k",
            KeyLimits {
                rpm,
                tpm,
                concurrency,
                ..KeyLimits::default()
            },
        )
    }

    fn rates(rpm: Option<u32>, tpm: Option<u64>, daily: Option<f64>) -> KeyLimits {
        KeyLimits {
            rpm,
            tpm,
            daily_budget_usd: daily,
            ..KeyLimits::default()
        }
    }

    /// Usage an upstream reports is not trusted to stay small: the window saturates instead of wrapping back to
    /// empty (or panicking), and still expires.
    #[test]
    fn a_window_saturates_rather_than_wraps() {
        let t0 = Instant::now();
        let mut log = Log::default();
        log.add(t0, u64::MAX);
        log.add(t0 + Duration::from_secs(1), u64::MAX);
        assert_eq!(log.total(t0 + Duration::from_secs(1)), u64::MAX);
        assert!(log.check(t0 + Duration::from_secs(1), 1, 1000).is_err());
        log.adjust(t0, i64::MIN);
        assert_eq!(log.total(t0 + WINDOW + Duration::from_secs(2)), 0);
    }

    #[test]
    fn the_daily_budget_holds_until_utc_midnight() {
        let budget = KeyLimits {
            daily_budget_usd: Some(1.0),
            ..KeyLimits::default()
        };
        let l = KeyLimiter::new("k", budget);
        let noon = UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 43_200);
        let t = Instant::now();
        assert!(l.rates(t, noon, 10).is_ok());
        l.add_spend(0.6, noon);
        assert!(l.rates(t, noon, 10).is_ok());
        l.add_spend(0.6, noon);
        let err = l.rates(t, noon, 10).unwrap_err();
        assert!(
            err.to_string().contains("daily budget of $1.00 spent"),
            "{err}"
        );
        assert_eq!(
            err.retry_after(),
            Some(Duration::from_secs(43_200)),
            "until midnight UTC"
        );
        let tomorrow = noon + Duration::from_secs(43_200);
        assert!(l.rates(t, tomorrow, 10).is_ok());
        assert_eq!(l.spent_today(tomorrow), 0.0);
        // Raised at run time: admitted again today.
        l.set_limits(rates(None, None, Some(5.0)));
        assert!(l.rates(t, noon, 10).is_ok());
    }

    /// A budget is spent when the spend reaches it, not only once it passes it: spent to the cent, the next
    /// call is refused, for the day and for the month.
    #[test]
    fn a_budget_spent_to_the_cent_refuses_the_next_call() {
        let noon = UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 43_200);
        let t = Instant::now();
        let daily = KeyLimiter::new("d", rates(None, None, Some(1.0)));
        daily.add_spend(0.5, noon);
        assert!(daily.rates(t, noon, 10).is_ok());
        daily.add_spend(0.5, noon);
        assert_eq!(daily.spent_today(noon), 1.0);
        assert!(daily.rates(t, noon, 10).is_err(), "spent == budget");
        let monthly = KeyLimiter::new(
            "m",
            KeyLimits {
                monthly_budget_usd: Some(3.0),
                ..KeyLimits::default()
            },
        );
        monthly.add_spend(1.5, noon);
        assert!(monthly.rates(t, noon, 10).is_ok());
        monthly.add_spend(1.5, noon);
        let err = monthly.rates(t, noon, 10).unwrap_err();
        assert!(err.to_string().contains("monthly budget"), "{err}");
    }

    fn global() -> Arc<Semaphore> {
        Arc::new(Semaphore::new(1000))
    }

    fn retry_after(err: GatewayError) -> Option<Duration> {
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        err.retry_after()
    }

    #[test]
    fn exactly_n_requests_in_any_rolling_minute() {
        let l = limiter(Some(3), None, None);
        let (g, t0) = (global(), Instant::now());
        let s = Duration::from_secs;
        for at in [t0, t0 + s(10), t0 + s(59)] {
            l.admit(at, 0, &g).unwrap();
        }
        // The fourth within the minute: refused until the first leaves the window, exactly at t0 + 60 s.
        let err = l
            .admit(t0 + s(59) + Duration::from_millis(999), 0, &g)
            .unwrap_err();
        assert_eq!(retry_after(err), Some(Duration::from_millis(1)));
        l.admit(t0 + s(60), 0, &g).unwrap();
        // No burst across the boundary: t0+10 and t0+59 still count.
        assert_eq!(
            retry_after(l.admit(t0 + s(61), 0, &g).unwrap_err()),
            Some(s(9))
        );
        l.admit(t0 + s(70), 0, &g).unwrap();
    }

    /// Calls that land within one grain are kept as one entry, dated by the later: the entry expires with its
    /// last call, never with its first, so merging never admits N+1 in a rolling minute.
    #[test]
    fn calls_merged_into_one_entry_expire_with_the_last() {
        let l = limiter(Some(2), None, None);
        let (g, t0) = (global(), Instant::now());
        let late = t0 + GRAIN / 2;
        l.admit(t0, 0, &g).unwrap();
        l.admit(late, 0, &g).unwrap();
        // A minute after the first call, the second is still in the window.
        let err = l.admit(t0 + WINDOW, 0, &g).unwrap_err();
        assert_eq!(retry_after(err), Some(GRAIN / 2));
        l.admit(late + WINDOW, 0, &g).unwrap();
        // A whole grain apart, two calls are two entries: the first leaves on its own.
        let mut log = Log::default();
        log.add(t0, 1);
        log.add(t0 + GRAIN, 1);
        assert_eq!(log.total(t0 + WINDOW), 1);
    }

    /// A limit set (or lowered) at run time counts what is already in its window: after 3 calls with no
    /// limit, rpm = 4 admits exactly one more; tpm likewise counts the tokens already used.
    #[test]
    fn a_limit_set_at_run_time_counts_the_window_so_far() {
        let l = limiter(None, None, None);
        let (g, t0) = (global(), Instant::now());
        for i in 0..3 {
            let mut a = l.admit(t0 + Duration::from_secs(i), 100, &g).unwrap();
            a.reconcile(50);
        }
        l.set_limits(rates(Some(4), Some(200), None));
        let now = t0 + Duration::from_secs(5);
        l.admit(now, 40, &g).unwrap();
        let refused = l.admit(now, 0, &g).unwrap_err();
        assert!(matches!(
            refused,
            GatewayError::ResourceExhausted { limit: "rpm", .. }
        ));
        // 3 x 50 + 40 = 190 tokens in the window: 20 more do not fit under 200.
        l.set_limits(rates(None, Some(200), None));
        let refused = l.admit(now, 20, &g).unwrap_err();
        assert!(matches!(
            refused,
            GatewayError::ResourceExhausted { limit: "tpm", .. }
        ));
    }

    /// A monthly budget holds across days, until 00:00 UTC on the 1st of the next month.
    #[test]
    fn the_monthly_budget_holds_until_the_next_month() {
        let l = KeyLimiter::new(
            "k",
            KeyLimits {
                monthly_budget_usd: Some(1.0),
                ..KeyLimits::default()
            },
        );
        let t = Instant::now();
        let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
        l.add_spend(0.6, at(1_795_910_400)); // 2026-11-29 00:00 UTC
        l.add_spend(0.5, at(1_795_996_800)); // 2026-11-30 00:00: 1.1 this month
        let err = l.rates(t, at(1_795_996_800 + 3_600), 10).unwrap_err();
        assert!(
            err.to_string()
                .contains("monthly budget of $1.00 spent ($1.1000 this month"),
            "{err}"
        );
        // 2026-12-01 00:00 UTC is 23 hours later.
        assert_eq!(err.retry_after(), Some(Duration::from_secs(23 * 3_600)));
        assert!(l.rates(t, at(1_796_083_200), 10).is_ok(), "a new month");
    }

    #[test]
    fn utc_months_are_calendar_months() {
        let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(utc_month(at(0)), 197001);
        assert_eq!(utc_month(at(951_782_400)), 200002); // 2000-02-29
        assert_eq!(utc_month(at(951_868_799)), 200002); // 2000-02-29 23:59:59
        assert_eq!(utc_month(at(951_868_800)), 200003);
        assert_eq!(utc_month(at(1_798_761_599)), 202612); // 2026-12-31 23:59:59
        assert_eq!(utc_month(at(1_798_761_600)), 202701);
    }

    /// Every day from 1970 to 2500 against a calendar kept by hand: its month, its day number, and the wait from
    /// its last second to the next month (one second on a month's last day, else more).
    #[test]
    fn every_day_for_five_centuries_is_in_its_calendar_month() {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let length = |y: i64, m: i64| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let (mut year, mut month, mut day) = (1970i64, 1i64, 1i64);
        for n in 0..(530 * 366) {
            if year == 2500 {
                break;
            }
            let midnight = UNIX_EPOCH + Duration::from_secs(n as u64 * 86_400);
            let last_second = midnight + Duration::from_secs(86_399);
            assert_eq!(days_from_civil(year, month, day), n, "{year}-{month}-{day}");
            assert_eq!(utc_day(last_second), n as u64);
            assert_eq!(
                i64::from(utc_month(midnight)),
                year * 100 + month,
                "day {n}"
            );
            assert_eq!(
                i64::from(utc_month(last_second)),
                year * 100 + month,
                "day {n}"
            );
            let to_next = until_next_utc_month(last_second);
            let days_left = length(year, month) - day;
            assert_eq!(
                to_next,
                Duration::from_secs(days_left as u64 * 86_400 + 1),
                "{year}-{month}-{day}"
            );
            assert_eq!(until_utc_midnight(last_second), Duration::from_secs(1));
            assert_eq!(until_utc_midnight(midnight), Duration::from_secs(86_400));
            day += 1;
            if day > length(year, month) {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                }
            }
        }
        assert_eq!(year, 2500);
    }

    #[test]
    fn tokens_are_reserved_then_reconciled() {
        let l = limiter(None, Some(1000), None);
        let (g, t0) = (global(), Instant::now());
        let mut a = l.admit(t0, 600, &g).unwrap();
        // 600 reserved: another 600 does not fit, and waits for the first to leave the window.
        let err = l.admit(t0 + Duration::from_secs(1), 600, &g).unwrap_err();
        assert_eq!(retry_after(err), Some(Duration::from_secs(59)));
        a.reconcile(150); // the call used only 150
        let mut b = l.admit(t0 + Duration::from_secs(1), 600, &g).unwrap();
        b.reconcile(850); // this one used more than it reserved: charged in full
        assert!(l.admit(t0 + Duration::from_secs(2), 1, &g).is_err());
        // A call that never reached the upstream gives its reservation back: the whole limit fits again.
        let fresh = limiter(None, Some(1000), None);
        let mut c = fresh.admit(t0, 1000, &g).unwrap();
        assert!(fresh.admit(t0, 1, &g).is_err());
        c.release();
        assert!(fresh.admit(t0, 1000, &g).is_ok());
    }

    #[test]
    fn a_cancelled_call_keeps_its_reservation() {
        // Dropped without a reconcile (the client left mid-call): the upstream may have done the work, so the
        // reserved tokens stay charged for the minute; only the concurrency slot is free.
        let l = limiter(None, Some(1000), Some(1));
        let (g, t0) = (global(), Instant::now());
        let a = l.admit(t0, 600, &g).unwrap();
        drop(a);
        let err = l.admit(t0 + Duration::from_secs(1), 600, &g).unwrap_err();
        assert_eq!(retry_after(err), Some(Duration::from_secs(59)));
        assert!(
            l.admit(t0 + Duration::from_secs(1), 400, &g).is_ok(),
            "the slot is free"
        );
    }

    #[test]
    fn a_request_larger_than_the_limit_has_no_retry_time() {
        let err = limiter(None, Some(100), None)
            .admit(Instant::now(), 101, &global())
            .unwrap_err();
        assert_eq!(retry_after(err.clone()), None);
        assert!(err.to_string().contains("lower max_tokens"), "{err}");
    }

    #[test]
    fn a_refused_call_leaves_no_trace() {
        let l = limiter(Some(2), Some(100), None);
        let (g, t0) = (global(), Instant::now());
        l.admit(t0, 90, &g).unwrap();
        assert!(l.admit(t0, 20, &g).is_err()); // tpm refuses: the rpm entry must not be recorded
        l.admit(t0, 10, &g).unwrap(); // the second request still fits the rpm of 2
    }

    #[test]
    fn concurrency_counts_until_the_admission_is_dropped() {
        let l = limiter(None, None, Some(2));
        let (g, t0) = (global(), Instant::now());
        let a = l.admit(t0, 0, &g).unwrap();
        let _b = l.admit(t0, 0, &g).unwrap();
        let err = l.admit(t0, 0, &g).unwrap_err();
        assert!(err.to_string().contains("concurrency"), "{err}");
        drop(a);
        l.admit(t0, 0, &g).unwrap();
        // The global cap sheds before any key limit.
        let tiny = Arc::new(Semaphore::new(0));
        assert!(limiter(None, None, None)
            .admit(t0, 0, &tiny)
            .unwrap_err()
            .to_string()
            .contains("gateway"));
    }

    /// The fleet's spend (reported by Redis's admission) raises this replica's figure, never lowers it; a new
    /// UTC day or month starts from the fleet's figure alone; a non-number is ignored.
    #[test]
    fn the_fleets_spend_raises_this_replicas_never_lowers_it() {
        let l = KeyLimiter::new("k", KeyLimits::default());
        let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
        let day = at(1_796_083_200); // 2026-12-01 00:00 UTC
        l.add_spend(0.5, day);
        l.saw_fleet_spend(0.25, 0.25, day);
        assert_eq!((l.spent_today(day), l.spent_this_month(day)), (0.5, 0.5));
        l.saw_fleet_spend(2.0, 3.0, day);
        assert_eq!((l.spent_today(day), l.spent_this_month(day)), (2.0, 3.0));
        l.saw_fleet_spend(f64::NAN, f64::INFINITY, day);
        assert_eq!((l.spent_today(day), l.spent_this_month(day)), (2.0, 3.0));
        let next_day = at(1_796_083_200 + 86_400);
        assert_eq!(
            l.spent_today(next_day),
            0.0,
            "yesterday's spend is not today's"
        );
        assert_eq!(l.spent_this_month(next_day), 3.0);
        l.saw_fleet_spend(1.0, 4.0, next_day);
        assert_eq!(
            (l.spent_today(next_day), l.spent_this_month(next_day)),
            (1.0, 4.0)
        );
        let next_month = at(1_798_761_600); // 2027-01-01
        l.saw_fleet_spend(0.1, 0.1, next_month);
        assert_eq!(l.spent_this_month(next_month), 0.1);
        l.add_spend(0.2, next_month);
        assert!((l.spent_today(next_month) - 0.3).abs() < 1e-12);
    }

    /// A group's limiter names the group in its refusals and in the fleet's state, apart from a key of its name.
    #[test]
    fn a_group_is_named_as_a_group() {
        let key = KeyLimiter::new("team", rates(Some(1), None, None));
        let group = KeyLimiter::group("team", rates(Some(1), None, None));
        assert_eq!(
            (key.store_name(), group.store_name()),
            ("team".into(), "group:team".into())
        );
        assert_eq!(group.name(), "team");
        let (g, t0) = (global(), Instant::now());
        group.admit(t0, 0, &g).unwrap();
        let err = group.admit(t0, 0, &g).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("group 'team': 1 requests per minute"),
            "{err}"
        );
        key.admit(t0, 0, &g).unwrap();
        let err = key.admit(t0, 0, &g).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("key 'team': 1 requests per minute"),
            "{err}"
        );
    }

    /// Limits changed at run time keep the configured concurrency.
    #[test]
    fn a_run_time_change_keeps_the_concurrency() {
        let l = limiter(Some(1), None, Some(3));
        l.set_limits(KeyLimits {
            rpm: Some(9),
            concurrency: Some(50),
            ..KeyLimits::default()
        });
        assert_eq!(l.limits().rpm, Some(9));
        assert_eq!(l.limits().concurrency, Some(3));
        let g = global();
        let held: Vec<_> = (0..3).map(|_| l.permits(&g).unwrap()).collect();
        let err = l.permits(&g).unwrap_err();
        assert!(
            err.to_string().contains("3 calls already in flight"),
            "{err}"
        );
        assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
        drop(held);
    }

    /// What lost attempts spent stays in the window after the call: added to the answer's tokens, or alone
    /// when the call got no answer.
    #[test]
    fn lost_attempts_count_on_top_of_the_answer() {
        let l = limiter(None, Some(1_000), None);
        let (g, t0) = (global(), Instant::now());
        let mut a = l.admit(t0, 500, &g).unwrap();
        a.add_lost(100);
        a.add_lost(50);
        a.reconcile(200);
        assert_eq!(l.tokens.lock().unwrap().total(t0), 350);
        let mut b = l.admit(t0, 500, &g).unwrap();
        b.add_lost(30);
        b.release();
        assert_eq!(l.tokens.lock().unwrap().total(t0), 380);
        // The gateway's own cap refuses with a second's wait.
        let err = limiter(None, None, None)
            .permits(&Arc::new(Semaphore::new(0)))
            .unwrap_err();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
        assert_eq!(err.label(), "limit_max_in_flight");
    }

    #[test]
    fn memory_is_bounded_whatever_the_rate() {
        let l = limiter(Some(u32::MAX), Some(u64::MAX / 2), None);
        let (g, t0) = (global(), Instant::now());
        for i in 0..100_000u64 {
            l.admit(t0 + Duration::from_micros(i * 600), 1, &g).unwrap(); // 60 s of calls at ~1,700/s
        }
        let entries = l.requests.lock().unwrap().entries.len();
        assert!(
            entries <= (WINDOW.as_millis() / GRAIN.as_millis()) as usize + 1,
            "{entries} entries"
        );
    }

    #[test]
    fn estimates() {
        assert_eq!(
            crate::upstream::openai::convert::estimate_tokens([8, 0], 100),
            (2 + 4) + 4 + 100
        );
    }
}
