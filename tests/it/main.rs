//! The integration tests, one binary (linking the crate once instead of once per file): the gateway in-process
//! on 127.0.0.1:0 against scripted upstreams, a real Redis, real TLS. `common` holds the shared set-up.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)] // test code: failures stop the test; bare tasks; its numbers are its own

mod common;

mod anthropic;
mod bedrock;
mod bench;
mod cache;
mod chat;
mod doors;
mod embeddings;
mod gemini;
mod groups;
mod hardening;
mod interactive;
mod jwt;
mod keys;
mod messages;
mod mock_upstream;
mod model_limits;
mod observability;
mod otlp;
mod providers;
mod rate_headers;
mod reasoning;
mod redis_topologies;
mod reload;
mod responses;
mod rest;
mod rpc;
mod shared;
mod shutdown;
mod tls;
mod tools;
mod traffic;
mod vertex;
