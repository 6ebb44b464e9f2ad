//! The gateway's core: its state and the handles handlers get (`gateway`), a call's deadline, and the
//! response cache.

pub mod cache;
pub mod deadline;
pub mod gateway;
