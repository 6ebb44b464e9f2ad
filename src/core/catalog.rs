//! What a reload swaps: the models with their routes, upstreams and prices, and the keys with their limits.
//!
//! Every call takes the catalog once, at its start (an `Arc` clone under a read lock held for no longer), and
//! keeps what it resolved (`Arc<Model>`, `Arc<Identity>`) to its end: a reload never changes a call or a
//! session in flight, and the next call sees the new catalog. A key that keeps its name keeps its limiter —
//! its rate windows, spend and calls in flight — with the new file's limits applied, so a reload resets no
//! window. Everything else (listen addresses, `[shared]`, the cache's bounds, the admin key, tracing) is read at
//! start only: a change there is logged as needing a restart.

use std::sync::{Arc, RwLock};

use crate::{
    admission::{auth::KeyStore, registry::Registry},
    config::{ClientKey, Config, GroupConfig, KeyLimits},
    error::GatewayError,
    routing::router::Router,
};

pub(crate) struct Catalog {
    pub(crate) router: Router,
    pub(crate) keys: KeyStore,
    /// The config file's keys and `[limits.default]`, to rebuild the key store when the API changes a key.
    config_keys: Vec<ClientKey>,
    groups: Vec<GroupConfig>,
    defaults: KeyLimits,
}

/// The current catalog, swapped whole by a reload.
pub(crate) struct Current(RwLock<Arc<Catalog>>);

impl Current {
    pub(crate) fn new(cfg: &Config, registry: &Registry) -> Result<Current, GatewayError> {
        let router = Router::new(cfg)?;
        let keys = KeyStore::new(
            (&cfg.keys, &cfg.groups),
            &registry.runtime(cfg.key_defaults),
            &router,
            None,
        );
        Ok(Current(RwLock::new(Arc::new(Catalog {
            router,
            keys,
            config_keys: cfg.keys.clone(),
            groups: cfg.groups.clone(),
            defaults: cfg.key_defaults,
        }))))
    }

    pub(crate) fn get(&self) -> Arc<Catalog> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Builds the catalog `cfg` describes (upstream clients included) and swaps it in; on any error the
    /// current one stays. Returns the new one.
    pub(crate) fn reload(
        &self,
        cfg: &Config,
        registry: &Registry,
    ) -> Result<Arc<Catalog>, GatewayError> {
        let router = Router::new(cfg)?;
        let mut write = self.0.write().unwrap_or_else(|p| p.into_inner());
        let runtime = registry.runtime(cfg.key_defaults);
        let keys = KeyStore::new(
            (&cfg.keys, &cfg.groups),
            &runtime,
            &router,
            Some(&write.keys),
        );
        let new = Arc::new(Catalog {
            router,
            keys,
            config_keys: cfg.keys.clone(),
            groups: cfg.groups.clone(),
            defaults: cfg.key_defaults,
        });
        *write = new.clone();
        Ok(new)
    }

    /// Rebuilds the key store after the API made, changed or revoked a key; the models stay.
    pub(crate) fn rekey(&self, registry: &Registry) {
        let mut write = self.0.write().unwrap_or_else(|p| p.into_inner());
        let old = write.clone();
        let runtime = registry.runtime(old.defaults);
        let keys = KeyStore::new(
            (&old.config_keys, &old.groups),
            &runtime,
            &old.router,
            Some(&old.keys),
        );
        *write = Arc::new(Catalog {
            router: old.router.clone(),
            keys,
            config_keys: old.config_keys.clone(),
            groups: old.groups.clone(),
            defaults: old.defaults,
        });
    }
}
