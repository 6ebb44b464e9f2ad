//! `StreamGenerate`: one completion, streamed as it is generated.

use std::sync::Arc;

use tokio::{sync::mpsc, time::Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{
    identity,
    relay::{self, Limits, STREAM_BUFFER},
};
use crate::{
    deadline::{self, Deadline},
    gateway::Gateway,
    proto::{StreamChunk, StreamGenerateRequest},
    rpclog::RpcLog,
};

pub async fn handle(
    gw: Arc<Gateway>,
    request: Request<StreamGenerateRequest>,
) -> Result<Response<ReceiverStream<Result<StreamChunk, Status>>>, Status> {
    let who = identity(&request)?;
    let client_timeout = deadline::client_timeout(request.metadata());
    let req = request.into_inner();
    let mut log = RpcLog::new("StreamGenerate", &who.name);
    // The upstream's status is known before the response starts, so a refused request gets its own status
    // and not an empty stream.
    let opened = async {
        let model = gw.check(&who, &req.model, &req.messages, req.config.as_ref())?;
        let route = model.primary()?;
        log.route(&model.name, route.upstream.name());
        let deadline = Deadline::new(
            Instant::now(),
            client_timeout,
            route.upstream.request_timeout(),
        );
        let stream = gw
            .open_stream(route, &req.messages, req.config.as_ref(), deadline)
            .await?;
        Ok((stream, deadline))
    }
    .await;
    let (mut stream, deadline) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            log.finish(Err(&e));
            return Err(e.into());
        }
    };
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let limits = Limits {
            deadline,
            stop: &gw.lifecycle.stop,
            cancel: None,
        };
        let wrap = |delta| StreamChunk {
            delta,
            ..StreamChunk::default()
        };
        let result = match relay::pump(&mut stream, &tx, wrap, &limits).await {
            Ok(end) => {
                log.add_usage(end.usage.as_ref());
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
        // Drop the upstream before anything else can wait.
        drop(stream);
        if let Err(e) = &result {
            relay::send_error(&tx, e).await;
        }
        log.finish(result.as_ref().map(|_| ()));
    });
    Ok(Response::new(ReceiverStream::new(rx)))
}
