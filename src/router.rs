//! Model routing as data: a model name or alias resolves to a model and its routes (upstream + the upstream's
//! own model id). Fallback and balancing across routes build on this; today a call takes the first route.

use std::{collections::HashMap, sync::Arc};

use crate::{auth::Identity, config::Config, error::GatewayError, upstream::Upstream};

pub struct Model {
    /// The canonical name, also what permissions and logs use.
    pub name: String,
    pub max_output_tokens: u32,
    /// Never empty (config validation guarantees it).
    pub routes: Vec<Route>,
}

impl Model {
    /// The route a call takes.
    pub fn primary(&self) -> Result<&Route, GatewayError> {
        self.routes
            .first()
            .ok_or_else(|| GatewayError::Internal(format!("model '{}' has no route", self.name)))
    }
}

pub struct Route {
    pub upstream: Arc<Upstream>,
    /// The upstream's own id for the model.
    pub model: String,
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
            let model = Arc::new(Model {
                name: m.name.clone(),
                max_output_tokens: m.max_output_tokens,
                routes: m
                    .routes
                    .iter()
                    .map(|r| Route {
                        upstream: upstreams[r.upstream].clone(),
                        model: r.model.clone(),
                    })
                    .collect(),
            });
            for name in std::iter::once(&m.name).chain(&m.aliases) {
                by_name.insert(name.clone(), model.clone());
            }
            models.push(model);
        }
        Ok(Router { by_name, models })
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
