//! The live dashboard on the admin listener: one page served from the binary (no build step, no CDN), which
//! polls a JSON snapshot of its own every two seconds and draws rates, latencies and charts from the change
//! between snapshots.
//!
//! | path | what |
//! |---|---|
//! | `GET /dashboard` | the page |
//! | `GET /dashboard/data` | every metric family as JSON, the scaling outlook and the models; open, like `/metrics` |
//! | `GET /dashboard/history` | the last five minutes of what the charts draw, a snapshot every two seconds (kept here, so a page drawn anew starts with them) |
//! | `POST /dashboard/chat` | the playground: a chat completion through the REST door, with the client key the user typed |
//!
//! Per-key use against limits and budgets comes from `/v1/usage`, which the page calls with the admin key the
//! user types; the key stays in the page (never stored).

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use tonic::body::Body;

use crate::{
    core::gateway::Gateway,
    observe::charts::{now_ms, series, Snapshot},
};

const PAGE: &str = include_str!("dashboard.html");

/// The page: strict headers, since it is served from the same origin as the admin API.
pub(super) fn page() -> Response<Body> {
    let mut resp = Response::new(Body::new(http_body_util::Full::new(Bytes::from_static(
        PAGE.as_bytes(),
    ))));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Everything a scrape exposes, as JSON the page can take deltas of.
pub(super) fn data(gw: &Gateway) -> Response<Body> {
    let metrics = gw
        .metrics
        .gather()
        .iter()
        .map(|f| (f.name().to_owned(), series(f)))
        .collect();
    let snapshot = Snapshot {
        time_ms: now_ms(),
        outlook: gw.outlook(),
        models: gw
            .catalog()
            .router
            .models()
            .iter()
            .map(|m| m.name.clone())
            .collect(),
        metrics,
    };
    super::json(StatusCode::OK, &snapshot)
}

/// `GET /dashboard/history`: the kept snapshots, oldest first.
pub(super) fn history(gw: &Gateway) -> Response<Body> {
    super::json(StatusCode::OK, &gw.history.snapshots())
}

/// The playground: the request goes to the REST door's own handler, in process, as
/// `POST /v1/chat/completions` with the caller's headers, so its key, limits and metrics are the door's.
pub(super) async fn chat(
    gw: Arc<Gateway>,
    rest: super::RestDoor,
    req: Request<Incoming>,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    parts.uri = http::Uri::from_static("/v1/chat/completions");
    rest(gw, Request::from_parts(parts, body)).await
}
