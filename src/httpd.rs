//! A plain-HTTP accept loop (HTTP/1.1 and h2c) for the side listeners: the admin listener and
//! `aigw mock-upstream`. The gRPC listener has its own loop in `server.rs` (TLS, graceful drain).

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Serves `handler` on every connection until `shutdown`. Accept errors (EMFILE) pause the loop briefly
/// rather than spin.
pub async fn serve<H, F, B>(
    listener: tokio::net::TcpListener,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let http = Arc::new(hyper_util::server::conn::auto::Builder::new(
        TokioExecutor::new(),
    ));
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let (http, handler) = (http.clone(), handler.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(handler);
            let _ = http.serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}
