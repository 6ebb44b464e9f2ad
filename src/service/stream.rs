//! `StreamGenerate`: one completion, streamed as it is generated.

use std::sync::Arc;

use tokio::{sync::mpsc, time::Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{
    relay::{self, Limits, STREAM_BUFFER},
    Start,
};
use crate::{
    dispatch::{dispatch, Answer, Call},
    error::GatewayError,
    gateway::Gateway,
    proto::{StreamChunk, StreamGenerateRequest},
    rpclog::RpcLog,
};

pub async fn handle(
    gw: Arc<Gateway>,
    request: Request<StreamGenerateRequest>,
) -> Result<Response<ReceiverStream<Result<StreamChunk, Status>>>, Status> {
    let start = Start::read(&request)?;
    let req = request.into_inner();
    let mut log = RpcLog::new("StreamGenerate", &start.who.name, &start.request_id);
    let started = Instant::now();
    // Everything up to the first delta happens before the response starts, so a refused or failed request
    // gets its own status (and retries) rather than an empty stream.
    let opened = async {
        let model = gw.check(&start.who, &req.model, &req.messages, req.config.as_ref())?;
        log.model(&model.name);
        let mut admission = gw.admit(&start.who, model, &req.messages, req.config.as_ref())?;
        let deadline = start.deadline(model);
        let call = Call {
            messages: &req.messages,
            config: req.config.as_ref(),
            deadline,
            request_id: &start.request_id,
        };
        let dispatched = dispatch(&gw, model, &call, true)
            .await
            .inspect_err(|_| admission.release())?;
        log.upstream(
            dispatched.route.route().upstream.name(),
            dispatched.attempts,
        );
        Ok((dispatched, admission, deadline, model.policy.stream))
    }
    .await;
    let (dispatched, mut admission, deadline, stream_limits) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            log.finish(Err(&e));
            return Err(start.fail(e));
        }
    };
    let Answer::Stream { first, mut rest } = dispatched.answer else {
        return Err(start.fail(GatewayError::Internal("a unary answer to a stream".into())));
    };
    let route = dispatched.route;
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let request_id = start.request_id.clone();
    tokio::spawn(async move {
        let limits = Limits {
            deadline,
            stream: stream_limits,
            started,
            upstream: route.route().upstream.name(),
            stop: &gw.lifecycle.stop,
            cancel: None,
        };
        let wrap = |delta| StreamChunk {
            delta,
            ..StreamChunk::default()
        };
        let result = match relay::pump(first, &mut rest, &tx, wrap, &limits).await {
            Ok(end) => {
                log.add_usage(end.usage.as_ref());
                if let Some(usage) = &end.usage {
                    admission.reconcile(usage.total_tokens.max(0) as u64);
                }
                let last = StreamChunk {
                    delta: String::new(),
                    is_complete: true,
                    usage: end.usage,
                    finish_reason: end.finish_reason,
                    id: end.id,
                };
                relay::send(&tx, Ok(last), &limits).await
            }
            Err(e) => Err(e),
        };
        // The stream is over: drop the upstream and give back the concurrency slots before anything can wait.
        drop(rest);
        drop(admission);
        if let Err(e) = &result {
            if let Some(ok) = e.route_health() {
                route.route().breaker.record(Instant::now(), ok);
            }
            relay::send_error(&tx, super::tag(Status::from(e.clone()), &request_id)).await;
        }
        log.finish(result.as_ref().map(|_| ()));
    });
    Ok(start.respond(ReceiverStream::new(rx)))
}
