//! The admin listener: its own port and connection limits, apart from the gateway's.

use std::sync::Arc;

use super::routes::Admin;

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
