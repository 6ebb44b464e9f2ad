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

mod caller;
mod events;
mod reply;
mod route;

pub(crate) use caller::Caller;
use events::{named_event, StreamWriter};
use reply::{heavy, json, json_with, read_json, unix_now};
pub(crate) use route::serve;

/// The largest request body read, as for a gRPC message (tonic's default).
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// The Messages door's: Anthropic's own limit, since agents send screenshots and PDFs.
pub const MAX_MESSAGES_BODY: usize = 32 * 1024 * 1024;
