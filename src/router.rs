//! Model routing as data: a model name or alias resolves to a model, its routes (upstream + the upstream's own
//! model id) and its traffic policy. Each route carries its live state: circuit breaker, rate-limit parking
//! (an upstream's Retry-After) and calls in flight.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use tokio::time::Instant;

use crate::{
    auth::Identity,
    breaker::Breaker,
    config::{Config, Policy},
    error::GatewayError,
    retry::RetryBudget,
    rpclog::Price,
    upstream::Upstream,
};

pub struct Model {
    /// The canonical name, also what permissions and logs use.
    pub name: String,
    pub max_output_tokens: u32,
    /// Reserved against a key's tpm when the client sets no max_tokens.
    pub default_output_tokens: u32,
    /// Never empty (config validation guarantees it).
    pub routes: Vec<Route>,
    pub policy: Policy,
    pub budget: RetryBudget,
    pub price: Price,
    /// Set when this model's answers are cached.
    pub cache: Option<crate::config::ModelCache>,
}

impl Model {
    /// What bounds a whole call to this model: the slowest of its routes' `request_timeout`s.
    pub fn request_timeout(&self) -> std::time::Duration {
        self.routes
            .iter()
            .map(|r| r.upstream.request_timeout())
            .max()
            .unwrap_or_default()
    }
}

pub struct Route {
    pub upstream: Arc<Upstream>,
    /// The upstream's own id for the model.
    pub model: String,
    pub weight: u32,
    pub breaker: Breaker,
    /// Out of rotation until then: the upstream answered 429 with a Retry-After.
    parked_until: Mutex<Option<Instant>>,
    in_flight: AtomicUsize,
}

impl Route {
    fn new(upstream: Arc<Upstream>, model: String, weight: u32, policy: &Policy) -> Route {
        Route {
            upstream,
            model,
            weight,
            breaker: Breaker::new(policy.breaker),
            parked_until: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// When this route can take calls again, if not now (parked, or its breaker open).
    pub fn unavailable_until(&self, now: Instant) -> Option<Instant> {
        let parked = self
            .parked_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .filter(|&t| t > now);
        let open = self.breaker.retry_at().filter(|&t| t > now);
        parked.max(open)
    }

    pub fn is_parked(&self, now: Instant) -> bool {
        self.parked_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t > now)
    }

    /// Takes the route out of rotation until `until` (never shortens an existing park).
    pub fn park(&self, until: Instant) {
        let mut parked = self.parked_until.lock().unwrap_or_else(|p| p.into_inner());
        *parked = Some(parked.map_or(until, |t| t.max(until)));
    }

    /// Records how a call on this route ended: its breaker learns whether the route works, and a 429 with a
    /// wait takes the route out of rotation for that long.
    pub fn report(&self, outcome: Result<(), &GatewayError>) {
        let now = Instant::now();
        match outcome {
            Ok(()) => self.breaker.record(now, true),
            Err(e) => {
                if let Some(ok) = e.route_health() {
                    self.breaker.record(now, ok);
                }
                if let GatewayError::UpstreamRateLimited {
                    retry_after: Some(wait),
                    ..
                } = e
                {
                    self.park(now + *wait);
                }
            }
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Counts a call on a route for as long as it lives (a stream: until it ends).
pub struct RouteGuard {
    model: Arc<Model>,
    index: usize,
}

impl RouteGuard {
    pub fn new(model: Arc<Model>, index: usize) -> RouteGuard {
        model.routes[index]
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
        RouteGuard { model, index }
    }

    pub fn route(&self) -> &Route {
        &self.model.routes[self.index]
    }
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        self.model.routes[self.index]
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct Router {
    /// Names and aliases.
    by_name: HashMap<String, Arc<Model>>,
    /// Canonical models in config order, for listing.
    models: Vec<Arc<Model>>,
}

impl Router {
    /// Builds every upstream (one HTTP client each) and the name table.
    pub fn new(cfg: &Config) -> Result<Router, GatewayError> {
        let upstreams = cfg
            .upstreams
            .iter()
            .map(|u| Upstream::new(u).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let mut by_name = HashMap::new();
        let mut models = Vec::with_capacity(cfg.models.len());
        for m in &cfg.models {
            let routes = m
                .routes
                .iter()
                .map(|r| {
                    Route::new(
                        upstreams[r.upstream].clone(),
                        r.model.clone(),
                        r.weight,
                        &m.policy,
                    )
                })
                .collect();
            let model = Arc::new(Model {
                name: m.name.clone(),
                max_output_tokens: m.max_output_tokens,
                default_output_tokens: m.default_output_tokens,
                routes,
                policy: m.policy,
                budget: RetryBudget::new(&m.policy.retry),
                price: m.price,
                cache: m.cache.clone(),
            });
            for name in std::iter::once(&m.name).chain(&m.aliases) {
                by_name.insert(name.clone(), model.clone());
            }
            models.push(model);
        }
        Ok(Router { by_name, models })
    }

    /// Every model, in config order.
    pub fn models(&self) -> &[Arc<Model>] {
        &self.models
    }

    /// The canonical name of a model or alias.
    pub fn canonical(&self, name: &str) -> Option<&str> {
        self.by_name.get(name).map(|m| m.name.as_str())
    }

    /// Resolves a requested model for a key: unknown models list what the key may use instead.
    pub fn resolve(&self, requested: &str, who: &Identity) -> Result<&Arc<Model>, GatewayError> {
        match self.by_name.get(requested) {
            Some(model) if who.allows(&model.name) => Ok(model),
            Some(model) => Err(GatewayError::PermissionDenied {
                key: who.name.clone(),
                model: model.name.clone(),
            }),
            None => Err(GatewayError::UnknownModel {
                requested: requested.to_owned(),
                available: self
                    .models
                    .iter()
                    .filter(|m| who.allows(&m.name))
                    .map(|m| m.name.clone())
                    .collect(),
            }),
        }
    }
}
