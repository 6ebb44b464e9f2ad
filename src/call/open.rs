//! The one opening every chat call takes before its answer, whole or streamed, whichever door it came in by:
//! check the request, admit it against the key's limits, look the answer up in the cache, and otherwise
//! dispatch it upstream. Each step records into the call's log. Interactive turns take the same steps from
//! `grpc::interactive::turn`, with the session's admission and without the cache.

use std::sync::Arc;

use super::{checks, request::Request, start::Start};
use crate::{
    admission::limits::Admission,
    core::{cache, call_record::CallRecord, gateway::Gateway},
    error::GatewayError,
    observe::timing::Trail,
    routing::{
        deadline::Deadline,
        dispatch::{dispatch, Call, Dispatched},
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
    Upstream {
        dispatched: Dispatched,
        /// Reconciled with the usage once the answer is complete.
        admission: Admission,
        model: Arc<Model>,
        deadline: Deadline,
        /// Where the answer goes in the cache, if it is kept.
        plan: cache::Plan,
    },
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
    req: &Request,
    stream: bool,
    accepted: Option<&(dyn Fn(Accepted) + Sync)>,
    log: &mut CallRecord,
) -> Result<Opened, GatewayError> {
    let mut model = checks::chat(gw, &start.who, req)?;
    log.model(&model);
    let mut admission = gw
        .admit(&start.who, &model, &req.messages, req.config.as_ref())
        .await?;
    let deadline = start.deadline(&model);
    let plan = match start.look_up(gw, &model, req, &mut admission, log).await {
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
    let call = Call {
        messages: &req.messages,
        config: req.config.as_ref(),
        pass: &req.pass,
        embed: None,
        deadline,
        request_id: &start.request_id,
        accepted: Some(&on_accept),
        api_headers: Some(&start.api_headers),
        requested: &req.model,
    };
    let mut trail = Trail::default();
    let mut dispatched = dispatch(&gw.handles(), &model, &call, stream, &mut trail).await;
    // The upstream refused the prompt as too long for its window: a larger-window model, if one is named.
    if let Some(bigger) = dispatched
        .as_ref()
        .err()
        .and_then(|e| checks::fallback_for_length(gw, &start.who, &model, e, req.config.as_ref()))
    {
        log.model(&bigger);
        dispatched = dispatch(&gw.handles(), &bigger, &call, stream, &mut trail).await;
        model = bigger;
    }
    log.dispatched(&trail);
    admission.add_lost(log.book_lost(trail.lost, &req.messages));
    let dispatched = dispatched.inspect_err(|_| admission.release())?;
    Ok(Opened::Upstream {
        dispatched,
        admission,
        model,
        deadline,
        plan,
    })
}
