//! A streamed completion: gRPC's `StreamGenerate`, and the REST doors' calls with `stream`.

use std::sync::Arc;

use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};
use tokio_stream::wrappers::ReceiverStream;
use tracing::Instrument;

use super::{
    ask::Ask,
    open::{self, Opened, Underway},
    relay::{self, Limits, Relayed, STREAM_BUFFER},
    request::Request,
    start::{Failure, Outcome, Reply, Start},
};
use crate::{
    admission::estimate,
    admission::limits::Admission,
    core::cache,
    core::call_record::CallRecord,
    core::gateway::Gateway,
    error::GatewayError,
    observe::telemetry,
    proto::Message,
    proto::{ReasoningDelta, StreamChunk},
    routing::deadline::Deadline,
    routing::router::Model,
    routing::{dispatch::Answer, router::RouteGuard},
    upstream::{answer::StreamEvent, configured::ChunkStream},
};

/// A stream's chunks as its door reads them: the last one complete, or an error that ends the stream.
pub(crate) type Chunks = ReceiverStream<Result<StreamChunk, GatewayError>>;

/// `rpc` names the call in logs and metrics: the gRPC method, or the REST door's.
pub(crate) async fn stream(
    gw: Arc<Gateway>,
    rpc: &'static str,
    start: Start,
    req: Request,
) -> Outcome<Chunks> {
    let log = start.record(rpc, &gw);
    let span = start.span(rpc);
    telemetry::record_request(&span, &req.model, "chat");
    let request_id = start.request_id.clone();
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    // The response starts as soon as it can without losing a status: once the upstream accepted the call (or
    // the cache answered). A refusal, or a failure of every attempt before any upstream accepted, is the call's
    // own status (with its retry advice); after that, failures end the stream.
    let (ready, readied) = oneshot::channel();
    let opening = Opening {
        gw: gw.clone(),
        start,
        req,
        log,
        tx: tx.clone(),
        ready: std::sync::Mutex::new(Some(ready)),
    };
    relay::spawn_guarded(tx, opening.run().instrument(span));
    match readied.await {
        Ok(Ok(label)) => Ok(Reply::new(ReceiverStream::new(rx), &request_id, label)),
        Ok(Err(failure)) => Err(failure),
        // The task ended without a word: it panicked before the response began.
        Err(_) => Err(Failure::new(
            GatewayError::Internal("the gateway failed while opening the stream".into()),
            &request_id,
        )),
    }
}

/// How the opening ends for the handler: the response's cache label, or the call's failure.
type Ready = Result<Option<&'static str>, Failure>;

/// Where the handler waits for [`Ready`]: taken by whichever comes first, an upstream accepting the call or the
/// opening's end.
type ReadySlot = std::sync::Mutex<Option<oneshot::Sender<Ready>>>;

/// Tells the handler, unless it was told already (or is gone).
fn tell(slot: &ReadySlot, ready: Ready) {
    if let Some(sender) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
        let _ = sender.send(ready);
    }
}

/// Whether the handler was told: the response has started.
fn told(slot: &ReadySlot) -> bool {
    slot.lock().unwrap_or_else(|p| p.into_inner()).is_none()
}

/// A stream's task from its opening: checks, admission, cache, dispatch (`open::open`), then the relay.
struct Opening {
    gw: Arc<Gateway>,
    start: Start,
    req: Request,
    log: CallRecord,
    tx: mpsc::Sender<Result<StreamChunk, GatewayError>>,
    ready: ReadySlot,
}

impl Opening {
    async fn run(self) {
        let started = Instant::now();
        let Opening {
            gw,
            start,
            req,
            mut log,
            tx,
            ready,
        } = self;
        let keepalive = std::sync::Mutex::new(None);
        let started_now = tokio::sync::Notify::new();
        let accepted = |a: open::Accepted| {
            *keepalive.lock().unwrap_or_else(|p| p.into_inner()) = Some(a.keepalive);
            tell(&ready, Ok(a.cache));
            started_now.notify_one();
        };
        let opened = {
            let mut open = Box::pin(open::open(
                &gw,
                &start,
                Ask::Chat(&req),
                true,
                Some(&accepted),
                &mut log,
            ));
            // Once the response has started, the wait for the answer's first piece is filled with heartbeats.
            let mut beat = Instant::now();
            loop {
                let every = *keepalive.lock().unwrap_or_else(|p| p.into_inner());
                tokio::select! {
                    opened = &mut open => break opened,
                    // The client left: dropping the opening drops the upstream request.
                    _ = tx.closed() => break Err(relay::client_gone()),
                    // The response started: the keep-alive interval is known from here.
                    _ = started_now.notified(), if every.is_none() => beat = Instant::now(),
                    _ = sleep_after(beat, every) => {
                        let _ = tx.try_send(Ok(heartbeat()));
                        beat = Instant::now();
                    }
                }
            }
        };
        match opened {
            Ok(Opened::Upstream(Underway {
                dispatched,
                admission,
                model,
                deadline,
                plan,
            })) => {
                tell(&ready, Ok(plan.miss_label()));
                let Answer::Stream { first, rest } = dispatched.answer else {
                    let e = GatewayError::Internal("a unary answer to a stream".into());
                    relay::send_final(&tx, Err(e.clone())).await;
                    log.finish(Err(&e));
                    return;
                };
                let task = Relay {
                    gw,
                    model,
                    deadline,
                    started,
                    route: dispatched.route,
                    first,
                    rest,
                    admission,
                    plan,
                    log,
                    tx,
                    messages: req.messages,
                    attempt: dispatched.span,
                };
                task.run().await;
            }
            Ok(Opened::Hit {
                hit,
                admission,
                model,
                deadline,
            }) => {
                tell(&ready, Ok(Some("hit")));
                replay(gw, tx, (hit, admission), model, deadline, started, log).await;
            }
            Err(e) => {
                if told(&ready) {
                    relay::send_final(&tx, Err(e.clone())).await;
                } else {
                    tell(&ready, Err(start.fail_after(e.clone(), log.attempts())));
                }
                log.finish(Err(&e));
            }
        }
    }
}

/// Sleeps until `every` after `from`; forever when there is no interval yet.
async fn sleep_after(from: Instant, every: Option<std::time::Duration>) {
    match every {
        Some(d) => tokio::time::sleep_until(from + d).await,
        None => std::future::pending().await,
    }
}

/// A chunk that says only that the stream is alive.
pub(crate) fn heartbeat() -> StreamChunk {
    StreamChunk {
        heartbeat: true,
        ..StreamChunk::default()
    }
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
    log: CallRecord,
    tx: mpsc::Sender<Result<StreamChunk, GatewayError>>,
    /// The prompt, for the usage estimate when the upstream sends none.
    messages: Vec<Message>,
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
            attempt,
        } = self;
        let who = log.who();
        let mut limits = limits(
            &gw,
            &model,
            deadline,
            started,
            route.route().upstream.name(),
        );
        limits.key = Some(relay::KeyStanding::new(&gw, &who, &model.name));
        let mut delivered = 0;
        // The chunks, kept for the cache while the answer stays small enough to keep.
        let mut kept = plan.key().map(|_| Vec::new());
        let wrap = |piece: Relayed| {
            let mut chunk = StreamChunk::default();
            match piece {
                Relayed::Text(delta) => {
                    delivered += delta.len();
                    if kept.is_some() && !gw.cache.fits(delivered) {
                        kept = None;
                    }
                    if let Some(chunks) = kept.as_mut() {
                        chunks.push(delta.clone());
                    }
                    chunk.delta = delta;
                }
                Relayed::Reasoning(r) => {
                    delivered += r.text.len() + r.signature.len() + r.redacted.len();
                    chunk.reasoning = Some(r);
                }
                Relayed::ToolCall(c) => {
                    delivered += c.arguments.len();
                    chunk.tool_call_deltas.push(c);
                }
                Relayed::Heartbeat => chunk.heartbeat = true,
            }
            chunk
        };
        let pumped = relay::pump(first, &mut rest, &tx, wrap, &limits, &mut log.timing).await;
        // The stream is over upstream: drop it before anything can wait.
        drop(rest);
        // Charged: the provider's usage; without it, or when the stream broke or the client left, the prompt and
        // what was delivered, counted by the gateway.
        let (usage, estimated) = match &pumped {
            Ok(end) if end.usage.is_some() => (end.usage.unwrap_or_default(), false),
            _ => (estimate::estimate_usage(&messages, delivered), true),
        };
        admission.reconcile(u64::try_from(usage.total_tokens).unwrap_or(0));
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
                // Only text answers (and their reasoning) are kept: tool calls and logprobs are not replayed.
                let plain = end.tool_calls.is_empty() && end.logprobs.is_empty();
                let reasoning = std::mem::take(&mut end.reasoning);
                let last = StreamChunk {
                    is_complete: true,
                    usage: Some(usage),
                    finish_reason: end.finish_reason.clone(),
                    id: end.id.clone(),
                    usage_estimated: estimated,
                    tool_calls: std::mem::take(&mut end.tool_calls),
                    logprobs: std::mem::take(&mut end.logprobs),
                    reasoning_blocks: reasoning.clone(),
                    ..Default::default()
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
                    )
                    .with_reasoning(reasoning);
                    gw.keep(&model, key, entry);
                }
                sent
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            attempt.record("error.type", e.label());
            route.route().report(Err(e));
            relay::send_final(&tx, Err(e.clone())).await;
        }
        log.finish(result.as_ref().map(|_| ()));
    }
}

/// Answers from the cache: the kept reasoning and chunks as they were streamed, then the final chunk with the
/// kept usage and finish reason, within the call's deadline and the server's lifecycle like any stream.
/// The hit comes with its admission, held (concurrency slots) until the replay ends like any stream's.
async fn replay(
    gw: Arc<Gateway>,
    tx: mpsc::Sender<Result<StreamChunk, GatewayError>>,
    (hit, admission): (Arc<cache::Entry>, Admission),
    model: Arc<Model>,
    deadline: Deadline,
    started: Instant,
    log: CallRecord,
) {
    let limits = limits(&gw, &model, deadline, started, "cache");
    let Some(chat) = hit.chat() else {
        let e = open::other_kind();
        relay::send_final(&tx, Err(e.clone())).await;
        log.finish(Err(&e));
        return;
    };
    let last = StreamChunk {
        delta: String::new(),
        is_complete: true,
        usage: Some(hit.usage),
        finish_reason: chat.finish_reason.clone(),
        id: chat.id.clone(),
        usage_estimated: hit.usage_estimated,
        reasoning_blocks: chat.reasoning.clone(),
        ..Default::default()
    };
    // The reasoning first, a block a chunk, as it was streamed before the text.
    let reasoning = chat.reasoning.iter().enumerate().map(|(i, r)| StreamChunk {
        reasoning: Some(ReasoningDelta {
            index: u32::try_from(i).unwrap_or(u32::MAX),
            text: r.text.clone(),
            signature: r.signature.clone(),
            redacted: r.redacted.clone(),
            id: r.id.clone(),
        }),
        ..StreamChunk::default()
    });
    let chunks = reasoning.chain(chat.chunks.iter().map(|delta| StreamChunk {
        delta: delta.clone(),
        ..StreamChunk::default()
    }));
    let mut result = Ok(());
    for chunk in chunks.chain(std::iter::once(last)) {
        result = relay::send(&tx, Ok(chunk), &limits).await;
        if result.is_err() {
            break;
        }
    }
    drop(admission);
    if let Err(e) = &result {
        relay::send_final(&tx, Err(e.clone())).await;
    }
    log.finish(result.as_ref().map(|_| ()));
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
        key: None,
    }
}
