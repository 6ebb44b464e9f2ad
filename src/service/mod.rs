//! The three RPC handlers: decode, check, call the core, encode. Thin on purpose.

mod generate;
mod interactive;
mod relay;
mod stream;

use std::sync::Arc;

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::{
    auth::Identity,
    gateway::Gateway,
    proto::{
        ai_service_server::{AiService, AiServiceServer},
        GenerateRequest, GenerateResponse, InteractiveRequest, InteractiveResponse, StreamChunk,
        StreamGenerateRequest,
    },
};

pub struct AiGateway {
    gateway: Arc<Gateway>,
}

/// The AIService with authentication in front: a cheap synchronous check, so a tonic interceptor. It puts
/// the caller's [`Identity`] into the request extensions for the handler.
pub fn service(
    gateway: Arc<Gateway>,
) -> tonic::service::interceptor::InterceptedService<
    AiServiceServer<AiGateway>,
    impl tonic::service::Interceptor + Clone,
> {
    let auth = gateway.clone();
    let interceptor = move |mut req: Request<()>| match auth.keys.authenticate(req.metadata()) {
        Ok(who) => {
            req.extensions_mut().insert(who);
            Ok(req)
        }
        Err(e) => {
            tracing::info!(target: "aigw::rpc", code = ?e.code(), error = e.label(), "rejected before the handler");
            Err(Status::from(e))
        }
    };
    AiServiceServer::with_interceptor(AiGateway { gateway }, interceptor)
}

/// The identity the interceptor attached.
fn identity<T>(req: &Request<T>) -> Result<Arc<Identity>, Status> {
    req.extensions()
        .get::<Arc<Identity>>()
        .cloned()
        .ok_or_else(|| Status::internal("request not authenticated"))
}

#[tonic::async_trait]
impl AiService for AiGateway {
    async fn generate(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<GenerateResponse>, Status> {
        generate::handle(&self.gateway, request).await
    }

    type StreamGenerateStream = ReceiverStream<Result<StreamChunk, Status>>;

    async fn stream_generate(
        &self,
        request: Request<StreamGenerateRequest>,
    ) -> Result<Response<Self::StreamGenerateStream>, Status> {
        stream::handle(self.gateway.clone(), request).await
    }

    type InteractiveStreamStream = ReceiverStream<Result<InteractiveResponse, Status>>;

    async fn interactive_stream(
        &self,
        request: Request<tonic::Streaming<InteractiveRequest>>,
    ) -> Result<Response<Self::InteractiveStreamStream>, Status> {
        interactive::handle(self.gateway.clone(), request).await
    }
}
