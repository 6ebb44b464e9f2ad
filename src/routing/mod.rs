//! Routing: models to routes (`router`), and one call across them (`dispatch`) within its deadline
//! (`deadline`): retries and their timing (`retry`), circuit breakers (`breaker`), rate-limit cooling
//! (`cooling`).

pub(crate) mod breaker;
pub(crate) mod cooling;
pub(crate) mod deadline;
pub(crate) mod dispatch;
pub(crate) mod retry;
pub(crate) mod router;
