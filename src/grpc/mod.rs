//! The gRPC door: the AIService's RPCs as calls of the call layer ([`crate::call`]): the interceptor
//! authenticates, each handler reads its metadata and message into a call, and writes the call's reply or
//! failure as gRPC's response or status. `InteractiveStream`, a session of turns, is gRPC's alone.

pub(crate) mod codec;
mod interactive;

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{metadata::MetadataMap, Request, Response, Status};

use crate::{
    admission::auth::Identity,
    call::{
        self,
        start::{Failure, Outcome, Start},
    },
    core::gateway::Gateway,
    error::GatewayError,
    proto::{
        ai_service_server::{AiService, AiServiceServer},
        EmbedRequest, EmbedResponse, GenerateRequest, GenerateResponse, InteractiveRequest,
        InteractiveResponse, StreamChunk, StreamGenerateRequest,
    },
    transport::trailers::TrailerSlot,
};

pub(crate) struct AiGateway {
    gateway: Arc<Gateway>,
}

/// The AIService with authentication in front: a cheap synchronous check, so a tonic interceptor. It puts
/// the caller's [`Identity`] into the request extensions for the handler.
pub(crate) fn service(
    gateway: Arc<Gateway>,
) -> tonic::service::interceptor::InterceptedService<
    AiServiceServer<AiGateway>,
    impl tonic::service::Interceptor + Clone,
> {
    let auth = gateway.clone();
    let interceptor = move |mut req: Request<()>| {
        let authorization = req.metadata().get("authorization");
        let who = call::start::authenticate(&auth, authorization.map(|v| v.as_bytes()))?;
        req.extensions_mut().insert(who);
        Ok(req)
    };
    AiServiceServer::with_interceptor(AiGateway { gateway }, interceptor)
}

/// A call's [`Start`] from its metadata, and its message: the caller the interceptor attached, the trailers'
/// slot the server's layer attached.
fn read<T>(request: Request<T>) -> Result<(Start, T), Status> {
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
fn status(failure: Failure) -> Status {
    let extra = failure.headers();
    let mut status = Status::from(failure.error);
    let mut headers = std::mem::take(status.metadata_mut()).into_headers();
    headers.extend(extra);
    *status.metadata_mut() = MetadataMap::from_headers(headers);
    status
}

/// A whole call's outcome as gRPC answers it.
fn respond<T>(outcome: Outcome<T>) -> Result<Response<T>, Status> {
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

impl Stream for Chunks {
    type Item = Result<StreamChunk, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        Pin::new(&mut this.chunks).poll_next(cx).map(|item| {
            item.map(|chunk| chunk.map_err(|e| status(Failure::new(e, &this.request_id))))
        })
    }
}

#[tonic::async_trait]
impl AiService for AiGateway {
    async fn generate(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<GenerateResponse>, Status> {
        let (start, req) = read(request)?;
        respond(call::generate::generate(self.gateway.clone(), "Generate", start, req).await)
    }

    type StreamGenerateStream = Chunks;

    async fn stream_generate(
        &self,
        request: Request<StreamGenerateRequest>,
    ) -> Result<Response<Self::StreamGenerateStream>, Status> {
        let (start, req) = read(request)?;
        let request_id = start.request_id.clone();
        let outcome =
            call::stream::stream(self.gateway.clone(), "StreamGenerate", start, req).await;
        respond(outcome.map(|reply| call::start::Reply {
            value: Chunks {
                chunks: reply.value,
                request_id,
            },
            headers: reply.headers,
        }))
    }

    type InteractiveStreamStream = ReceiverStream<Result<InteractiveResponse, Status>>;

    async fn interactive_stream(
        &self,
        request: Request<tonic::Streaming<InteractiveRequest>>,
    ) -> Result<Response<Self::InteractiveStreamStream>, Status> {
        interactive::handle(self.gateway.clone(), request).await
    }

    async fn embed(
        &self,
        request: Request<EmbedRequest>,
    ) -> Result<Response<EmbedResponse>, Status> {
        let (start, req) = read(request)?;
        respond(call::embed::embed(self.gateway.clone(), "Embed", start, req).await)
    }
}
