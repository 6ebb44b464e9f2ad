//! The one runner between every REST door and the call layer.

use std::sync::Arc;

use http::{HeaderMap, Response};
use tonic::body::Body;

use super::{events::relay, StreamWriter};
use crate::{
    admission::auth::Identity,
    call::{
        self,
        request::Request,
        start::{Failure, Outcome, Reply, Start},
    },
    core::gateway::Gateway,
    proto::GenerateResponse,
    transport::standing::Style,
    transport::trailers::TrailerSlot,
};

/// An authenticated REST call on its way into the call layer: the one runner between every REST door and
/// [`crate::call`]. A door parses its body into the call's request, and says how to write the reply and a failure.
pub(crate) struct Caller {
    pub(super) gw: Arc<Gateway>,
    pub(super) who: Arc<Identity>,
    /// The request's headers: `x-request-id` (set by `serve`), `cache-control`, trace context, API headers.
    pub(super) headers: HeaderMap,
    /// The door's names for the rate-limit headers.
    pub(super) style: Style,
}

impl Caller {
    /// A whole chat answer, written by `answer`; a failure, by `failed`.
    pub(super) async fn generate(
        self,
        rpc: &'static str,
        req: Request,
        answer: impl FnOnce(Reply<GenerateResponse>) -> Response<Body>,
        failed: fn(&Failure) -> Response<Body>,
    ) -> Response<Body> {
        let run = |gw, start| call::generate::generate(gw, rpc, start, req);
        self.whole(run, answer, failed).await
    }

    /// A whole answer from `run`, written by `answer`, or its failure by `failed`. The overhead and cost, which
    /// gRPC sends as trailers, go out as headers.
    pub(super) async fn whole<T, F>(
        self,
        run: impl FnOnce(Arc<Gateway>, Start) -> F,
        answer: impl FnOnce(Reply<T>) -> Response<Body>,
        failed: fn(&Failure) -> Response<Body>,
    ) -> Response<Body>
    where
        F: std::future::Future<Output = Outcome<T>>,
    {
        let slot = Arc::new(TrailerSlot::default());
        let start = Start::read(&self.headers, self.who, Some(slot.clone()));
        let mut resp = match run(self.gw, start).await {
            Ok(reply) => answer(reply),
            Err(failure) => failed(&failure),
        };
        slot.apply_as(resp.headers_mut(), self.style);
        resp
    }

    /// A streamed chat answer as the events of the writer `writer` makes (from the reply's headers), or the
    /// failure before it started, written by `failed`.
    pub(super) async fn stream<W: StreamWriter>(
        self,
        rpc: &'static str,
        req: Request,
        writer: impl FnOnce(&HeaderMap) -> W,
        failed: fn(&Failure) -> Response<Body>,
    ) -> Response<Body> {
        let start = Start::read(&self.headers, self.who, None);
        let standing = start.standing();
        match call::stream::stream(self.gw, rpc, start, req).await {
            Ok(mut reply) => {
                if let Some(standing) = standing.get() {
                    standing.write(&mut reply.headers, self.style);
                }
                let writer = writer(&reply.headers);
                relay(reply, writer)
            }
            Err(failure) => failed(&failure),
        }
    }
}
