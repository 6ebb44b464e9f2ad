//! `Generate`: one whole completion.

use tokio::time::Instant;
use tonic::{Request, Response, Status};

use super::identity;
use crate::{
    deadline::{self, Deadline},
    gateway::Gateway,
    proto::{GenerateRequest, GenerateResponse},
    rpclog::RpcLog,
};

pub async fn handle(
    gw: &Gateway,
    request: Request<GenerateRequest>,
) -> Result<Response<GenerateResponse>, Status> {
    let who = identity(&request)?;
    let client_timeout = deadline::client_timeout(request.metadata());
    let req = request.into_inner();
    let mut log = RpcLog::new("Generate", &who.name);
    let result = async {
        let model = gw.check(&who, &req.model, &req.messages, req.config.as_ref())?;
        let route = model.primary()?;
        log.route(&model.name, route.upstream.name());
        let deadline = Deadline::new(
            Instant::now(),
            client_timeout,
            route.upstream.request_timeout(),
        );
        let done = gw
            .complete(route, &req.messages, req.config.as_ref(), deadline)
            .await?;
        Ok(GenerateResponse {
            content: done.content,
            model: if done.model.is_empty() {
                model.name.clone()
            } else {
                done.model
            },
            usage: done.usage,
            finish_reason: done.finish_reason,
            id: done.id,
        })
    }
    .await;
    match result {
        Ok(resp) => {
            log.add_usage(resp.usage.as_ref());
            log.finish(Ok(()));
            Ok(Response::new(resp))
        }
        Err(e) => {
            log.finish(Err(&e));
            Err(e.into())
        }
    }
}
