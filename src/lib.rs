//! aigw: a gRPC gateway for large-language-model APIs.
//!
//! The code is cut into layers, each a folder (or file) of `src/`; a layer imports only the layers below it, and
//! no two files import each other. The layers, top first (the same rows as docs/architecture.md, which
//! `scripts/layers.py` checks against the imports):
//!
//! | layer | folders | what they hold |
//! |---|---|---|
//! | tools | [`tools`] | the load generator, the mock upstream and its chaos mode, the health check |
//! | composition | [`server`], [`doors`] | builds the stack (outermost first); picks the door per request |
//! | doors | [`grpc`], [`rest`], [`admin`] | the gRPC door (and its sessions), the REST doors, the admin listener: each reads its wire into a call and writes the reply back |
//! | call | [`call`] | one call whichever door it came by: its start, the opening (check, admit, cache, dispatch), the relay, the record |
//! | core | [`core`] | the gateway's state and the handles handlers get, the per-call record, the response cache |
//! | admission | [`admission`] | client keys, per-key limits and budgets, the usage book, the Redis-shared state |
//! | routing | [`routing`] | models to routes, and one call across them: deadlines, retries, breakers, cooling |
//! | transport | [`transport`] | the accept loop, TLS, HTTP/1.1 and HTTP/2, trailers |
//! | observe | [`observe`] | where a call's time went, metrics, traces, the load forecast |
//! | upstream | [`upstream`] | the HTTP client, its OpenAI and Anthropic dialects, SSE decoding, the in-process mock |
//! | base | [`config`], [`error`] | validated configuration, the one error type (and [`proto`], the generated contract) |
//!
//! A request flows down the table and its answer back up: [`transport`] -> [`doors`] -> [`grpc`] or [`rest`] ->
//! [`call`] -> [`core`] checks, [`admission`], the cache -> [`routing`] -> [`upstream`];
//! [`observe`] records it on the way. `docs/architecture.md` maps each behaviour to its file.
#![forbid(unsafe_code)]
// Tests may cast: their numbers are their own (the code under test may not, see Cargo.toml's lints).
#![cfg_attr(
    test,
    allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_possible_wrap
    )
)]

pub mod admin;
pub mod admission;
pub mod call;
pub mod config;
pub mod core;
pub mod doors;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod grpc;
pub mod observe;
pub mod rest;
pub mod routing;
pub mod server;
pub mod tools;
pub mod transport;
pub mod upstream;

/// Generated code for `proto/ai_service.proto`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("holysheepai");

    /// The encoded file descriptor set, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("ai_service_descriptor");

    #[cfg(test)]
    impl Message {
        /// A message of text alone, for tests.
        pub(crate) fn text(role: &str, content: &str) -> Message {
            Message {
                role: role.into(),
                content: content.into(),
                ..Default::default()
            }
        }
    }
}
