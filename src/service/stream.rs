//! `StreamGenerate`: one completion, streamed as it is generated.

use std::sync::Arc;

use tokio::{sync::mpsc, time::Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::{
    relay::{self, Limits, STREAM_BUFFER},
    Start,
};
use crate::{
    convert,
    dispatch::{dispatch, Answer, Call},
    error::GatewayError,
    gateway::Gateway,
    proto::{StreamChunk, StreamGenerateRequest},
};

pub async fn handle(
    gw: Arc<Gateway>,
    request: Request<StreamGenerateRequest>,
) -> Result<Response<ReceiverStream<Result<StreamChunk, Status>>>, Status> {
    let start = Start::read(&request)?;
    let req = request.into_inner();
    let mut log = start.record("StreamGenerate", &gw);
    let span = start.span("StreamGenerate");
    let started = Instant::now();
    // Everything up to the first delta happens before the response starts, so a refused or failed request
    // gets its own status (and retries) rather than an empty stream.
    let opened = async {
        let model = gw.check(&start.who, &req.model, &req.messages, req.config.as_ref())?;
        log.model(model);
        let mut admission = gw.admit(&start.who, model, &req.messages, req.config.as_ref())?;
        let deadline = start.deadline(model);
        let call = Call {
            messages: &req.messages,
            config: req.config.as_ref(),
            deadline,
            request_id: &start.request_id,
        };
        let dispatched = dispatch(&gw, model, &call, true, &mut log.timing.upstream)
            .await
            .inspect_err(|_| admission.release())?;
        log.upstream(
            dispatched.route.route().upstream.name(),
            dispatched.attempts,
        );
        Ok((dispatched, admission, deadline, model.policy.stream))
    }
    .instrument(span.clone())
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
    let messages = req.messages;
    tokio::spawn(
        async move {
            let limits = Limits {
                deadline,
                stream: stream_limits,
                started,
                upstream: route.route().upstream.name(),
                stop: &gw.lifecycle.stop,
                cancel: None,
            };
            let mut delivered = 0;
            let wrap = |delta: String| {
                delivered += delta.len();
                StreamChunk {
                    delta,
                    ..StreamChunk::default()
                }
            };
            let pumped = relay::pump(first, &mut rest, &tx, wrap, &limits, &mut log.timing).await;
            // The stream is over upstream: drop it before anything can wait.
            drop(rest);
            // Charged: the provider's usage; without it, or when the stream broke or the client left, the prompt and
            // what was delivered, counted by the gateway.
            let (usage, estimated) = match &pumped {
                Ok(end) if end.usage.is_some() => (end.usage.unwrap_or_default(), false),
                _ => (convert::estimate_usage(&messages, delivered), true),
            };
            admission.reconcile(usage.total_tokens.max(0) as u64);
            drop(admission); // the concurrency slot is free as soon as the stream is
            log.add_usage(Some(&usage), estimated);
            let result = match pumped {
                Ok(end) => {
                    let last = StreamChunk {
                        delta: String::new(),
                        is_complete: true,
                        usage: Some(usage),
                        finish_reason: end.finish_reason,
                        id: end.id,
                        usage_estimated: estimated,
                    };
                    relay::send(&tx, Ok(last), &limits).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = &result {
                route.route().report(Err(e));
                let status = super::tag(Status::from(e.clone()), &request_id);
                relay::send_final(&tx, Err(status)).await;
            }
            log.finish(result.as_ref().map(|_| ()));
        }
        .instrument(span),
    );
    Ok(start.respond(ReceiverStream::new(rx)))
}
