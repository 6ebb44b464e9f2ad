//! The gateway's core: its state and the handles handlers get (`gateway`), the per-call record (`call_record`: log
//! line, metrics, usage, trailers), and the response cache.

pub(crate) mod cache;
pub(crate) mod call_record;
pub(crate) mod catalog;
pub(crate) mod conversations;
pub mod gateway;
pub(crate) mod key_changes;
pub(crate) mod memory;
pub mod reload;
