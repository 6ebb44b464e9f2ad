//! Routing: models to routes (`router`), and one call across them (`dispatch`) within its deadline
//! (`deadline`): retries and their timing (`retry`), circuit breakers (`breaker`), rate-limit cooling
//! (`cooling`).

pub mod breaker;
pub mod cooling;
pub mod deadline;
pub mod dispatch;
pub mod retry;
pub mod router;
