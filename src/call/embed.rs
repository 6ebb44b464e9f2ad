//! `Embed`: vectors for texts, by a model of kind "embedding". The same opening as chat calls — check, admit
//! (tpm counts the input), the cache, then the dispatcher's routes, retries and breakers — with an answer that
//! is whole at once.

use std::sync::Arc;

use tracing::Instrument;

use super::start::{conclude, look_up_plan, Outcome, Start};
use crate::{
    core::{cache, gateway::Gateway},
    error::GatewayError,
    observe::{telemetry, timing::Trail},
    proto::{EmbedRequest, EmbedResponse, Embedding, Usage},
    routing::dispatch::{dispatch, Answer, Call},
    upstream::openai::embeddings::{self, EmbedAsk},
    upstream::pass_through::PassThrough,
};

/// `rpc` names the call in logs and metrics: the gRPC method, or the REST door's.
pub(crate) async fn embed(
    gw: Arc<Gateway>,
    rpc: &'static str,
    start: Start,
    req: EmbedRequest,
) -> Outcome<EmbedResponse> {
    let mut log = start.record(rpc, &gw);
    let span = start.span(rpc);
    telemetry::record_request(&span, &req.model, "embeddings");
    let rpc_span = span.clone();
    let result = async {
        let model =
            super::checks::embedding(&gw, &start.who, &req.model, &req.input, req.dimensions)?;
        log.model(&model);
        let mut admission = gw.admit_embedding(&start.who, &req.input).await?;
        let plan = cache::embed_plan(
            model.cache.as_ref(),
            start.cache_control,
            &start.who.owner,
            &model.name,
            &req.input,
            req.dimensions,
        );
        let plan = match look_up_plan(&gw, &model, plan, &mut admission, &mut log).await {
            Ok(hit) => {
                let resp = EmbedResponse {
                    model: hit.model.clone(),
                    embeddings: hit
                        .chunks
                        .iter()
                        .map(|c| embedding(embeddings::from_base64(c).unwrap_or_default()))
                        .collect(),
                    usage: Some(hit.usage),
                    usage_estimated: hit.usage_estimated,
                };
                return Ok((resp, Some("hit")));
            }
            Err(plan) => plan,
        };
        let call = Call {
            messages: &[],
            config: None,
            pass: &PassThrough::default(),
            embed: Some(EmbedAsk {
                input: &req.input,
                // Checked positive.
                dimensions: req.dimensions.map(i32::unsigned_abs),
                user: &req.user,
            }),
            deadline: start.deadline(&model),
            request_id: &start.request_id,
            accepted: None,
            api_headers: None,
            requested: &req.model,
        };
        let mut trail = Trail::default();
        let dispatched = dispatch(&gw.handles(), &model, &call, false, &mut trail).await;
        log.dispatched(&trail);
        let dispatched = dispatched.inspect_err(|_| admission.release())?;
        let Answer::Embedded(answer) = dispatched.answer else {
            return Err(GatewayError::Internal(
                "a chat answer to an embeddings call".into(),
            ));
        };
        let estimated = answer.usage.is_none();
        let usage = answer.usage.unwrap_or_else(|| {
            let n = i32::try_from(embeddings::estimate(&req.input)).unwrap_or(i32::MAX);
            Usage {
                prompt_tokens: n,
                total_tokens: n,
                ..Default::default()
            }
        });
        admission.reconcile(u64::try_from(usage.total_tokens).unwrap_or(0));
        log.add_usage(Some(&usage), estimated);
        telemetry::record_answer(&rpc_span, "", &model.name, "", Some(&usage));
        if let Some(key) = plan.key() {
            let chunks = answer
                .vectors
                .iter()
                .map(|v| embeddings::to_base64(v))
                .collect();
            let entry = cache::Entry::new(
                chunks,
                String::new(),
                model.name.clone(),
                String::new(),
                usage,
                estimated,
            );
            gw.keep(&model, key, entry);
        }
        let resp = EmbedResponse {
            model: model.name.clone(),
            embeddings: answer.vectors.into_iter().map(embedding).collect(),
            usage: Some(usage),
            usage_estimated: estimated,
        };
        Ok((resp, plan.miss_label()))
    }
    .instrument(span)
    .await;
    conclude(&start, log, result)
}

fn embedding(values: Vec<f32>) -> Embedding {
    Embedding { values }
}
