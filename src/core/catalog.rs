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
    admission::auth::KeyStore, config::Config, error::GatewayError, routing::router::Router,
};

pub(crate) struct Catalog {
    pub(crate) router: Router,
    pub(crate) keys: KeyStore,
}

/// The current catalog, swapped whole by a reload.
pub(crate) struct Current(RwLock<Arc<Catalog>>);

impl Current {
    pub(crate) fn new(cfg: &Config) -> Result<Current, GatewayError> {
        let router = Router::new(cfg)?;
        let keys = KeyStore::new(&cfg.keys, &router, None);
        Ok(Current(RwLock::new(Arc::new(Catalog { router, keys }))))
    }

    pub(crate) fn get(&self) -> Arc<Catalog> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Builds the catalog `cfg` describes (upstream clients included) and swaps it in; on any error the
    /// current one stays. Returns the new one.
    pub(crate) fn reload(&self, cfg: &Config) -> Result<Arc<Catalog>, GatewayError> {
        let router = Router::new(cfg)?;
        let old = self.get();
        let keys = KeyStore::new(&cfg.keys, &router, Some(&old.keys));
        let new = Arc::new(Catalog { router, keys });
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = new.clone();
        Ok(new)
    }
}
