//! Model routing as data: a model name or alias resolves to a model, its routes (upstream + the upstream's own
//! model id) and its traffic policy. Each route carries its live state: circuit breaker, rate-limit cooling
//! (see `cooling`) and calls in flight.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use tokio::time::Instant;

use crate::{
    config::{Config, Policy, Price},
    error::GatewayError,
    routing::breaker::Breaker,
    routing::cooling::Cooling,
    routing::retry::RetryBudget,
    upstream::configured::Upstream,
};

pub(crate) struct Model {
    /// The canonical name, also what permissions and logs use.
    pub(crate) name: String,
    /// Chat or embeddings: each refuses the other's calls.
    pub(crate) kind: crate::config::ModelKind,
    pub(crate) max_output_tokens: u32,
    /// Prompt and output together, when the config says.
    pub(crate) context_window: Option<u32>,
    /// Models a request too large for this one goes to instead (canonical names).
    pub(crate) context_fallbacks: Vec<String>,
    /// Reserved against a key's tpm when the client sets no max_tokens.
    pub(crate) default_output_tokens: u32,
    /// Never empty (config validation guarantees it).
    pub(crate) routes: Vec<Route>,
    pub(crate) policy: Policy,
    pub(crate) budget: RetryBudget,
    pub(crate) price: Price,
    /// Set when this model's answers are cached.
    pub(crate) cache: Option<crate::config::ModelCache>,
}

impl Model {
    /// What bounds a whole call to this model: the slowest of its routes' `request_timeout`s.
    pub(crate) fn request_timeout(&self) -> std::time::Duration {
        self.routes
            .iter()
            .map(|r| r.upstream.request_timeout())
            .max()
            .unwrap_or_default()
    }
}

pub(crate) struct Route {
    pub(crate) upstream: Arc<Upstream>,
    /// The upstream's own id for the model.
    pub(crate) model: String,
    pub(crate) weight: u32,
    /// Refuses what it would have to leave out (see `RouteConfig::strict`).
    pub(crate) strict: bool,
    pub(crate) breaker: Breaker,
    /// Tried last while its upstream keeps answering 429.
    pub(crate) cooling: Cooling,
    in_flight: AtomicUsize,
}

impl Route {
    pub(crate) fn new(
        upstream: Arc<Upstream>,
        model: String,
        weight: u32,
        policy: &Policy,
    ) -> Route {
        Route {
            upstream,
            model,
            weight,
            strict: false,
            breaker: Breaker::new(policy.breaker),
            cooling: Cooling::default(),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// The upstream's model id for a call that asked for `requested`: the route's own, or with `model = "*"`
    /// the client's name as it came (an agent's new model name needs no config change).
    pub(crate) fn upstream_model<'a>(&'a self, requested: &'a str) -> &'a str {
        if self.model == "*" {
            requested
        } else {
            &self.model
        }
    }

    /// Until when the route's breaker refuses calls, if it does now.
    pub(crate) fn open_until(&self, now: Instant) -> Option<Instant> {
        self.breaker.retry_at().filter(|&t| t > now)
    }

    /// Until when the route is cooling (its upstream rate limiting it), if it is now.
    pub(crate) fn cooling_until(&self, now: Instant) -> Option<Instant> {
        self.cooling
            .until(now)
            .max(self.upstream.exhausted_until(now))
    }

    /// Records how an attempt on this route ended: its breaker learns whether the route works (transport
    /// failures, 5xx and stalls count; what the upstream said about the request does not), and its cooling
    /// counts the answer.
    pub(crate) fn report(&self, outcome: Result<(), &GatewayError>) {
        let now = Instant::now();
        let health = match outcome {
            Ok(()) => Some(true),
            Err(e) => e.route_health(),
        };
        if let Some(ok) = health {
            self.breaker.record(now, ok);
        }
        let limited = match outcome {
            Err(GatewayError::UpstreamRateLimited { retry_after, .. }) => Some(*retry_after),
            _ => None,
        };
        // Only answers count: a connection that failed says nothing about the rate.
        let answered = limited.is_some() || health.is_some();
        if answered {
            if let Some(until) = self.cooling.record(now, limited) {
                tracing::warn!(
                    upstream = self.upstream.name(),
                    model = %self.model,
                    cool_ms = u64::try_from(until.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX),
                    "most recent answers were 429: the route is tried last until it cools down"
                );
            }
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Counts a call on a route for as long as it lives (a stream: until it ends).
pub(crate) struct RouteGuard {
    model: Arc<Model>,
    index: usize,
}

impl RouteGuard {
    pub(crate) fn new(model: Arc<Model>, index: usize) -> RouteGuard {
        model.routes[index]
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
        RouteGuard { model, index }
    }

    pub(crate) fn route(&self) -> &Route {
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

/// Who asks for a model: a name for errors, and which canonical models it may use. Client keys
/// (`admission::auth::Identity`) are callers.
pub(crate) trait Caller {
    fn name(&self) -> &str;
    fn allows(&self, model: &str) -> bool;
}

#[derive(Clone)]
pub(crate) struct Router {
    /// Names and aliases.
    by_name: HashMap<String, Arc<Model>>,
    /// Names and aliases with a `*`, as (before it, after it, the model), in config order: `claude-*` takes every
    /// model name a client's next release may ask for.
    patterns: Vec<(String, String, Arc<Model>)>,
    /// Canonical models in config order, for listing.
    models: Vec<Arc<Model>>,
}

impl Router {
    /// Builds every upstream (one HTTP client each) and the name table.
    pub(crate) fn new(cfg: &Config) -> Result<Router, GatewayError> {
        let upstreams = cfg
            .upstreams
            .iter()
            .map(|u| Upstream::new(u).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let mut by_name = HashMap::new();
        let mut patterns = Vec::new();
        let mut models = Vec::with_capacity(cfg.models.len());
        for m in &cfg.models {
            let routes = m
                .routes
                .iter()
                .map(|r| Route {
                    strict: r.strict,
                    ..Route::new(
                        upstreams[r.upstream].clone(),
                        r.model.clone(),
                        r.weight,
                        &m.policy,
                    )
                })
                .collect();
            let model = Arc::new(Model {
                name: m.name.clone(),
                kind: m.kind,
                max_output_tokens: m.max_output_tokens,
                context_window: m.context_window,
                context_fallbacks: m.context_fallbacks.clone(),
                default_output_tokens: m.default_output_tokens,
                routes,
                policy: m.policy,
                budget: RetryBudget::new(&m.policy.retry),
                price: m.price,
                cache: m.cache.clone(),
            });
            for name in std::iter::once(&m.name).chain(&m.aliases) {
                match name.split_once('*') {
                    Some((before, after)) => {
                        patterns.push((before.to_owned(), after.to_owned(), model.clone()))
                    }
                    None => {
                        by_name.insert(name.clone(), model.clone());
                    }
                }
            }
            models.push(model);
        }
        Ok(Router {
            by_name,
            patterns,
            models,
        })
    }

    /// Every model, in config order.
    pub(crate) fn models(&self) -> &[Arc<Model>] {
        &self.models
    }

    /// The canonical name of a model or alias.
    pub(crate) fn canonical(&self, name: &str) -> Option<&str> {
        self.find(name).map(|m| m.name.as_str())
    }

    /// The model a name asks for: by name or alias, else the first pattern it matches.
    fn find(&self, name: &str) -> Option<&Arc<Model>> {
        self.by_name.get(name).or_else(|| {
            self.patterns
                .iter()
                .find(|(before, after, _)| {
                    name.len() >= before.len() + after.len()
                        && name.starts_with(before.as_str())
                        && name.ends_with(after.as_str())
                })
                .map(|(_, _, model)| model)
        })
    }

    /// Whether every route of the model a name asks for goes to an upstream that speaks `dialect` (so nothing
    /// the client sent in that dialect is left out, whichever route answers).
    pub(crate) fn speaks_everywhere(&self, name: &str, dialect: &str) -> bool {
        self.find(name).is_some_and(|m| {
            m.routes
                .iter()
                .all(|r| r.upstream.dialect_name() == dialect)
        })
    }

    /// Resolves a requested model for a key: unknown models list what the key may use instead.
    pub(crate) fn resolve(
        &self,
        requested: &str,
        who: &impl Caller,
    ) -> Result<&Arc<Model>, GatewayError> {
        match self.find(requested) {
            Some(model) if who.allows(&model.name) => Ok(model),
            Some(model) => Err(GatewayError::PermissionDenied {
                key: who.name().to_owned(),
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
