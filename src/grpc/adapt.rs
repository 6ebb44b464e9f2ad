//! A call's way in from gRPC and its way back: its `Start` from the request's metadata, a reply as a response,
//! a failure as a status (with the failure's headers as metadata), a stream's chunks with its error as the
//! stream's status.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio_stream::Stream;
use tonic::{metadata::MetadataMap, Request, Response, Status};

use crate::{
    admission::auth::Identity,
    call::{
        self,
        start::{Failure, Outcome, Start},
    },
    error::GatewayError,
    proto::StreamChunk,
    transport::trailers::TrailerSlot,
};

/// A call's [`Start`] from its metadata, and its message: the caller the interceptor attached, the trailers'
/// slot the server's layer attached.
pub(super) fn read<T>(request: Request<T>) -> Result<(Start, T), Status> {
    let (metadata, extensions, message) = request.into_parts();
    let headers = metadata.into_headers();
    let Some(who) = extensions.get::<Arc<Identity>>().cloned() else {
        let request_id = call::start::request_id(None);
        return Err(status(Failure::new(
            GatewayError::Internal("request not authenticated".into()),
            &request_id,
        )));
    };
    let trailers = extensions.get::<Arc<TrailerSlot>>().cloned();
    Ok((Start::read(&headers, who, trailers), message))
}

/// A failure as a gRPC status: its code, message and retry advice, with the failure's headers as metadata.
pub(super) fn status(failure: Failure) -> Status {
    let extra = failure.headers();
    let mut status = Status::from(failure.error);
    let mut headers = std::mem::take(status.metadata_mut()).into_headers();
    headers.extend(extra);
    *status.metadata_mut() = MetadataMap::from_headers(headers);
    status
}

/// A whole call's outcome as gRPC answers it.
pub(super) fn respond<T>(outcome: Outcome<T>) -> Result<Response<T>, Status> {
    let reply = outcome.map_err(status)?;
    Ok(Response::from_parts(
        MetadataMap::from_headers(reply.headers),
        reply.value,
        http::Extensions::new(),
    ))
}

/// A stream's chunks as gRPC sends them: an error that ends the stream becomes its status, tagged with the
/// request id.
pub(crate) struct Chunks {
    chunks: call::stream::Chunks,
    request_id: String,
}

impl Chunks {
    pub(super) fn new(chunks: call::stream::Chunks, request_id: String) -> Chunks {
        Chunks { chunks, request_id }
    }
}

impl Stream for Chunks {
    type Item = Result<StreamChunk, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        Pin::new(&mut this.chunks).poll_next(cx).map(|item| {
            item.map(|chunk| chunk.map_err(|e| status(Failure::new(e, &this.request_id))))
        })
    }
}
