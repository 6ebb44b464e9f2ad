//! `StreamGenerate`: one completion, streamed as it is generated.

use std::sync::Arc;

use tokio::{sync::mpsc, time::Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::{
    cache_header,
    pipeline::{self, Ask, Opened},
    relay::{self, Limits, STREAM_BUFFER},
    Start,
};
use crate::{
    admission::limits::Admission,
    core::cache,
    core::gateway::Gateway,
    core::rpclog::RpcLog,
    error::GatewayError,
    observe::telemetry,
    proto::Message,
    proto::{StreamChunk, StreamGenerateRequest},
    routing::deadline::Deadline,
    routing::router::Model,
    routing::{dispatch::Answer, router::RouteGuard},
    upstream::openai::convert,
    upstream::{ChunkStream, StreamEvent},
};

type Chunks = ReceiverStream<Result<StreamChunk, Status>>;

/// `rpc` names the call in logs and metrics: the gRPC method, or the REST door's.
pub(crate) async fn handle(
    gw: Arc<Gateway>,
    rpc: &'static str,
    request: Request<StreamGenerateRequest>,
) -> Result<Response<Chunks>, Status> {
    let start = Start::read(&request)?;
    let req = request.into_inner();
    let mut log = start.record(rpc, &gw);
    let span = start.span(rpc);
    telemetry::record_request(&span, &req.model, "chat");
    let started = Instant::now();
    // Everything up to the first delta happens before the response starts, so a refused or failed request
    // gets its own status (and retries) rather than an empty stream.
    let ask = Ask {
        model: &req.model,
        messages: &req.messages,
        config: req.config.as_ref(),
    };
    let opened = pipeline::open(&gw, &start, ask, true, &mut log)
        .instrument(span.clone())
        .await;
    let (dispatched, admission, deadline, model, plan) = match opened {
        Ok(Opened::Upstream {
            dispatched,
            admission,
            model,
            deadline,
            plan,
        }) => (dispatched, admission, deadline, model, plan),
        Ok(Opened::Hit {
            hit,
            admission,
            model,
            deadline,
        }) => {
            let rx = replay(gw, (hit, admission), model, deadline, started, log, span);
            return Ok(cache_header(start.respond(rx), Some("hit")));
        }
        Err(e) => {
            log.finish(Err(&e));
            return Err(start.fail(e));
        }
    };
    let Answer::Stream { first, rest } = dispatched.answer else {
        return Err(start.fail(GatewayError::Internal("a unary answer to a stream".into())));
    };
    let miss = plan.miss_label();
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let task = Relay {
        gw: gw.clone(),
        model,
        deadline,
        started,
        route: dispatched.route,
        first,
        rest,
        admission,
        plan,
        log,
        tx: tx.clone(),
        messages: req.messages,
        request_id: start.request_id.clone(),
        attempt: dispatched.span,
    };
    relay::spawn_guarded(gw.metrics.panics.clone(), tx, task.run().instrument(span));
    Ok(cache_header(start.respond(ReceiverStream::new(rx)), miss))
}

/// A started stream on its own task: relays the upstream's deltas, then the final chunk with the usage (or
/// ends with the error), reconciles the admission, books the usage, keeps a complete text answer in the
/// cache, and writes the call's record. The concurrency permit lives inside, so limits cover the whole stream.
struct Relay {
    gw: Arc<Gateway>,
    model: Arc<Model>,
    deadline: Deadline,
    started: Instant,
    /// Counted as in flight on its route until the stream ends.
    route: RouteGuard,
    first: StreamEvent,
    rest: ChunkStream,
    admission: Admission,
    plan: cache::Plan,
    log: RpcLog,
    tx: mpsc::Sender<Result<StreamChunk, Status>>,
    /// The prompt, for the usage estimate when the upstream sends none.
    messages: Vec<Message>,
    request_id: String,
    /// The answering attempt's span, open until the stream ends.
    attempt: tracing::Span,
}

impl Relay {
    async fn run(self) {
        let Relay {
            gw,
            model,
            deadline,
            started,
            route,
            first,
            mut rest,
            mut admission,
            plan,
            mut log,
            tx,
            messages,
            request_id,
            attempt,
        } = self;
        let limits = limits(
            &gw,
            &model,
            deadline,
            started,
            route.route().upstream.name(),
        );
        let mut delivered = 0;
        // The chunks, kept for the cache while the answer stays small enough to keep.
        let mut kept = plan.key().map(|_| Vec::new());
        let wrap = |delta: String| {
            delivered += delta.len();
            if kept.is_some() && !gw.cache.fits(delivered) {
                kept = None;
            }
            if let Some(chunks) = kept.as_mut() {
                chunks.push(delta.clone());
            }
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
            Ok(mut end) => {
                for span in [&tracing::Span::current(), &attempt] {
                    telemetry::record_answer(
                        span,
                        &end.id,
                        &end.model,
                        &end.finish_reason,
                        Some(&usage),
                    );
                }
                // Only text answers are kept: tool calls and logprobs are not replayed.
                let plain = end.tool_calls.is_empty() && end.logprobs.is_empty();
                let last = StreamChunk {
                    delta: String::new(),
                    is_complete: true,
                    usage: Some(usage),
                    finish_reason: end.finish_reason.clone(),
                    id: end.id.clone(),
                    usage_estimated: estimated,
                    tool_calls: std::mem::take(&mut end.tool_calls),
                    logprobs: std::mem::take(&mut end.logprobs),
                };
                let sent = relay::send(&tx, Ok(last), &limits).await;
                // Kept only once the client has the whole answer: a broken stream is never replayed.
                let keep = plain.then_some(kept).flatten();
                if let (Ok(()), Some(key), Some(chunks)) = (&sent, plan.key(), keep) {
                    let name = if end.model.is_empty() {
                        model.name.clone()
                    } else {
                        end.model
                    };
                    let entry = cache::Entry::new(
                        chunks,
                        end.id,
                        name,
                        end.finish_reason,
                        usage,
                        estimated,
                    );
                    gw.keep(&model, key, entry);
                }
                sent
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            attempt.record("error.type", e.label());
            route.route().report(Err(e));
            let status = super::tag(Status::from(e.clone()), &request_id);
            relay::send_final(&tx, Err(status)).await;
        }
        log.finish(result.as_ref().map(|_| ()));
    }
}

/// Answers from the cache: the kept chunks as they were streamed, then the final chunk with the kept usage and
/// finish reason, within the call's deadline and the server's lifecycle like any stream.
/// The hit comes with its admission, held (concurrency slots) until the replay ends like any stream's.
fn replay(
    gw: Arc<Gateway>,
    (hit, admission): (Arc<cache::Entry>, Admission),
    model: Arc<Model>,
    deadline: Deadline,
    started: Instant,
    log: RpcLog,
    span: tracing::Span,
) -> Chunks {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let panics = gw.metrics.panics.clone();
    relay::spawn_guarded(
        panics,
        tx.clone(),
        async move {
            let limits = limits(&gw, &model, deadline, started, "cache");
            let last = StreamChunk {
                delta: String::new(),
                is_complete: true,
                usage: Some(hit.usage),
                finish_reason: hit.finish_reason.clone(),
                id: hit.id.clone(),
                usage_estimated: hit.usage_estimated,
                ..Default::default()
            };
            let chunks = hit.chunks.iter().map(|delta| StreamChunk {
                delta: delta.clone(),
                ..StreamChunk::default()
            });
            let mut result = Ok(());
            for chunk in chunks.chain(std::iter::once(last)) {
                result = relay::send(&tx, Ok(chunk), &limits).await;
                if result.is_err() {
                    break;
                }
            }
            drop(admission);
            if let Err(e) = &result {
                relay::send_final(
                    &tx,
                    Err(super::tag(Status::from(e.clone()), log.request_id())),
                )
                .await;
            }
            log.finish(result.as_ref().map(|_| ()));
        }
        .instrument(span),
    );
    ReceiverStream::new(rx)
}

/// What may end a stream of `model` early (`upstream` is named in stall errors).
fn limits<'a>(
    gw: &'a Gateway,
    model: &Model,
    deadline: Deadline,
    started: Instant,
    upstream: &'a str,
) -> Limits<'a> {
    Limits {
        deadline,
        stream: model.policy.stream,
        started,
        upstream,
        stop: &gw.lifecycle.stop,
        cancel: None,
    }
}
