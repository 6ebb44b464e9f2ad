//! What the gateway tells its operators: where a call's time went (`timing`), the Prometheus metrics, traces
//! (`telemetry`) and the load forecast behind the scaling signal. The per-call record that
//! writes them is `core::rpclog`.

pub mod forecast;
pub mod metrics;
pub mod telemetry;
pub mod timing;
