//! The operator-facing sections: `[admin]`, `[scaling]`, `[tracing]`.

use std::{net::SocketAddr, time::Duration};

use serde::Deserialize;

use super::duration;

/// `[usage_records]`: one JSON line per call, for billing and audit.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageRecordsConfig {
    /// The JSON-lines file; with `otlp_endpoint` alone, no file.
    pub(crate) path: Option<std::path::PathBuf>,
    /// OTLP/HTTP logs endpoint (e.g. `http://collector:4318/v1/logs`): each record is also exported as a log
    /// record.
    pub(crate) otlp_endpoint: Option<String>,
    /// The file rotates past this size.
    #[serde(default = "defaults::records_max_bytes")]
    pub(crate) max_bytes: u64,
    /// Rotated files kept (`path.1` ... `path.N`).
    #[serde(default = "defaults::records_keep")]
    pub(crate) keep: usize,
}

/// OpenTelemetry trace export.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// OTLP/HTTP traces endpoint, e.g. "http://otel-collector:4318/v1/traces". Without it, export follows the
    /// standard OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT variables, and is off when neither is set.
    pub otlp_endpoint: Option<String>,
    /// `service.name`; else OTEL_SERVICE_NAME; else "aigw".
    pub service_name: Option<String>,
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
    /// The key's SHA-256 in hex (`aigw hash-key`), instead of `key_env`.
    pub(crate) key_sha256: Option<String>,
    #[serde(default = "defaults::admin_max_connections")]
    pub(crate) max_connections: usize,
    /// Where keys created through the admin API (and run-time limits) are kept across restarts.
    pub(crate) state_file: Option<std::path::PathBuf>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: defaults::admin_listen(),
            key_env: None,
            key_sha256: None,
            state_file: None,
            max_connections: defaults::admin_max_connections(),
        }
    }
}

mod defaults {
    use std::time::Duration;

    pub(crate) fn records_max_bytes() -> u64 {
        100 * 1024 * 1024
    }

    pub(crate) fn records_keep() -> usize {
        5
    }

    pub(crate) fn admin_max_connections() -> usize {
        256
    }

    /// From BENCHMARKS.md: half of what a 2-core replica relays at half its CPU with ~500 streamed tokens a
    /// call (about 36,000 a minute in the 2026-11-30 run), as the VM's speed moves from run to run.
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
