//! Client authentication: `authorization: Bearer <key>` metadata against the configured keys.
//!
//! Keys are held only as SHA-256 digests. The lookup hashes the presented key and finds the digest in a map:
//! the time it takes depends on the digest, which an attacker cannot steer toward a stored one, so it leaks
//! nothing about stored keys; the final comparison is constant-time all the same.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::SystemTime,
};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{
    admission::{limits::KeyLimiter, registry::Runtime},
    config::{ClientKey, GroupConfig},
    error::GatewayError,
    routing::router::Router,
};

/// Who is calling: travels with the request in its extensions.
#[derive(Debug)]
pub(crate) struct Identity {
    /// The key's configured name; safe to log.
    pub(crate) name: String,
    /// Canonical model names this key may use; `None` means all.
    allowed: Option<HashSet<String>>,
    /// The key's rate and concurrency state (shared with the identity a reload makes for the same key).
    pub(crate) limiter: Arc<KeyLimiter>,
    /// Its group's shared limits, when it has a group.
    pub(crate) group: Option<Arc<KeyLimiter>>,
    /// The groups above its group (the team's organisation, ...), nearest first: their limits apply too.
    pub(crate) above: Vec<Arc<KeyLimiter>>,
    /// Made through the admin API (not the config file), so the API may revoke it.
    pub(crate) from_api: bool,
    /// When it stops working, if it does.
    pub(crate) expires: Option<SystemTime>,
    /// What owns what the key keeps (stored responses): stable across reloads and rotations, never shared with
    /// a later key of the same name (a config key's first secret digest bytes, an API key's making time).
    pub(crate) owner: String,
    /// A caller named by an identity provider's token (`[[auth.jwt]]`), not a key.
    pub(crate) via_token: bool,
}

impl Identity {
    /// Its group's name and those of the groups above, nearest first.
    pub(crate) fn group_names(&self) -> impl Iterator<Item = &str> + Clone {
        self.group.iter().chain(&self.above).map(|g| g.name())
    }

    pub(crate) fn allows(&self, model: &str) -> bool {
        self.allowed.as_ref().is_none_or(|set| set.contains(model))
    }
}

impl crate::routing::router::Caller for Identity {
    fn name(&self) -> &str {
        &self.name
    }

    fn allows(&self, model: &str) -> bool {
        Identity::allows(self, model)
    }
}

pub(crate) struct KeyStore {
    /// Each digest with its identity, and until when it works (a rotated-out secret, an expiring key).
    by_digest: HashMap<[u8; 32], (Arc<Identity>, Option<SystemTime>)>,
    by_name: HashMap<String, Arc<Identity>>,
    groups: HashMap<String, Arc<KeyLimiter>>,
    /// The models each group's keys may use, its own list and those of the groups above it together
    /// (canonical names; `None`: every model).
    group_models: HashMap<String, Option<HashSet<String>>>,
}

impl KeyStore {
    /// The config's keys and those made at run time. Allowlists may name aliases; they are stored as canonical
    /// names. Given the store it replaces, a key that keeps its name (and its concurrency limit) keeps its
    /// limiter, with the new limits.
    pub(crate) fn new(
        (keys, groups_cfg): (&[ClientKey], &[GroupConfig]),
        runtime: &[Runtime],
        router: &Router,
        before: Option<&KeyStore>,
    ) -> KeyStore {
        // Groups keep their limiters (windows, spend, slots) like keys do.
        let groups: HashMap<String, Arc<KeyLimiter>> = groups_cfg
            .iter()
            .map(|g| {
                let kept = before
                    .and_then(|b| b.groups.get(&g.name))
                    .filter(|l| l.limits().concurrency == g.limits.concurrency)
                    .cloned();
                let limiter = match kept {
                    Some(l) => {
                        l.set_limits(g.limits);
                        l
                    }
                    None => Arc::new(KeyLimiter::group(&g.name, g.limits)),
                };
                limiter.set_model_limits(&g.model_limits);
                (g.name.clone(), limiter)
            })
            .collect();
        for g in groups_cfg {
            if let Some(limiter) = groups.get(&g.name) {
                limiter.set_parent(g.parent.as_ref().and_then(|p| groups.get(p)).cloned());
            }
        }
        let canonical = |names: &Option<Vec<String>>| {
            names.as_ref().map(|names| {
                names
                    .iter()
                    .filter_map(|n| router.canonical(n))
                    .map(str::to_owned)
                    .collect::<HashSet<String>>()
            })
        };
        // Each group's allow-list, narrowed by every group above it.
        let group_models: HashMap<String, Option<HashSet<String>>> = groups_cfg
            .iter()
            .map(|g| {
                let mut allowed = canonical(&g.models);
                let mut up = g.parent.as_deref();
                for _ in 0..crate::config::MAX_GROUP_DEPTH {
                    let Some(parent) = groups_cfg.iter().find(|p| Some(p.name.as_str()) == up)
                    else {
                        break;
                    };
                    allowed = narrowed(allowed, canonical(&parent.models));
                    up = parent.parent.as_deref();
                }
                (g.name.clone(), allowed)
            })
            .collect();
        let identity =
            |k: &ClientKey, from_api: bool, expires: Option<SystemTime>, owner: String| {
                let of_group = k.group.as_ref().and_then(|g| group_models.get(g)).cloned();
                let allowed = narrowed(canonical(&k.models), of_group.flatten());
                let kept = before
                    .and_then(|b| b.by_name(&k.name))
                    .map(|who| who.limiter.clone())
                    .filter(|l| l.limits().concurrency == k.limits.concurrency);
                let limiter = match kept {
                    Some(l) => {
                        l.set_limits(k.limits);
                        l
                    }
                    None => Arc::new(KeyLimiter::new(&k.name, k.limits)),
                };
                limiter.set_model_limits(&k.model_limits);
                let group = k.group.as_ref().and_then(|g| groups.get(g)).cloned();
                Arc::new(Identity {
                    name: k.name.clone(),
                    allowed,
                    limiter,
                    above: above(group.as_ref()),
                    group,
                    from_api,
                    expires,
                    owner,
                    via_token: false,
                })
            };
        let hex8 = |d: &[u8; 32]| {
            d[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let mut by_digest = HashMap::new();
        for k in keys {
            let owner = format!("config:{}:{}", k.name, hex8(&k.sha256));
            by_digest.insert(k.sha256, (identity(k, false, None, owner), None));
        }
        for r in runtime {
            // A config key's name wins: the API refuses to make one that clashes.
            if keys.iter().any(|k| k.name == r.key.name) {
                continue;
            }
            let who = identity(&r.key, true, r.expires, r.owner.clone());
            for &(digest, until) in &r.also {
                by_digest.insert(digest, (who.clone(), Some(until)));
            }
            by_digest.insert(r.key.sha256, (who, r.expires));
        }
        let by_name = by_digest
            .values()
            .map(|(who, _)| (who.name.clone(), who.clone()))
            .collect();
        KeyStore {
            by_digest,
            by_name,
            groups,
            group_models,
        }
    }

    pub(crate) fn has_group(&self, name: &str) -> bool {
        self.groups.contains_key(name)
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_name.len()
    }

    /// A key by its configured name (for the admin API).
    pub(crate) fn by_name(&self, name: &str) -> Option<&Arc<Identity>> {
        self.by_name.get(name)
    }

    /// Whether the key `who` was still holds here for `model`: not revoked or removed (a key of its name and
    /// owner is in this store), not expired, and still allowed the model. Long streams ask it when keys change.
    pub(crate) fn still_holds(&self, who: &Identity, model: &str) -> Result<(), GatewayError> {
        // A token's caller is checked at each call's start; its issuer's settings change only on a restart.
        if who.via_token {
            return Ok(());
        }
        let now = self
            .by_name(&who.name)
            .filter(|now| now.owner == who.owner)
            .ok_or(GatewayError::Unauthenticated(
                "the API key was revoked or removed",
            ))?;
        if now.expires.is_some_and(|end| SystemTime::now() >= end) {
            return Err(GatewayError::Unauthenticated("the API key has expired"));
        }
        if !now.allows(model) {
            return Err(GatewayError::PermissionDenied {
                key: now.name.clone(),
                model: model.to_owned(),
            });
        }
        Ok(())
    }

    /// What the `authorization` header (or gRPC metadata) presents: a key of this store, or a credential it
    /// does not know (perhaps an identity provider's token: `Gateway::authenticate` asks them next).
    pub(crate) fn present<'a>(
        &self,
        authorization: Option<&'a [u8]>,
    ) -> Result<Presented<'a>, GatewayError> {
        let header = authorization.ok_or(GatewayError::Unauthenticated(
            "missing 'authorization: Bearer <key>' metadata",
        ))?;
        let key = visible_ascii(header)
            .and_then(bearer)
            .ok_or(GatewayError::Unauthenticated(
                "authorization metadata must be 'Bearer <key>'",
            ))?;
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        match self.by_digest.get_key_value(&digest) {
            Some((stored, (who, until))) if bool::from(stored.ct_eq(&digest)) => {
                match until.or(who.expires) {
                    Some(end) if SystemTime::now() >= end => {
                        Err(GatewayError::Unauthenticated("the API key has expired"))
                    }
                    _ => Ok(Presented::Key(who.clone())),
                }
            }
            _ => Ok(Presented::Unknown(key, digest)),
        }
    }

    /// A group's shared limiter, by name.
    pub(crate) fn group(&self, name: &str) -> Option<&Arc<KeyLimiter>> {
        self.groups.get(name)
    }

    /// The models a group's keys (and callers) may use: its list and those above it; `None`, every model.
    pub(crate) fn group_models(&self, name: &str) -> Option<&HashSet<String>> {
        self.group_models.get(name).and_then(Option::as_ref)
    }
}

/// What an `authorization` value presents.
pub(crate) enum Presented<'a> {
    /// One of the store's keys.
    Key(Arc<Identity>),
    /// A credential that is no key of the store, with its SHA-256.
    Unknown(&'a str, [u8; 32]),
}

impl Identity {
    /// The caller an identity provider's token names (`admission::jwt`), allowed `models` (names or aliases)
    /// or every model.
    pub(crate) fn for_token(
        name: String,
        (models, group_models): (Option<&[String]>, Option<&HashSet<String>>),
        limiter: Arc<KeyLimiter>,
        group: Option<Arc<KeyLimiter>>,
        router: &Router,
    ) -> Identity {
        let own = models.map(|names| {
            names
                .iter()
                .filter_map(|n| router.canonical(n))
                .map(str::to_owned)
                .collect()
        });
        Identity {
            above: above(group.as_ref()),
            allowed: narrowed(own, group_models.cloned()),
            limiter,
            group,
            from_api: false,
            expires: None,
            owner: format!("jwt:{name}"),
            name,
            via_token: true,
        }
    }
}

/// Two allow-lists together: the models both allow (`None` allows every model).
fn narrowed(a: Option<HashSet<String>>, b: Option<HashSet<String>>) -> Option<HashSet<String>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.intersection(&b).cloned().collect()),
        (a, b) => a.or(b),
    }
}

/// The groups above `group`, nearest first.
fn above(group: Option<&Arc<KeyLimiter>>) -> Vec<Arc<KeyLimiter>> {
    group.map(|g| g.lineage().split_off(1)).unwrap_or_default()
}

/// A header value as text, when it is visible ASCII (tabs and spaces too), as `HeaderValue::to_str` reads it.
fn visible_ascii(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

/// The credentials of an `authorization: Bearer <key>` value. One rule for every door (gRPC, REST, admin):
/// the scheme is case-insensitive, as HTTP auth schemes are (RFC 9110 §11.1), and the key is trimmed.
pub(crate) fn bearer(value: &str) -> Option<&str> {
    let (scheme, key) = value.trim_start().split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn the_bearer_rule() {
        for (value, key) in [
            ("Bearer sk-1", Some("sk-1")),
            ("bearer sk-1", Some("sk-1")),
            ("BEARER   sk-1  ", Some("sk-1")),
            ("Basic sk-1", None),
            ("Bearer ", None),
            ("Bearersk-1", None),
            ("sk-1", None),
        ] {
            assert_eq!(bearer(value), key, "{value:?}");
        }
    }
    use crate::config::KeyLimits;

    /// A key that may use every model, with no limits.
    pub(crate) fn anyone() -> Identity {
        Identity {
            name: "test".into(),
            allowed: None,
            limiter: Arc::new(KeyLimiter::new("test", KeyLimits::default())),
            group: None,
            above: Vec::new(),
            from_api: false,
            expires: None,
            owner: "config:test".into(),
            via_token: false,
        }
    }
}
