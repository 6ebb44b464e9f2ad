//! Relaying an upstream stream into a bounded gRPC response channel.
//!
//! The channel is small and `send` waits for room, so a slow client slows the upstream read (HTTP/2 flow
//! control does the rest) instead of growing a buffer. The relay stops at once when the client goes away, the
//! deadline passes, the turn is cancelled or the grace period ends; returning drops the upstream request.

use std::time::Duration;

use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::{
    deadline::Deadline,
    error::GatewayError,
    upstream::{ChunkStream, StreamEnd, StreamEvent},
};

/// Messages buffered per stream between the relay task and the connection.
pub const STREAM_BUFFER: usize = 16;

/// What may end a relay early, besides the client going away.
pub struct Limits<'a> {
    pub deadline: Deadline,
    /// The server's grace period ended.
    pub stop: &'a CancellationToken,
    /// The client cancelled this turn (InteractiveStream only).
    pub cancel: Option<&'a CancellationToken>,
}

async fn cancelled(token: Option<&CancellationToken>) {
    match token {
        Some(t) => t.cancelled().await,
        None => std::future::pending().await,
    }
}

/// Forwards every delta (wrapped by `wrap`) until the upstream's end, which is returned for the final message.
pub async fn pump<M>(
    stream: &mut ChunkStream,
    tx: &Sender<Result<M, Status>>,
    mut wrap: impl FnMut(String) -> M,
    limits: &Limits<'_>,
) -> Result<StreamEnd, GatewayError> {
    loop {
        let event = tokio::select! {
            biased;
            _ = tx.closed() => return Err(client_gone()),
            _ = limits.stop.cancelled() => return Err(GatewayError::ShuttingDown),
            _ = cancelled(limits.cancel) => return Err(GatewayError::Cancelled("the turn was cancelled".into())),
            _ = tokio::time::sleep_until(limits.deadline.at) => return Err(limits.deadline.exceeded()),
            event = stream.next() => event,
        };
        match event {
            Some(Ok(StreamEvent::Delta(text))) => send(tx, Ok(wrap(text)), limits).await?,
            Some(Ok(StreamEvent::End(end))) => return Ok(end),
            Some(Err(e)) => return Err(e),
            None => {
                return Err(GatewayError::Internal(
                    "the upstream stream ended twice".into(),
                ))
            }
        }
    }
}

/// Sends one message, waiting for room in the channel within the same limits.
pub async fn send<M>(
    tx: &Sender<Result<M, Status>>,
    msg: Result<M, Status>,
    limits: &Limits<'_>,
) -> Result<(), GatewayError> {
    tokio::select! {
        biased;
        sent = tx.send(msg) => sent.map_err(|_| client_gone()),
        _ = limits.stop.cancelled() => Err(GatewayError::ShuttingDown),
        _ = tokio::time::sleep_until(limits.deadline.at) => Err(limits.deadline.exceeded()),
    }
}

/// How long a stream's final error status may wait for room in its channel. It is sent even after the grace
/// period has ended: a stream cut by shutdown must end with UNAVAILABLE, never with OK.
const FINAL_STATUS_WAIT: Duration = Duration::from_secs(5);

/// Ends a stream with an error status, unless the client is gone or does not read it in time.
pub async fn send_error<M>(tx: &Sender<Result<M, Status>>, err: &GatewayError) {
    let _ = tokio::time::timeout(FINAL_STATUS_WAIT, tx.send(Err(Status::from(err.clone())))).await;
}

pub fn client_gone() -> GatewayError {
    GatewayError::Cancelled("the client cancelled or went away".into())
}
