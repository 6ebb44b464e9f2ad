//! The one opening every call takes before its answer — a chat completion, whole or streamed, or embeddings —
//! whichever door it came in by: check the request, admit it against the key's limits, look the answer up in
//! the cache, and otherwise dispatch it upstream. What differs by kind, the `Ask` says. Each step records into
//! the call's log. Interactive turns take the same steps from `grpc::interactive`, with the session's admission
//! (its concurrency slot is held by the session, its rates per turn) and without the cache.

use std::sync::Arc;

use super::{ask::Ask, checks, start::Start};
use crate::{
    admission::limits::Admission,
    core::{cache, call_record::CallRecord, gateway::Gateway},
    error::GatewayError,
    observe::timing::Trail,
    routing::{
        deadline::Deadline,
        dispatch::{dispatch, Dispatched},
        router::Model,
    },
};

/// A call past its opening: answered from the cache, or by an upstream (a stream: its first delta in hand).
// One per call and short-lived: boxing the large variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(super) enum Opened {
    Hit {
        hit: Arc<cache::Entry>,
        /// Held until the answer has been sent (concurrency slots).
        admission: Admission,
        model: Arc<Model>,
        deadline: Deadline,
    },
    Upstream(Underway),
}

/// A call an upstream is answering.
pub(super) struct Underway {
    pub(super) dispatched: Dispatched,
    /// Reconciled with the usage once the answer is complete.
    pub(super) admission: Admission,
    pub(super) model: Arc<Model>,
    pub(super) deadline: Deadline,
    /// Where the answer goes in the cache, if it is kept.
    pub(super) plan: cache::Plan,
}

/// What a stream's response needs once an upstream accepted the call.
pub(super) struct Accepted {
    /// The response's cache label.
    pub(super) cache: Option<&'static str>,
    /// The model's keep-alive interval.
    pub(super) keepalive: std::time::Duration,
}

/// Opens a call: the steps above, in order. A refusal or failure here is the call's status. A stream is told
/// through `accepted` when an upstream accepted it (before the answer's first piece).
pub(super) async fn open(
    gw: &Arc<Gateway>,
    start: &Start,
    ask: Ask<'_>,
    stream: bool,
    accepted: Option<&(dyn Fn(Accepted) + Sync)>,
    log: &mut CallRecord,
) -> Result<Opened, GatewayError> {
    let mut model = ask.check(gw, &start.who)?;
    log.model(&model);
    let mut admission = gw
        .admit(&start.who, &model.name, ask.reserve(&model))
        .await?;
    start.admitted(admission.standing());
    let deadline = start.deadline(&model);
    let plan = ask.plan(&model, start.cache_control, &start.who.owner);
    let plan = match look_up(gw, &model, plan, &mut admission, log).await {
        Ok(hit) => {
            return Ok(Opened::Hit {
                hit,
                admission,
                model,
                deadline,
            })
        }
        Err(plan) => plan,
    };
    let keepalive = model.policy.stream.keepalive;
    let on_accept = move || {
        if let Some(tell) = accepted {
            tell(Accepted {
                cache: plan.miss_label(),
                keepalive,
            });
        }
    };
    let mut call = ask.call(deadline, &start.request_id);
    if let Ask::Chat(_) = ask {
        call.accepted = Some(&on_accept);
        call.api_headers = Some(&start.api_headers);
    }
    let mut trail = Trail::default();
    // Boxed: the dispatch is most of a call's future, which would otherwise be copied whole at each level above.
    let mut dispatched = Box::pin(dispatch(&gw.handles(), &model, &call, stream, &mut trail)).await;
    // The upstream refused the prompt as too long for its window: a larger-window model, if one is named.
    let bigger = match (ask, &dispatched) {
        (Ask::Chat(req), Err(e)) => {
            checks::fallback_for_length(gw, &start.who, &model, e, req.config.as_ref())
        }
        _ => None,
    };
    if let Some(bigger) = bigger {
        log.model(&bigger);
        dispatched = Box::pin(dispatch(&gw.handles(), &bigger, &call, stream, &mut trail)).await;
        model = bigger;
    }
    log.dispatched(&trail);
    admission.add_lost(log.book_lost(trail.lost, || ask.prompt_usage()));
    let dispatched = dispatched.inspect_err(|_| admission.release())?;
    Ok(Opened::Upstream(Underway {
        dispatched,
        admission,
        model,
        deadline,
        plan,
    }))
}

/// The cache's answer to `plan`: a hit, already billed (the kept usage when the model charges hits, else
/// nothing: the reserved tokens go back); or the plan back for a call that goes upstream, its
/// miss or bypass recorded in the log.
async fn look_up(
    gw: &Gateway,
    model: &Model,
    plan: cache::Plan,
    admission: &mut Admission,
    log: &mut CallRecord,
) -> Result<Arc<cache::Entry>, cache::Plan> {
    let Some(hit) = gw.cached(model, plan).await else {
        if let Some(label) = plan.miss_label() {
            log.cache(label);
        }
        return Err(plan);
    };
    log.cache("hit");
    if model.cache.as_ref().is_some_and(|c| c.charge_hits) {
        admission.reconcile(u64::try_from(hit.usage.total_tokens).unwrap_or(0));
        log.add_usage(Some(&hit.usage), hit.usage_estimated);
    } else {
        admission.release();
    }
    Ok(hit)
}

/// A kept answer of the other kind than the call's: impossible (each kind's keys have their own prefix, and the
/// fleet's entries are read as the model's kind), but never answered with.
pub(super) fn other_kind() -> GatewayError {
    GatewayError::Internal("the cache kept another kind of answer under this key".into())
}
