//! `InteractiveStream`: a chat session on one bidirectional stream.
//!
//! The first message names the model, config and optional system prompt/history. Each user turn is numbered
//! (1, 2, ...) and answered by its own task with deltas tagged by the turn, then `TurnComplete`; the answer is
//! appended to the server-side history, so the next turn has the context. One turn runs at a time: a turn sent
//! while another is in flight is refused in-band. `CancelTurn` stops the turn in flight and the session goes
//! on. A failed or cancelled turn is reported in-band (`TurnError`) and leaves the history as it was, so the
//! client may simply send it again. Whole-session problems (auth, permissions, a bad start, the client's
//! deadline, shutdown) end the stream with a status.

use std::{collections::VecDeque, sync::Arc};

use tokio::{sync::mpsc, task::JoinHandle, time::Instant};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status, Streaming};

use super::{
    identity,
    relay::{self, Limits, STREAM_BUFFER},
};
use crate::{
    config::InteractiveConfig,
    convert,
    deadline::{self, Deadline},
    error::GatewayError,
    gateway::Gateway,
    proto::{
        interactive_request::Action, interactive_response::Event, GenerationConfig,
        InteractiveRequest, InteractiveResponse, Message, SessionStart, SessionStarted,
        TurnComplete, TurnDelta, TurnError, Usage, UserTurn,
    },
    router::Model,
    rpclog::RpcLog,
};

type Tx = mpsc::Sender<Result<InteractiveResponse, Status>>;

pub async fn handle(
    gw: Arc<Gateway>,
    request: Request<Streaming<InteractiveRequest>>,
) -> Result<Response<ReceiverStream<Result<InteractiveResponse, Status>>>, Status> {
    let who = identity(&request)?;
    // The client's deadline bounds the whole session; each turn is also bounded by request_timeout.
    let session_deadline = deadline::client_timeout(request.metadata())
        .map(|t| Deadline::new(Instant::now(), Some(t), t));
    let mut inbound = request.into_inner();
    let mut log = RpcLog::new("InteractiveStream", &who.name);
    let opened = async {
        let first = tokio::select! {
            first = inbound.message() => first.map_err(|s| GatewayError::Cancelled(format!("client stream: {}", s.message())))?,
            _ = gw.lifecycle.draining.cancelled() => return Err(GatewayError::ShuttingDown),
            _ = sleep_until(session_deadline) => return Err(expired(session_deadline)),
        };
        let start = match first.and_then(|m| m.action) {
            Some(Action::Start(start)) => start,
            _ => return Err(GatewayError::InvalidArgument("the first message must be SessionStart".into())),
        };
        let model = gw.router.resolve(&start.model, &who)?.clone();
        log.route(&model.name, model.primary()?.upstream.name());
        Session::open(model, start, gw.interactive)
    }
    .await;
    let session = match opened {
        Ok(session) => session,
        Err(e) => {
            log.finish(Err(&e));
            return Err(e.into());
        }
    };
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(session.run(gw, inbound, tx, session_deadline, log));
    Ok(Response::new(ReceiverStream::new(rx)))
}

async fn sleep_until(deadline: Option<Deadline>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.at).await,
        None => std::future::pending().await,
    }
}

fn expired(deadline: Option<Deadline>) -> GatewayError {
    deadline.map_or_else(
        || GatewayError::Internal("no deadline".into()),
        |d| d.exceeded(),
    )
}

fn response(turn: u32, event: Event) -> InteractiveResponse {
    InteractiveResponse {
        turn,
        event: Some(event),
    }
}

fn turn_error(turn: u32, err: &GatewayError) -> InteractiveResponse {
    response(
        turn,
        Event::Error(TurnError {
            code: err.code() as i32,
            message: err.to_string(),
        }),
    )
}

struct Session {
    model: Arc<Model>,
    config: Option<GenerationConfig>,
    system: Option<Message>,
    history: VecDeque<Message>,
    limits: InteractiveConfig,
}

/// The turn being answered.
struct InFlight {
    turn: u32,
    user: Message,
    cancel: CancellationToken,
    task: JoinHandle<Option<(String, Option<Usage>)>>,
}

impl Session {
    fn open(
        model: Arc<Model>,
        start: SessionStart,
        limits: InteractiveConfig,
    ) -> Result<Session, GatewayError> {
        convert::check_config(start.config.as_ref(), model.max_output_tokens)?;
        for (i, m) in start.history.iter().enumerate() {
            if !convert::ROLES.contains(&m.role.as_str()) {
                return Err(GatewayError::InvalidArgument(format!(
                    "history[{i}].role: '{}' is not one of {}",
                    m.role,
                    convert::ROLES.join(", ")
                )));
            }
        }
        let system = (!start.system_prompt.is_empty()).then(|| Message {
            role: "system".into(),
            content: start.system_prompt,
            name: String::new(),
        });
        if system
            .as_ref()
            .is_some_and(|s| s.content.len() > limits.max_history_bytes / 2)
        {
            return Err(GatewayError::InvalidArgument(format!(
                "system_prompt: longer than half of the server's history bound ({} bytes)",
                limits.max_history_bytes
            )));
        }
        let mut session = Session {
            model,
            config: start.config,
            system,
            history: start.history.into(),
            limits,
        };
        session.trim();
        Ok(session)
    }

    /// Drops the oldest messages until the history fits its bounds; the system prompt always stays.
    fn trim(&mut self) {
        let fixed_messages = usize::from(self.system.is_some());
        let fixed_bytes = self.system.as_ref().map_or(0, |s| s.content.len());
        let mut bytes: usize =
            fixed_bytes + self.history.iter().map(|m| m.content.len()).sum::<usize>();
        while !self.history.is_empty()
            && (self.history.len() + fixed_messages > self.limits.max_history_messages as usize
                || bytes > self.limits.max_history_bytes)
        {
            if let Some(old) = self.history.pop_front() {
                bytes -= old.content.len();
            }
        }
    }

    fn remember(&mut self, user: Message, answer: String) {
        self.history.push_back(user);
        self.history.push_back(Message {
            role: "assistant".into(),
            content: answer,
            name: String::new(),
        });
        self.trim();
    }

    /// Starts answering a user turn on its own task.
    fn begin(
        &self,
        gw: &Arc<Gateway>,
        turn: u32,
        user: UserTurn,
        tx: &Tx,
        session: Option<Deadline>,
    ) -> Result<InFlight, GatewayError> {
        if user.content.is_empty() {
            return Err(GatewayError::InvalidArgument(
                "turn.content: must not be empty".into(),
            ));
        }
        if user.content.len() > self.limits.max_history_bytes / 2 {
            return Err(GatewayError::InvalidArgument(format!(
                "turn.content: longer than half of the server's history bound ({} bytes)",
                self.limits.max_history_bytes
            )));
        }
        let route = self.model.primary()?;
        let user = Message {
            role: "user".into(),
            content: user.content,
            name: user.name,
        };
        let messages: Vec<Message> = self
            .system
            .iter()
            .chain(&self.history)
            .chain(std::iter::once(&user))
            .cloned()
            .collect();
        let mut deadline = Deadline::new(Instant::now(), None, route.upstream.request_timeout());
        if let Some(session) = session {
            deadline = deadline.min(session);
        }
        let cancel = gw.lifecycle.stop.child_token();
        let task = tokio::spawn(answer_turn(
            gw.clone(),
            self.model.clone(),
            messages,
            self.config.clone(),
            TurnCtx {
                turn,
                deadline,
                tx: tx.clone(),
                cancel: cancel.clone(),
            },
        ));
        Ok(InFlight {
            turn,
            user,
            cancel,
            task,
        })
    }

    async fn run(
        mut self,
        gw: Arc<Gateway>,
        mut inbound: Streaming<InteractiveRequest>,
        tx: Tx,
        deadline: Option<Deadline>,
        mut log: RpcLog,
    ) {
        let started = SessionStarted {
            model: self.model.name.clone(),
            max_history_messages: self.limits.max_history_messages,
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
                    if let (Some(f), Ok(Some((answer, usage)))) = (in_flight.take(), done) {
                        log.add_usage(usage.as_ref());
                        self.remember(f.user, answer);
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
                            None => self.begin(&gw, turn, user, &tx, deadline),
                        };
                        match begun {
                            Ok(f) => in_flight = Some(f),
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
            let _ = f.task.await;
        }
        if let Err(e) = &outcome {
            if e.code() != Code::Cancelled {
                relay::send_error(&tx, e).await;
            }
        }
        log.finish(outcome.as_ref().map(|_| ()));
    }
}

async fn join(
    f: &mut Option<InFlight>,
) -> Result<Option<(String, Option<Usage>)>, tokio::task::JoinError> {
    match f {
        Some(f) => (&mut f.task).await,
        None => std::future::pending().await,
    }
}

async fn send(tx: &Tx, msg: InteractiveResponse) -> Result<(), GatewayError> {
    tx.send(Ok(msg)).await.map_err(|_| relay::client_gone())
}

struct TurnCtx {
    turn: u32,
    deadline: Deadline,
    tx: Tx,
    cancel: CancellationToken,
}

/// Answers one turn; returns the answer and usage when it completed, for the history.
async fn answer_turn(
    gw: Arc<Gateway>,
    model: Arc<Model>,
    messages: Vec<Message>,
    config: Option<GenerationConfig>,
    ctx: TurnCtx,
) -> Option<(String, Option<Usage>)> {
    let limits = Limits {
        deadline: ctx.deadline,
        stop: &gw.lifecycle.stop,
        cancel: Some(&ctx.cancel),
    };
    let turn = ctx.turn;
    let mut answer = String::new();
    let result = async {
        let route = model.primary()?;
        let mut stream = tokio::select! {
            opened = gw.open_stream(route, &messages, config.as_ref(), ctx.deadline) => opened?,
            _ = ctx.cancel.cancelled() => return Err(GatewayError::Cancelled("the turn was cancelled".into())),
        };
        let wrap = |delta: String| {
            answer.push_str(&delta);
            response(turn, Event::Delta(TurnDelta { delta }))
        };
        relay::pump(&mut stream, &ctx.tx, wrap, &limits).await
    }
    .await;
    match result {
        Ok(end) => {
            let complete = TurnComplete {
                usage: end.usage,
                finish_reason: end.finish_reason,
                id: end.id,
            };
            relay::send(
                &ctx.tx,
                Ok(response(turn, Event::Complete(complete))),
                &limits,
            )
            .await
            .ok()?;
            Some((answer, end.usage))
        }
        Err(e) => {
            let _ = relay::send(&ctx.tx, Ok(turn_error(turn, &e)), &limits).await;
            None
        }
    }
}
