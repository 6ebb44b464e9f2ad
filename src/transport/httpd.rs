//! Plain-HTTP listeners (HTTP/1.1 and h2c) for a handler function: the admin listener and
//! `aigw mock-upstream`. They share the gateway port's hardened accept loop (`accept`).

use std::{convert::Infallible, future::Future, sync::Arc};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::server::graceful::GracefulShutdown;

use crate::transport::accept::{self, ConnLimits, ConnMetrics};

/// Serves `handler` on every connection until `shutdown`, within `limits`; connections still open then are
/// dropped.
pub(crate) async fn serve<H, F, B>(
    listener: tokio::net::TcpListener,
    limits: ConnLimits,
    metrics: Option<ConnMetrics>,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let http = Arc::new(accept::http_builder());
    let graceful = GracefulShutdown::new();
    let service = hyper::service::service_fn(handler);
    accept::serve(
        listener, limits, None, http, service, &graceful, metrics, shutdown,
    )
    .await;
}
