//! The server: TCP accept, TLS, HTTP/1.1 and HTTP/2 (hyper), the three doors, and graceful shutdown.
//!
//! The stack, outermost first, and why each piece is there:
//!
//! 1. **Accept loop** (`crate::transport::accept`, shared with the admin listener) — a cap on open connections that evicts
//!    the oldest silent one (or refuses) instead of starving the process, a deadline for the first request, an
//!    idle timeout for connections with nothing in flight; `TCP_NODELAY` on (small gRPC frames must not wait
//!    for Nagle); accept errors such as EMFILE pause the loop briefly instead of spinning.
//! 2. **TLS** (rustls, ALPN h2 and http/1.1, optional mTLS) — the handshake runs on the connection's own task with a
//!    timeout, so a slow or silent client cannot stall the accept loop or hold a task forever.
//! 3. **HTTP/1.1 and HTTP/2** (hyper, by ALPN or preface) — keep-alive pings find dead h2 peers, whose
//!    streams are then dropped, and with them their upstream requests; HTTP/1.1 heads must arrive within
//!    30 s; each connection is watched for graceful shutdown (GOAWAY, or close after the request in flight).
//! 4. **CORS** (only with `[cors]`) — answers browsers' preflights and adds the CORS headers to every door.
//! 5. **Door by content type** ([`crate::doors`]) — `application/grpc` to the gRPC routes; `application/grpc-web`
//!    through tonic-web's translation to the same routes; anything else to the OpenAI-compatible REST door
//!    ([`crate::rest`]), which authenticates and calls the same handlers itself.
//! 6. **Trailers** (gRPC and gRPC-Web) — puts a slot in each request for the RPC's record to fill, and adds
//!    its `aigw-overhead-us` and `aigw-cost-usd` to the response trailers.
//! 7. **Routes** — by gRPC path: `holysheepai.AIService`, `grpc.health.v1.Health`, reflection v1 and v1alpha.
//! 8. **Auth interceptor** (AIService only) — a cheap synchronous check of the bearer key; the caller's
//!    identity travels on in the request extensions. Health and reflection stay open for probes.
//! 9. **Handlers** — thin; the client's `grpc-timeout` is read by the handler itself so that the whole
//!    upstream call, streams included, is bounded by it and ends with DEADLINE_EXCEEDED.
//!
//! We run hyper directly rather than tonic's `Server` because the latter answers an expired `grpc-timeout`
//! with CANCELLED, covers only the time to the response headers, and cannot end streams when a grace period
//! runs out.

use std::{future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use hyper_util::{server::graceful::GracefulShutdown, service::TowerToHyperService};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tonic::service::Routes;
use tonic_health::{server::HealthReporter, ServingStatus};

use tower::Layer;

use crate::{
    config::{Config, CorsConfig},
    core::{gateway::Gateway, reload::Reloader},
    doors::Front,
    grpc, proto,
    transport::accept::{self, ConnLimits},
};

const SERVICE_NAME: &str = "holysheepai.AIService";
/// File descriptors kept for everything but client connections: upstream and Redis connections, files.
const FD_RESERVE: u64 = 1024;
/// After the grace period, how long cancelled streams get to send their final status.
const STOP_FLUSH: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Gateway(#[from] crate::error::GatewayError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

pub struct Server {
    listener: TcpListener,
    admin: TcpListener,
    admin_key: Option<[u8; 32]>,
    tls: Option<TlsAcceptor>,
    certificate: Option<Arc<crate::transport::tls::Certificate>>,
    /// The config as started, kept for reloads.
    config: Config,
    /// Where the config came from, and how its variables are read: `SIGHUP` and `POST /v1/reload` read it
    /// again.
    reload_from: Option<(PathBuf, crate::core::reload::Env)>,
    gateway: Arc<Gateway>,
    grace: Duration,
    cors: Option<CorsConfig>,
    connections: ConnLimits,
    admin_connections: ConnLimits,
}

impl Server {
    /// Builds everything from the config (TLS, upstream clients) and binds the listener.
    pub async fn bind(config: &Config) -> Result<Server, ServeError> {
        let (tls, certificate) = match config.tls.as_ref() {
            Some(t) => {
                let (acceptor, certificate) = crate::transport::tls::acceptor(t)?;
                (Some(acceptor), Some(certificate))
            }
            None => (None, None),
        };
        let gateway = Gateway::new(config)?;
        let bind = |addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })
        };
        Ok(Server {
            listener: bind(config.listen).await?,
            admin: bind(config.admin_listen).await?,
            admin_key: config.admin_key,
            tls,
            certificate,
            config: config.clone(),
            reload_from: None,
            gateway,
            grace: config.shutdown_grace,
            cors: config.cors.clone(),
            connections: fit_descriptors(config.connections, config.admin_connections),
            admin_connections: config.admin_connections,
        })
    }

    /// Lets `SIGHUP` and `POST /v1/reload` (admin key) read the config at `path` again while serving, its
    /// variables from the environment (or from their `<VAR>_FILE`).
    pub fn reload_from(self, path: PathBuf) -> Server {
        self.reload_from_with(path, Arc::new(crate::config::env_or_file))
    }

    /// The same, with variables looked up by `env` (tests).
    pub fn reload_from_with(mut self, path: PathBuf, env: crate::core::reload::Env) -> Server {
        self.reload_from = Some((path, env));
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where the admin listener (/metrics, /readyz, usage API) is.
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }

    /// The gateway core this server runs (for embedding and tests).
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Serves until `shutdown` completes, then drains: NOT_SERVING, stop accepting, GOAWAY to every
    /// connection, let calls in flight finish for the grace period, then end the rest with UNAVAILABLE.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        set_health(&health, ServingStatus::Serving).await;
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // Each reflection version lists itself; name both so `list` shows both, whichever is asked.
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                )
        };
        let routes = Routes::new(grpc::service(self.gateway.clone()))
            .add_service(health_service)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?)
            .prepare();
        let front = Front::new(routes, self.gateway.clone());
        let app =
            tower::util::option_layer(self.cors.as_ref().map(crate::doors::cors)).layer(front);
        let http = Arc::new(accept::http_builder());
        let graceful = GracefulShutdown::new();
        match (self.local_addr(), self.admin_addr()) {
            (Ok(addr), Ok(admin)) => {
                tracing::info!(%addr, %admin, tls = self.tls.is_some(), "aigw listening")
            }
            _ => tracing::warn!("aigw listening on an unknown address"),
        }
        // The admin listener outlives the drain, so /readyz can say "draining" until the end.
        let admin_stop = tokio_util::sync::CancellationToken::new();
        let reloader = self.reload_from.clone().map(|source| {
            Arc::new(Reloader::new(
                source,
                self.gateway.clone(),
                self.certificate.clone(),
                self.config.clone(),
            ))
        });
        let on_hangup = reloader
            .clone()
            .map(|r| crate::observe::tasks::spawn("reload on SIGHUP", reload_on_hangup(r)));
        let admin = Arc::new(crate::admin::Admin {
            gateway: self.gateway.clone(),
            key: self.admin_key,
            reloader,
            failures: Default::default(),
            rest: |gw, req| Box::pin(crate::rest::serve(gw, req)),
            readers: Default::default(),
        });
        let admin_task = crate::observe::tasks::spawn(
            "admin listener",
            crate::admin::serve(
                self.admin,
                self.admin_connections,
                admin,
                admin_stop.clone().cancelled_owned(),
            ),
        );
        // Once a minute, fold the minute's requests into the scaling forecast; every two seconds, keep what the
        // dashboard's charts draw.
        let ticker = {
            let gw = self.gateway.clone();
            crate::observe::tasks::spawn("scaling forecast", async move {
                let mut every = tokio::time::interval(Duration::from_secs(60));
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                every.tick().await; // the first tick is immediate: skip it
                loop {
                    every.tick().await;
                    gw.scaling_tick();
                }
            })
        };
        let charts = {
            let gw = self.gateway.clone();
            crate::observe::tasks::spawn("dashboard history", async move {
                let mut every = tokio::time::interval(crate::observe::charts::History::EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    gw.history.record(&gw.metrics, gw.outlook());
                }
            })
        };

        let service = TowerToHyperService::new(app);
        let metrics = self.gateway.metrics.connections("grpc");
        accept::serve(
            self.listener,
            self.connections,
            self.tls,
            http,
            service,
            &graceful,
            Some(metrics),
            shutdown,
        )
        .await;

        tracing::info!(grace = ?self.grace, "shutting down: draining");
        set_health(&health, ServingStatus::NotServing).await;
        self.gateway.lifecycle.draining.cancel();
        let drained = graceful.shutdown();
        tokio::pin!(drained);
        if tokio::time::timeout(self.grace, &mut drained)
            .await
            .is_err()
        {
            tracing::warn!("grace period over: ending the calls still in flight");
            self.gateway.lifecycle.stop.cancel();
            let _ = tokio::time::timeout(STOP_FLUSH, drained).await;
        }
        admin_stop.cancel();
        ticker.abort();
        charts.abort();
        if let Some(shared) = &self.gateway.shared {
            shared.flush_usage().await; // the last second of the fleet's usage
        }
        // The last usage records reach the file and the collector; off the runtime's threads, since flushing
        // waits for the exporter.
        let gateway = self.gateway.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(records) = &gateway.records {
                records.close();
            }
        })
        .await;
        if let Some(task) = on_hangup {
            task.abort();
        }
        let _ = admin_task.await;
        tracing::info!("shut down");
        Ok(())
    }
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    health.set_service_status(SERVICE_NAME, status).await;
}

/// Raises the process's open-file soft limit to its hard limit, and keeps the connection caps below it, so
/// a crowd of connections meets the cap (and its eviction) rather than EMFILE.
fn fit_descriptors(main: ConnLimits, admin: ConnLimits) -> ConnLimits {
    let soft = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit");
            return main;
        }
    };
    let room = soft.saturating_sub(FD_RESERVE + admin.max_connections as u64);
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    if main.max_connections > room {
        tracing::warn!(
            configured = main.max_connections,
            open_file_limit = soft,
            used = room.max(1),
            "server.max_connections lowered to fit the open-file limit"
        );
    }
    ConnLimits {
        max_connections: main.max_connections.min(room).max(1),
        ..main
    }
}

/// Completes on SIGTERM or SIGINT.
/// Reloads the config on each `SIGHUP` (which would otherwise end the process).
async fn reload_on_hangup(reloader: Arc<Reloader>) {
    #[cfg(unix)]
    {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP: reload through POST /v1/reload");
            return;
        };
        while hangups.recv().await.is_some() {
            // Reading the file and building upstream clients is blocking work: off the runtime's workers.
            let r = reloader.clone();
            let _ = tokio::task::spawn_blocking(move || r.reload()).await;
        }
    }
    #[cfg(not(unix))]
    drop(reloader);
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
