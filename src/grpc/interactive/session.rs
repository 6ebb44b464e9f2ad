//! A session once started: it reads the client's turns and cancels, answers one turn at a time on its own task,
//! keeps the history, and ends on the client's word, its deadline, shutdown or a key that no longer holds.

use std::sync::Arc;

use tokio::{task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Streaming};
use tracing::Instrument;

use super::{
    history::History,
    replies::{response, turn_error, Tx},
    turn,
};
use crate::call::{relay, start::Failure};
use crate::{
    admission::auth::Identity,
    admission::limits::Admission,
    call::checks,
    core::call_record::CallRecord,
    core::gateway::Gateway,
    error::GatewayError,
    observe::tasks,
    proto::{
        interactive_request::Action, interactive_response::Event, GenerationConfig,
        InteractiveRequest, InteractiveResponse, Message, SessionStarted, UserTurn,
    },
    routing::deadline::Deadline,
    routing::router::Model,
    upstream::pass_through::PassThrough,
};

pub(super) async fn sleep_until(deadline: Option<Deadline>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.at).await,
        None => std::future::pending().await,
    }
}

pub(super) fn expired(deadline: Option<Deadline>) -> GatewayError {
    deadline.map_or_else(
        || GatewayError::Internal("no deadline".into()),
        |d| d.exceeded(),
    )
}

pub(super) struct Session {
    pub(super) model: Arc<Model>,
    /// The model name as the client asked for it (a route with `model = "*"` sends it upstream).
    pub(super) requested: String,
    /// Its Struct fields are in `pass`.
    pub(super) config: Option<GenerationConfig>,
    pub(super) pass: Arc<PassThrough>,
    pub(super) history: History,
    pub(super) who: Arc<Identity>,
    pub(super) request_id: String,
    /// The session's API headers (`anthropic-beta`, ...), sent with every turn to upstreams of their dialect.
    pub(super) api_headers: Arc<crate::upstream::api_headers::ApiHeaders>,
    /// The session's `authorization`, checked against the current keys at every turn.
    pub(super) credentials: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    /// The session's concurrency slot, held until it ends.
    pub(super) _permits: Admission,
}

/// The turn being answered.
pub(super) struct InFlight {
    turn: u32,
    /// The messages the turn adds to the history once answered.
    user: Vec<Message>,
    cancel: CancellationToken,
    task: JoinHandle<Option<turn::Outcome>>,
}

impl Session {
    /// Starts answering a user turn on its own task. A refusal by the key's rate limits, or a key that no longer
    /// holds (revoked, expired, removed, or no longer allowed the model), is an error of the whole session; any
    /// other error concerns this turn only.
    async fn begin(
        &self,
        gw: &Arc<Gateway>,
        number: u32,
        user: UserTurn,
        tx: &Tx,
        session: Option<Deadline>,
    ) -> Result<InFlight, GatewayError> {
        let now = gw.authenticate(self.credentials.as_ref().map(|v| v.as_bytes()))?;
        if !now.allows(&self.model.name) {
            return Err(GatewayError::PermissionDenied {
                key: now.name.clone(),
                model: self.model.name.clone(),
            });
        }
        let user = self.history.user_turn(user)?;
        let messages = self.history.with(&user);
        // As for a unary call, a turn that cannot fit the window is refused before it costs anything (the
        // session keeps its model: no context fallback).
        checks::fits_the_window(&self.model, &messages, self.config.as_ref())?;
        gw.signal.count(); // each turn is load, like a request
        let tokens =
            crate::admission::estimate::reserve(&self.model, &messages, self.config.as_ref());
        let rates = gw.rates(&self.who, &self.model.name, tokens).await;
        let admission = Admission::for_turn(rates.inspect_err(|e| gw.rejected(&self.who, e))?);
        let mut deadline = Deadline::new(Instant::now(), None, self.model.request_timeout());
        if let Some(session) = session {
            deadline = deadline.min(session);
        }
        let cancel = gw.lifecycle.stop.child_token();
        let t = turn::Turn {
            number,
            messages,
            config: self.config.clone(),
            pass: self.pass.clone(),
            deadline,
            request_id: format!("{}-{number}", self.request_id),
            requested: self.requested.clone(),
            api_headers: self.api_headers.clone(),
            admission,
            tx: tx.clone(),
            cancel: cancel.clone(),
            who: now,
        };
        let span = tracing::info_span!("turn", turn = number);
        let task = tasks::spawn(
            "turn",
            turn::answer(gw.clone(), self.model.clone(), t).instrument(span),
        );
        Ok(InFlight {
            turn: number,
            user,
            cancel,
            task,
        })
    }

    pub(super) async fn run(
        mut self,
        gw: Arc<Gateway>,
        mut inbound: Streaming<InteractiveRequest>,
        tx: Tx,
        deadline: Option<Deadline>,
        mut log: CallRecord,
    ) {
        let started = SessionStarted {
            model: self.model.name.clone(),
            max_history_messages: gw.interactive.max_history_messages,
        };
        let mut outcome = send(&tx, response(0, Event::Started(started))).await;
        let mut next_turn = 1u32;
        let mut in_flight: Option<InFlight> = None;
        let mut closing = false;
        while outcome.is_ok() {
            tokio::select! {
                biased;
                _ = gw.lifecycle.stop.cancelled() => outcome = Err(GatewayError::ShuttingDown),
                // While draining, a session ends at the first moment no turn is in flight.
                _ = gw.lifecycle.draining.cancelled(), if in_flight.is_none() => outcome = Err(GatewayError::ShuttingDown),
                _ = sleep_until(deadline) => outcome = Err(expired(deadline)),
                _ = tx.closed() => outcome = Err(relay::client_gone()),
                done = join(&mut in_flight), if in_flight.is_some() => {
                    if let Some(f) = in_flight.take() {
                        let ended = settle(f.turn, done);
                        if let Some((usage, estimated)) = ended.usage {
                            log.add_usage(Some(&usage), estimated);
                        }
                        if let Some(answer) = ended.answer {
                            self.history.remember(f.user, answer);
                        }
                        // Only now, with the session free and the answer in the history, may the client
                        // learn that the turn ended.
                        outcome = send_bounded(&tx, ended.last, deadline, &gw.lifecycle.stop).await;
                    }
                    if closing {
                        break;
                    }
                }
                msg = inbound.message(), if !closing => match msg {
                    Err(status) => outcome = Err(GatewayError::Cancelled(format!("client stream: {}", status.message()))),
                    Ok(None) if in_flight.is_none() => break,
                    Ok(None) => closing = true, // half-closed: answer the turn in flight, then end
                    Ok(Some(InteractiveRequest { action: Some(Action::Turn(user)) })) => {
                        let turn = next_turn;
                        next_turn += 1;
                        let begun = match &in_flight {
                            Some(f) => Err(GatewayError::InvalidArgument(format!(
                                "turn {} is still in flight: wait for it or cancel it", f.turn
                            ))),
                            None => self.begin(&gw, turn, user, &tx, deadline).await,
                        };
                        match begun {
                            Ok(f) => in_flight = Some(f),
                            Err(e) if matches!(e.code(), Code::ResourceExhausted | Code::Unauthenticated | Code::PermissionDenied) => outcome = Err(e),
                            Err(e) => outcome = send(&tx, turn_error(turn, &e)).await,
                        }
                    }
                    Ok(Some(InteractiveRequest { action: Some(Action::Cancel(c)) })) => {
                        // Cancelling a turn that already ended is not an error: the two crossed on the wire.
                        if let Some(f) = in_flight.as_ref().filter(|f| c.turn == 0 || c.turn == f.turn) {
                            f.cancel.cancel();
                        }
                    }
                    Ok(Some(InteractiveRequest { action: Some(Action::Start(_)) })) => {
                        let e = GatewayError::InvalidArgument("the session has started already".into());
                        outcome = send(&tx, turn_error(0, &e)).await;
                    }
                    Ok(Some(InteractiveRequest { action: None })) => {
                        let e = GatewayError::InvalidArgument("empty InteractiveRequest".into());
                        outcome = send(&tx, turn_error(0, &e)).await;
                    }
                },
            }
        }
        if let Some(f) = in_flight {
            f.cancel.cancel();
            if let Ok(Some(turn::Outcome {
                usage: Some((usage, estimated)),
                ..
            })) = f.task.await
            {
                log.add_usage(Some(&usage), estimated);
            }
        }
        if let Err(e) = &outcome {
            if e.code() != Code::Cancelled {
                relay::send_final(
                    &tx,
                    Err(crate::grpc::adapt::status(Failure::new(
                        e.clone(),
                        &self.request_id,
                    ))),
                )
                .await;
            }
        }
        log.finish(outcome.as_ref().map(|_| ()));
    }
}

/// How a turn's task ended. A task that panicked (logged and counted as `turn` by `observe::tasks`) or was
/// aborted still answers its turn, in-band with INTERNAL, so the session never goes quiet, nor ends OK, with a
/// turn unanswered.
pub(super) fn settle(
    turn: u32,
    done: Result<Option<turn::Outcome>, tokio::task::JoinError>,
) -> turn::Outcome {
    done.ok().flatten().unwrap_or_else(|| {
        tracing::error!(turn, "a turn's task failed: answered INTERNAL");
        let err = GatewayError::Internal("the turn failed unexpectedly; send it again".into());
        turn::Outcome {
            answer: None,
            usage: None,
            last: turn_error(turn, &err),
        }
    })
}

pub(super) async fn join(
    f: &mut Option<InFlight>,
) -> Result<Option<turn::Outcome>, tokio::task::JoinError> {
    match f {
        Some(f) => (&mut f.task).await,
        None => std::future::pending().await,
    }
}

pub(super) async fn send(tx: &Tx, msg: InteractiveResponse) -> Result<(), GatewayError> {
    tx.send(Ok(msg)).await.map_err(|_| relay::client_gone())
}

/// [`send`], waiting for room no longer than the session may run.
pub(super) async fn send_bounded(
    tx: &Tx,
    msg: InteractiveResponse,
    deadline: Option<Deadline>,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<(), GatewayError> {
    tokio::select! {
        biased;
        sent = send(tx, msg) => sent,
        _ = stop.cancelled() => Err(GatewayError::ShuttingDown),
        _ = sleep_until(deadline) => Err(expired(deadline)),
    }
}
