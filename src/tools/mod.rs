//! Tools shipped in the binary: the load generator (`bench`), the OpenAI-compatible mock upstream with its
//! fault injection (`mock_server`, `chaos`), and the container health check.

pub mod admin_cli;
pub mod bench;
pub mod chaos;
pub mod chat;
pub mod healthcheck;
pub mod mock_server;
