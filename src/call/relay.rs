//! Relaying an upstream stream into a bounded response channel, whichever door reads it.
//!
//! The channel is small and `send` waits for room, so a slow client slows the upstream read (HTTP/2 flow
//! control does the rest) instead of growing a buffer. The relay stops at once when the client goes away, the
//! deadline or a stream limit passes, the turn is cancelled, the grace period ends, or the key it runs under
//! stops holding (revoked, expired, removed by a reload, no longer allowed the model); returning drops the
//! upstream request.

use std::time::Duration;

use futures_util::FutureExt;
use tokio::{
    sync::mpsc::{error::TrySendError, Sender},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    admission::auth::Identity,
    config::StreamLimits,
    core::{gateway::Gateway, key_changes::KeyChanges},
    error::GatewayError,
    observe::{tasks, timing::Timing},
    proto::{ReasoningDelta, ToolCallDelta},
    routing::deadline::Deadline,
    upstream::{answer::StreamEnd, answer::StreamEvent, configured::ChunkStream},
};

/// What the relay hands its door to send: a piece of the answer, or a keep-alive.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Relayed {
    Text(String),
    Reasoning(ReasoningDelta),
    ToolCall(ToolCallDelta),
    /// The upstream has said nothing to relay for `stream.keepalive`.
    Heartbeat,
}

/// Messages buffered per stream between the relay task and the connection.
pub(crate) const STREAM_BUFFER: usize = 16;

/// What may end a relay early, besides the client going away.
pub(crate) struct Limits<'a> {
    pub(crate) deadline: Deadline,
    /// Idle gap and total duration (the first token was the dispatcher's business).
    pub(crate) stream: StreamLimits,
    /// When the stream was asked for, for its total duration.
    pub(crate) started: Instant,
    /// Named in stall errors.
    pub(crate) upstream: &'a str,
    /// The server's grace period ended.
    pub(crate) stop: &'a CancellationToken,
    /// The client cancelled this turn (InteractiveStream only).
    pub(crate) cancel: Option<&'a CancellationToken>,
    /// The key the stream runs under, checked again whenever the keys change.
    pub(crate) key: Option<KeyStanding<'a>>,
}

/// A stream's key, watched: the gateway's keys changing (an admin API change, a reload, the fleet's keys taken
/// in) makes the stream ask whether its key still holds, and the key's expiry is one of the stream's limits.
pub(crate) struct KeyStanding<'a> {
    gw: &'a Gateway,
    who: &'a Identity,
    model: &'a str,
    expires: Option<Instant>,
}

impl<'a> KeyStanding<'a> {
    pub(crate) fn new(gw: &'a Gateway, who: &'a Identity, model: &'a str) -> KeyStanding<'a> {
        let expires = who.expires.map(|end| {
            let left = end
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            Instant::now() + left
        });
        KeyStanding {
            gw,
            who,
            model,
            expires,
        }
    }

    fn check(&self) -> Result<(), GatewayError> {
        self.gw.catalog().keys.still_holds(self.who, self.model)
    }
}

/// Which limit comes first. The error itself is only built when the limit fires, so the per-chunk path
/// allocates nothing for it.
#[derive(Clone, Copy)]
enum Limit {
    Deadline,
    Total,
    Idle,
    KeyExpired,
}

impl Limits<'_> {
    /// Whether the stream's key still holds (always, for a stream without one).
    fn key_holds(&self) -> Result<(), GatewayError> {
        self.key.as_ref().map_or(Ok(()), KeyStanding::check)
    }

    /// The earliest of the deadline, the total limit and the key's expiry.
    fn hard(&self) -> (Instant, Limit) {
        let total = self.started + self.stream.total;
        let first = if total < self.deadline.at {
            (total, Limit::Total)
        } else {
            (self.deadline.at, Limit::Deadline)
        };
        match self.key.as_ref().and_then(|k| k.expires) {
            Some(end) if end < first.0 => (end, Limit::KeyExpired),
            _ => first,
        }
    }

    /// The hard limit or, if earlier, the end of the idle allowance after the last event.
    fn next(&self, last: Instant) -> (Instant, Limit) {
        let idle = last + self.stream.idle;
        let (at, limit) = self.hard();
        if idle < at {
            (idle, Limit::Idle)
        } else {
            (at, limit)
        }
    }

    fn error(&self, limit: Limit) -> GatewayError {
        let show = humantime::format_duration;
        match limit {
            Limit::Deadline => self.deadline.exceeded(),
            Limit::Total => GatewayError::DeadlineExceeded(format!(
                "the stream passed its total limit of {}",
                show(self.stream.total)
            )),
            Limit::KeyExpired => GatewayError::Unauthenticated("the API key has expired"),
            Limit::Idle => GatewayError::UpstreamUnavailable {
                upstream: self.upstream.to_owned(),
                detail: format!(
                    "the stream stalled: nothing from the upstream for {}",
                    show(self.stream.idle)
                ),
                retry_after: None,
            },
        }
    }
}

async fn cancelled(token: Option<&CancellationToken>) {
    match token {
        Some(t) => t.cancelled().await,
        None => std::future::pending().await,
    }
}

/// Forwards `first` and every later piece of the answer (wrapped by `wrap`) until the upstream's end, which is
/// returned for the final message. A silence of `stream.keepalive` sends a heartbeat (also wrapped); every
/// upstream event, signs of life included, restarts the idle timer.
/// Waits on the upstream and on the client are added to `timing`.
pub(crate) async fn pump<M, E>(
    first: StreamEvent,
    stream: &mut ChunkStream,
    tx: &Sender<Result<M, E>>,
    mut wrap: impl FnMut(Relayed) -> M,
    limits: &Limits<'_>,
    timing: &mut Timing,
) -> Result<StreamEnd, GatewayError> {
    let mut event = Some(Ok(first));
    // The server's stop, as a token of this stream's own: checking and waiting on the token every stream shares
    // locked its one mutex (and its waiter list) from every stream, once a chunk.
    let stop = limits.stop.child_token();
    // The keys' changes, watched the same way (see `core::key_changes`).
    let changes = limits.key.as_ref().map(|k| &k.gw.key_changes);
    let watch = changes.map(KeyChanges::watch);
    let mut seen = watch.as_ref().map_or(0, |w| w.seen);
    let never = CancellationToken::new();
    let keys_changed = watch.map_or(never, |w| w.changed).cancelled_owned();
    // When the last event arrived or its piece was handed on: one clock read a piece, after the hand-off. An
    // event that was already buffered when asked for counts as no wait on the upstream.
    let mut mark = Instant::now();
    // The last time the client was sent anything: a heartbeat is due a keep-alive interval after it.
    let mut last_sent = mark;
    // What the relay waits on between events, made once for the whole stream: made anew for every event, each
    // registered and dropped its waiter (and the timer its wheel entry) once a chunk.
    let closed = tx.closed();
    let stopped = stop.cancelled();
    let turn_cancelled = cancelled(limits.cancel);
    let timer = tokio::time::sleep_until(last_sent);
    tokio::pin!(closed, stopped, turn_cancelled, timer, keys_changed);
    // When the timer is set to fire; `None` once it has fired. It is moved only when it would fire too late,
    // never later: it may fire early, and then the wait goes round and sets it again. A fast stream moves its
    // limit forward with every event and so sets the timer once, not once a chunk.
    let mut armed: Option<Instant> = None;
    loop {
        let relayed = match event {
            Some(Ok(StreamEvent::Delta(text))) => Some(Relayed::Text(text)),
            Some(Ok(StreamEvent::Reasoning(r))) => Some(Relayed::Reasoning(r)),
            Some(Ok(StreamEvent::ToolCall(c))) => Some(Relayed::ToolCall(c)),
            // Nothing to send, but the upstream is alive: the stall timer starts again below.
            Some(Ok(StreamEvent::Progress)) => None,
            Some(Ok(StreamEvent::End(end))) => return Ok(end),
            Some(Err(e)) => return Err(e),
            None => {
                return Err(GatewayError::Internal(
                    "the upstream stream ended twice".into(),
                ))
            }
        };
        if let Some(piece) = relayed {
            if let Err(TrySendError::Full(msg) | TrySendError::Closed(msg)) =
                tx.try_send(Ok(wrap(piece)))
            {
                // No room (or no client): the rare case gets its own boxed wait.
                Box::pin(send(tx, msg, limits)).await?;
            }
            let sent = Instant::now();
            timing.client_wait += sent - mark;
            timing.delta_sent(sent);
            last_sent = sent;
            mark = sent;
        } else {
            // A sign of life (rare beside the pieces): the idle allowance runs from now.
            mark = Instant::now();
        }
        let waiting = mark;
        let (limit_at, limit) = limits.next(waiting);
        // Fast path, when the next event is already buffered: the same checks in the same order, as plain
        // reads, with no timer armed. A timer per chunk was a measurable share of a stream's CPU.
        if tx.is_closed() {
            return Err(client_gone());
        }
        if stop.is_cancelled() {
            return Err(GatewayError::ShuttingDown);
        }
        if limits.cancel.is_some_and(CancellationToken::is_cancelled) {
            return Err(GatewayError::Cancelled("the turn was cancelled".into()));
        }
        if waiting >= limit_at {
            return Err(limits.error(limit));
        }
        if let Some(changes) = changes.filter(|c| c.version() != seen) {
            seen = rewatch(changes, keys_changed.as_mut());
            limits.key_holds()?;
        }
        // `next` is cancel-safe, so a first poll that finds nothing loses nothing.
        event = match stream.next().now_or_never() {
            Some(ready) => ready,
            // One timer for both the limit and the next heartbeat, whichever comes first.
            None => {
                let event = loop {
                    let beat_at = last_sent + limits.stream.keepalive;
                    let beat = beat_at < limit_at;
                    let wake_at = if beat { beat_at } else { limit_at };
                    if armed.is_none_or(|at| at > wake_at) {
                        timer.as_mut().reset(wake_at);
                        armed = Some(wake_at);
                    }
                    tokio::select! {
                        biased;
                        _ = &mut closed => return Err(client_gone()),
                        _ = &mut stopped => return Err(GatewayError::ShuttingDown),
                        _ = &mut turn_cancelled => return Err(GatewayError::Cancelled("the turn was cancelled".into())),
                        event = stream.next() => break event,
                        _ = &mut keys_changed => {
                            if let Some(changes) = changes {
                                seen = rewatch(changes, keys_changed.as_mut());
                            }
                            limits.key_holds()?;
                        }
                        _ = &mut timer => {
                            armed = None;
                            let now = Instant::now();
                            if now < wake_at {
                                continue; // set for an earlier limit that has since moved on
                            }
                            if !beat {
                                return Err(limits.error(limit));
                            }
                            Box::pin(send(tx, Ok(wrap(Relayed::Heartbeat)), limits)).await?;
                            last_sent = Instant::now();
                        }
                    }
                };
                mark = Instant::now();
                timing.upstream += mark - waiting;
                event
            }
        };
    }
}

/// Watches the keys' changes from now on, in place of a watch that fired or fell behind; returns the version seen.
fn rewatch(
    changes: &KeyChanges,
    mut fired: std::pin::Pin<&mut tokio_util::sync::WaitForCancellationFutureOwned>,
) -> u64 {
    let watch = changes.watch();
    fired.set(watch.changed.cancelled_owned());
    watch.seen
}

/// Sends one message, waiting for room in the channel within the hard limits.
pub(crate) async fn send<M, E>(
    tx: &Sender<Result<M, E>>,
    msg: Result<M, E>,
    limits: &Limits<'_>,
) -> Result<(), GatewayError> {
    // Room in the channel (the usual case): no timer needed.
    let msg = match tx.try_send(msg) {
        Ok(()) => return Ok(()),
        Err(TrySendError::Closed(_)) => return Err(client_gone()),
        Err(TrySendError::Full(msg)) => msg,
    };
    let (at, limit) = limits.hard();
    tokio::select! {
        biased;
        sent = tx.send(msg) => sent.map_err(|_| client_gone()),
        _ = limits.stop.cancelled() => Err(GatewayError::ShuttingDown),
        _ = tokio::time::sleep_until(at) => Err(limits.error(limit)),
    }
}

/// How long a stream's last word (its error status, or a turn's in-band error) may wait for room in its channel.
/// It is sent even after the grace period has ended: a stream cut by shutdown must end with UNAVAILABLE, never
/// with OK.
const FINAL_SEND_WAIT: Duration = Duration::from_secs(5);

/// Sends a stream's last word, unless the client is gone or does not read it in time.
pub(crate) async fn send_final<M, E>(tx: &Sender<Result<M, E>>, msg: Result<M, E>) {
    let _ = tokio::time::timeout(FINAL_SEND_WAIT, tx.send(msg)).await;
}

/// Spawns a stream's task so that a panic in it still ends the stream with INTERNAL (counted in
/// `aigw_panics_total{where="stream"}`), never with OK and no final message, and never with a bare reset.
pub(crate) fn spawn_guarded<M, E>(
    tx: Sender<Result<M, E>>,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) where
    M: Send + 'static,
    E: From<GatewayError> + Send + 'static,
{
    tasks::spawn("stream", async move {
        if let Err(panic) = std::panic::AssertUnwindSafe(task).catch_unwind().await {
            tasks::caught("stream", panic.as_ref());
            let failed =
                GatewayError::Internal("the gateway failed while streaming the answer".into());
            send_final(&tx, Err(E::from(failed))).await;
        }
    });
}

pub(crate) fn client_gone() -> GatewayError {
    GatewayError::Cancelled("the client cancelled or went away".into())
}

#[cfg(test)]
mod tests;
