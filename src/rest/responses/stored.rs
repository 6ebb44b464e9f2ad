//! The kept responses: `GET` and `DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`, each for the key
//! that made them.

use http::Response;
use serde_json::{json, Value};
use tonic::body::Body;

use crate::rest::error;
use crate::{admission::auth::Identity, core::gateway::Gateway};

/// `GET /v1/responses/{id}`: a stored response of the caller's key, as it was answered.
pub(crate) fn retrieve(gw: &Gateway, who: &Identity, id: &str) -> Response<Body> {
    match gw.conversations.stored(id, &who.owner) {
        Some(stored) => crate::rest::json(http::StatusCode::OK, &*stored.response),
        None => not_found(id),
    }
}

/// `DELETE /v1/responses/{id}`: forgets a stored response (it can no longer be continued).
pub(crate) fn delete(gw: &Gateway, who: &Identity, id: &str) -> Response<Body> {
    if gw.conversations.delete(id, &who.owner) {
        let deleted = json!({"id": id, "object": "response.deleted", "deleted": true});
        crate::rest::json(http::StatusCode::OK, &deleted)
    } else {
        not_found(id)
    }
}

/// `GET /v1/responses/{id}/input_items`: the stored response's input items as its request sent them, newest
/// first unless `order=asc`, `limit` (1 to 100, default 20) at a time after the item `after`.
pub(crate) fn input_items(
    gw: &Gateway,
    who: &Identity,
    id: &str,
    query: Option<&str>,
) -> Response<Body> {
    let Some(stored) = gw.conversations.stored(id, &who.owner) else {
        return not_found(id);
    };
    let mut asc = false;
    let mut limit = 20usize;
    let mut after = None;
    for (k, v) in url_pairs(query.unwrap_or_default()) {
        match k {
            "order" => asc = v == "asc",
            "limit" => limit = v.parse::<usize>().unwrap_or(20).clamp(1, 100),
            "after" => after = Some(v),
            _ => {}
        }
    }
    let mut items: Vec<&Value> = stored.input.iter().collect();
    if !asc {
        items.reverse();
    }
    let start = after
        .and_then(|a| items.iter().position(|i| i["id"] == a))
        .map_or(0, |at| at + 1);
    let page: Vec<&Value> = items.iter().skip(start).take(limit).copied().collect();
    let body = json!({"object": "list", "data": page,
        "first_id": page.first().and_then(|i| i["id"].as_str()),
        "last_id": page.last().and_then(|i| i["id"].as_str()),
        "has_more": start + page.len() < items.len()});
    crate::rest::json(http::StatusCode::OK, &body)
}

pub(super) fn url_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query.split('&').filter_map(|p| p.split_once('='))
}

pub(super) fn not_found(id: &str) -> Response<Body> {
    let msg = format!(
        "No response with id '{id}' is kept for this key (responses are kept an hour, on the replica that answered, \
         unless store was false)"
    );
    error::body(404, &msg, "invalid_request_error", None)
}
