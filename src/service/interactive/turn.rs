//! Answering one user turn of a session, on its own task, so the session keeps reading (a cancel may come).

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{response, turn_error, Tx};
use crate::{
    deadline::Deadline,
    dispatch::{dispatch, Answer, Call},
    error::GatewayError,
    gateway::Gateway,
    limits::Admission,
    proto::{
        interactive_response::Event, GenerationConfig, Message, TurnComplete, TurnDelta, Usage,
    },
    router::Model,
    service::relay::{self, Limits},
};

pub struct Turn {
    pub number: u32,
    pub messages: Vec<Message>,
    pub config: Option<GenerationConfig>,
    pub deadline: Deadline,
    pub request_id: String,
    pub admission: Admission,
    pub tx: Tx,
    pub cancel: CancellationToken,
}

/// Answers the turn; returns the answer and its usage when it completed, for the history.
pub async fn answer(
    gw: Arc<Gateway>,
    model: Arc<Model>,
    mut t: Turn,
) -> Option<(String, Option<Usage>)> {
    let number = t.number;
    let started = Instant::now();
    let mut answer = String::new();
    let result = async {
        let call = Call { messages: &t.messages, config: t.config.as_ref(), deadline: t.deadline, request_id: &t.request_id };
        let dispatched = tokio::select! {
            d = dispatch(&gw, &model, &call, true) => d.inspect_err(|_| t.admission.release())?,
            _ = t.cancel.cancelled() => return Err(GatewayError::Cancelled("the turn was cancelled".into())),
        };
        let Answer::Stream { first, mut rest } = dispatched.answer else {
            return Err(GatewayError::Internal("a unary answer to a stream".into()));
        };
        let limits = Limits {
            deadline: t.deadline,
            stream: model.policy.stream,
            started,
            upstream: dispatched.route.route().upstream.name(),
            stop: &gw.lifecycle.stop,
            cancel: Some(&t.cancel),
        };
        let wrap = |delta: String| {
            answer.push_str(&delta);
            response(number, Event::Delta(TurnDelta { delta }))
        };
        let end = relay::pump(first, &mut rest, &t.tx, wrap, &limits).await.inspect_err(|e| {
            if let Some(ok) = e.route_health() {
                dispatched.route.route().breaker.record(Instant::now(), ok);
            }
        })?;
        if let Some(usage) = &end.usage {
            t.admission.reconcile(usage.total_tokens.max(0) as u64);
        }
        let complete = TurnComplete { usage: end.usage, finish_reason: end.finish_reason, id: end.id };
        relay::send(&t.tx, Ok(response(number, Event::Complete(complete))), &limits).await?;
        Ok(end.usage)
    }
    .await;
    match result {
        Ok(usage) => Some((answer, usage)),
        Err(e) => {
            // In-band; bounded like a final status, since the grace period may be over.
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                t.tx.send(Ok(turn_error(number, &e))),
            )
            .await;
            None
        }
    }
}
