//! Callers who present their identity provider's token (`authorization: Bearer <JWT>`) instead of an API key:
//! `[[auth.jwt]]`. A token is verified against its issuer's published keys, its claims checked, and its caller
//! named `<issuer name>:<tenant claim>` — an [`Identity`] like a key's, with the issuer's limits, allow-list
//! and group (or the group its `group_claim` names), so limits, budgets, usage and records work the same.
//!
//! Each issuer's keys are read at start and every `refresh` by a task of their own; a token naming a key the
//! set lacks (the issuer rotated) asks for a read, at most once per `min_refresh`, and its call waits for that
//! read (`Issuer::read_keys`, before the synchronous check). A verified token is remembered until it expires or
//! the keys change, so a client's next calls cost a hash, not a signature check.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, RwLock,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use sha2::{Digest, Sha256};
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    admission::{
        auth::{Identity, KeyStore},
        limits::KeyLimiter,
    },
    config::JwtIssuer,
    error::GatewayError,
    routing::router::Router,
};

mod keys;
pub(crate) mod verify;

use verify::{KeySet, Token};

/// Verified tokens remembered at most; more, and the expired ones go (then all, if none had).
const MAX_VERIFIED: usize = 4096;
/// How long a call waits for its issuer's keys to be read again: longer than a read may take (`keys::READ_TIMEOUT`),
/// so the wait ends with the read, whatever the machine's load; this only guards against a reader that is gone.
const KEY_WAIT: Duration = Duration::from_secs(15);

/// Every trusted issuer, and the tokens lately verified.
pub(crate) struct Issuers {
    list: Vec<Arc<Issuer>>,
    /// SHA-256 of a token → its caller and when the token stops working.
    verified: Mutex<HashMap<[u8; 32], Remembered>>,
}

/// A verified token's caller, and when the token stops working.
type Remembered = (Arc<Identity>, SystemTime);

/// One `[[auth.jwt]]` and its state.
pub(crate) struct Issuer {
    cfg: JwtIssuer,
    keys: RwLock<Arc<KeySet>>,
    /// Counts finished reads of the keys (ok or not): a call waiting for a read watches it.
    reads: watch::Sender<u64>,
    /// Wakes the reader for a read before its next `refresh`.
    wanted: tokio::sync::Notify,
    /// When a call last asked for a read, to keep such reads at least `min_refresh` apart.
    last_asked: Mutex<Option<Instant>>,
    /// A read is under way.
    reading: AtomicBool,
    /// Each caller's limit state, kept while the caller is known (`max_tenants` at most).
    tenants: Mutex<HashMap<String, Arc<KeyLimiter>>>,
}

/// What the verified token says about its caller.
pub(crate) struct Caller {
    pub(crate) name: String,
    pub(crate) limiter: Arc<KeyLimiter>,
    /// The group the token's `group_claim` names, or the issuer's `group`.
    pub(crate) group: Option<String>,
    pub(crate) models: Option<Vec<String>>,
    /// When the token stops working (its `exp` plus the leeway).
    pub(crate) until: SystemTime,
}

impl Issuers {
    /// The issuers `cfg` trusts, their keys' readers started (they stop with `stop`); None without any.
    pub(crate) fn start(
        cfg: &[JwtIssuer],
        client: reqwest::Client,
        stop: CancellationToken,
    ) -> Option<Arc<Issuers>> {
        if cfg.is_empty() {
            return None;
        }
        let issuers = Arc::new(Issuers {
            list: cfg
                .iter()
                .map(|c| Arc::new(Issuer::new(c.clone())))
                .collect(),
            verified: Mutex::default(),
        });
        for issuer in &issuers.list {
            keys::read_keys(
                issuer.clone(),
                Arc::downgrade(&issuers),
                client.clone(),
                stop.clone(),
            );
        }
        Some(issuers)
    }

    /// The issuer a token's (not yet verified) `iss` names.
    fn issuer_of(&self, token: &Token<'_>) -> Option<&Arc<Issuer>> {
        let iss = token.issuer()?;
        self.list.iter().find(|i| i.cfg.issuer == iss)
    }

    /// Before the synchronous check: the issuer whose keys must be read again first, when `credential` is a
    /// token (not one verified lately) of a known issuer whose key set lacks its `kid` or is not read yet.
    pub(crate) fn needs_keys(&self, credential: &str) -> Option<(Arc<Issuer>, Option<String>)> {
        if !verify::looks_like_jwt(credential) || self.remembered(&digest(credential)).is_some() {
            return None;
        }
        let token = Token::read(credential).ok()?;
        let issuer = self.issuer_of(&token)?;
        let keys = issuer.keys();
        (keys.len() == 0 || !keys.knows(token.kid.as_deref())).then(|| (issuer.clone(), token.kid))
    }

    /// The caller a token names, when it verifies.
    pub(crate) fn verify(&self, credential: &str) -> Result<Caller, GatewayError> {
        let refuse = GatewayError::Unauthenticated;
        let token = Token::read(credential).map_err(refuse)?;
        let issuer = self
            .issuer_of(&token)
            .ok_or(refuse("the token's issuer is not trusted"))?;
        let keys = issuer.keys();
        if keys.len() == 0 {
            return Err(refuse(
                "the token's issuer has no signing keys the gateway could read yet",
            ));
        }
        token.verify(&keys).map_err(refuse)?;
        let cfg = &issuer.cfg;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let leeway = cfg.leeway.as_secs();
        let exp = verify::check_claims(&token.claims, &cfg.issuer, &cfg.audiences, now, leeway)
            .map_err(refuse)?;
        let tenant = verify::claim_name(&token.claims, &cfg.tenant_claim).ok_or(refuse(
            "the token does not name its caller (the issuer's tenant_claim is missing or not a name)",
        ))?;
        let group = match &cfg.group_claim {
            Some(claim) if token.claims.contains_key(claim) => Some(
                verify::claim_name(&token.claims, claim)
                    .ok_or(refuse("the token's group claim is not a name"))?,
            ),
            _ => cfg.group.clone(),
        };
        let name = format!("{}:{tenant}", cfg.name);
        Ok(Caller {
            limiter: issuer.limiter(&name),
            name,
            group,
            models: cfg.models.clone(),
            until: UNIX_EPOCH + Duration::from_secs(exp.saturating_add(leeway)),
        })
    }

    /// The caller `token` (whose SHA-256 is `digest`) names: remembered from an earlier call with the same
    /// token, or verified now. Its group is one of `keys`' groups.
    pub(crate) fn caller(
        &self,
        token: &str,
        digest: [u8; 32],
        keys: &KeyStore,
        router: &Router,
    ) -> Result<Arc<Identity>, GatewayError> {
        if let Some(who) = self.remembered(&digest) {
            return Ok(who);
        }
        let caller = self.verify(token)?;
        let group = match &caller.group {
            None => None,
            Some(g) => Some(keys.group(g).cloned().ok_or(GatewayError::Unauthenticated(
                "the token's group names no group this gateway has",
            ))?),
        };
        let models = (
            caller.models.as_deref(),
            caller.group.as_deref().and_then(|g| keys.group_models(g)),
        );
        let who = Identity::for_token(caller.name, models, caller.limiter, group, router);
        let who = Arc::new(who);
        self.remember(digest, who.clone(), caller.until);
        Ok(who)
    }

    /// A caller verified before, by its token's digest, while the token holds.
    pub(crate) fn remembered(&self, digest: &[u8; 32]) -> Option<Arc<Identity>> {
        let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        let (who, until) = verified.get(digest)?;
        (SystemTime::now() < *until).then(|| who.clone())
    }

    /// Remembers a verified token's caller until `until`.
    pub(crate) fn remember(&self, digest: [u8; 32], who: Arc<Identity>, until: SystemTime) {
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= MAX_VERIFIED {
            let now = SystemTime::now();
            verified.retain(|_, (_, end)| now < *end);
            if verified.len() >= MAX_VERIFIED {
                verified.clear();
            }
        }
        verified.insert(digest, (who, until));
    }

    /// Forgets every verified token (an issuer's keys changed: one may have been withdrawn; or a reload changed
    /// the groups their callers are in).
    pub(crate) fn forget_verified(&self) {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// A token's digest, the key it is remembered by.
fn digest(credential: &str) -> [u8; 32] {
    Sha256::digest(credential.as_bytes()).into()
}

impl Issuer {
    fn new(cfg: JwtIssuer) -> Issuer {
        Issuer {
            cfg,
            keys: RwLock::default(),
            reads: watch::Sender::new(0),
            wanted: tokio::sync::Notify::new(),
            last_asked: Mutex::new(None),
            reading: AtomicBool::new(false),
            tenants: Mutex::default(),
        }
    }

    /// Until the set has `kid`: waits for a read under way, else asks for one and waits for it (at most
    /// [`KEY_WAIT`] each) — unless a call asked less than `min_refresh` ago, so unknown `kid`s cannot make the
    /// gateway hammer the issuer.
    pub(crate) async fn read_keys(&self, kid: Option<&str>) {
        // Twice at most: a read under way when the call came may predate the key it needs.
        for _ in 0..2 {
            let keys = self.keys();
            if keys.len() > 0 && keys.knows(kid) {
                return;
            }
            let mut reads = self.reads.subscribe();
            reads.mark_unchanged();
            if self.reading.load(Ordering::Acquire) || self.want_read() {
                let _ = tokio::time::timeout(KEY_WAIT, reads.changed()).await;
            } else {
                return;
            }
        }
    }

    fn keys(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Asks the reader for a read now, unless a call asked less than `min_refresh` ago; says whether it asked.
    fn want_read(&self) -> bool {
        let mut last = self.last_asked.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| at.elapsed() < self.cfg.min_refresh) {
            return false;
        }
        *last = Some(Instant::now());
        self.wanted.notify_one();
        true
    }

    /// The limit state of the caller `name`, made on first sight with the issuer's limits. When `max_tenants`
    /// are known, an idle one (no call in flight, no token remembered) makes room; if none is idle, the new
    /// caller's state is not kept (its limits hold per call, its windows start empty).
    fn limiter(&self, name: &str) -> Arc<KeyLimiter> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = tenants.get(name) {
            return l.clone();
        }
        let limiter = Arc::new(KeyLimiter::tenant(name, self.cfg.limits));
        limiter.set_model_limits(&self.cfg.model_limits);
        if tenants.len() >= self.cfg.max_tenants {
            let idle = tenants
                .iter()
                .find(|(_, l)| Arc::strong_count(l) == 1)
                .map(|(n, _)| n.clone());
            match idle {
                Some(n) => {
                    tenants.remove(&n);
                }
                None => return limiter,
            }
        }
        tenants.insert(name.to_owned(), limiter.clone());
        limiter
    }
}

#[cfg(test)]
mod tests;
