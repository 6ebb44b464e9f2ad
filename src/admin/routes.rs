//! The admin listener's routes: the probes and metrics, the `/v1` API behind the admin key (usage, scaling, reload,
//! keys) and the dashboard.

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::time::Instant;
use tonic::body::Body;

use super::{dashboard, keys, throttle::Throttle};
use crate::{core::gateway::Gateway, routing::breaker::State};

/// The largest request body the admin API reads.
pub(super) const BODY_LIMIT: usize = 4096;

pub(crate) struct Admin {
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) key: Option<[u8; 32]>,
    /// Set when the server knows its config file: `POST /v1/reload`.
    pub(crate) reloader: Option<Arc<crate::core::reload::Reloader>>,
    /// Failed admin authentications per address (see [`Throttle`]).
    pub(crate) failures: Throttle,
    /// The REST door, handed in by the server (a door does not import another): the playground chats through it.
    pub(crate) rest: RestDoor,
    /// Turns to read the metrics (see [`Admin::off_the_workers`]).
    pub(crate) readers: Readers,
}

/// How many scrapes read the metrics at once: each takes a blocking thread and tens of milliseconds at
/// thousands of keys, and the admin listener takes 256 connections.
const METRICS_READERS: usize = 2;

/// [`METRICS_READERS`] turns to read the metrics; the other scrapes wait theirs without a thread.
pub(crate) struct Readers(tokio::sync::Semaphore);

impl Default for Readers {
    fn default() -> Readers {
        Readers(tokio::sync::Semaphore::new(METRICS_READERS))
    }
}

/// A REST request answered by the REST door, as the server wires it.
pub(crate) type RestDoor =
    fn(
        Arc<Gateway>,
        Request<Incoming>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>>;

pub(super) fn reply(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Body::new(Full::new(body.into())));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

pub(super) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
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
                self.off_the_workers(|admin| {
                    admin.refresh_gauges();
                    reply(
                        StatusCode::OK,
                        "text/plain; version=0.0.4",
                        admin.gateway.metrics.render(),
                    )
                })
                .await
            }
            (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n"),
            (&Method::GET, "/dashboard") => dashboard::page(),
            (&Method::GET, "/dashboard/data") => {
                self.off_the_workers(|admin| {
                    admin.refresh_gauges();
                    dashboard::data(&admin.gateway)
                })
                .await
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
            (_, p) if p.starts_with("/v1/") => match cross_origin(&req) {
                Some(refused) => refused,
                None => match self.authorized(&req) {
                    Err(resp) => resp,
                    Ok(()) => self.api(req, &path).await,
                },
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
                let fleet = if replica_only {
                    None
                } else {
                    gw.usage
                        .fleet_report(|kind, name| limits_of(&catalog, kind, name))
                        .await
                };
                json(StatusCode::OK, &fleet.unwrap_or_else(|| usage(gw)))
            }
            (_, p) if p == "/v1/keys" || p.starts_with("/v1/keys/") => {
                keys::handle(gw, req, path).await
            }
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        }
    }

    /// Runs `read` on the blocking pool, [`METRICS_READERS`] at a time: a scrape reads and encodes every key's
    /// series (about 68 ms at 10,000 keys, `cargo bench --bench charts`), which on a runtime worker would hold
    /// the calls queued there.
    async fn off_the_workers(
        self: &Arc<Self>,
        read: impl FnOnce(&Admin) -> Response<Body> + Send + 'static,
    ) -> Response<Body> {
        // The semaphore is never closed: the acquire always gives a turn.
        let _turn = self.readers.0.acquire().await.ok();
        let admin = self.clone();
        let read = tokio::task::spawn_blocking(move || read(&admin)).await;
        read.unwrap_or_else(|e| {
            if let Ok(panic) = e.try_into_panic() {
                crate::observe::tasks::caught("metrics", panic.as_ref());
            }
            reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                "the metrics could not be read\n",
            )
        })
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

/// A browser's request to the admin API from a page of another origin: refused (403) before the admin key is
/// even looked at. The API takes its key from the `authorization` header only, never a cookie, so another site
/// cannot borrow a logged-in browser; this refuses such pages outright (and `Origin: null`, a sandboxed page's).
/// Clients that are not browsers send no `Origin` and are not concerned.
fn cross_origin(req: &Request<Incoming>) -> Option<Response<Body>> {
    let origin = req.headers().get(header::ORIGIN)?;
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let same = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .is_some_and(|(_, authority)| Some(authority) == host);
    (!same).then(|| {
        reply(
            StatusCode::FORBIDDEN,
            "text/plain",
            "cross-origin requests to the admin API are refused\n",
        )
    })
}

/// The usage book, with the limits in force for each key and group.
pub(super) fn usage(gw: &Gateway) -> crate::admission::usage_book::Report {
    let catalog = gw.catalog();
    gw.usage
        .report(|kind, name| limits_of(&catalog, kind, name))
}

/// The limits in force for the key or group (`kind`) `name`.
fn limits_of(
    catalog: &crate::core::catalog::Catalog,
    kind: &str,
    name: &str,
) -> Option<crate::config::KeyLimits> {
    match kind {
        "key" => catalog.keys.by_name(name).map(|who| who.limiter.limits()),
        "group" => catalog.keys.group(name).map(|g| g.limits()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// However many scrapes arrive at once, at most [`METRICS_READERS`] read at a time; every one is answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scrapes_read_a_few_at_a_time() {
        let cfg = crate::config::Config::parse(
            "[server]\nlisten = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"u\"\nkind = \"mock\"\n",
            |_| None,
        )
        .unwrap();
        let admin = Arc::new(Admin {
            gateway: Gateway::new(&cfg).unwrap(),
            key: None,
            reloader: None,
            failures: Default::default(),
            rest: |_, _| Box::pin(async { reply(StatusCode::NOT_FOUND, "text/plain", "") }),
            readers: Readers::default(),
        });
        static READING: AtomicUsize = AtomicUsize::new(0);
        static MOST: AtomicUsize = AtomicUsize::new(0);
        let scrapes = (0..12).map(|_| {
            let admin = admin.clone();
            async move {
                admin
                    .off_the_workers(|_| {
                        let now = READING.fetch_add(1, Ordering::SeqCst) + 1;
                        MOST.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(10));
                        READING.fetch_sub(1, Ordering::SeqCst);
                        reply(StatusCode::OK, "text/plain", "ok\n")
                    })
                    .await
                    .status()
            }
        });
        let answered = futures_util::future::join_all(scrapes).await;
        assert!(
            answered.iter().all(|s| *s == StatusCode::OK),
            "{answered:?}"
        );
        let most = MOST.load(Ordering::SeqCst);
        assert!((1..=METRICS_READERS).contains(&most), "{most} read at once");
    }
}
