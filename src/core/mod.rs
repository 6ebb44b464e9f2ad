//! The gateway's core: its state and the handles handlers get (`gateway`), the per-call record (`rpclog`: log
//! line, metrics, usage, trailers), and the response cache.

pub(crate) mod cache;
pub mod gateway;
pub(crate) mod rpclog;
