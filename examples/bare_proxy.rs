//! The least a gateway can do on this stack: an HTTP/1.1 server that forwards each request's body to one
//! upstream through a pooled hyper client and returns the answer's status and body. No parsing, no auth, no
//! limits, no logs, no metrics. `bench/floor.py` measures it beside aigw, so that the share of CPU any gateway
//! must pay (both sockets' framing and the kernel's loopback work) is told apart from what aigw adds.
//!
//! With `--reqwest` the client side is reqwest (as aigw's is) instead of hyper-util's client that reqwest wraps:
//! the difference is what reqwest's own layers cost per call.
//!
//! With `--grpc` it is the least a gRPC-to-REST gateway does: an HTTP/2 (h2c) server that reads each request's
//! body, posts one fixed chat request to `<upstream>/v1/chat/completions` through reqwest, and answers with the
//! upstream's body in one gRPC frame and `grpc-status: 0` trailers. No protobuf, no JSON, no tonic: the floor
//! of aigw's gRPC door on this stack, measured with the same h2load load.
//!
//! Usage: cargo run --release --example bare_proxy -- <listen addr> <upstream base url> [--reqwest | --grpc]

#![allow(clippy::disallowed_methods)] // a stand-alone floor, not the gateway: its tasks are bare on purpose

use std::{convert::Infallible, net::SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::{
    body::{Frame, Incoming},
    server::conn::{http1, http2},
    service::service_fn,
    Request, Response,
};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone)]
// One per process, cloned per connection: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Upstream {
    Hyper(Client<HttpConnector, Full<Bytes>>),
    Reqwest(reqwest::Client),
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(base)) = (args.next(), args.next()) else {
        eprintln!("usage: bare_proxy <listen addr> <upstream base url> [--reqwest | --grpc]");
        std::process::exit(2);
    };
    let mode = args.next();
    let grpc = mode.as_deref() == Some("--grpc");
    let with_reqwest = grpc || mode.as_deref() == Some("--reqwest");
    let listen: SocketAddr = listen.parse()?;
    let base = base.trim_end_matches('/').to_owned();
    // reqwest is built without a TLS provider of its own, as aigw's is; the same one aigw installs.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = if with_reqwest {
        Upstream::Reqwest(
            reqwest::Client::builder()
                .pool_max_idle_per_host(1024)
                .tcp_nodelay(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        )
    } else {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Upstream::Hyper(
            Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(1024)
                .build(connector),
        )
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("listening addr={}", listener.local_addr()?);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            match client {
                Upstream::Reqwest(client) if grpc => {
                    let service =
                        service_fn(move |req| answer_grpc(client.clone(), base.clone(), req));
                    let _ = http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
                client => {
                    let service = service_fn(move |req| forward(client.clone(), base.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}

async fn forward(
    client: Upstream,
    base: String,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await else {
        return Ok(status(400));
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let client = match client {
        Upstream::Hyper(client) => client,
        Upstream::Reqwest(client) => {
            let Some(url) = cached_url(&base, path) else {
                return Ok(status(502));
            };
            let mut out = client.post(url).body(body.to_bytes());
            for name in [http::header::CONTENT_TYPE, http::header::AUTHORIZATION] {
                if let Some(value) = parts.headers.get(&name) {
                    out = out.header(name, value.clone());
                }
            }
            let Ok(answer) = out.send().await else {
                return Ok(status(502));
            };
            let code = answer.status();
            let Ok(body) = answer.bytes().await else {
                return Ok(status(502));
            };
            let mut r = Response::new(Full::new(body));
            *r.status_mut() = code;
            return Ok(r);
        }
    };
    let Ok(uri) = format!("{base}{path}").parse() else {
        return Ok(status(502));
    };
    let mut out = Request::new(Full::new(body.to_bytes()));
    *out.method_mut() = http::Method::POST;
    *out.uri_mut() = uri;
    for name in [http::header::CONTENT_TYPE, http::header::AUTHORIZATION] {
        if let Some(value) = parts.headers.get(&name) {
            out.headers_mut().insert(name, value.clone());
        }
    }
    let Ok(answer) = client.request(out).await else {
        return Ok(status(502));
    };
    let (parts, body) = answer.into_parts();
    let Ok(body) = body.collect().await else {
        return Ok(status(502));
    };
    Ok(Response::from_parts(parts, Full::new(body.to_bytes())))
}

/// The chat request the gRPC mode sends for every call, whatever it was asked.
const CHAT: &str =
    r#"{"model":"bench","messages":[{"role":"user","content":"hi"}],"max_tokens":16}"#;

type GrpcBody = BoxBody<Bytes, Infallible>;

async fn answer_grpc(
    client: reqwest::Client,
    base: String,
    req: Request<Incoming>,
) -> Result<Response<GrpcBody>, Infallible> {
    let failed = |code: u16| Ok(status(code).map(|b| b.boxed()));
    if req.into_body().collect().await.is_err() {
        return failed(400);
    }
    let Some(url) = cached_url(&base, "/v1/chat/completions") else {
        return failed(502);
    };
    let sent = client
        .post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(CHAT)
        .send()
        .await;
    let Ok(answer) = sent else {
        return failed(502);
    };
    let Ok(body) = answer.bytes().await else {
        return failed(502);
    };
    let mut framed = BytesMut::with_capacity(5 + body.len());
    framed.put_u8(0);
    framed.put_u32(u32::try_from(body.len()).unwrap_or(u32::MAX));
    framed.put_slice(&body);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let frames = [Frame::data(framed.freeze()), Frame::trailers(trailers)];
    let body = StreamBody::new(futures_util::stream::iter(frames.map(Ok)));
    let mut r = Response::new(body.boxed());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    Ok(r)
}

/// `base` + `path`, parsed once per path per thread, as aigw parses its upstream URLs once.
fn cached_url(base: &str, path: &str) -> Option<reqwest::Url> {
    LAST_URL.with_borrow_mut(|(last, url)| {
        if last.as_str() != path || url.is_none() {
            *url = reqwest::Url::parse(&format!("{base}{path}")).ok();
            *last = path.to_owned();
        }
        url.clone()
    })
}

thread_local! {
    static LAST_URL: std::cell::RefCell<(String, Option<reqwest::Url>)> =
        const { std::cell::RefCell::new((String::new(), None)) };
}

fn status(code: u16) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::BAD_GATEWAY);
    r
}
