//! `InteractiveStream`'s opening: the first message must start the session (model, config, system prompt,
//! history); the model, config and history are checked, the session's concurrency slot taken, and the session
//! started on its own task.

use std::sync::Arc;

use tokio::{sync::mpsc, time::Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::{
    history::History,
    session::{expired, sleep_until, Session},
};
use crate::call::relay::{self, STREAM_BUFFER};
use crate::{
    call::checks,
    core::gateway::Gateway,
    error::GatewayError,
    proto::{interactive_request::Action, InteractiveRequest, InteractiveResponse},
    routing::deadline::Deadline,
    upstream::pass_through::PassThrough,
};

pub(crate) async fn handle(
    gw: Arc<Gateway>,
    request: Request<Streaming<InteractiveRequest>>,
) -> Result<Response<ReceiverStream<Result<InteractiveResponse, Status>>>, Status> {
    // The key, checked again at every turn: a key revoked, expired or removed by a reload stops the session.
    let credentials = request.metadata().get("authorization").cloned();
    let (start, mut inbound) = crate::grpc::adapt::read(request)?;
    // The client's deadline bounds the whole session; each turn is also bounded by request_timeout.
    let session_deadline = start
        .client_timeout
        .map(|t| Deadline::new(Instant::now(), Some(t), t));
    let mut log = start.record("InteractiveStream", &gw);
    log.timing.overhead_applies = false;
    let span = start.span("InteractiveStream");
    let opened = async {
        let first = tokio::select! {
            first = inbound.message() => first.map_err(|s| GatewayError::Cancelled(format!("client stream: {}", s.message())))?,
            _ = gw.lifecycle.draining.cancelled() => return Err(GatewayError::ShuttingDown),
            _ = sleep_until(session_deadline) => return Err(expired(session_deadline)),
        };
        let Some(Action::Start(first)) = first.and_then(|m| m.action) else {
            return Err(GatewayError::InvalidArgument("the first message must be SessionStart".into()));
        };
        let model = checks::of_kind(
            gw.catalog().router.resolve(&first.model, &*start.who)?,
            crate::config::ModelKind::Chat,
        )?;
        log.model(&model);
        let mut config = first.config;
        let pass = config.as_mut().map(PassThrough::take_from).unwrap_or_default();
        checks::check_config(config.as_ref(), model.max_output_tokens)?;
        checks::check_pass_through(&pass)?;
        let history = History::new(first.system_prompt, first.history, gw.interactive)?;
        let permits = gw
            .permits(&start.who, &model.name)
            .inspect_err(|e| gw.rejected(&start.who, e))?;
        Ok(Session {
            model,
            requested: first.model,
            config,
            pass: Arc::new(pass),
            history,
            who: start.who.clone(),
            request_id: start.request_id.clone(),
            api_headers: Arc::new(start.api_headers.clone()),
            credentials,
            _permits: permits,
        })
    }
    .instrument(span.clone())
    .await;
    let session = match opened {
        Ok(session) => session,
        Err(e) => {
            log.finish(Err(&e));
            return Err(crate::grpc::adapt::status(start.fail(e)));
        }
    };
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    relay::spawn_guarded(
        tx.clone(),
        session
            .run(gw, inbound, tx, session_deadline, log)
            .instrument(span),
    );
    crate::grpc::adapt::respond(Ok(start.reply(ReceiverStream::new(rx), None)))
}
