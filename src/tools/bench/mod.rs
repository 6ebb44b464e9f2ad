//! `aigw bench`: a load generator for the gateway (gRPC) and for OpenAI-style endpoints (REST), so one tool
//! measures both sides of a comparison with the same workload.
//!
//! Two ways to load: a closed loop keeps `concurrency` calls in flight, each starting when the last ended; an
//! open loop starts calls at a fixed rate whatever happens to earlier ones, and measures each from its slot in
//! the schedule, so time a call waits behind a slow one shows in the latency instead of being hidden
//! ("coordinated omission"). Every run is bounded by a duration and optionally a call count.

mod client;
mod plot;
mod record;
mod run;

pub use client::{Rpc, Target, Workload};
pub use plot::svg;
pub use record::{Outcome, Progress, Recorder, Report, Second, Setup, Status, Summary};
pub use run::{run, Load, Options, Protocol};
