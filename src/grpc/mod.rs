//! The gRPC door: the AIService's RPCs as calls of the call layer ([`crate::call`]): the interceptor
//! authenticates, each handler reads its metadata and message into a call, and writes the call's reply or
//! failure as gRPC's response or status. `InteractiveStream`, a session of turns, is gRPC's alone.

mod adapt;
pub(crate) mod codec;
mod interactive;
mod service;

pub(crate) use service::service;
