//! The transport layer: the one accept loop for every listener, TLS, HTTP/1.1 and HTTP/2, the three doors on
//! the gRPC port (gRPC, gRPC-Web, OpenAI REST) and the trailers every gRPC answer carries. `server` builds the
//! stack and documents its order.

pub mod accept;
pub mod front;
pub mod httpd;
pub mod server;
pub mod tls;
pub mod trailers;
