//! `POST /v1/messages`: the request parsed into a call, answered whole as an Anthropic message or streamed as its
//! events.

use bytes::Bytes;
use http::{HeaderMap, Response};
use serde_json::{json, Value};
use tonic::body::Body;

use super::{
    count::estimate,
    events::Events,
    request::parse,
    shapes::{failure, gateway_error, thinking_block, tool_use, usage},
};
use crate::{
    call::request::Request, call::start::Reply, rest::Caller, upstream::anthropic::stop_reason,
};

/// The names the Messages door's calls have in logs and metrics.
pub(crate) const RPC_UNARY: &str = "Messages";
pub(crate) const RPC_STREAM: &str = "MessagesStream";

pub(crate) async fn create(caller: Caller, body: Bytes) -> Response<Body> {
    let parsed = match parse(&body) {
        Ok(p) => p,
        Err(e) => return gateway_error(&e),
    };
    let id = format!("msg_{:032x}", fastrand::u128(..));
    let model = parsed.model.clone();
    // What only Anthropic takes, named when a route of the model speaks another API (the upstream that
    // answers leaves it out, and its log says so).
    let dropped = if parsed.foreign.is_empty()
        || caller
            .gw
            .catalog()
            .router
            .speaks_everywhere(&model, "anthropic")
    {
        None
    } else {
        http::HeaderValue::try_from(parsed.foreign.join(", ")).ok()
    };
    let input_estimate = estimate(&parsed.messages, &parsed.config);
    let message = Request {
        model: parsed.model,
        messages: parsed.messages,
        config: Some(parsed.config),
        pass: parsed.pass,
    };
    let mut resp = if parsed.stream {
        let writer = |_: &HeaderMap| Events::new(id, model, input_estimate);
        caller.stream(RPC_STREAM, message, writer, failure).await
    } else {
        let answer = |reply: Reply<crate::proto::GenerateResponse>| {
            let Reply {
                value: done,
                headers,
            } = reply;
            let mut content: Vec<Value> = done.reasoning.iter().map(thinking_block).collect();
            if !done.content.is_empty() || done.tool_calls.is_empty() {
                content.push(json!({"type": "text", "text": done.content}));
            }
            content.extend(done.tool_calls.iter().map(tool_use));
            let body = json!({"id": id, "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": stop_reason(&done.finish_reason),
                "stop_sequence": null, "usage": usage(done.usage.unwrap_or_default())});
            crate::rest::json_with(headers, &body)
        };
        caller.generate(RPC_UNARY, message, answer, failure).await
    };
    if let Some(dropped) = dropped {
        resp.headers_mut().insert("aigw-dropped", dropped);
    }
    resp
}
