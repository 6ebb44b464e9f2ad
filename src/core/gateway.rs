//! The gateway core that the handlers call: resolve and check a request, then call its upstream within its
//! deadline and the server's lifecycle. Built once at start; shared by every request.

use std::{sync::Arc, time::Duration};

use tokio::{sync::Semaphore, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    admission::auth::{Identity, Presented},
    admission::fleet::{Down, Shared},
    admission::jwt::{verify::looks_like_jwt, Issuers},
    admission::limits::{Admission, KeyLimiter, Reservation, Reserved},
    admission::registry::{Registry, RegistryError},
    admission::usage_book::UsageBook,
    config::{Config, InteractiveConfig, OnFailure, ScalingConfig},
    core::cache::{self, ResponseCache},
    core::catalog::{Catalog, Current},
    core::conversations::{self, Conversations},
    error::GatewayError,
    observe::forecast::{Outlook, Signal},
    observe::metrics::Metrics,
    observe::usage_records::Records,
    routing::router::Model,
};

/// Shutdown state: `draining` fires when the server stops accepting; `stop` fires when the grace period is
/// over and whatever is still running must end.
#[derive(Clone, Default)]
pub(crate) struct Lifecycle {
    pub(crate) draining: CancellationToken,
    pub(crate) stop: CancellationToken,
}

pub struct Gateway {
    /// Models, routes and keys: swapped whole by a reload (`catalog.rs`).
    pub(crate) catalog: Current,
    /// Keys made through the admin API (`admission::registry`).
    pub(crate) registry: Registry,
    /// `[usage_records]`: a JSON line per call.
    pub(crate) records: Option<Records>,
    pub(crate) interactive: InteractiveConfig,
    pub(crate) lifecycle: Lifecycle,
    /// The process-wide cap on calls in flight (load shedding).
    pub(crate) in_flight: Arc<Semaphore>,
    /// What requests being read and parsed may hold together.
    pub(crate) memory: crate::core::memory::MemoryBudget,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) usage: UsageBook,
    /// Per-minute request counts and their forecast: the scaling signal.
    pub(crate) signal: Signal,
    pub(crate) scaling: ScalingConfig,
    /// This replica's response cache (in front of the shared one, when there is one).
    pub(crate) cache: ResponseCache,
    /// Responses kept for `previous_response_id` (the Responses door).
    pub(crate) conversations: Conversations,
    /// What the dashboard's charts drew over the last minutes (see `admin::dashboard::History`).
    pub(crate) history: crate::observe::charts::History,
    /// Redis, when limits, spend and the cache are shared by the replicas.
    pub(crate) shared: Option<Arc<Shared>>,
    /// `[[auth.jwt]]`: the identity providers whose tokens are accepted, with their keys (read at start only).
    pub(crate) tokens: Option<Arc<Issuers>>,
    /// Counts changes to the keys (admin API, reload, the fleet's keys taken in): open streams watch it and
    /// ask whether their key still holds.
    pub(crate) key_changes: crate::core::key_changes::KeyChanges,
    /// Held while this replica changes the fleet's keys or writes them back: neither sees the other's
    /// half-made state.
    keys_writing: tokio::sync::Mutex<()>,
}

/// The client that reads identity providers' signing keys (JWKS): bounded connect, no redirects to elsewhere.
fn token_keys_client() -> Result<reqwest::Client, GatewayError> {
    crate::upstream::http::install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("aigw/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| GatewayError::Internal(format!("the JWKS client: {e}")))
}

/// How often a replica looks for changes to the fleet's API keys.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Keeps this replica's API keys those of the fleet: polls the version in Redis, and takes the new state when
/// it moved. While Redis is down the last known keys stay in force; when Redis comes back without them (its data
/// lost, or restored from an older copy) this replica writes back what it knows. Ends with the gateway.
fn follow_fleet_keys(gateway: std::sync::Weak<Gateway>, shared: Arc<Shared>) {
    crate::observe::tasks::spawn("fleet keys follower", async move {
        loop {
            let Some(gw) = gateway.upgrade() else { return };
            if gw.lifecycle.stop.is_cancelled() {
                return;
            }
            let writing = gw.keys_writing.lock().await;
            if let Ok(version) = shared.keys_version().await {
                if gw.registry.lost_by_the_fleet(version) {
                    gw.write_back_keys(&shared, version).await;
                } else if version != gw.registry.version() {
                    gw.take_fleet_keys(&shared).await;
                }
            }
            drop(writing);
            drop(gw);
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    });
}

impl Gateway {
    pub(crate) fn new(cfg: &Config) -> Result<Arc<Gateway>, GatewayError> {
        let registry = Registry::open(cfg.state_file.as_deref()).map_err(GatewayError::Internal)?;
        let catalog = Current::new(cfg, &registry)?;
        let metrics = Arc::new(Metrics::new());
        metrics.capacity.set(cfg.scaling.capacity_rpm_per_replica);
        let lifecycle = Lifecycle::default();
        let shared = match &cfg.shared {
            None => None,
            Some(s) => {
                let shared = Shared::new(s, metrics.watch_shared())?;
                shared.monitor(lifecycle.stop.clone());
                Some(shared)
            }
        };
        let usage = UsageBook::new(cfg);
        if let Some(shared) = &shared {
            usage.share(shared.clone());
        }
        for key in registry.list() {
            usage.know_key(&key.name);
        }
        let records = cfg
            .usage_records
            .as_ref()
            .map(|r| Records::start(r, metrics.records_dropped.clone()))
            .transpose()
            .map_err(GatewayError::Internal)?;
        let tokens = Issuers::start(&cfg.jwt, token_keys_client()?, lifecycle.stop.clone());
        let gateway = Arc::new(Gateway {
            catalog,
            registry,
            records,
            interactive: cfg.interactive,
            lifecycle,
            in_flight: Arc::new(Semaphore::new(cfg.max_in_flight as usize)),
            memory: crate::core::memory::MemoryBudget::new(
                cfg.memory_budget,
                metrics.memory_held.clone(),
            ),
            metrics,
            usage,
            signal: Signal::default(),
            scaling: cfg.scaling,
            cache: ResponseCache::new(&cfg.cache),
            conversations: Conversations::new(conversations::KEEP_FOR, conversations::MAX_BYTES),
            history: Default::default(),
            shared,
            tokens,
            key_changes: Default::default(),
            keys_writing: tokio::sync::Mutex::new(()),
        });
        if let Some(shared) = &gateway.shared {
            follow_fleet_keys(Arc::downgrade(&gateway), shared.clone());
        }
        Ok(gateway)
    }

    /// Whether this replica should take calls: not draining, and not refusing everything because the shared
    /// state it must not do without is down.
    pub(crate) fn ready(&self) -> Result<(), &'static str> {
        if self.lifecycle.draining.is_cancelled() {
            return Err("draining");
        }
        match &self.shared {
            Some(s) if s.on_failure() == OnFailure::Closed && !s.is_up() => {
                Err("shared state down")
            }
            _ => Ok(()),
        }
    }

    /// The cached answer this request may use, if any: this replica's first, then the fleet's. Counts the
    /// lookup's outcome (hit, miss, bypass).
    pub(crate) async fn cached(
        &self,
        model: &Model,
        plan: cache::Plan,
    ) -> Option<Arc<cache::Entry>> {
        let hit = match plan {
            cache::Plan::Use { key, read: true } => match self.cache.get(&key) {
                Some(hit) => Some(hit),
                None => match &self.shared {
                    Some(shared) => shared
                        .cache_get(&key)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|bytes| cache::Entry::decode(&bytes, model.kind))
                        .map(Arc::new),
                    None => None,
                },
            },
            _ => None,
        };
        let label = if hit.is_some() {
            Some("hit")
        } else {
            plan.miss_label()
        };
        if let Some(label) = label {
            self.metrics
                .cache
                .with_label_values(&[&model.name, label])
                .inc();
        }
        hit
    }

    /// Keeps a complete answer for the model's TTL.
    pub(crate) fn keep(&self, model: &Model, key: cache::Key, entry: cache::Entry) {
        let Some(policy) = &model.cache else { return };
        if let Some(shared) = &self.shared {
            if self.cache.fits(entry.bytes()) {
                if let Some(bytes) = entry.encode() {
                    shared.cache_put(&key, bytes, policy.ttl);
                }
            }
        }
        self.cache.put(key, entry, policy.ttl);
        self.metrics
            .cache
            .with_label_values(&[&model.name, "stored"])
            .inc();
        let (entries, bytes) = self.cache.size();
        self.metrics
            .cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.metrics
            .cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// The models and keys in force now.
    pub(crate) fn catalog(&self) -> Arc<Catalog> {
        self.catalog.get()
    }

    /// Re-reads the models, routes, prices and keys from `cfg`; calls and sessions in flight keep what they
    /// started with. On an error the old catalog stays. Returns a line for the log.
    pub(crate) fn reload(&self, cfg: &Config) -> Result<String, GatewayError> {
        let new = self.catalog.reload(cfg, &self.registry)?;
        // Token callers were made with the old groups (limiters, allow-lists): their next calls verify again.
        if let Some(tokens) = &self.tokens {
            tokens.forget_verified();
        }
        self.key_changes.tell();
        self.usage.know(cfg);
        Ok(format!(
            "{} models, {} keys",
            new.router.models().len(),
            new.keys.len()
        ))
    }

    /// Makes a change to the API keys: with `[shared]` through Redis, as a compare-and-set on the fleet's
    /// version (retried when another replica changed them first), so every replica takes it in; else here and in
    /// the state file. `change` may run more than once.
    pub(crate) async fn change_keys<T>(
        &self,
        change: impl Fn(&Registry) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let Some(shared) = &self.shared else {
            let out = change(&self.registry)?;
            self.keys_changed();
            return Ok(out);
        };
        let down = || {
            RegistryError::Unavailable(
                "the shared state (Redis) is down: keys cannot change now".into(),
            )
        };
        let _writing = self.keys_writing.lock().await;
        for _ in 0..8 {
            let (read, state) = shared.keys_get().await.map_err(|_| down())?;
            // Redis without the keys this replica knows lost them: the change builds on what is known here.
            let base = if self.registry.lost_by_the_fleet(read) {
                (self.registry.version(), Some(self.registry.to_json()))
            } else {
                (read, state)
            };
            self.registry
                .adopt(base.0, base.1.as_deref())
                .map_err(RegistryError::Save)?;
            let out = change(&self.registry)?;
            let next = self.registry.to_json();
            match shared.keys_put(read, read.max(base.0) + 1, &next).await {
                Ok(Some(version)) => {
                    let _ = self.registry.adopt(version, Some(&next));
                    self.keys_changed();
                    return Ok(out);
                }
                // Another replica got there first: undo, and start again from its state.
                Ok(None) => {
                    let _ = self.registry.adopt(base.0, base.1.as_deref());
                }
                Err(_) => {
                    let _ = self.registry.adopt(base.0, base.1.as_deref());
                    return Err(down());
                }
            }
        }
        Err(RegistryError::Unavailable(
            "the fleet's keys kept changing: try again".into(),
        ))
    }

    /// Takes in the fleet's keys as Redis has them.
    async fn take_fleet_keys(&self, shared: &Shared) {
        if let Ok((version, state)) = shared.keys_get().await {
            match self.registry.adopt(version, state.as_deref()) {
                Ok(()) => self.keys_changed(),
                Err(e) => tracing::error!(error = %e, "the fleet's keys were not taken in"),
            }
        }
    }

    /// Writes this replica's keys back to a Redis that lost them (found at version `read`), under a version
    /// above every one the fleet has used; if another replica wrote back first, takes its keys instead.
    async fn write_back_keys(&self, shared: &Shared, read: u64) {
        let known = self.registry.version();
        let state = self.registry.to_json();
        match shared.keys_put(read, read.max(known) + 1, &state).await {
            Ok(Some(version)) => {
                let _ = self.registry.adopt(version, Some(&state));
                tracing::warn!(
                    keys = self.registry.list().len(),
                    found_version = read,
                    known_version = known,
                    "the shared state (Redis) had lost the fleet's API keys: wrote back the ones this replica knew"
                );
            }
            Ok(None) => self.take_fleet_keys(shared).await,
            Err(Down) => {}
        }
    }

    /// The caller whose `authorization` header (or metadata) is `authorization`: a key, or an identity
    /// provider's token.
    pub(crate) fn authenticate(
        &self,
        authorization: Option<&[u8]>,
    ) -> Result<Arc<Identity>, GatewayError> {
        let catalog = self.catalog();
        match catalog.keys.present(authorization)? {
            Presented::Key(who) => Ok(who),
            Presented::Unknown(credential, digest) => match &self.tokens {
                Some(tokens) if looks_like_jwt(credential) => {
                    tokens.caller(credential, digest, &catalog.keys, &catalog.router)
                }
                _ => Err(GatewayError::Unauthenticated("unknown API key")),
            },
        }
    }

    /// Takes in a change the admin API made to its keys: the next call sees it.
    pub(crate) fn keys_changed(&self) {
        self.catalog.rekey(&self.registry);
        self.key_changes.tell();
        for key in self.registry.list() {
            self.usage.know_key(&key.name);
        }
    }

    /// Admits a call for this key to `model`: in-flight caps, then requests and tokens per minute, reserving
    /// `tokens` (the call's estimate: `call::request::Ask::reserve`).
    pub(crate) async fn admit(
        &self,
        who: &Identity,
        model: &str,
        tokens: u64,
    ) -> Result<Admission, GatewayError> {
        let admitted = async {
            let permits = self.permits(who, model)?;
            Ok(permits.with_rates(self.rates(who, model, tokens).await?))
        }
        .await;
        admitted.inspect_err(|e| self.rejected(who, e))
    }

    /// The concurrency part of admission: the process's cap, the key's slot and its group's, and theirs on
    /// `model` (`model_limits`).
    pub(crate) fn permits(&self, who: &Identity, model: &str) -> Result<Admission, GatewayError> {
        let permits = who.limiter.permits(&self.in_flight)?;
        let slot =
            |l: Option<&Arc<KeyLimiter>>| l.map(|l| l.slot()).transpose().map(Option::flatten);
        let group = slot(who.group.as_ref())?;
        let models = [
            slot(who.limiter.on_model(model).as_ref())?,
            slot(who.group.as_ref().and_then(|g| g.on_model(model)).as_ref())?,
        ];
        let mut above = Vec::new();
        for g in &who.above {
            above.extend(slot(Some(g))?);
            above.extend(slot(g.on_model(model).as_ref())?);
        }
        Ok(permits.with_slots(group, models, above))
    }

    /// The rate part of admission (budgets, requests and tokens per minute): the groups above the key's group
    /// (top first) and their limits on `model`, the key's group, the group's limits on `model`, the key, the
    /// key's on `model` — each in the fleet's windows in Redis when shared,
    /// else (or while Redis is down with `on_failure = "open"`) this replica's. A refusal takes the requests and
    /// tokens the other levels recorded back out of their windows.
    pub(crate) async fn rates(
        &self,
        who: &Identity,
        model: &str,
        tokens: u64,
    ) -> Result<Reserved, GatewayError> {
        let mut reserved = Reserved::default();
        // The groups above the key's first, the top one first.
        for g in who.above.iter().rev() {
            for limiter in [Some(g.clone()), g.on_model(model)].into_iter().flatten() {
                let made = self.level(&limiter, tokens, &mut reserved).await?;
                reserved.above.extend(made);
            }
        }
        if let Some(group) = &who.group {
            reserved.group = self.level(group, tokens, &mut reserved).await?;
            if let Some(on_model) = group.on_model(model) {
                reserved.group_model = self.level(&on_model, tokens, &mut reserved).await?;
            }
        }
        reserved.key = self.level(&who.limiter, tokens, &mut reserved).await?;
        if let Some(on_model) = who.limiter.on_model(model) {
            reserved.key_model = self.level(&on_model, tokens, &mut reserved).await?;
        }
        Ok(reserved)
    }

    /// One level's rates; its refusal takes back what the levels before it in `reserved` recorded.
    async fn level(
        &self,
        limiter: &KeyLimiter,
        tokens: u64,
        reserved: &mut Reserved,
    ) -> Result<Option<Reservation>, GatewayError> {
        let made = self.limiter_rates(limiter, tokens).await;
        if made.is_err() {
            // Boxed, as the fleet's call below: Redis futures are large, and a call's future is copied whole at
            // every level it passes through, shared state or not.
            Box::pin(reserved.cancel()).await;
        }
        made
    }

    async fn limiter_rates(
        &self,
        limiter: &KeyLimiter,
        tokens: u64,
    ) -> Result<Option<Reservation>, GatewayError> {
        if let Some(shared) = &self.shared {
            let limits = limiter.limits();
            if limits.any_rate_or_budget() {
                match Box::pin(shared.rates(limiter, limits, tokens)).await {
                    Ok(verdict) => return verdict,
                    Err(Down) if shared.on_failure() == OnFailure::Closed => {
                        return Err(GatewayError::SharedStateUnavailable)
                    }
                    Err(Down) => {} // open: this replica's own windows, below
                }
            }
        }
        limiter.rates(Instant::now(), std::time::SystemTime::now(), tokens)
    }

    /// Closes a minute of the scaling signal (the server calls it every minute) and updates its metrics.
    pub fn scaling_tick(&self) -> Outlook {
        self.signal.tick();
        let outlook = self.outlook();
        self.metrics
            .requests_last_minute
            .set(i64::try_from(outlook.last_minute).unwrap_or(i64::MAX));
        self.metrics
            .forecast_peak
            .set(outlook.forecast_peak_per_minute);
        self.metrics
            .recommended_replicas
            .set(i64::from(outlook.recommended_replicas));
        outlook
    }

    pub(crate) fn outlook(&self) -> Outlook {
        let s = &self.scaling;
        let horizon = (s.horizon.as_secs() / 60) as usize;
        self.signal.outlook(
            horizon,
            s.capacity_rpm_per_replica,
            s.headroom,
            s.min_replicas,
            s.max_replicas,
        )
    }

    /// Counts a refusal by a limit.
    pub(crate) fn rejected(&self, who: &Identity, err: &GatewayError) {
        if let GatewayError::ResourceExhausted { limit, .. } = err {
            self.metrics
                .rejections
                .with_label_values(&[who.name.as_str(), limit])
                .inc();
        }
    }

    /// What the dispatcher needs of the gateway.
    pub(crate) fn handles(&self) -> crate::routing::dispatch::Handles<'_> {
        crate::routing::dispatch::Handles {
            metrics: &self.metrics,
            stop: &self.lifecycle.stop,
        }
    }
}
