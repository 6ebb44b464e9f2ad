//! The operator-facing sections: `[admin]`, `[scaling]`, `[tracing]`.

use std::{net::SocketAddr, time::Duration};

use serde::Deserialize;

use super::duration;

/// OpenTelemetry trace export.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// OTLP/HTTP traces endpoint, e.g. "http://otel-collector:4318/v1/traces"; export is off without it.
    pub otlp_endpoint: Option<String>,
    #[serde(default = "defaults::service_name")]
    pub service_name: String,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            otlp_endpoint: None,
            service_name: defaults::service_name(),
        }
    }
}

/// The scaling signal: what one replica can take, and how far ahead to look.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingConfig {
    /// Requests per minute one replica serves comfortably (measure it: see the benchmarks).
    #[serde(default = "defaults::capacity")]
    pub capacity_rpm_per_replica: f64,
    /// Spare capacity on top of the forecast peak (0.2 = 20 %).
    #[serde(default = "defaults::headroom")]
    pub headroom: f64,
    /// How far ahead the forecast peak is taken: about the time a new replica needs to become ready.
    #[serde(default = "defaults::horizon", deserialize_with = "duration")]
    pub(crate) horizon: Duration,
    #[serde(default = "defaults::min_replicas")]
    pub(crate) min_replicas: u32,
    #[serde(default = "defaults::max_replicas")]
    pub(crate) max_replicas: u32,
}

impl Default for ScalingConfig {
    fn default() -> Self {
        ScalingConfig {
            capacity_rpm_per_replica: defaults::capacity(),
            headroom: defaults::headroom(),
            horizon: defaults::horizon(),
            min_replicas: defaults::min_replicas(),
            max_replicas: defaults::max_replicas(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    #[serde(default = "defaults::admin_listen")]
    pub(crate) listen: SocketAddr,
    pub(crate) key_env: Option<String>,
    #[serde(default = "defaults::admin_max_connections")]
    pub(crate) max_connections: usize,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: defaults::admin_listen(),
            key_env: None,
            max_connections: defaults::admin_max_connections(),
        }
    }
}

mod defaults {
    use std::time::Duration;

    pub(crate) fn admin_max_connections() -> usize {
        256
    }

    pub(crate) fn service_name() -> String {
        "aigw".into()
    }
    /// From BENCHMARKS.md: a 2-core replica relays about 157,000 chunks per CPU-second; at half its CPU and
    /// ~500 streamed tokens a call that is ~314 calls a second, ~18,000 a minute. Unary calls go further
    /// (2,000 a second with a p99 in-gateway overhead under 60 µs).
    pub(crate) fn capacity() -> f64 {
        18000.0
    }
    pub(crate) fn headroom() -> f64 {
        0.2
    }
    pub(crate) fn horizon() -> Duration {
        Duration::from_secs(15 * 60)
    }
    pub(crate) fn min_replicas() -> u32 {
        1
    }
    pub(crate) fn max_replicas() -> u32 {
        100
    }
    pub(crate) fn admin_listen() -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], 9090))
    }
}
