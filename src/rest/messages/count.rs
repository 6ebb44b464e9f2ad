//! `POST /v1/messages/count_tokens`, and the gateway's own estimate of a request's input tokens.

use http::{HeaderMap, Response};
use serde_json::{json, Value};
use tonic::body::Body;

use super::{request, shapes::gateway_error};
use crate::{admission::auth::Identity, core::gateway::Gateway, error::GatewayError};

/// The gateway's estimate of a request's input tokens (about 4 bytes a token, 4 per message, the tools'
/// definitions counted as text): what `count_tokens` answers and `message_start` reports before the upstream's
/// count arrives with `message_delta`.
pub(super) fn estimate(
    messages: &[crate::proto::Message],
    config: &crate::proto::GenerationConfig,
) -> u64 {
    let tools = config
        .tools
        .iter()
        .map(|t| t.name.len() + t.description.len() + t.parameters_json.len());
    crate::admission::estimate::estimate_tokens(
        messages
            .iter()
            .map(crate::upstream::openai::extras::size)
            .chain(tools),
        0,
    )
}

/// `POST /v1/messages/count_tokens`: the request's input tokens as the model's first Anthropic route counts them
/// (the body as the client sent it, for that route's model, with the client's API headers), else its first
/// Gemini or Vertex AI route (`countTokens` of the request as that route would send it), else as the gateway
/// estimates them (the same estimate its limits reserve; also when the upstream cannot be reached); errors in
/// Anthropic's shape.
pub(crate) async fn count_tokens(
    gw: &Gateway,
    who: &Identity,
    headers: &HeaderMap,
    body: &[u8],
) -> Response<Body> {
    let parsed = match request::parse_to_count(body) {
        Ok(p) => p,
        Err(e) => return gateway_error(&e),
    };
    // The model must be one this key may use, as for the call itself.
    let catalog = gw.catalog();
    let model = match catalog.router.resolve(&parsed.model, who) {
        Ok(model) => model.clone(),
        Err(e) => return gateway_error(&e),
    };
    let counter = model
        .routes
        .iter()
        .find(|r| r.upstream.dialect_name() == "anthropic");
    if let Some(route) = counter {
        let mut sent: Value = serde_json::from_slice(body).unwrap_or_default();
        sent["model"] = Value::from(route.upstream_model(&parsed.model));
        let api = crate::upstream::api_headers::ApiHeaders::read(headers);
        let given = headers.get("x-request-id").and_then(|v| v.to_str().ok());
        let request_id = crate::call::start::request_id(given);
        match route
            .upstream
            .count_tokens(&sent, &request_id, Some(&api))
            .await
        {
            Some(Ok(n)) => {
                return crate::rest::json(http::StatusCode::OK, &json!({"input_tokens": n}))
            }
            // The request itself is wrong: the client hears why.
            Some(Err(e @ GatewayError::UpstreamRejected { .. })) => return gateway_error(&e),
            Some(Err(e)) => {
                tracing::info!(upstream = %route.upstream.name(), error = %e, "count_tokens estimated instead");
            }
            None => {}
        }
    }
    let gemini = model
        .routes
        .iter()
        .find(|r| r.upstream.dialect_name() == "gemini");
    if let Some(route) = gemini {
        let request_id = crate::call::start::request_id(
            headers.get("x-request-id").and_then(|v| v.to_str().ok()),
        );
        let req = crate::upstream::openai::convert::chat_request(
            route.upstream_model(&parsed.model),
            &parsed.messages,
            Some(&parsed.config),
            &parsed.pass,
            crate::config::MaxTokensField::MaxTokens,
            false,
        );
        match route.upstream.count_request_tokens(&req, &request_id).await {
            Some(Ok(n)) => {
                return crate::rest::json(http::StatusCode::OK, &json!({"input_tokens": n}))
            }
            Some(Err(
                e @ (GatewayError::UpstreamRejected { .. } | GatewayError::InvalidArgument(_)),
            )) => return gateway_error(&e),
            Some(Err(e)) => {
                tracing::info!(upstream = %route.upstream.name(), error = %e, "count_tokens estimated instead");
            }
            None => {}
        }
    }
    let n = estimate(&parsed.messages, &parsed.config);
    crate::rest::json(http::StatusCode::OK, &json!({"input_tokens": n}))
}
