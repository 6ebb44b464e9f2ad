//! Answering one user turn of a session, on its own task, so the session keeps reading (a cancel may come).

use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::replies::{response, turn_error, Tx};
use crate::{
    admission::estimate,
    admission::limits::Admission,
    call::relay::{self, Limits, Relayed},
    core::gateway::Gateway,
    error::GatewayError,
    observe::timing::{Timing, Trail},
    proto::{
        interactive_response::Event, GenerationConfig, InteractiveResponse, Message, TurnComplete,
        TurnDelta, Usage,
    },
    routing::deadline::Deadline,
    routing::dispatch::{dispatch, Answer, Call},
    routing::router::Model,
    upstream::pass_through::PassThrough,
};

/// The most answer text a turn keeps for the session's history (the history itself is bounded further by
/// `interactive.max_history_bytes`).
pub(crate) const MAX_ANSWER_BYTES: usize = 8 << 20;

pub(crate) struct Turn {
    pub(crate) number: u32,
    pub(crate) messages: Vec<Message>,
    pub(crate) config: Option<GenerationConfig>,
    pub(crate) pass: Arc<PassThrough>,
    pub(crate) deadline: Deadline,
    pub(crate) request_id: String,
    /// The model name the session asked for.
    pub(crate) requested: String,
    pub(crate) api_headers: std::sync::Arc<crate::upstream::api_headers::ApiHeaders>,
    pub(crate) admission: Admission,
    pub(crate) tx: Tx,
    pub(crate) cancel: CancellationToken,
    /// The key the turn runs under, as it stood when the turn began.
    pub(crate) who: Arc<crate::admission::auth::Identity>,
}

/// How a turn ended.
pub(crate) struct Outcome {
    /// The answer (its text and tool calls), when the turn completed: it joins the history.
    pub(crate) answer: Option<Message>,
    /// What the turn is charged (and whether the gateway counted it), when it reached the upstream.
    pub(crate) usage: Option<(Usage, bool)>,
    /// The turn's last word, `TurnComplete` or `TurnError`. The session sends it once it has taken the turn
    /// off its books: a client may send its next turn the moment it reads this, and must find the session
    /// free and the answer in the history.
    pub(crate) last: InteractiveResponse,
}

/// Answers the turn. A completed turn is charged the provider's usage (or an estimate when it sent none); a
/// cancelled or broken one the prompt and what was delivered; one that never reached the upstream nothing.
pub(crate) async fn answer(gw: Arc<Gateway>, model: Arc<Model>, mut t: Turn) -> Outcome {
    let number = t.number;
    let started = Instant::now();
    let mut answer = String::new();
    let mut timing = Timing::new();
    let mut trail = Trail::default();
    let mut reached_upstream = false;
    let mut lost = Usage::default();
    let result = async {
        let call = Call { messages: &t.messages, config: t.config.as_ref(), pass: &t.pass, embed: None, deadline: t.deadline, request_id: &t.request_id, accepted: None, api_headers: Some(&t.api_headers), requested: &t.requested };
        let handles = gw.handles();
        // While the model thinks before its first piece, heartbeats keep the session's stream alive.
        let every = model.policy.stream.keepalive;
        let mut beat = Instant::now() + every;
        let dispatched = {
            let dispatching = dispatch(&handles, &model, &call, true, &mut trail);
            tokio::pin!(dispatching);
            loop {
                tokio::select! {
                    d = &mut dispatching => break d,
                    _ = t.cancel.cancelled() => return Err(GatewayError::Cancelled("the turn was cancelled".into())),
                    _ = tokio::time::sleep_until(beat) => {
                        let heartbeat = TurnDelta { heartbeat: true, ..Default::default() };
                        let _ = t.tx.try_send(Ok(response(number, Event::Delta(heartbeat))));
                        beat = Instant::now() + every;
                    }
                }
            }
        };
        // Attempts an upstream accepted and lost before the answer began are spent too.
        lost = estimate::lost_usage(estimate::estimate_usage(&t.messages, 0), trail.lost);
        t.admission.add_lost(u64::try_from(lost.total_tokens).unwrap_or(0));
        let dispatched = dispatched.inspect_err(|_| t.admission.release())?;
        reached_upstream = true;
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
            key: Some(relay::KeyStanding::new(&gw, &t.who, &model.name)),
        };
        let mut overflow = false;
        let wrap = |piece: Relayed| {
            let mut out = TurnDelta::default();
            match piece {
                Relayed::Text(delta) => {
                    // The answer is kept for the history; past the bound it is not, and the turn fails below.
                    if answer.len() + delta.len() > MAX_ANSWER_BYTES {
                        overflow = true;
                    } else {
                        answer.push_str(&delta);
                    }
                    out.delta = delta;
                }
                Relayed::Reasoning(r) => out.reasoning = Some(r),
                Relayed::ToolCall(c) => out.tool_call_deltas.push(c),
                Relayed::Heartbeat => out.heartbeat = true,
            }
            response(number, Event::Delta(out))
        };
        let pumped = relay::pump(first, &mut rest, &t.tx, wrap, &limits, &mut timing).await;
        if let Err(e) = &pumped {
            dispatched.route.route().report(Err(e));
        }
        let end = pumped?;
        if overflow {
            return Err(GatewayError::UpstreamProtocol {
                upstream: dispatched.route.route().upstream.name().to_owned(),
                detail: format!("the answer exceeded {MAX_ANSWER_BYTES} bytes, more than a session keeps"),
            });
        }
        let estimated = end.usage.is_none();
        let usage = end.usage.unwrap_or_else(|| estimate::estimate_usage(&t.messages, answer.len()));
        t.admission.reconcile(u64::try_from(usage.total_tokens).unwrap_or(0));
        let said = Message {
            role: "assistant".into(),
            content: std::mem::take(&mut answer),
            tool_calls: end.tool_calls.clone(),
            reasoning: end.reasoning.clone(),
            ..Default::default()
        };
        let complete = TurnComplete {
            usage: Some(usage),
            finish_reason: end.finish_reason,
            id: end.id,
            usage_estimated: estimated,
            tool_calls: end.tool_calls,
            logprobs: end.logprobs,
            reasoning: end.reasoning,
        };
        Ok((usage, estimated, complete, said))
    }
    .await;
    // Each turn's time to its first piece, as a StreamGenerate call's (the dashboard's first-token chart).
    if let Some(ttft) = timing.first_token {
        gw.metrics
            .first_token
            .with_label_values(&[&model.name])
            .observe(ttft.as_secs_f64());
    }
    let lost_any = lost.total_tokens > 0;
    let mut outcome = match result {
        Ok((usage, estimated, complete, said)) => Outcome {
            answer: Some(said),
            usage: Some((usage, estimated)),
            last: response(number, Event::Complete(complete)),
        },
        Err(e) => {
            let charged = reached_upstream.then(|| {
                let usage = estimate::estimate_usage(&t.messages, answer.len());
                t.admission
                    .reconcile(u64::try_from(usage.total_tokens).unwrap_or(0));
                (usage, true)
            });
            Outcome {
                answer: None,
                usage: charged,
                last: turn_error(number, &e),
            }
        }
    };
    if lost_any {
        let (mut usage, _) = outcome.usage.unwrap_or_default();
        usage.prompt_tokens = usage.prompt_tokens.saturating_add(lost.prompt_tokens);
        usage.total_tokens = usage.total_tokens.saturating_add(lost.total_tokens);
        outcome.usage = Some((usage, true));
    }
    outcome
}
