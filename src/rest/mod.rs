//! The OpenAI-compatible REST door, on the same port as gRPC (HTTP/1.1 and HTTP/2): `POST /v1/chat/completions`,
//! `POST /v1/responses` (and `GET`/`DELETE /v1/responses/{id}`, `GET .../input_items`), `POST /v1/embeddings`,
//! `GET /v1/models[/{id}]`, and Anthropic's `POST /v1/messages`. Same keys (`Authorization: Bearer`), and the calls run
//! through the call layer ([`crate::call`]) as gRPC's do, so limits, cache, routing, metrics and logs cannot drift
//! apart between the doors. Each door parses its body into the call's request and writes the reply in its own
//! shape; `Caller` is the one runner between them and the call layer.

mod chat;
mod embeddings;
mod error;
mod messages;
mod request;
mod responses;
#[cfg(test)]
pub(crate) use request::parse as parse_request;
/// The other doors' request parsers, for the fuzz harness.
#[cfg(test)]
pub(crate) use {
    messages::parse_request as parse_messages, responses::parse_request as parse_responses,
};
mod wire;

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tonic::body::Body;

use crate::{
    admission::auth::Identity,
    call::{
        self,
        start::{Failure, Outcome, Reply, Start},
    },
    core::{
        gateway::Gateway,
        memory::{self, Held},
    },
    error::GatewayError,
    proto::{GenerateRequest, GenerateResponse, StreamChunk, StreamGenerateRequest},
    transport::trailers::TrailerSlot,
};

/// The largest request body read, as for a gRPC message (tonic's default).
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// The Messages door's: Anthropic's own limit, since agents send screenshots and PDFs.
pub const MAX_MESSAGES_BODY: usize = 32 * 1024 * 1024;

/// Answers one REST request. Every answer, refusals included, carries the request's `x-request-id` (the
/// client's, or one made here and used by the handler too).
pub(crate) async fn serve<B>(gw: Arc<Gateway>, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut parts, body) = req.into_parts();
    let given = parts.headers.get("x-request-id");
    let request_id = call::start::request_id(given.and_then(|v| v.to_str().ok()));
    // Printable ASCII by construction, so always a valid header value.
    let id = HeaderValue::try_from(request_id).ok();
    if let Some(id) = &id {
        parts.headers.insert("x-request-id", id.clone());
    }
    let mut resp = answer(gw, parts.method, parts.uri, parts.headers, body).await;
    if let Some(id) = id {
        resp.headers_mut().insert("x-request-id", id);
    }
    resp
}

async fn answer<B>(
    gw: Arc<Gateway>,
    method: Method,
    uri: http::Uri,
    headers: HeaderMap,
    body: B,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = uri.path();
    // Claude Code's first request: is anything there? Nothing to authenticate, nothing to read.
    if method == Method::HEAD && path == "/" {
        return Response::new(Body::empty());
    }
    let kept = path
        .strip_prefix("/v1/responses/")
        .filter(|rest| !rest.is_empty());
    let route = match (path, path.strip_prefix("/v1/models/")) {
        _ if kept.is_some() => match kept.unwrap_or_default().split_once('/') {
            None => Route::Response(kept.unwrap_or_default().to_owned()),
            Some((id, "input_items")) => Route::InputItems(id.to_owned()),
            Some(_) => {
                let msg = format!("unknown request URL: {method} {path}");
                return error::body(404, &msg, "invalid_request_error", Some("unknown_url"));
            }
        },
        ("/v1/chat/completions", _) => Route::Chat,
        ("/v1/embeddings", _) => Route::Embeddings,
        ("/v1/responses", _) => Route::Responses,
        ("/v1/messages", _) => Route::Messages,
        ("/v1/messages/count_tokens", _) => Route::CountTokens,
        ("/v1/models", _) => Route::Models,
        (_, Some(id)) if !id.is_empty() => Route::Model(id.to_owned()),
        _ => {
            let msg = format!("unknown request URL: {method} {path}");
            return error::body(404, &msg, "invalid_request_error", Some("unknown_url"));
        }
    };
    let post = matches!(
        route,
        Route::Chat | Route::Embeddings | Route::Responses | Route::Messages | Route::CountTokens
    );
    // The Anthropic SDKs name their API version on every call: they read Anthropic's shapes.
    let anthropic = matches!(route, Route::Messages | Route::CountTokens)
        || headers.contains_key("anthropic-version");
    let (wanted, allow) = if post {
        (Method::POST, "POST")
    } else if matches!(route, Route::Response(_)) && method == Method::DELETE {
        (Method::DELETE, "GET, DELETE")
    } else if matches!(route, Route::Response(_)) {
        (Method::GET, "GET, DELETE")
    } else {
        (Method::GET, "GET")
    };
    // The door's own refusals, in the shape its clients read: Anthropic's for the Messages door.
    let refuse = |http: u16, msg: &str| {
        if anthropic {
            messages::refusal(http, msg)
        } else {
            error::body(http, msg, "invalid_request_error", None)
        }
    };
    if method != wanted {
        let msg = format!("{path} takes {wanted}, not {method}");
        let mut resp = refuse(405, &msg);
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        return resp;
    }
    let mut headers = headers;
    if anthropic {
        anthropic_key(&mut headers);
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let who = match call::start::authenticate(&gw, authorization) {
        Ok(who) => who,
        Err(e) if anthropic => return messages::gateway_error(&e),
        Err(e) => return error::gateway(&e),
    };
    // Agents send screenshots and PDFs: the Messages door takes what Anthropic takes.
    let limit = match route {
        Route::Messages | Route::CountTokens => MAX_MESSAGES_BODY,
        _ => MAX_BODY,
    };
    // What reading the body, parsing it and answering may hold, against the process's memory budget until the
    // answer begins: its declared length before it is read, then what parsing it costs.
    let refused = |e: GatewayError| {
        gw.rejected(&who, &e);
        if anthropic {
            messages::gateway_error(&e)
        } else {
            error::gateway(&e)
        }
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .map_or(0, |n| n.min(limit as u64));
    let reading = if post && declared > 0 {
        match gw
            .memory
            .hold(memory::BASE + declared * memory::BYTE_COST)
            .await
        {
            Ok(held) => Some(held),
            Err(e) => {
                discard_body(body, limit).await;
                return refused(e);
            }
        }
    } else {
        None
    };
    let bytes = if post {
        match read_body(body, limit).await {
            Ok(bytes) => bytes,
            Err((http, msg)) => return refuse(http, &msg),
        }
    } else {
        Bytes::new()
    };
    let parsing = if bytes.is_empty() {
        None
    } else {
        let before = reading.as_ref().map_or(0, Held::bytes);
        let more = memory::json_charge(&bytes).saturating_sub(before);
        match gw.memory.hold(more).await {
            Ok(held) => Some(held),
            Err(e) => return refused(e),
        }
    };
    let _held = (reading, parsing);
    let caller = Caller { gw, who, headers };
    match route {
        Route::Chat => chat::completions(caller, bytes).await,
        Route::Embeddings => embeddings::create(caller, bytes).await,
        Route::Responses => responses::create(caller, bytes).await,
        Route::Messages => messages::create(caller, bytes).await,
        Route::CountTokens => {
            messages::count_tokens(&caller.gw, &caller.who, &caller.headers, &bytes).await
        }
        Route::Models if anthropic => {
            let catalog = caller.gw.catalog();
            let names: Vec<&str> = catalog
                .router
                .models()
                .iter()
                .filter(|m| caller.who.allows(&m.name))
                .map(|m| m.name.as_str())
                .collect();
            json(StatusCode::OK, &messages::model_list(&names))
        }
        Route::Model(id) if anthropic => {
            match caller.gw.catalog().router.resolve(&id, &*caller.who) {
                Ok(model) => json(StatusCode::OK, &messages::model_object(&model.name)),
                Err(e) => messages::gateway_error(&e),
            }
        }
        Route::Response(id) if method == Method::DELETE => {
            responses::delete(&caller.gw, &caller.who, &id)
        }
        Route::Response(id) => responses::retrieve(&caller.gw, &caller.who, &id),
        Route::InputItems(id) => responses::input_items(&caller.gw, &caller.who, &id, uri.query()),
        Route::Models => {
            let catalog = caller.gw.catalog();
            let data = catalog
                .router
                .models()
                .iter()
                .filter(|m| caller.who.allows(&m.name))
                .map(|m| model_object(&m.name))
                .collect();
            let list = wire::ModelList {
                object: "list",
                data,
            };
            json(StatusCode::OK, &list)
        }
        Route::Model(id) => match caller.gw.catalog().router.resolve(&id, &*caller.who) {
            Ok(model) => json(StatusCode::OK, &model_object(&model.name)),
            Err(e) => error::gateway(&e),
        },
    }
}

#[derive(PartialEq)]
enum Route {
    Chat,
    Embeddings,
    Responses,
    Messages,
    /// Anthropic's `POST /v1/messages/count_tokens`.
    CountTokens,
    Models,
    Model(String),
    /// `GET` or `DELETE /v1/responses/{id}`: a stored response.
    Response(String),
    /// `GET /v1/responses/{id}/input_items`.
    InputItems(String),
}

fn model_object(name: &str) -> wire::ModelObject<'_> {
    wire::ModelObject {
        id: name,
        object: "model",
        created: 0,
        owned_by: "aigw",
    }
}

/// Anthropic's SDKs send the key as `x-api-key`: it is taken as the bearer key when there is none.
fn anthropic_key(headers: &mut HeaderMap) {
    if headers.contains_key(header::AUTHORIZATION) {
        return;
    }
    let Some(key) = headers.remove("x-api-key") else {
        return;
    };
    let bearer = key
        .to_str()
        .ok()
        .and_then(|k| HeaderValue::try_from(format!("Bearer {k}")).ok());
    if let Some(mut value) = bearer {
        value.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, value);
    }
}

/// The request body, at most `limit` bytes; else the HTTP status and message of the refusal.
async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, (u16, String)>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large = || (413, format!("request body over {limit} bytes"));
    // A declared length over the limit is refused before anything is read.
    if http_body::Body::size_hint(&body).lower() > limit as u64 {
        return Err(too_large());
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err((400, format!("reading the request body: {e}"))),
    }
}

/// Reads and drops a body refused before it was read (up to `limit` bytes; nothing is kept), so an HTTP/1.1
/// client that sends its whole body before it reads the answer gets the refusal, not a reset connection.
async fn discard_body<B>(body: B, limit: usize)
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(http_body_util::Limited::new(body, limit));
    while let Some(Ok(_)) = body.frame().await {}
}

/// An authenticated REST call on its way into the call layer: the one runner between every REST door and
/// [`crate::call`]. A door parses its body into the call's request, and says how to write the reply and a failure.
pub(crate) struct Caller {
    gw: Arc<Gateway>,
    who: Arc<Identity>,
    /// The request's headers: `x-request-id` (set by [`serve`]), `cache-control`, trace context, API headers.
    headers: HeaderMap,
}

impl Caller {
    /// A whole chat answer, written by `answer`; a failure, by `failed`.
    async fn generate(
        self,
        rpc: &'static str,
        req: GenerateRequest,
        answer: impl FnOnce(Reply<GenerateResponse>) -> Response<Body>,
        failed: fn(&Failure) -> Response<Body>,
    ) -> Response<Body> {
        let run = |gw, start| call::generate::generate(gw, rpc, start, req);
        self.whole(run, answer, failed).await
    }

    /// A whole answer from `run`, written by `answer`, or its failure by `failed`. The overhead and cost, which
    /// gRPC sends as trailers, go out as headers.
    async fn whole<T, F>(
        self,
        run: impl FnOnce(Arc<Gateway>, Start) -> F,
        answer: impl FnOnce(Reply<T>) -> Response<Body>,
        failed: fn(&Failure) -> Response<Body>,
    ) -> Response<Body>
    where
        F: std::future::Future<Output = Outcome<T>>,
    {
        let slot = Arc::new(TrailerSlot::default());
        let start = Start::read(&self.headers, self.who, Some(slot.clone()));
        let mut resp = match run(self.gw, start).await {
            Ok(reply) => answer(reply),
            Err(failure) => failed(&failure),
        };
        slot.apply(resp.headers_mut());
        resp
    }

    /// A streamed chat answer as the events of the writer `writer` makes (from the reply's headers), or the
    /// failure before it started, written by `failed`.
    async fn stream<W: StreamWriter>(
        self,
        rpc: &'static str,
        req: StreamGenerateRequest,
        writer: impl FnOnce(&HeaderMap) -> W,
        failed: fn(&Failure) -> Response<Body>,
    ) -> Response<Body> {
        let start = Start::read(&self.headers, self.who, None);
        match call::stream::stream(self.gw, rpc, start, req).await {
            Ok(reply) => {
                let writer = writer(&reply.headers);
                relay(reply, writer)
            }
            Err(failure) => failed(&failure),
        }
    }
}

/// Runs CPU-heavy work (a large answer's encoding) without holding an async worker: on the multi-threaded
/// runtime the worker hands its other tasks to another thread meanwhile, so health probes and other calls do not
/// wait behind it. (Inline on a single-threaded runtime, as in tests.)
fn heavy<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// A JSON answer with the call's response headers.
fn json_with(headers: HeaderMap, value: &impl serde::Serialize) -> Response<Body> {
    let mut resp = json(StatusCode::OK, value);
    resp.headers_mut().extend(headers);
    resp
}

/// How a door writes a stream's events: an opening, one event (or a few) per piece of the answer as it comes
/// (text, reasoning, a piece of a tool call), keep-alives during silences, the end, or a failure after the
/// start.
trait StreamWriter: Send + 'static {
    fn start(&mut self) -> Bytes;
    fn text(&mut self, text: &str) -> Bytes;
    fn reasoning(&mut self, r: &crate::proto::ReasoningDelta) -> Bytes;
    fn tool_call(&mut self, c: &crate::proto::ToolCallDelta) -> Bytes;
    /// The upstream is silent (thinking): an SSE comment, which every client skips and every proxy sees.
    fn keepalive(&mut self) -> Bytes {
        Bytes::from_static(b": keep-alive\n\n")
    }
    fn last(&mut self, last: &StreamChunk) -> Bytes;
    fn failed(&mut self, error: &GatewayError) -> Bytes;
    /// Why the writer cannot go on (it keeps more of the answer than it may), ending the stream with it.
    fn overflow(&self) -> Option<GatewayError> {
        None
    }
}

/// One chunk of the stream as the door's events.
fn write_chunk<W: StreamWriter>(writer: &mut W, c: &StreamChunk) -> Bytes {
    // The usual chunk holds one piece: written straight out.
    if c.reasoning.is_none() && c.tool_call_deltas.is_empty() && !c.heartbeat {
        return writer.text(&c.delta);
    }
    let mut out = Vec::new();
    if c.heartbeat {
        out.extend_from_slice(&writer.keepalive());
    }
    if let Some(r) = &c.reasoning {
        out.extend_from_slice(&writer.reasoning(r));
    }
    if !c.delta.is_empty() {
        out.extend_from_slice(&writer.text(&c.delta));
    }
    for call in &c.tool_call_deltas {
        out.extend_from_slice(&writer.tool_call(call));
    }
    Bytes::from(out)
}

/// A streamed answer as the door's events: the opening, then one write per chunk until the last chunk or an
/// error, after which nothing more is read.
fn relay<W: StreamWriter>(reply: Reply<call::stream::Chunks>, mut writer: W) -> Response<Body> {
    use tokio_stream::StreamExt;
    let Reply {
        value: chunks,
        headers,
    } = reply;
    let first = writer.start();
    let mut done = false;
    let rest = chunks.map_while(move |chunk| {
        if done {
            return None;
        }
        Some(match chunk {
            Ok(c) if !c.is_complete => {
                let out = write_chunk(&mut writer, &c);
                match writer.overflow() {
                    None => out,
                    Some(error) => {
                        // Nothing more is read: the upstream request is dropped with the stream.
                        done = true;
                        [out, writer.failed(&error)].concat().into()
                    }
                }
            }
            Ok(last) => {
                done = true;
                writer.last(&last)
            }
            Err(error) => {
                done = true;
                writer.failed(&error)
            }
        })
    });
    event_stream(headers, first, rest)
}

/// `event: <kind>\ndata: <json>\n\n`, as the Responses and Messages streams name their events.
fn named_event(kind: &str, data: &impl serde::Serialize, out: &mut Vec<u8>) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Serializing these values cannot fail: no maps with non-string keys, no failing Serialize impls.
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"\n\n");
}

/// A streamed answer: `first`, then `rest`, as server-sent events with the call's metadata as headers.
fn event_stream(
    extra: HeaderMap,
    first: Bytes,
    rest: impl tokio_stream::Stream<Item = Bytes> + Send + 'static,
) -> Response<Body> {
    use tokio_stream::StreamExt;
    let frames = tokio_stream::once(first)
        .chain(rest)
        .map(|bytes| Ok::<_, std::convert::Infallible>(http_body::Frame::data(bytes)));
    let mut resp = Response::new(Body::new(http_body_util::StreamBody::new(frames)));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.extend(extra);
    resp
}

/// A request body read into its type. The error names the field it is about (`messages[0].content: ...`).
/// Most bodies are fine, so they are read by serde_json alone; only a failing one is read again, tracking its
/// path for the message (tracking it on every call cost an allocation per key).
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).or_else(|_| {
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body))
            .map_err(|e| e.to_string())
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A JSON response.
fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    // Serializing these types cannot fail (no maps with non-string keys, no failing Serialize impls).
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(Body::new(http_body_util::Full::new(Bytes::from(bytes))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
