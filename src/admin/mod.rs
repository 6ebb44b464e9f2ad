//! The admin HTTP listener, on its own address (default 127.0.0.1:9090):
//!
//! | path | what |
//! |---|---|
//! | `GET /metrics` | Prometheus text format |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 while serving; 503 once draining (take the replica out of the load balancer) |
//! | `GET /v1/usage` | per key and per model: requests and tokens in the last minute, today's tokens and cost, limits |
//! | `GET /v1/scaling` | requests last minute, the forecast peak over the horizon, recommended replicas |
//! | `POST /v1/reload` | reads the config file again (as `SIGHUP` does): models, routes, keys, limits, TLS certificate |
//! | `/v1/keys...` | keys made, listed, rotated and revoked at run time, and limits changed (`keys.rs`) |
//! | `GET /dashboard` | the live dashboard (`dashboard.rs`), with `GET /dashboard/data` and `POST /dashboard/chat` |
//!
//! The `/v1` routes need `authorization: Bearer <admin key>` (config `admin.key_env`); without a configured
//! key they answer 404. Probes and metrics are open: keep the listener on a private address.

mod dashboard;
mod keys;

use std::time::Duration;
use std::{convert::Infallible, sync::Arc};
use tokio::time::Instant;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::body::Body;

use crate::{core::gateway::Gateway, routing::breaker::State};

/// The largest request body the admin API reads.
const BODY_LIMIT: usize = 4096;

pub(crate) struct Admin {
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) key: Option<[u8; 32]>,
    /// Set when the server knows its config file: `POST /v1/reload`.
    pub(crate) reloader: Option<Arc<crate::core::reload::Reloader>>,
    /// Failed admin authentications per address (see [`Throttle`]).
    pub(crate) failures: Throttle,
    /// The REST door, handed in by the server (a door does not import another): the playground chats through it.
    pub(crate) rest: RestDoor,
}

/// A REST request answered by the REST door, as the server wires it.
pub(crate) type RestDoor =
    fn(
        Arc<Gateway>,
        Request<Incoming>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>>;

/// Failed admin authentications per address: past [`Throttle::MAX`] in a minute, the address is answered 429
/// (Retry-After: the rest of its minute) without its key being looked at, so an admin key cannot be guessed at
/// speed. Bounded: past [`Throttle::ADDRESSES`] addresses, the ones whose minute has passed are forgotten first.
#[derive(Default)]
pub(crate) struct Throttle(
    std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (u32, Instant)>>,
);

impl Throttle {
    const MAX: u32 = 10;
    const WINDOW: Duration = Duration::from_secs(60);
    const ADDRESSES: usize = 4096;

    /// How long `ip` must wait, if it is throttled now.
    fn blocked(&self, ip: std::net::IpAddr, now: Instant) -> Option<Duration> {
        let seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let &(failures, since) = seen.get(&ip)?;
        let ends = since + Self::WINDOW;
        (failures >= Self::MAX && now < ends).then(|| ends - now)
    }

    fn failed(&self, ip: std::net::IpAddr, now: Instant) {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= Self::ADDRESSES {
            seen.retain(|_, (_, since)| now < *since + Self::WINDOW);
            if seen.len() >= Self::ADDRESSES {
                seen.clear();
            }
        }
        let entry = seen.entry(ip).or_insert((0, now));
        if now >= entry.1 + Self::WINDOW {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Body::new(Full::new(body.into())));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => reply(status, "application/json", body),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            e.to_string(),
        ),
    }
}

impl Admin {
    pub(crate) async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let path = req.uri().path().to_owned();
        Ok(match (req.method(), path.as_str()) {
            (&Method::GET, "/metrics") => {
                self.refresh_gauges();
                reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    self.gateway.metrics.render(),
                )
            }
            (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n"),
            (&Method::GET, "/dashboard") => dashboard::page(),
            (&Method::GET, "/dashboard/data") => {
                self.refresh_gauges();
                dashboard::data(&self.gateway)
            }
            (&Method::GET, "/dashboard/history") => dashboard::history(&self.gateway),
            (&Method::POST, "/dashboard/chat") => {
                dashboard::chat(self.gateway.clone(), self.rest, req).await
            }
            (&Method::GET, "/readyz") => match self.gateway.ready() {
                Ok(()) => reply(StatusCode::OK, "text/plain", "ready\n"),
                Err(why) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("{why}\n"),
                ),
            },
            (_, p) if p.starts_with("/v1/") => match self.authorized(&req) {
                Err(resp) => resp,
                Ok(()) => self.api(req, &path).await,
            },
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        })
    }

    #[allow(clippy::result_large_err)] // built once per admin request, not on the gRPC path
    fn authorized(&self, req: &Request<Incoming>) -> Result<(), Response<Body>> {
        let Some(key) = &self.key else {
            return Err(reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                "the usage API needs admin.key_env\n",
            ));
        };
        let peer = req
            .extensions()
            .get::<crate::transport::accept::Peer>()
            .map(|p| p.0);
        let now = Instant::now();
        if let Some(wait) = peer.and_then(|p| self.failures.blocked(p.ip(), now)) {
            let mut resp = reply(
                StatusCode::TOO_MANY_REQUESTS,
                "text/plain",
                "too many failed admin authentications from this address\n",
            );
            let secs = wait.as_secs().max(1).to_string();
            if let Ok(v) = header::HeaderValue::try_from(secs) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return Err(resp);
        }
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::admission::auth::bearer)
            .map(|k| <[u8; 32]>::from(Sha256::digest(k.as_bytes())));
        match given {
            Some(digest) if bool::from(digest.ct_eq(key)) => Ok(()),
            _ => {
                let peer_text = peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
                tracing::warn!(peer = %peer_text, path = %req.uri().path(), "admin authentication failed");
                if let Some(p) = peer {
                    self.failures.failed(p.ip(), now);
                }
                Err(reply(
                    StatusCode::UNAUTHORIZED,
                    "text/plain",
                    "admin key required\n",
                ))
            }
        }
    }

    async fn api(&self, req: Request<Incoming>, path: &str) -> Response<Body> {
        let gw = &self.gateway;
        match (req.method(), path) {
            (&Method::GET, "/v1/scaling") => json(StatusCode::OK, &gw.outlook()),
            (&Method::POST, "/v1/reload") => match self.reloader.clone() {
                None => reply(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    "this gateway was not started from a config file\n",
                ),
                Some(r) => match tokio::task::spawn_blocking(move || r.reload()).await {
                    Ok(Ok(done)) => json(StatusCode::OK, &done),
                    Ok(Err(e)) => json(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &serde_json::json!({ "error": e }),
                    ),
                    Err(e) => reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "text/plain",
                        format!("{e}\n"),
                    ),
                },
            },
            (&Method::GET, "/v1/usage") => {
                // The fleet's (from Redis) with [shared], unless `?scope=replica`; this replica's otherwise, and
                // while Redis is down (the answer's `scope` says which).
                let replica_only = req
                    .uri()
                    .query()
                    .is_some_and(|q| q.split('&').any(|p| p == "scope=replica"));
                let catalog = gw.catalog();
                let limits_of =
                    |name: &str| catalog.keys.by_name(name).map(|who| who.limiter.limits());
                let fleet = if replica_only {
                    None
                } else {
                    gw.usage.fleet_report(limits_of).await
                };
                json(StatusCode::OK, &fleet.unwrap_or_else(|| usage(gw)))
            }
            (_, p) if p == "/v1/keys" || p.starts_with("/v1/keys/") => {
                keys::handle(gw, req, path).await
            }
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        }
    }

    /// Gauges that are read off live state when scraped.
    fn refresh_gauges(&self) {
        let gw = &self.gateway;
        for (name, entry) in &usage(gw).keys {
            let budget = entry.limits.as_ref().and_then(|l| l.daily_budget_usd);
            match budget {
                Some(b) => {
                    gw.metrics.daily_budget.with_label_values(&[name]).set(b);
                    gw.metrics
                        .spend_today
                        .with_label_values(&[name])
                        .set(entry.today.cost_usd);
                }
                // A budget removed at run time: its series go too.
                None => {
                    let _ = gw.metrics.daily_budget.remove_label_values(&[name]);
                    let _ = gw.metrics.spend_today.remove_label_values(&[name]);
                }
            }
        }
        for model in gw.catalog().router.models() {
            for route in &model.routes {
                let state = match route.breaker.state() {
                    State::Closed => 0,
                    State::HalfOpen => 1,
                    State::Open => 2,
                };
                gw.metrics
                    .breaker_state
                    .with_label_values(&[model.name.as_str(), route.upstream.name()])
                    .set(state);
            }
        }
    }
}

/// The usage book, with the limits in force for each key.
fn usage(gw: &Gateway) -> crate::admission::usage_book::Report {
    let catalog = gw.catalog();
    gw.usage
        .report(|name| catalog.keys.by_name(name).map(|who| who.limiter.limits()))
}

/// Serves the admin listener until `shutdown`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    limits: crate::transport::accept::ConnLimits,
    admin: Arc<Admin>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let metrics = admin.gateway.metrics.connections("admin");
    crate::transport::httpd::serve(
        listener,
        limits,
        Some(metrics),
        move |req| admin.clone().handle(req),
        shutdown,
    )
    .await
}
