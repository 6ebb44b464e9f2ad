//! The transport layer: the one accept loop for every listener (`accept`, and `httpd` for plain handlers),
//! TLS, and the trailers every gRPC answer carries. `crate::server` builds the stack on it and documents its
//! order; `crate::doors` picks the door for each request.

pub(crate) mod accept;
pub(crate) mod httpd;
pub(crate) mod tls;
pub(crate) mod trailers;
