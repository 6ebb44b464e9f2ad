//! `/v1/keys` on the admin listener: keys made, listed, rotated and revoked at run time, and any key's limits
//! changed. JSON in and out; errors are `{"error": "..."}` with the status that says why.
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/keys` `{"name", "models"?, "limits"?, "expires_at"?, "metadata"?}` | `201` with the secret `key`, shown this once |
//! | `GET /v1/keys` | every key, from the config file and from the API, without secrets |
//! | `GET /v1/keys/{name}` | one key |
//! | `DELETE /v1/keys/{name}` | revokes a key made through the API (`409` for a config file's key) |
//! | `POST /v1/keys/{name}/rotate` `{"grace_seconds"?}` | a new secret; the old one works for the grace period (1 hour by default) |
//! | `PUT /v1/keys/{name}/limits` `{"rpm", "tpm", "daily_budget_usd"}` | new rates and budget; kept across restarts for the API's keys |

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use tonic::body::Body;

use super::{json, BODY_LIMIT};
use crate::{
    admission::{
        registry::{NewKey, RegistryError, StoredKey},
        usage_book::LimitsView,
    },
    config::KeyLimits,
    core::gateway::Gateway,
};

/// The longest grace period a rotation may give the old secret.
const MAX_GRACE: Duration = Duration::from_secs(30 * 86_400);
const DEFAULT_GRACE: Duration = Duration::from_secs(3_600);

fn error(status: StatusCode, message: impl std::fmt::Display) -> http::Response<Body> {
    json(status, &serde_json::json!({ "error": message.to_string() }))
}

fn registry_error(e: RegistryError) -> http::Response<Body> {
    let status = match &e {
        RegistryError::Invalid(_) => StatusCode::BAD_REQUEST,
        RegistryError::Exists(_) => StatusCode::CONFLICT,
        RegistryError::Missing(_) => StatusCode::NOT_FOUND,
        RegistryError::Save(_) => StatusCode::INTERNAL_SERVER_ERROR,
        RegistryError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e)
}

/// A key as listed: never its secret or digest.
#[derive(Serialize)]
struct KeyView {
    name: String,
    /// "config" (the file; changed by editing it and reloading) or "api".
    source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    models: Option<Vec<String>>,
    limits: LimitsView,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<u64>,
    /// A rotation's old secret works until then (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_valid_until: Option<u64>,
    /// Only when the key was just made or rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

fn view(gw: &Gateway, name: &str) -> Option<KeyView> {
    let catalog = gw.catalog();
    let who = catalog.keys.by_name(name)?;
    let stored = gw.registry.get(name).filter(|_| who.from_api);
    Some(KeyView {
        name: name.to_owned(),
        source: if who.from_api { "api" } else { "config" },
        models: stored.as_ref().and_then(|s| s.models.clone()),
        limits: LimitsView::from(who.limiter.limits()),
        group: who.group.as_ref().map(|g| g.name().to_owned()),
        expires_at: stored.as_ref().and_then(|s| s.expires_at),
        metadata: stored.as_ref().and_then(|s| s.metadata.clone()),
        created_at: stored.as_ref().map(|s| s.created_at),
        previous_valid_until: stored.as_ref().and_then(StoredKey::previous_until),
        key: None,
    })
}

/// A key just made or rotated, with its secret: the one time it is shown.
fn with_secret(
    gw: &Gateway,
    status: StatusCode,
    name: &str,
    secret: String,
) -> http::Response<Body> {
    gw.keys_changed();
    let mut v = view(gw, name);
    if let Some(v) = v.as_mut() {
        v.key = Some(secret);
    }
    json(status, &v)
}

async fn body<T: for<'de> Deserialize<'de>>(
    req: http::Request<Incoming>,
    empty_ok: bool,
) -> Result<T, http::Response<Body>> {
    let bytes: Bytes = Limited::new(req.into_body(), BODY_LIMIT)
        .collect()
        .await
        .map_err(|e| error(StatusCode::PAYLOAD_TOO_LARGE, e))?
        .to_bytes();
    let bytes: &[u8] = if bytes.is_empty() && empty_ok {
        b"{}"
    } else {
        &bytes
    };
    serde_json::from_slice(bytes).map_err(|e| error(StatusCode::BAD_REQUEST, e))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsUpdate {
    rpm: Option<u32>,
    tpm: Option<u64>,
    daily_budget_usd: Option<f64>,
    monthly_budget_usd: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotate {
    grace_seconds: Option<u64>,
}

/// Answers a request under `/v1/keys`.
pub(super) async fn handle(
    gw: &Gateway,
    req: http::Request<Incoming>,
    path: &str,
) -> http::Response<Body> {
    let rest = path.strip_prefix("/v1/keys").unwrap_or_default();
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    match (req.method().clone(), parts.as_slice()) {
        (Method::GET, []) => {
            let catalog = gw.catalog();
            let mut names: Vec<String> = catalog.keys.names().map(str::to_owned).collect();
            names.sort();
            let keys: Vec<KeyView> = names.iter().filter_map(|n| view(gw, n)).collect();
            json(StatusCode::OK, &serde_json::json!({ "keys": keys }))
        }
        (Method::POST, []) => {
            let new: NewKey = match body(req, false).await {
                Ok(n) => n,
                Err(resp) => return resp,
            };
            if let Some(g) = new.group.as_deref() {
                if !gw.catalog().keys.has_group(g) {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("group: no group named '{g}' (groups are in the config file)"),
                    );
                }
            }
            let taken = gw
                .catalog()
                .keys
                .by_name(new.name.trim())
                .is_some_and(|w| !w.from_api);
            match gw.change_keys(|r| r.create(new.clone(), taken)).await {
                Ok((stored, secret)) => {
                    tracing::info!(key = %stored.name, "key created through the admin API");
                    with_secret(gw, StatusCode::CREATED, &stored.name, secret)
                }
                Err(e) => registry_error(e),
            }
        }
        (Method::GET, [name]) => match view(gw, name) {
            Some(v) => json(StatusCode::OK, &v),
            None => error(StatusCode::NOT_FOUND, format!("no key named '{name}'")),
        },
        (Method::DELETE, [name]) => {
            if let Some(who) = gw.catalog().keys.by_name(name).filter(|w| !w.from_api) {
                return error(
                    StatusCode::CONFLICT,
                    format!(
                        "key '{}' comes from the config file: remove it there and reload",
                        who.name
                    ),
                );
            }
            match gw.change_keys(|r| r.delete(name)).await {
                Ok(()) => {
                    tracing::info!(key = %name, "key revoked through the admin API");
                    json(StatusCode::OK, &serde_json::json!({ "revoked": name }))
                }
                Err(e) => registry_error(e),
            }
        }
        (Method::POST, [name, "rotate"]) => {
            if gw.catalog().keys.by_name(name).is_some_and(|w| !w.from_api) {
                return error(
                    StatusCode::CONFLICT,
                    format!("key '{name}' comes from the config file: change its sha256 there and reload"),
                );
            }
            let r: Rotate = match body(req, true).await {
                Ok(r) => r,
                Err(resp) => return resp,
            };
            let grace = Duration::from_secs(r.grace_seconds.unwrap_or(DEFAULT_GRACE.as_secs()));
            if grace > MAX_GRACE {
                return error(StatusCode::BAD_REQUEST, "grace_seconds: at most 30 days");
            }
            match gw.change_keys(|r| r.rotate(name, grace)).await {
                Ok((stored, secret)) => {
                    tracing::info!(key = %stored.name, "key rotated through the admin API");
                    with_secret(gw, StatusCode::OK, &stored.name, secret)
                }
                Err(e) => registry_error(e),
            }
        }
        (Method::PUT, [name, "limits"]) => {
            let catalog = gw.catalog();
            let Some(who) = catalog.keys.by_name(name) else {
                return error(StatusCode::NOT_FOUND, format!("no key named '{name}'"));
            };
            let u: LimitsUpdate = match body(req, false).await {
                Ok(u) => u,
                Err(resp) => return resp,
            };
            let new = KeyLimits {
                rpm: u.rpm,
                tpm: u.tpm,
                concurrency: None,
                daily_budget_usd: u.daily_budget_usd,
                monthly_budget_usd: u.monthly_budget_usd,
            };
            if u.rpm == Some(0) || u.tpm == Some(0) {
                return error(StatusCode::BAD_REQUEST, "a limit of 0 refuses every call");
            }
            if new.bad_budget() {
                return error(StatusCode::BAD_REQUEST, "a budget must be above 0");
            }
            who.limiter.set_limits(new);
            // The API's keys keep the change (in the state file, or in Redis for the whole fleet).
            if who.from_api {
                if let Err(e) = gw.change_keys(|r| r.set_limits(name, new)).await {
                    return registry_error(e);
                }
            }
            tracing::info!(key = %who.name, rpm = ?u.rpm, tpm = ?u.tpm, daily = ?u.daily_budget_usd, monthly = ?u.monthly_budget_usd, "limits changed");
            json(StatusCode::OK, &LimitsView::from(who.limiter.limits()))
        }
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no such key route: {} {path}", req.method()),
        ),
    }
}
