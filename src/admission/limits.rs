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
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, SystemTime},
};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

use crate::{
    config::KeyLimits,
    error::GatewayError,
    transport::standing::{Standing, Window},
};

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

    /// How long until the oldest entry in the window leaves it (0 for an empty window).
    fn frees_in(&self, now: Instant) -> Duration {
        self.entries.front().map_or(Duration::ZERO, |&(at, _)| {
            (at + WINDOW).saturating_duration_since(now)
        })
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
            let new =
                u64::try_from((i128::from(*n) + i128::from(delta)).max(0)).unwrap_or(u64::MAX);
            self.total = self.total.saturating_sub(*n).saturating_add(new);
            *n = new;
        }
    }
}

/// One key's limit state. Locks are held for a few arithmetic steps, never across an await.
#[derive(Debug)]
pub(crate) struct KeyLimiter {
    name: String,
    /// "key", "group" for the limits a group's keys share, or "caller" for a token's caller.
    what: &'static str,
    /// rpm, tpm and the budget can change at run time (usage API); concurrency is fixed at start.
    limits: Mutex<KeyLimits>,
    /// (UTC day number, dollars spent that day).
    spend: Mutex<(u64, f64)>,
    /// (UTC month as YYYYMM, dollars spent that month).
    month_spend: Mutex<(u64, f64)>,
    requests: Arc<Mutex<Log>>,
    tokens: Arc<Mutex<Log>>,
    in_flight: Option<Arc<Semaphore>>,
    /// The model this limiter holds its owner to, when it is one of its owner's per-model limiters.
    model: Option<String>,
    /// Limits on the owner's calls to one model (`model_limits`), by the model's name: `limits/models.rs`.
    models: RwLock<HashMap<String, Arc<KeyLimiter>>>,
    /// A group's parent group (a team's organisation), whose limits its calls must fit too.
    parent: RwLock<Option<Arc<KeyLimiter>>>,
}

/// What an admitted call holds until it ends: its concurrency permits and its token reservation.
#[derive(Debug)]
pub(crate) struct Admission {
    _global: Option<OwnedSemaphorePermit>,
    _key: Option<OwnedSemaphorePermit>,
    /// The key's group's slot, when the group has a concurrency limit.
    _group: Option<OwnedSemaphorePermit>,
    /// The slots of the key's and the group's limits on the model, when they limit its concurrency.
    _models: [Option<OwnedSemaphorePermit>; 2],
    /// The slots of the groups above the key's group (and of their limits on the model).
    _above: Vec<OwnedSemaphorePermit>,
    reserved: Reserved,
    /// Tokens attempts spent that gave no answer (accepted, then lost): counted on top of the answer's.
    lost: u64,
}

impl Admission {
    /// A turn's rates on top of its session's permits.
    pub(crate) fn for_turn(reserved: Reserved) -> Admission {
        Admission {
            _global: None,
            _key: None,
            _group: None,
            _models: [None, None],
            _above: Vec::new(),
            reserved,
            lost: 0,
        }
    }

    /// Adds the rate part (a request and its token reservations) to the permits.
    pub(crate) fn with_rates(mut self, reserved: Reserved) -> Admission {
        self.reserved = reserved;
        self
    }

    /// Adds the key's group's concurrency slot, and the key's and the group's on the model.
    pub(crate) fn with_slots(
        mut self,
        group: Option<OwnedSemaphorePermit>,
        models: [Option<OwnedSemaphorePermit>; 2],
        above: Vec<OwnedSemaphorePermit>,
    ) -> Admission {
        self._group = group;
        self._models = models;
        self._above = above;
        self
    }

    /// The call finished with this many tokens in all: the reservations become the real figure (with what lost
    /// attempts spent).
    pub(crate) fn reconcile(&mut self, total_tokens: u64) {
        self.reserved
            .reconcile(total_tokens.saturating_add(self.lost));
    }

    /// Where the caller stood against its rate limits once admitted (the rate-limit headers).
    pub(crate) fn standing(&self) -> Standing {
        self.reserved.standing()
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
            requests: Arc::default(),
            tokens: Arc::default(),
            in_flight: limits
                .concurrency
                .map(|n| Arc::new(Semaphore::new(n as usize))),
            model: None,
            models: RwLock::default(),
            parent: RwLock::default(),
        }
    }

    fn exhausted(
        &self,
        limit: &'static str,
        what: String,
        retry_after: Option<Duration>,
    ) -> GatewayError {
        let on = self
            .model
            .as_ref()
            .map(|m| format!(" on model '{m}'"))
            .unwrap_or_default();
        GatewayError::ResourceExhausted {
            message: format!("{} '{}'{on}: {what}", self.what, self.name),
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

    /// A token caller's limiter (`[[auth.jwt]]`): its refusals name the caller, and its fleet state cannot
    /// meet a key's of the same name.
    pub(crate) fn tenant(name: &str, limits: KeyLimits) -> KeyLimiter {
        KeyLimiter {
            what: "caller",
            ..KeyLimiter::new(name, limits)
        }
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
        let owner = if self.what == "key" {
            self.name.clone()
        } else {
            format!("{}:{}", self.what, self.name)
        };
        match &self.model {
            Some(model) => format!("{owner}@model:{model}"),
            None => owner,
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
        Ok(admission.with_rates(Reserved {
            key,
            ..Reserved::default()
        }))
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
            _models: [None, None],
            _above: Vec::new(),
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
        let when = requests.add(now, 1);
        let at = log.add(now, tokens);
        let window = |log: &mut Log, limit: u64| Window {
            limit,
            remaining: limit.saturating_sub(log.total(now)),
            reset: log.frees_in(now),
        };
        let standing = Standing {
            requests: limits.rpm.map(|rpm| window(&mut requests, u64::from(rpm))),
            tokens: limits.tpm.map(|tpm| window(&mut log, tpm)),
        };
        Ok(Some(Reservation {
            held: Held::Local {
                requests: (self.requests.clone(), when),
                tokens: self.tokens.clone(),
                at,
                amount: tokens,
            },
            standing,
        }))
    }
}

mod calendar;
mod family;
mod models;
mod reservation;

use reservation::Held;
pub(crate) use reservation::{FleetReservation, Reservation, Reserved};

use calendar::{until_next_utc_month, until_utc_midnight};
pub(crate) use calendar::{utc_day, utc_month};
#[cfg(test)]
mod tests;
