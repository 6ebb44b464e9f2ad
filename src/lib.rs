//! aigw: a gRPC gateway for large-language-model APIs.
//!
//! A request flows: [`server`] (TLS, HTTP/1.1 and HTTP/2) -> [`front`] (gRPC, gRPC-Web, or the OpenAI REST door
//! [`rest`]) -> auth ([`auth`]) -> handler ([`service`]) -> core ([`gateway`]: checks, limits, [`cache`],
//! [`router`], deadline) -> [`upstream`] (HTTP client speaking OpenAI or Anthropic, or the mock).
#![forbid(unsafe_code)]

pub mod accept;
pub mod admin;
pub mod auth;
pub mod bench;
pub mod breaker;
pub mod cache;
pub mod chaos;
pub mod codec;
pub mod config;
pub mod convert;
pub mod cooling;
pub mod deadline;
pub mod dispatch;
pub mod error;
pub mod extras;
pub mod forecast;
pub mod front;
#[cfg(test)]
mod fuzz;
pub mod gateway;
pub mod healthcheck;
pub mod httpd;
pub mod limits;
pub mod metrics;
pub mod mock_server;
pub mod openai;
pub mod rest;
pub mod retry;
pub mod router;
pub mod rpclog;
pub mod server;
pub mod service;
pub mod shared;
pub mod telemetry;
pub mod tls;
pub mod trailers;
pub mod upstream;
pub mod usage;

/// Generated code for `proto/ai_service.proto`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("holysheepai");

    /// The encoded file descriptor set, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("ai_service_descriptor");
}
