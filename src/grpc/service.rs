//! The AIService: the interceptor that authenticates, and each RPC read from its metadata and message into a
//! call of the call layer, its reply written back as gRPC's response and its failure as a status.

use std::sync::Arc;

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::{
    call::{self},
    core::gateway::Gateway,
    proto::{
        ai_service_server::{AiService, AiServiceServer},
        EmbedRequest, EmbedResponse, GenerateRequest, GenerateResponse, InteractiveRequest,
        InteractiveResponse, StreamGenerateRequest,
    },
};

use super::adapt::{read, respond, Chunks};

pub(crate) struct AiGateway {
    gateway: Arc<Gateway>,
}

/// The AIService with authentication in front: a cheap synchronous check, so a tonic interceptor. It puts
/// the caller's `Identity` into the request extensions for the handler.
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

#[tonic::async_trait]
impl AiService for AiGateway {
    async fn generate(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<GenerateResponse>, Status> {
        let (start, req) = read(request)?;
        respond(call::generate::generate(self.gateway.clone(), "Generate", start, req.into()).await)
    }

    type StreamGenerateStream = Chunks;

    async fn stream_generate(
        &self,
        request: Request<StreamGenerateRequest>,
    ) -> Result<Response<Self::StreamGenerateStream>, Status> {
        let (start, req) = read(request)?;
        let request_id = start.request_id.clone();
        let outcome =
            call::stream::stream(self.gateway.clone(), "StreamGenerate", start, req.into()).await;
        respond(outcome.map(|reply| call::start::Reply {
            value: Chunks::new(reply.value, request_id),
            headers: reply.headers,
        }))
    }

    type InteractiveStreamStream = ReceiverStream<Result<InteractiveResponse, Status>>;

    async fn interactive_stream(
        &self,
        request: Request<tonic::Streaming<InteractiveRequest>>,
    ) -> Result<Response<Self::InteractiveStreamStream>, Status> {
        super::interactive::handle(self.gateway.clone(), request).await
    }

    async fn embed(
        &self,
        request: Request<EmbedRequest>,
    ) -> Result<Response<EmbedResponse>, Status> {
        let (start, req) = read(request)?;
        respond(call::embed::embed(self.gateway.clone(), "Embed", start, req).await)
    }
}
