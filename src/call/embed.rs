//! `Embed`: vectors for texts, by a model of kind "embedding". The opening chat calls take (`open`: check,
//! admit — tpm counts the input —, the cache, then the dispatcher's routes, retries and breakers), with an
//! answer that is whole at once.

use std::sync::Arc;

use tracing::Instrument;

use super::{
    ask::Ask,
    open::{open, other_kind, Opened, Underway},
    start::{conclude, Outcome, Start},
};
use crate::{
    core::{cache, gateway::Gateway},
    error::GatewayError,
    observe::telemetry,
    proto::{EmbedRequest, EmbedResponse, Embedding, Usage},
    routing::dispatch::Answer,
    upstream::openai::embeddings,
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
        let Underway {
            dispatched,
            mut admission,
            model,
            plan,
            ..
        } = match Box::pin(open(&gw, &start, Ask::Embed(&req), false, None, &mut log)).await? {
            Opened::Hit { hit, .. } => {
                let vectors = hit.vectors().ok_or_else(other_kind)?;
                let resp = EmbedResponse {
                    model: hit.model.clone(),
                    embeddings: vectors.iter().cloned().map(embedding).collect(),
                    usage: Some(hit.usage),
                    usage_estimated: hit.usage_estimated,
                };
                return Ok((resp, Some("hit")));
            }
            Opened::Upstream(underway) => underway,
        };
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
            let vectors = cache::Body::Vectors(answer.vectors.clone());
            let entry = cache::Entry::of(vectors, model.name.clone(), usage, estimated);
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
