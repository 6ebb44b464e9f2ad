//! The transport layer: the one accept loop for every listener (`accept`, and `httpd` for plain handlers),
//! TLS, the trailers every gRPC answer carries, and the rate-limit standing answers tell (`standing`).
//! `crate::server` builds the stack on it and documents its order; `crate::doors` picks the door for each
//! request.

pub(crate) mod accept;
pub(crate) mod httpd;
pub(crate) mod standing;
pub(crate) mod tls;
pub(crate) mod trailers;
