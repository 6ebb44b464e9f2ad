//! What the gateway tells its operators: the per-call record (`rpclog`: the log line, metrics, trailers), the
//! Prometheus metrics, traces (`telemetry`), the usage book, and the load forecast behind the scaling signal.

pub mod forecast;
pub mod metrics;
pub mod rpclog;
pub mod telemetry;
pub mod usage;
