//! aigw: a gRPC gateway for large-language-model APIs.
//!
//! The code is layered; each layer is a folder and depends only on the layers below it:
//!
//! | layer | what it holds |
//! |---|---|
//! | [`tools`] | the load generator, the mock upstream and its chaos mode, the health check (use everything) |
//! | [`transport`] | the accept loop, TLS, HTTP/1.1 and HTTP/2, the doors by content type, trailers; builds the stack |
//! | [`admin`], [`rest`], [`grpc`] | the admin listener; the OpenAI REST door; the three RPC handlers |
//! | [`core`] | the gateway's state and the handles handlers get, deadlines, the response cache |
//! | [`admission`] | client keys, per-key limits and budgets, the Redis-shared state |
//! | [`routing`] | models to routes, and one call across them: retries, Retry-After, breakers, cooling |
//! | [`observe`] | the per-call record, metrics, traces, the usage book, the forecast |
//! | [`upstream`] | the HTTP client, its OpenAI and Anthropic dialects, SSE decoding, the in-process mock |
//! | [`config`], [`error`], [`proto`] | validated configuration, the one error type, the generated contract |
//!
//! A request flows down the table and its answer back up: [`transport`] -> [`grpc`] (or [`rest`], which calls
//! the same handlers) -> [`core`] checks, [`admission`], the cache -> [`routing`] -> [`upstream`]; [`observe`]
//! records it on the way. `docs/architecture.md` maps each behaviour to its file.
#![forbid(unsafe_code)]

pub mod admin;
pub mod admission;
pub mod config;
pub mod core;
pub mod error;
pub mod front;
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
