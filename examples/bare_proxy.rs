//! The least a gateway can do on this stack: an HTTP/1.1 server that forwards each request's body to one
//! upstream through a pooled hyper client and returns the answer's status and body. No parsing, no auth, no
//! limits, no logs, no metrics. `bench/floor.py` measures it beside aigw, so that the share of CPU any gateway
//! must pay (both sockets' framing and the kernel's loopback work) is told apart from what aigw adds.
//!
//! Usage: cargo run --release --example bare_proxy -- <listen addr> <upstream base url>

use std::{convert::Infallible, net::SocketAddr};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Upstream = Client<HttpConnector, Full<Bytes>>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(base)) = (args.next(), args.next()) else {
        eprintln!("usage: bare_proxy <listen addr> <upstream base url>");
        std::process::exit(2);
    };
    let listen: SocketAddr = listen.parse()?;
    let base = base.trim_end_matches('/').to_owned();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build(connector);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("listening addr={}", listener.local_addr()?);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| forward(client.clone(), base.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
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

fn status(code: u16) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::BAD_GATEWAY);
    r
}
