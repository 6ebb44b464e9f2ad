//! A whole completion: gRPC's `Generate`, and the REST doors' calls without `stream`.

use std::sync::Arc;

use tracing::Instrument;

use super::{
    ask::Ask,
    open::{self, Opened, Underway},
    request::Request,
    start::{conclude, Outcome, Start},
};
use crate::{
    admission::estimate,
    core::{cache, gateway::Gateway},
    error::GatewayError,
    observe::telemetry,
    proto::GenerateResponse,
    routing::dispatch::Answer,
};

/// `rpc` names the call in logs and metrics: the gRPC method, or the REST door's.
pub(crate) async fn generate(
    gw: Arc<Gateway>,
    rpc: &'static str,
    start: Start,
    req: Request,
) -> Outcome<GenerateResponse> {
    let mut log = start.record(rpc, &gw);
    let span = start.span(rpc);
    telemetry::record_request(&span, &req.model, "chat");
    let rpc_span = span.clone();
    let result = async {
        let Underway {
            dispatched,
            mut admission,
            model,
            plan,
            ..
        } = match Box::pin(open::open(
            &gw,
            &start,
            Ask::Chat(&req),
            false,
            None,
            &mut log,
        ))
        .await?
        {
            Opened::Hit { hit, .. } => {
                let chat = hit.chat().ok_or_else(open::other_kind)?;
                telemetry::record_answer(
                    &rpc_span,
                    &chat.id,
                    &hit.model,
                    &chat.finish_reason,
                    Some(&hit.usage),
                );
                let resp = GenerateResponse {
                    content: chat.content(),
                    model: hit.model.clone(),
                    usage: Some(hit.usage),
                    finish_reason: chat.finish_reason.clone(),
                    id: chat.id.clone(),
                    usage_estimated: hit.usage_estimated,
                    reasoning: chat.reasoning.clone(),
                    ..Default::default()
                };
                return Ok((resp, Some("hit")));
            }
            Opened::Upstream(underway) => underway,
        };
        let Answer::Whole(done) = dispatched.answer else {
            return Err(GatewayError::Internal(
                "a stream answered a unary call".into(),
            ));
        };
        let estimated = done.usage.is_none();
        let usage = done
            .usage
            .unwrap_or_else(|| estimate::estimate_usage(&req.messages, done.content.len()));
        admission.reconcile(u64::try_from(usage.total_tokens).unwrap_or(0));
        log.add_usage(Some(&usage), estimated);
        let resp = GenerateResponse {
            content: done.content,
            model: if done.model.is_empty() {
                model.name.clone()
            } else {
                done.model
            },
            usage: Some(usage),
            finish_reason: done.finish_reason,
            id: done.id,
            usage_estimated: estimated,
            tool_calls: done.tool_calls,
            logprobs: done.logprobs,
            reasoning: done.reasoning,
        };
        telemetry::record_answer(
            &rpc_span,
            &resp.id,
            &resp.model,
            &resp.finish_reason,
            resp.usage.as_ref(),
        );
        // Only text answers are kept: tool calls and logprobs are not replayed.
        let plain = resp.tool_calls.is_empty() && resp.logprobs.is_empty();
        if let Some(key) = plan.key().filter(|_| plain) {
            let entry = cache::Entry::new(
                vec![resp.content.clone()],
                resp.id.clone(),
                resp.model.clone(),
                resp.finish_reason.clone(),
                usage,
                estimated,
            )
            .with_reasoning(resp.reasoning.clone());
            gw.keep(&model, key, entry);
        }
        Ok((resp, plan.miss_label()))
    }
    .instrument(span)
    .await;
    conclude(&start, log, result)
}
