//! `aigw chat`: a terminal client for trying a gateway without grpcurl. It opens an `InteractiveStream`
//! session (the server keeps the history) and prints each answer as its tokens arrive.
//!
//! Lines are user turns; a line starting with `/` is a command:
//!
//! | command | what |
//! |---|---|
//! | `/cancel` | cancels the turn in flight; the session goes on |
//! | `/system TEXT` | a new system prompt (empty: none) |
//! | `/model NAME` | another model |
//! | `/quit` | ends the session (so does the end of input) |
//!
//! A session's model and system prompt are fixed when it starts, so `/system` and `/model` start a new session
//! that carries the conversation so far as its history (kept here, as the turns went by). One turn at a time:
//! a line typed (or piped) while an answer streams waits for it to end; `/cancel` does not wait (and Ctrl-C
//! leaves at once). No error loses the conversation: a model that is not there leaves the session as it was,
//! and a session the gateway ends (a limit, its deadline, a restart) is replaced by one that carries it.

use std::{collections::VecDeque, time::Duration};

use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt},
    sync::mpsc,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{metadata::MetadataValue, transport::Channel, Streaming};

use crate::proto::{
    ai_service_client::AiServiceClient, interactive_request::Action, interactive_response::Event,
    CancelTurn, InteractiveRequest, InteractiveResponse, Message, SessionStart, UserTurn,
};

pub struct ChatOptions {
    /// `http://host:port` (or `https://` with `ca`).
    pub target: String,
    pub key: Option<String>,
    pub model: String,
    pub system: Option<String>,
    /// PEM of the CA that signed the gateway's certificate, for `https://`.
    pub ca: Option<Vec<u8>>,
}

/// A session: requests go out on `tx`, events come back on `events`.
struct Session {
    tx: mpsc::Sender<InteractiveRequest>,
    events: Streaming<InteractiveResponse>,
}

/// What the conversation holds, to carry into a new session.
#[derive(Default)]
struct Transcript {
    turns: Vec<Message>,
    /// The answer being streamed.
    answer: String,
    answering: bool,
}

impl Transcript {
    fn ask(&mut self, question: &str) {
        self.turns.push(Message {
            role: "user".into(),
            content: question.to_owned(),
            ..Default::default()
        });
        self.answering = true;
    }

    /// Takes in one event of the turn; returns what to print.
    fn follow(&mut self, event: Event) -> Option<String> {
        match event {
            Event::Delta(d) => {
                self.answer.push_str(&d.delta);
                Some(d.delta)
            }
            Event::Complete(c) => {
                let answer = std::mem::take(&mut self.answer);
                self.turns.push(Message {
                    role: "assistant".into(),
                    content: answer,
                    ..Default::default()
                });
                self.answering = false;
                let tokens = c
                    .usage
                    .map(|u| format!(", {} + {} tokens", u.prompt_tokens, u.completion_tokens))
                    .unwrap_or_default();
                Some(format!("\n[{}{tokens}]\n> ", c.finish_reason))
            }
            Event::Error(e) => {
                // A failed turn leaves no trace in the server's history: drop its question and partial answer
                // from the one carried into a new session too.
                self.answer.clear();
                self.turns.pop();
                self.answering = false;
                let code = crate::observe::metrics::code_name(tonic::Code::from(e.code));
                Some(format!("\n[{code}: {}]\n> ", e.message))
            }
            Event::Started(_) => None,
        }
    }

    /// The turn in flight will not be answered (its session ended): it leaves no trace, as a failed turn.
    fn abandon(&mut self) {
        if self.answering {
            self.answer.clear();
            self.turns.pop();
            self.answering = false;
        }
    }
}

async fn connect(opts: &ChatOptions) -> Result<AiServiceClient<Channel>, String> {
    let mut endpoint = Channel::from_shared(opts.target.clone())
        .map_err(|e| format!("target {}: {e}", opts.target))?
        .connect_timeout(Duration::from_secs(10));
    if let Some(ca) = &opts.ca {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca));
        endpoint = endpoint.tls_config(tls).map_err(|e| format!("TLS: {e}"))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connecting to {}: {e}", opts.target))?;
    Ok(AiServiceClient::new(channel))
}

async fn open(
    client: &mut AiServiceClient<Channel>,
    key: Option<&str>,
    model: &str,
    system: Option<&str>,
    history: &[Message],
) -> Result<(Session, String), String> {
    let (tx, rx) = mpsc::channel(8);
    let start = SessionStart {
        model: model.to_owned(),
        system_prompt: system.unwrap_or_default().to_owned(),
        history: history.to_vec(),
        ..Default::default()
    };
    send(&tx, Action::Start(start)).await?;
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(key) = key {
        let value: MetadataValue<_> = format!("Bearer {key}")
            .parse()
            .map_err(|_| "the key is not a valid header value".to_owned())?;
        req.metadata_mut().insert("authorization", value);
    }
    let mut events = client
        .interactive_stream(req)
        .await
        .map_err(|s| {
            format!(
                "{}: {}",
                crate::observe::metrics::code_name(s.code()),
                s.message()
            )
        })?
        .into_inner();
    match events.message().await {
        Ok(Some(InteractiveResponse {
            event: Some(Event::Started(started)),
            ..
        })) => Ok((Session { tx, events }, started.model)),
        Ok(_) => Err("the session did not start".into()),
        Err(s) => Err(format!(
            "{}: {}",
            crate::observe::metrics::code_name(s.code()),
            s.message()
        )),
    }
}

async fn send(tx: &mpsc::Sender<InteractiveRequest>, action: Action) -> Result<(), String> {
    tx.send(InteractiveRequest {
        action: Some(action),
    })
    .await
    .map_err(|_| "the session has ended".to_owned())
}

/// Runs the session: lines from `input`, answers to `out`, until `/quit`, the end of input or a session error.
pub async fn run<R, W>(opts: ChatOptions, input: R, mut out: W) -> Result<(), String>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut client = connect(&opts).await?;
    let mut model = opts.model.clone();
    let mut system = opts.system.clone();
    let (first, resolved) = open(
        &mut client,
        opts.key.as_deref(),
        &model,
        system.as_deref(),
        &[],
    )
    .await?;
    // `None` after the gateway ended a session and a new one could not start yet: the next line tries again.
    let mut session = Some(first);
    write(
        &mut out,
        &(format!("session with {resolved}; /cancel, /system TEXT, /model NAME, /quit\n> ")),
    )
    .await?;
    let mut lines = input.lines();
    let mut transcript = Transcript::default();
    let mut in_turn = false;
    let mut input_open = true;
    // Lines typed (or piped) while an answer streams wait here for their turn; /cancel does not wait.
    let mut pending: VecDeque<String> = VecDeque::new();
    loop {
        let queued = if in_turn { None } else { pending.pop_front() };
        let line = match queued {
            Some(line) => line,
            None if !input_open && !in_turn => break,
            None => tokio::select! {
                line = lines.next_line(), if input_open => {
                    let Some(line) = line.map_err(|e| format!("reading input: {e}"))? else {
                        input_open = false;
                        continue; // the answer in flight and the queued lines are still seen through
                    };
                    if in_turn && line.trim() != "/cancel" {
                        pending.push_back(line);
                        continue;
                    }
                    line
                }
                event = next_event(&mut session), if session.is_some() => {
                    match event {
                        Ok(event) => {
                            if let Some(text) = transcript.follow(event) {
                                write(&mut out, &text).await?;
                            }
                        }
                        // The session ended (its deadline, a limit, a restart): the conversation is kept here,
                        // and a new session carries it.
                        Err(why) => {
                            transcript.abandon();
                            let carried = transcript.turns.len();
                            session = match open(&mut client, opts.key.as_deref(), &model, system.as_deref(), &transcript.turns).await {
                                Ok((next, resolved)) => {
                                    write(&mut out, &format!("\n(the session ended: {why}; a new one with {resolved} carries {carried} earlier messages)\n> ")).await?;
                                    Some(next)
                                }
                                Err(e) => {
                                    write(&mut out, &format!("\n(the session ended: {why}; no new one yet: {e}; the next line tries again)\n> ")).await?;
                                    None
                                }
                            };
                        }
                    }
                    in_turn = transcript.answering;
                    continue;
                }
            },
        };
        let line = line.trim_end();
        let (command, arg) = match line.strip_prefix('/') {
            Some(c) => c.split_once(' ').map_or((c, ""), |(c, a)| (c, a.trim())),
            None => ("", line),
        };
        match command {
            "quit" | "exit" => break,
            "cancel" if in_turn => {
                if let Some(s) = &session {
                    send(&s.tx, Action::Cancel(CancelTurn { turn: 0 })).await?
                }
            }
            "cancel" => write(&mut out, "(no answer to cancel)\n> ").await?,
            "model" if arg.is_empty() => write(&mut out, "(usage: /model NAME)\n> ").await?,
            "system" | "model" => {
                let (next_model, next_system) = if command == "model" {
                    (arg.to_owned(), system.clone())
                } else {
                    (model.clone(), (!arg.is_empty()).then(|| arg.to_owned()))
                };
                let opened = open(
                    &mut client,
                    opts.key.as_deref(),
                    &next_model,
                    next_system.as_deref(),
                    &transcript.turns,
                )
                .await;
                let carried = transcript.turns.len();
                match opened {
                    Ok((next, resolved)) => {
                        (session, model, system) = (Some(next), next_model, next_system);
                        let said = format!(
                            "(new session with {resolved}, {carried} earlier messages)\n> "
                        );
                        write(&mut out, &said).await?;
                    }
                    // A model that does not exist (or is not this key's) changes nothing: same session, same
                    // conversation.
                    Err(e) => {
                        let said = format!("(no new session: {e}; still with {model})\n> ");
                        write(&mut out, &said).await?;
                    }
                }
            }
            "" if line.is_empty() => write(&mut out, "> ").await?,
            "" => {
                if session.is_none() {
                    match open(
                        &mut client,
                        opts.key.as_deref(),
                        &model,
                        system.as_deref(),
                        &transcript.turns,
                    )
                    .await
                    {
                        Ok((next, _)) => session = Some(next),
                        Err(e) => {
                            write(
                                &mut out,
                                &format!("(no session yet: {e}; the conversation is kept)\n> "),
                            )
                            .await?;
                            continue;
                        }
                    }
                }
                let Some(s) = &session else { continue };
                transcript.ask(line);
                send(
                    &s.tx,
                    Action::Turn(UserTurn {
                        content: line.to_owned(),
                        ..Default::default()
                    }),
                )
                .await?;
                in_turn = true;
            }
            other => write(&mut out, &format!("(unknown command /{other})\n> ")).await?,
        }
    }
    write(&mut out, "\n").await?;
    Ok(())
}

/// The next event of a session; `Err` (why) when the gateway ended it.
async fn next_event(session: &mut Option<Session>) -> Result<Event, String> {
    let Some(s) = session else {
        return Err("no session".into());
    };
    match s.events.message().await {
        Ok(Some(InteractiveResponse {
            event: Some(event), ..
        })) => Ok(event),
        Ok(_) => Err("the gateway ended the session".into()),
        Err(status) => Err(format!(
            "{}: {}",
            crate::observe::metrics::code_name(status.code()),
            status.message()
        )),
    }
}

async fn write<W: AsyncWrite + Unpin>(out: &mut W, text: &str) -> Result<(), String> {
    out.write_all(text.as_bytes())
        .await
        .and(out.flush().await)
        .map_err(|e| format!("writing: {e}"))
}
