//! The one accept loop, for the gateway's port, the admin port and `aigw mock-upstream` alike: a connection is
//! only kept while it is worth a file descriptor.
//!
//! - **A cap on open connections** (`max_connections`). At the cap a new connection evicts the oldest one that
//!   has not sent a request yet; if every open connection has, the new one is refused (closed at once). A crowd
//!   of silent connections therefore cannot starve clients that speak, nor exhaust the process's descriptors.
//! - **A deadline for the first request** (`first_request_timeout`, from accept, TLS handshake included): a
//!   connection that sends nothing, one byte, a partial head or only the HTTP/2 preface is closed then.
//! - **An idle timeout** (`idle_timeout`): a connection with no request in flight for that long is closed. A
//!   request counts as in flight until its response body ends, so a long, quiet stream is never cut by it.
//! - HTTP/1.1 heads must arrive within the header-read timeout, and HTTP/2 PINGs drop peers that stop
//!   answering; both are set on the hyper builder each listener passes in.
//!
//! Accept errors (EMFILE, ENFILE) pause the loop briefly instead of spinning.

use std::{
    collections::VecDeque,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Frame, Incoming};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{net::TcpListener, time::Instant};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

pub(crate) use crate::{config::ConnLimits, observe::metrics::ConnMetrics};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An HTTP/1.1 client that has not sent its request head by then is dropped (a slowloris holds nothing long).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP/1.1 + HTTP/2 settings every listener shares.
pub(crate) fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    http.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(1024);
    http
}

/// Serves `service` on every connection accepted on `listener` until `shutdown`, within `limits`. Connections
/// are watched by `graceful`, so the caller can drain them afterwards.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve<S, B>(
    listener: TcpListener,
    limits: ConnLimits,
    tls: Option<TlsAcceptor>,
    http: Arc<auto::Builder<TokioExecutor>>,
    service: S,
    graceful: &GracefulShutdown,
    metrics: Option<ConnMetrics>,
    shutdown: impl Future<Output = ()>,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let registry = Arc::new(Registry::default());
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = registry.admit(limits.max_connections, metrics.as_ref()) else {
            drop(tcp); // refused: every open connection is busy
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let watcher = graceful.watcher();
        let (http, service, tls, metrics) =
            (http.clone(), service.clone(), tls.clone(), metrics.clone());
        crate::observe::tasks::spawn("connection", async move {
            let activity = slot.activity.clone();
            let tracked = Tracked {
                inner: service,
                activity: activity.clone(),
                peer,
            };
            let served = async {
                match tls {
                    None => {
                        let conn = http.serve_connection(TokioIo::new(tcp), tracked);
                        watcher.watch(conn).await
                    }
                    Some(tls) => {
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                            Ok(Ok(stream)) => {
                                let conn = http.serve_connection(TokioIo::new(stream), tracked);
                                watcher.watch(conn).await
                            }
                            Ok(Err(e)) => Err(format!("TLS handshake: {e}").into()),
                            Err(_) => Err("TLS handshake timed out".into()),
                        }
                    }
                }
            };
            let closed = tokio::select! {
                result = served => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    None
                }
                reason = watchdog(&activity, limits) => Some(reason),
                _ = slot.evict.cancelled() => Some("evicted"),
            };
            if let (Some(reason), Some(m)) = (closed, &metrics) {
                m.closed(reason);
            }
            drop(slot);
        });
    }
}

/// Completes when the connection has outstayed its welcome, naming why.
async fn watchdog(activity: &Activity, limits: ConnLimits) -> &'static str {
    loop {
        let now = Instant::now();
        let due = if activity.requests.load(Ordering::Acquire) == 0 {
            Some((
                activity.accepted + limits.first_request,
                "first_request_timeout",
            ))
        } else if activity.in_flight.load(Ordering::Acquire) == 0 {
            Some((activity.idle_since() + limits.idle, "idle_timeout"))
        } else {
            None // busy: nothing is due; look again later
        };
        let wake = match due {
            Some((at, reason)) if now >= at => return reason,
            Some((at, _)) => at,
            None => now + limits.idle,
        };
        tokio::time::sleep_until(wake).await;
    }
}

/// What a connection is doing, as its requests see it.
#[derive(Debug)]
struct Activity {
    accepted: Instant,
    /// Requests started on the connection.
    requests: AtomicU64,
    in_flight: AtomicUsize,
    /// When the connection last had nothing in flight, in milliseconds after `accepted`.
    idle_since_ms: AtomicU64,
    closed: AtomicBool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            accepted: Instant::now(),
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    fn idle_since(&self) -> Instant {
        self.accepted + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire))
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }
}

/// A request in flight: from its head to the end of its response body (or its cancellation).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        let since = u64::try_from(a.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.idle_since_ms.store(since, Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections of a listener, and those that have not spoken yet, oldest first.
#[derive(Default)]
struct Registry {
    open: AtomicUsize,
    silent: Mutex<VecDeque<(Arc<Activity>, CancellationToken)>>,
}

/// A connection's place in the registry, given back when it closes.
struct Slot {
    registry: Arc<Registry>,
    activity: Arc<Activity>,
    evict: CancellationToken,
    open: Option<prometheus::IntGauge>,
}

impl Registry {
    /// A place for a new connection: free, or taken from the oldest silent connection; `None` when full.
    fn admit(self: &Arc<Self>, max: usize, metrics: Option<&ConnMetrics>) -> Option<Slot> {
        let mut silent = self.silent.lock().unwrap_or_else(|p| p.into_inner());
        // Connections that spoke or closed leave the front; the queue holds at most the connections accepted
        // within one first-request timeout.
        while silent.front().is_some_and(|(a, _)| {
            a.requests.load(Ordering::Acquire) > 0 || a.closed.load(Ordering::Acquire)
        }) {
            silent.pop_front();
        }
        if self.open.load(Ordering::Acquire) >= max {
            let victim = loop {
                match silent.pop_front() {
                    Some((a, token))
                        if a.requests.load(Ordering::Acquire) == 0
                            && !a.closed.load(Ordering::Acquire) =>
                    {
                        break Some(token)
                    }
                    Some(_) => continue,
                    None => break None,
                }
            };
            match victim {
                // Its slot is given back when its task ends; count the new one now.
                Some(token) => token.cancel(),
                None => {
                    if let Some(m) = metrics {
                        m.closed("refused");
                    }
                    return None;
                }
            }
        }
        self.open.fetch_add(1, Ordering::AcqRel);
        let activity = Arc::new(Activity::new());
        let evict = CancellationToken::new();
        silent.push_back((activity.clone(), evict.clone()));
        let open = metrics.map(|m| m.open.clone());
        if let Some(g) = &open {
            g.inc();
        }
        Some(Slot {
            registry: self.clone(),
            activity,
            evict,
            open,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.activity.closed.store(true, Ordering::Release);
        self.registry.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(g) = &self.open {
            g.dec();
        }
    }
}

/// A service that tells the connection's [`Activity`] when requests start and when their responses end.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    peer: std::net::SocketAddr,
}

/// The address a request came from, in its extensions (for the admin listener's failed-authentication log and
/// throttle).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub(crate) std::net::SocketAddr);

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(Peer(self.peer));
        let guard = self.activity.begin();
        TrackedFuture {
            inner: self.inner.call(req),
            guard: Some(guard),
        }
    }
}

pin_project_lite::pin_project! {
    struct TrackedFuture<F> {
        #[pin]
        inner: F,
        guard: Option<InFlight>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = std::task::ready!(this.inner.poll(cx))?;
        let guard = this.guard.take();
        Poll::Ready(Ok(resp.map(|body| TrackedBody { body, guard })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request in flight until it ends or is dropped.
    pub(crate) struct TrackedBody<B> {
        #[pin]
        body: B,
        guard: Option<InFlight>,
    }
}

impl<B: http_body::Body> http_body::Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.body.poll_frame(cx));
        if frame.is_none() {
            this.guard.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_times_silence_and_idleness_but_not_work() {
        let limits = ConnLimits {
            first_request: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            max_connections: 10,
        };
        let t0 = Instant::now();
        let silent = Arc::new(Activity::new());
        assert_eq!(watchdog(&silent, limits).await, "first_request_timeout");
        assert_eq!(Instant::now(), t0 + Duration::from_secs(10));

        // A request that lasts five minutes keeps the connection; sixty idle seconds after it, it goes.
        let busy = Arc::new(Activity::new());
        let guard = busy.begin();
        let t1 = Instant::now();
        #[allow(clippy::disallowed_methods)] // a test's own task
        let released = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(300)).await;
            drop(guard);
        });
        assert_eq!(watchdog(&busy, limits).await, "idle_timeout");
        released.await.unwrap();
        assert_eq!(Instant::now(), t1 + Duration::from_secs(360));
    }

    #[test]
    fn at_the_cap_the_oldest_silent_connection_makes_room() {
        let registry = Arc::new(Registry::default());
        let a = registry.admit(2, None).unwrap();
        let b = registry.admit(2, None).unwrap();
        let _ = b.activity.begin(); // b spoke (its guard dropped at once; it still counts as having spoken)
        let c = registry.admit(2, None).unwrap();
        assert!(a.evict.is_cancelled(), "the silent one makes room");
        assert!(!b.evict.is_cancelled());
        drop(a);
        let _ = c.activity.begin();
        assert!(registry.admit(2, None).is_none(), "everyone spoke: refused");
        drop(b);
        assert!(registry.admit(2, None).is_some());
    }
}
