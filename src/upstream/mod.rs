//! Upstreams: where a routed request goes. One value per configured upstream, built once at start
//! (`configured`); what any of them answers (`answer`), whichever dialect it speaks.

pub mod answer;
pub mod anthropic;
pub mod api_headers;
mod aws_auth;
pub mod bedrock;
pub(crate) mod configured;
pub(crate) mod dialect;
pub mod event_stream;
pub mod gemini;
mod google_auth;
pub mod http;
pub(crate) mod mock;
pub mod openai;
pub mod pass_through;
pub(crate) mod read;
pub(crate) mod reasoning;
pub mod responses;
pub(crate) mod retry_after;
#[cfg(test)]
pub(crate) mod scripted;
pub mod sse;
pub(crate) mod tracecontext;
pub(crate) mod utf16;
