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
use futures_util::FutureExt;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use tonic::{body::Body, service::Routes};
use tonic_web::GrpcWebService;
use tower::Service;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::{
    config::{CorsConfig, Origins},
    core::gateway::Gateway,
    transport::trailers::Trailers,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Door {
    Grpc,
    GrpcWeb,
    Rest,
}

impl Door {
    pub(crate) fn of(headers: &HeaderMap) -> Door {
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
pub(crate) struct Front {
    grpc: Trailers<Routes>,
    web: GrpcWebService<Trailers<Routes>>,
    gateway: Arc<Gateway>,
}

impl Front {
    pub(crate) fn new(routes: Routes, gateway: Arc<Gateway>) -> Front {
        let grpc = tower::Layer::layer(&crate::transport::trailers::TrailersLayer, routes);
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
        // A token signed with a key this replica has not read yet (its issuer rotated): read the issuer's keys
        // first, then take the call as any other (the check after is synchronous, as tonic's interceptors are).
        if let Some((issuer, kid)) = self.token_needs_keys(req.headers()) {
            let mut front = self.clone();
            return Box::pin(async move {
                issuer.read_keys(kid.as_deref()).await;
                front.dispatch(req).await
            });
        }
        self.dispatch(req)
    }
}

impl Front {
    /// The issuer whose keys must be read before this call: its credential is `authorization: Bearer`, or
    /// Anthropic's `x-api-key` (which the Messages door takes as the same).
    fn token_needs_keys(
        &self,
        headers: &http::HeaderMap,
    ) -> Option<(Arc<crate::admission::jwt::Issuer>, Option<String>)> {
        let tokens = self.gateway.tokens.as_ref()?;
        let credential = match headers.get(header::AUTHORIZATION) {
            Some(value) => crate::admission::auth::bearer(value.to_str().ok()?)?,
            None => headers.get("x-api-key")?.to_str().ok()?.trim(),
        };
        tokens.needs_keys(credential)
    }

    /// The call, to its door.
    fn dispatch<B>(&mut self, req: Request<B>) -> BoxFuture
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + std::fmt::Display,
    {
        let door = Door::of(req.headers());
        let panics = self.gateway.metrics.panics.clone();
        match door {
            Door::Grpc => {
                let call = self.grpc.call(req.map(Body::new));
                guard(door, panics, async move { Ok(call.await?.map(Body::new)) })
            }
            Door::GrpcWeb => guard(door, panics, self.web.call(req)),
            Door::Rest => {
                let gateway = self.gateway.clone();
                guard(door, panics, async move {
                    Ok(crate::rest::serve(gateway, req).await)
                })
            }
        }
    }
}

/// A panic in a handler must not reach the client as a reset: it ends its call with INTERNAL (500 on the
/// REST door), and is counted. The one allocation per request is here.
fn guard(
    door: Door,
    panics: prometheus::IntCounterVec,
    call: impl Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
) -> BoxFuture {
    Box::pin(
        std::panic::AssertUnwindSafe(call)
            .catch_unwind()
            .map(move |result| match result {
                Ok(resp) => resp,
                Err(_) => {
                    panics.with_label_values(&["handler"]).inc();
                    tracing::error!(?door, "a request handler panicked: answered INTERNAL");
                    Ok(panicked(door))
                }
            }),
    )
}

/// The answer to a call whose handler panicked, in its door's form.
pub(crate) fn panicked(door: Door) -> Response<Body> {
    const MESSAGE: &str = "internal error: the gateway failed while handling the call";
    let mut resp = match door {
        Door::Rest => {
            let json = serde_json::json!({"error": {"message": MESSAGE, "type": "server_error", "code": null}});
            let mut resp = Response::new(Body::new(http_body_util::Full::new(Bytes::from(
                json.to_string(),
            ))));
            *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return resp;
        }
        // gRPC's trailers-only form: the status in the headers, no body.
        Door::Grpc => Response::new(Body::empty()),
        Door::GrpcWeb => Response::new(Body::empty()),
    };
    let content_type = match door {
        Door::GrpcWeb => "application/grpc-web+proto",
        _ => "application/grpc",
    };
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        "grpc-status",
        HeaderValue::from(tonic::Code::Internal as i32),
    );
    headers.insert(
        "grpc-message",
        HeaderValue::from_static(
            "internal%20error%3A%20the%20gateway%20failed%20while%20handling%20the%20call",
        ),
    );
    resp
}

/// Headers a browser script may read from an answer: gRPC(-Web)'s status, and the gateway's own.
const EXPOSED: [&str; 20] = [
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "x-request-id",
    "retry-after",
    "aigw-cache",
    "aigw-overhead-us",
    "aigw-cost-usd",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-tokens-reset",
];

/// The CORS layer `[cors]` asks for. Request headers are mirrored: gRPC-Web and SDK clients send their own
/// (`x-grpc-web`, `x-user-agent`, `grpc-timeout`, `x-stainless-*`, ...), and the key travels in a header a
/// page cannot send without holding it, never in a cookie, so no credentials mode is needed.
pub(crate) fn cors(cfg: &CorsConfig) -> CorsLayer {
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

    #[tokio::test]
    async fn a_panicking_handler_answers_internal_in_its_doors_form() {
        let panics = crate::observe::metrics::Metrics::new().panics;
        for door in [Door::Grpc, Door::GrpcWeb, Door::Rest] {
            let call: BoxFuture = Box::pin(async {
                if true {
                    panic!("a bug in a handler");
                }
                Ok(Response::new(Body::empty()))
            });
            let resp = guard(door, panics.clone(), call).await.unwrap();
            match door {
                Door::Rest => assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR),
                _ => {
                    assert_eq!(resp.status(), StatusCode::OK);
                    assert_eq!(resp.headers()["grpc-status"], "13");
                }
            }
        }
        assert_eq!(panics.with_label_values(&["handler"]).get(), 3);
    }

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
