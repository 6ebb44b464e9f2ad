//! The three doors on one port, chosen by content type: gRPC (`application/grpc…`), gRPC-Web
//! (`application/grpc-web…`, translated to gRPC by tonic-web in front of the same routes) and everything else,
//! the OpenAI-compatible REST door. CORS, when configured, wraps all three (see `server.rs` for the order).

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, Method, Request, Response};
use tonic::{body::Body, service::Routes};
use tonic_web::GrpcWebService;
use tower::Service;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::{
    config::{CorsConfig, Origins},
    gateway::Gateway,
    trailers::Trailers,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    Grpc,
    GrpcWeb,
    Rest,
}

impl Door {
    pub fn of(headers: &HeaderMap) -> Door {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .map_or(&b""[..], |v| v.as_bytes());
        if content_type.starts_with(b"application/grpc-web") {
            Door::GrpcWeb
        } else if content_type.starts_with(b"application/grpc") {
            Door::Grpc
        } else {
            Door::Rest
        }
    }
}

#[derive(Clone)]
pub struct Front {
    grpc: Trailers<Routes>,
    web: GrpcWebService<Trailers<Routes>>,
    gateway: Arc<Gateway>,
}

impl Front {
    pub fn new(routes: Routes, gateway: Arc<Gateway>) -> Front {
        let grpc = tower::Layer::layer(&crate::trailers::TrailersLayer, routes);
        let web = tower::Layer::layer(&tonic_web::GrpcWebLayer::new(), grpc.clone());
        Front { grpc, web, gateway }
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<B> Service<Request<B>> for Front
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + std::fmt::Display,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture;

    /// Always ready: tonic's routes are, and the REST door holds no capacity of its own.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> BoxFuture {
        match Door::of(req.headers()) {
            Door::Grpc => {
                let call = self.grpc.call(req.map(Body::new));
                Box::pin(async move { Ok(call.await?.map(Body::new)) })
            }
            Door::GrpcWeb => Box::pin(self.web.call(req)),
            Door::Rest => {
                let gateway = self.gateway.clone();
                Box::pin(async move { Ok(crate::rest::serve(gateway, req).await) })
            }
        }
    }
}

/// Headers a browser script may read from an answer: gRPC(-Web)'s status, and the gateway's own.
const EXPOSED: [&str; 8] = [
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "x-request-id",
    "retry-after",
    "aigw-cache",
    "aigw-overhead-us",
    "aigw-cost-usd",
];

/// The CORS layer `[cors]` asks for. Request headers are mirrored: gRPC-Web and SDK clients send their own
/// (`x-grpc-web`, `x-user-agent`, `grpc-timeout`, `x-stainless-*`, ...), and the key travels in a header a
/// page cannot send without holding it, never in a cookie, so no credentials mode is needed.
pub fn cors(cfg: &CorsConfig) -> CorsLayer {
    let origins = match &cfg.allow_origins {
        Origins::Any => AllowOrigin::any(),
        Origins::List(list) => AllowOrigin::list(list.iter().cloned()),
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers(EXPOSED.map(HeaderName::from_static))
        .max_age(cfg.max_age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doors_by_content_type() {
        let cases = [
            (Some("application/grpc"), Door::Grpc),
            (Some("application/grpc+proto"), Door::Grpc),
            (Some("application/grpc-web"), Door::GrpcWeb),
            (Some("application/grpc-web+proto"), Door::GrpcWeb),
            (Some("application/grpc-web-text"), Door::GrpcWeb),
            (Some("application/json"), Door::Rest),
            (Some("text/plain"), Door::Rest),
            (None, Door::Rest),
        ];
        for (content_type, door) in cases {
            let mut headers = HeaderMap::new();
            if let Some(ct) = content_type {
                headers.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            }
            assert_eq!(Door::of(&headers), door, "{content_type:?}");
        }
    }
}
