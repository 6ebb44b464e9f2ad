//! `Generate`: one whole completion.

use tonic::{Request, Response, Status};

use super::Start;
use crate::{
    dispatch::{dispatch, Answer, Call},
    error::GatewayError,
    gateway::Gateway,
    proto::{GenerateRequest, GenerateResponse},
    rpclog::RpcLog,
};

pub async fn handle(
    gw: &Gateway,
    request: Request<GenerateRequest>,
) -> Result<Response<GenerateResponse>, Status> {
    let start = Start::read(&request)?;
    let req = request.into_inner();
    let mut log = RpcLog::new("Generate", &start.who.name, &start.request_id);
    let result = async {
        let model = gw.check(&start.who, &req.model, &req.messages, req.config.as_ref())?;
        log.model(&model.name);
        let mut admission = gw.admit(&start.who, model, &req.messages, req.config.as_ref())?;
        let call = Call {
            messages: &req.messages,
            config: req.config.as_ref(),
            deadline: start.deadline(model),
            request_id: &start.request_id,
        };
        let dispatched = dispatch(gw, model, &call, false)
            .await
            .inspect_err(|_| admission.release())?;
        log.upstream(
            dispatched.route.route().upstream.name(),
            dispatched.attempts,
        );
        let Answer::Whole(done) = dispatched.answer else {
            return Err(GatewayError::Internal(
                "a stream answered a unary call".into(),
            ));
        };
        if let Some(usage) = &done.usage {
            admission.reconcile(usage.total_tokens.max(0) as u64);
        }
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
            Ok(start.respond(resp))
        }
        Err(e) => {
            log.finish(Err(&e));
            Err(start.fail(e))
        }
    }
}
