//! The admin HTTP listener, on its own address (default 127.0.0.1:9090):
//!
//! | path | what |
//! |---|---|
//! | `GET /metrics` | Prometheus text format |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 while serving; 503 once draining (take the replica out of the load balancer) |
//! | `GET /v1/usage` | per key and per model: requests and tokens in the last minute, today's tokens and cost, limits |
//! | `GET /v1/scaling` | requests last minute, the forecast peak over the horizon, recommended replicas |
//! | `POST /v1/reload` | reads the config file again (as `SIGHUP` does): models, routes, keys, limits, TLS certificate |
//! | `/v1/keys...` | keys made, listed, rotated and revoked at run time, and limits changed (`keys.rs`) |
//! | `GET /dashboard` | the live dashboard (`dashboard.rs`), with `GET /dashboard/data` and `POST /dashboard/chat` |
//!
//! The `/v1` routes need `authorization: Bearer <admin key>` (config `admin.key_env`); without a configured
//! key they answer 404. Probes and metrics are open: keep the listener on a private address.

mod dashboard;
mod keys;
mod listen;
mod routes;
mod throttle;

pub(crate) use listen::serve;
use routes::{json, BODY_LIMIT};
pub(crate) use routes::{Admin, RestDoor};
