//! `POST /v1/responses`: the request parsed into a call (a kept conversation continued by `previous_response_id`),
//! answered whole as a response object or streamed as its events; kept for an hour when `store` is not false.

use bytes::Bytes;
use http::{HeaderMap, Response};
use serde_json::Value;
use tonic::body::Body;

use super::request::{parse, Parsed};
use super::{
    answer::{Answer, Keep},
    events::Events,
};
use crate::rest::{error, Caller};
use crate::{call::request::Request, call::start::Reply, error::GatewayError, proto::Message};

/// The names the Responses door's calls have in logs and metrics.
pub(crate) const RPC_UNARY: &str = "Responses";
pub(crate) const RPC_STREAM: &str = "ResponsesStream";

pub(crate) async fn create(caller: Caller, body: Bytes) -> Response<Body> {
    let (gw, who) = (&caller.gw, &caller.who);
    let parsed = match parse(&body) {
        Ok(p) => p,
        Err(e) => return error::gateway(&e),
    };
    let Parsed {
        model,
        instructions,
        input,
        config,
        pass,
        stream,
        store,
        previous_response_id,
        echo,
        dropped,
        namespaces,
        input_items,
    } = parsed;
    // Nothing is left out when every route of the model speaks the Responses API itself.
    let dropped =
        if !dropped.is_empty() && gw.catalog().router.speaks_everywhere(&model, "responses") {
            Vec::new()
        } else {
            dropped
        };
    // The continued conversation, then this input.
    let mut kept = match &previous_response_id {
        None => Vec::new(),
        Some(id) => match gw.conversations.get(id, &who.owner) {
            Some(messages) => messages,
            None => {
                let e = GatewayError::InvalidArgument(format!(
                    "previous_response_id: no response '{id}' is kept for this key (responses are kept an hour, \
                     on the replica that answered, unless store was false)"
                ));
                return error::gateway(&e);
            }
        },
    };
    kept.extend(input);
    // The call's messages: the instructions in front; a copy only when the conversation is kept too.
    let (messages, kept): (Vec<Message>, Option<Vec<Message>>) = if store {
        let call = instructions
            .into_iter()
            .chain(kept.iter().cloned())
            .collect();
        (call, Some(kept))
    } else {
        (instructions.into_iter().chain(kept).collect(), None)
    };
    let suffix = format!("{:032x}", fastrand::u128(..));
    let answer = Answer {
        id: format!("resp_{suffix}"),
        message_id: format!("msg_{suffix}"),
        created: crate::rest::unix_now(),
        model: model.clone(),
        echo,
        previous_response_id,
        store,
        namespaces,
    };
    let keep = kept.map(|messages| Keep {
        gw: gw.clone(),
        owner: who.owner.clone(),
        messages,
        input_items,
    });
    let message = Request {
        model,
        messages,
        config,
        pass,
    };
    let mut resp = if stream {
        let writer = |_: &HeaderMap| Events::new(answer, keep);
        caller
            .stream(RPC_STREAM, message, writer, error::failure)
            .await
    } else {
        let answer = |reply: Reply<crate::proto::GenerateResponse>| {
            let Reply {
                value: done,
                headers,
            } = reply;
            let mut output: Vec<Value> = done
                .reasoning
                .iter()
                .enumerate()
                .map(|(i, r)| answer.reasoning_item(i, r))
                .collect();
            if !done.content.is_empty() || done.tool_calls.is_empty() {
                output.push(answer.message_item(
                    &answer.message_id,
                    "completed",
                    done.content.as_str(),
                ));
            }
            output.extend(
                done.tool_calls
                    .iter()
                    .map(|c| answer.function_item(c, "completed")),
            );
            let body = answer.object(output, &done.finish_reason, done.usage);
            if let Some(keep) = keep {
                let said = (
                    done.content.as_str(),
                    &done.tool_calls[..],
                    &done.reasoning[..],
                );
                keep.answered(&answer.id, said, &body);
            }
            crate::rest::json_with(headers, &body)
        };
        caller
            .generate(RPC_UNARY, message, answer, error::failure)
            .await
    };
    // Fields and tools left out on the way to a chat-completions upstream, named, so a client sees what did not
    // travel.
    if !dropped.is_empty() {
        tracing::info!(dropped = %dropped.join(","), "Responses fields left out");
        if let Ok(value) = http::HeaderValue::try_from(dropped.join(", ")) {
            resp.headers_mut().insert("aigw-dropped", value);
        }
    }
    resp
}
