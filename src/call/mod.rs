//! The call layer: one call, whichever door it came in by. A door (gRPC, the REST doors, gRPC-Web through
//! the gRPC one) authenticates the caller, reads the call's headers into a `Start` and its body into
//! a `request::Request`, and hands both here; the call is checked, admitted, looked up in the cache,
//! dispatched, relayed and recorded, and comes back as a `Reply` (the answer, or a stream of chunks,
//! with its response headers) or a `Failure` (the error with its headers) for the door to write in its
//! own shape. Nothing here knows a door's types.

pub(crate) mod ask;
pub(crate) mod checks;
pub(crate) mod embed;
pub(crate) mod generate;
mod open;
pub(crate) mod relay;
pub(crate) mod request;
pub(crate) mod start;
pub(crate) mod stream;
