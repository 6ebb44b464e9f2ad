//! What the gateway tells its operators: where a call's time went (`timing`), the Prometheus metrics, traces
//! (`telemetry`) and the load forecast behind the scaling signal. The per-call record that
//! writes them is `core::call_record`.

pub mod charts;
pub(crate) mod forecast;
pub(crate) mod log_buffer;
pub(crate) mod log_line;
pub(crate) mod metrics;
pub(crate) mod tasks;
pub mod telemetry;
pub(crate) mod timing;
pub(crate) mod usage_records;
