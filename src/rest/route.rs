//! Which REST route a request is, and what every route needs before its door: the method, the key (Anthropic's
//! `x-api-key` too), the body read within its size limit and the process's memory budget.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tonic::body::Body;

use super::{
    chat, embeddings, error, json, messages, responses, wire, Caller, MAX_BODY, MAX_MESSAGES_BODY,
};
use crate::{
    call,
    core::{
        gateway::Gateway,
        memory::{self, Held},
    },
    error::GatewayError,
    transport::standing::Style,
};

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
    let style = if anthropic {
        Style::Anthropic
    } else {
        Style::OpenAi
    };
    let caller = Caller {
        gw,
        who,
        headers,
        style,
    };
    // Each door's call is boxed: this future (and the connection's above it) would otherwise be as large as
    // the largest of them, and be copied whole as it moves into place.
    match route {
        Route::Chat => Box::pin(chat::completions(caller, bytes)).await,
        Route::Embeddings => Box::pin(embeddings::create(caller, bytes)).await,
        Route::Responses => Box::pin(responses::create(caller, bytes)).await,
        Route::Messages => Box::pin(messages::create(caller, bytes)).await,
        Route::CountTokens => {
            Box::pin(messages::count_tokens(
                &caller.gw,
                &caller.who,
                &caller.headers,
                &bytes,
            ))
            .await
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
