//! State shared by every replica through Redis (`[shared]`): the keys' rate windows and token reservations,
//! their daily spend, and the response cache — so a key limited to N requests a minute gets N across the fleet,
//! not N per replica.
//!
//! Rates are the same sliding-window logs as the local limiter, kept in Redis and checked and recorded by one
//! Lua script, so concurrent replicas can never both take the last slot. The script reads Redis's own clock:
//! replicas' clocks may disagree, the window does not. Each call's token reservation is a member of the key's
//! token window; reconciliation rewrites its amount.
//!
//! Redis failing is not the gateway failing. Every command is bounded by `[shared] timeout`; a monitor pings
//! once a second and reconnects. While Redis is down, `on_failure = "open"` goes on with this replica's own
//! windows, spend and cache, and `"closed"` refuses calls (UNAVAILABLE) and reports not ready. The state is
//! exported as `aigw_shared_state_up`.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, RwLock,
    },
    time::{Duration, SystemTime},
};

use redis::{AsyncCommands, Script};
use tokio_util::sync::CancellationToken;

use crate::{
    admission::limits::{utc_day, utc_month, FleetReservation, KeyLimiter, Reservation, WINDOW},
    config::{KeyLimits, OnFailure, RedisTarget, SharedConfig},
    error::GatewayError,
    transport::standing::{Standing, Window},
};

mod connect;
mod scripts;
mod usage;

use connect::Conn;
use scripts::{ADMIT, CANCEL, PUT_KEYS, RECONCILE};

/// How long the fleet keeps a day's and a month's books (spend and usage), in seconds.
const DAY_TTL: u64 = 3 * 86_400;
const MONTH_TTL: u64 = 40 * 86_400;

/// A day, a month and a 10-second bucket: the periods the fleet's usage is kept by.
type Period = (u64, u32, u64);
/// Requests, tokens and cost booked per name and period, waiting for the next flush.
type Book = HashMap<String, HashMap<Period, (u64, u64, f64)>>;

/// Redis could not answer in time (or at all).
#[derive(Debug)]
pub(crate) struct Down;

pub(crate) struct Shared {
    cfg: SharedConfig,
    /// Set by the monitor once connected (again, after a Sentinel failure); one node's or a cluster's
    /// connection reconnects by itself after that.
    conn: RwLock<Option<Conn>>,
    up: AtomicBool,
    gauge: prometheus::IntGauge,
    admit: Script,
    reconcile: Script,
    cancel: Script,
    put_keys: Script,
    /// Usage booked since the last flush: per key, model and group name, per period.
    pending_usage: std::sync::Mutex<[Book; 3]>,
    /// Spend that could not reach Redis (its Redis key → dollars, and how long the key lasts): sent when Redis
    /// is back, so what a replica spent during an outage still counts against the fleet's budget.
    unsent_spend: std::sync::Mutex<HashMap<String, (f64, u64)>>,
}

/// A reservation in the fleet's token window.
pub(crate) struct SharedReservation {
    shared: Arc<Shared>,
    key: String,
    id: String,
}

impl std::fmt::Debug for SharedReservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedReservation")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl FleetReservation for SharedReservation {
    /// Sends the real figure on its own task: the call that made it is over, nothing waits for this.
    fn reconcile(self: Box<Self>, total_tokens: u64) {
        let SharedReservation { shared, key, id } = *self;
        crate::observe::tasks::spawn("redis reconcile", async move {
            let keys = shared.keys(&key);
            let mut call = shared.reconcile.prepare_invoke();
            call.key(&keys[2]).key(&keys[3]).arg(&id).arg(total_tokens);
            let _ = shared
                .run(|mut c| async move { call.invoke_async::<i64>(&mut c).await })
                .await;
        });
    }

    /// Awaited by the refusal, so the next call finds the windows without it.
    fn cancel(self: Box<Self>) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        let SharedReservation { shared, key, id } = *self;
        Box::pin(async move {
            let keys = shared.keys(&key);
            let mut call = shared.cancel.prepare_invoke();
            call.key(&keys[0])
                .key(&keys[1])
                .key(&keys[2])
                .key(&keys[3])
                .arg(&id);
            let _ = shared
                .run(|mut c| async move { call.invoke_async::<i64>(&mut c).await })
                .await;
        })
    }
}

impl Shared {
    pub(crate) fn new(
        cfg: &SharedConfig,
        gauge: prometheus::IntGauge,
    ) -> Result<Arc<Shared>, GatewayError> {
        // `rediss://` runs over rustls, trusting the system's certificate store.
        crate::upstream::http::install_crypto_provider();
        if let RedisTarget::Node(url) = &cfg.redis {
            redis::Client::open(url.as_str())
                .map_err(|e| GatewayError::Internal(format!("shared.redis_url: {e}")))?;
        }
        Ok(Arc::new(Shared {
            cfg: cfg.clone(),
            conn: RwLock::new(None),
            up: AtomicBool::new(false),
            gauge,
            admit: Script::new(ADMIT),
            reconcile: Script::new(RECONCILE),
            cancel: Script::new(CANCEL),
            put_keys: Script::new(PUT_KEYS),
            pending_usage: Default::default(),
            unsent_spend: Default::default(),
        }))
    }

    /// Connects, then pings once a second, until `stop`; keeps `is_up` and the gauge current.
    pub(crate) fn monitor(self: &Arc<Self>, stop: CancellationToken) {
        let shared = self.clone();
        crate::observe::tasks::spawn("redis monitor", async move {
            loop {
                let up = shared.check().await;
                if up != shared.up.swap(up, Ordering::Relaxed) {
                    if up {
                        tracing::info!("shared state (Redis) is up");
                    } else {
                        tracing::warn!(on_failure = ?shared.cfg.on_failure, "shared state (Redis) is down");
                    }
                }
                shared.gauge.set(i64::from(up));
                shared.flush_usage().await;
                shared.replay_spend().await;
                tokio::select! {
                    _ = stop.cancelled() => {
                        shared.flush_usage().await;
                        return;
                    }
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }

    async fn check(&self) -> bool {
        if self.connection().is_none() {
            let connecting = connect::connect(&self.cfg.redis, self.cfg.timeout);
            match tokio::time::timeout(Duration::from_secs(2), connecting).await {
                Ok(Ok(conn)) => *self.conn.write().unwrap_or_else(|p| p.into_inner()) = Some(conn),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "shared state (Redis): could not connect");
                    return false;
                }
                Err(_) => return false,
            }
        }
        self.exchange(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .is_ok()
    }

    fn connection(&self) -> Option<Conn> {
        self.conn.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub(crate) fn on_failure(&self) -> OnFailure {
        self.cfg.on_failure
    }

    /// Runs one Redis exchange within the timeout, unless Redis is known to be down: then calls do not wait
    /// on it at all until the monitor sees it back. Any failure marks it down.
    async fn run<T, F, Fut>(&self, f: F) -> Result<T, Down>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.is_up() {
            return Err(Down);
        }
        self.exchange(f).await
    }

    async fn exchange<T, F, Fut>(&self, f: F) -> Result<T, Down>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.connection().ok_or(Down)?;
        let drop_on_failure = conn.drop_on_failure();
        match tokio::time::timeout(self.cfg.timeout, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
            _ => {
                if drop_on_failure {
                    *self.conn.write().unwrap_or_else(|p| p.into_inner()) = None;
                }
                if self.up.swap(false, Ordering::Relaxed) {
                    tracing::warn!("shared state (Redis) failed a command; treating it as down");
                    self.gauge.set(0);
                }
                Err(Down)
            }
        }
    }

    /// The Redis keys of one client key: requests, token window, token amounts, token total, today's spend,
    /// this month's spend. The hash tag keeps them in one slot of a Redis Cluster (the script touches them
    /// together).
    fn keys(&self, key: &str) -> [String; 6] {
        let p = &self.cfg.prefix;
        let wall = SystemTime::now();
        let (day, month) = (utc_day(wall), utc_month(wall));
        [
            format!("{p}:{{{key}}}:req"),
            format!("{p}:{{{key}}}:tok"),
            format!("{p}:{{{key}}}:tok:amount"),
            format!("{p}:{{{key}}}:tok:total"),
            format!("{p}:{{{key}}}:spend:{day}"),
            format!("{p}:{{{key}}}:spend:m{month}"),
        ]
    }

    /// The fleet-wide budget and rate check for one request reserving `tokens`: admitted (with its
    /// reservation, reconciled with the real usage later), refused, or `Down`.
    pub(crate) async fn rates(
        self: &Arc<Self>,
        limiter: &KeyLimiter,
        limits: KeyLimits,
        tokens: u64,
    ) -> Result<Result<Option<Reservation>, GatewayError>, Down> {
        let store = limiter.store_name();
        let keys = self.keys(&store);
        let id = format!("{:032x}", fastrand::u128(..));
        let budget = limits.daily_budget_usd.unwrap_or(-1.0);
        let monthly = limits.monthly_budget_usd.unwrap_or(-1.0);
        let reply: Vec<String> = self
            .run(|mut c| {
                let mut call = self.admit.prepare_invoke();
                for k in &keys {
                    call.key(k);
                }
                call.arg(limits.rpm.unwrap_or(0))
                    .arg(limits.tpm.unwrap_or(0))
                    .arg(tokens)
                    .arg(&id)
                    .arg(budget)
                    .arg(u64::try_from(WINDOW.as_millis()).unwrap_or(u64::MAX))
                    .arg(monthly);
                async move { call.invoke_async(&mut c).await }
            })
            .await?;
        let field = |i: usize| reply.get(i).map_or("", String::as_str);
        let (verdict, n) = (field(0), field(1));
        let wait = || Duration::from_millis(n.parse::<u64>().unwrap_or(0).max(1));
        Ok(match verdict {
            "ok" => {
                let spent = |i: usize| field(i).parse().unwrap_or(0.0);
                limiter.saw_fleet_spend(spent(1), spent(2), SystemTime::now());
                let count = |i: usize| field(i).parse::<u64>().unwrap_or(0);
                let window = |limit: u64, i: usize| Window {
                    limit,
                    remaining: limit.saturating_sub(count(i)),
                    reset: Duration::from_millis(count(i + 1)),
                };
                let standing = Standing {
                    requests: limits.rpm.map(|rpm| window(u64::from(rpm), 3)),
                    tokens: limits.tpm.map(|tpm| window(tpm, 5)),
                };
                let held = SharedReservation {
                    shared: self.clone(),
                    key: store,
                    id,
                };
                Ok(Some(Reservation::shared(held, standing)))
            }
            "rpm" => Err(limiter.rpm_reached(limits.rpm.unwrap_or(0), Some(wait()))),
            "tpm" => Err(limiter.tpm_reached(limits.tpm.unwrap_or(0), wait())),
            "tpm_never" => Err(limiter.tpm_too_small(limits.tpm.unwrap_or(0), tokens)),
            "budget" => {
                let spent = n.parse().unwrap_or(budget);
                limiter.saw_fleet_spend(spent, 0.0, SystemTime::now());
                Err(limiter.budget_spent(budget, spent, SystemTime::now()))
            }
            "budget_month" => {
                let spent = n.parse().unwrap_or(monthly);
                limiter.saw_fleet_spend(0.0, spent, SystemTime::now());
                Err(limiter.monthly_budget_spent(monthly, spent, SystemTime::now()))
            }
            other => Err(GatewayError::Internal(format!(
                "shared state: unexpected verdict '{other}'"
            ))),
        })
    }

    fn keys_names(&self) -> [String; 2] {
        [self.common("apikeys:version"), self.common("apikeys")]
    }

    /// The name of one of the fleet's own Redis keys (not a limiter's): `{prefix}:{rest}`, or under a Redis
    /// Cluster `{{prefix}}:{rest}`, the hash tag keeping them all in one slot (a script or pipeline touches
    /// several together).
    fn common(&self, rest: &str) -> String {
        let p = &self.cfg.prefix;
        match self.cfg.redis {
            RedisTarget::Cluster(_) => format!("{{{p}}}:{rest}"),
            _ => format!("{p}:{rest}"),
        }
    }

    /// The version of the fleet's API keys (0: none made yet).
    pub(crate) async fn keys_version(&self) -> Result<u64, Down> {
        let [version, _] = self.keys_names();
        self.run(|mut c| async move {
            let v: Option<u64> = c.get(&version).await?;
            Ok(v.unwrap_or(0))
        })
        .await
    }

    /// The fleet's API keys: their version and state (JSON), read together.
    pub(crate) async fn keys_get(&self) -> Result<(u64, Option<String>), Down> {
        let [version, state] = self.keys_names();
        self.run(|mut c| async move {
            let (v, s): (Option<u64>, Option<String>) = redis::pipe()
                .get(&version)
                .get(&state)
                .query_async(&mut c)
                .await?;
            Ok((v.unwrap_or(0), s))
        })
        .await
    }

    /// Writes the fleet's API keys if their version is still `read`: the new version, or None when another
    /// replica changed them first.
    pub(crate) async fn keys_put(
        &self,
        read: u64,
        next: u64,
        state: &str,
    ) -> Result<Option<u64>, Down> {
        let keys = self.keys_names();
        let state = state.to_owned();
        let v: i64 = self
            .run(|mut c| {
                let mut call = self.put_keys.prepare_invoke();
                call.key(&keys[0])
                    .key(&keys[1])
                    .arg(read)
                    .arg(state)
                    .arg(next);
                async move { call.invoke_async(&mut c).await }
            })
            .await?;
        Ok(u64::try_from(v).ok())
    }

    /// Adds spend to the key's UTC day and month in the fleet's book, on its own task; kept for
    /// `replay_spend` if Redis does not take it.
    pub(crate) fn add_spend(self: &Arc<Self>, key: &str, usd: f64) {
        let shared = self.clone();
        let [_, _, _, _, day, month] = self.keys(key);
        crate::observe::tasks::spawn("redis spend", async move {
            let spend = [(day, (usd, DAY_TTL)), (month, (usd, MONTH_TTL))];
            if shared.send_spend(&spend).await.is_err() {
                shared.keep_unsent(spend);
            }
        });
    }

    /// INCRBYFLOAT of each Redis key's dollars, in one pipeline, each key kept for its time to live.
    async fn send_spend(&self, spend: &[(String, (f64, u64))]) -> Result<(), Down> {
        let mut pipe = redis::pipe();
        for (name, (usd, ttl)) in spend {
            pipe.cmd("INCRBYFLOAT")
                .arg(name)
                .arg(*usd)
                .ignore()
                .expire(name, i64::try_from(*ttl).unwrap_or(i64::MAX))
                .ignore();
        }
        self.run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await
    }

    fn keep_unsent(&self, spend: impl IntoIterator<Item = (String, (f64, u64))>) {
        let mut unsent = self.unsent_spend.lock().unwrap_or_else(|p| p.into_inner());
        for (name, (usd, ttl)) in spend {
            let kept = unsent.entry(name).or_insert((0.0, ttl));
            kept.0 += usd;
        }
    }

    /// Sends the spend Redis missed while it was down, once it is up; kept again if it fails. (A command that
    /// timed out may have been applied after all: replayed, it counts twice, which errs on the budget's side.)
    pub(crate) async fn replay_spend(&self) {
        if !self.is_up() {
            return;
        }
        let unsent: Vec<(String, (f64, u64))> =
            std::mem::take(&mut *self.unsent_spend.lock().unwrap_or_else(|p| p.into_inner()))
                .into_iter()
                .collect();
        if unsent.is_empty() {
            return;
        }
        // Each dollar is in a day's key and in a month's.
        let dollars: f64 = unsent.iter().map(|(_, (usd, _))| usd).sum::<f64>() / 2.0;
        match self.send_spend(&unsent).await {
            Ok(()) => tracing::info!(
                usd = dollars,
                "shared state (Redis): replayed the spend made while it was unreachable"
            ),
            Err(Down) => self.keep_unsent(unsent),
        }
    }

    fn cache_key(&self, key: &[u8; 32]) -> String {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:cache:{hex}", self.cfg.prefix)
    }

    /// A kept answer from the fleet's cache, as `core::cache` encoded it.
    pub(crate) async fn cache_get(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, Down> {
        let k = self.cache_key(key);
        self.run(|mut c| async move { c.get(&k).await }).await
    }

    /// Keeps an encoded answer in the fleet's cache for `ttl`, on its own task.
    pub(crate) fn cache_put(self: &Arc<Self>, key: &[u8; 32], bytes: Vec<u8>, ttl: Duration) {
        let (shared, k) = (self.clone(), self.cache_key(key));
        let ms = u64::try_from(ttl.as_millis().max(1)).unwrap_or(u64::MAX);
        crate::observe::tasks::spawn("redis cache write", async move {
            let _ = shared
                .run(|mut c| async move { c.pset_ex::<_, _, ()>(&k, bytes, ms).await })
                .await;
        });
    }
}

#[cfg(test)]
mod tests;
