//! A scripted upstream for unit tests (compiled only for them): each call takes the next scripted outcome,
//! after the scripted delay, and is recorded with the (paused) tokio clock. The seam that lets the dispatcher's
//! retry, cooling, breaker and Retry-After rules run under `tokio::test(start_paused = true)`.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::time::Instant;

use super::{answer::Completion, answer::StreamEnd, answer::StreamEvent};
use crate::error::GatewayError;

/// One scripted answer.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// A whole answer (or a stream of one delta and its end) with this text.
    Ok(&'static str),
    /// The call fails with this error (a stream: before its first event).
    Fail(GatewayError),
    /// A stream that answers 200 and then fails with this error before any delta.
    StreamFails(GatewayError),
    /// A stream that answers 200 and then sends nothing, ever.
    StreamStalls,
    /// A stream that answers 200 and then sends these events, each after its wait (then stalls, unless the
    /// last was the end or an error).
    Events(Vec<(Duration, Result<StreamEvent, GatewayError>)>),
}

pub(crate) struct Scripted {
    name: String,
    delay: Duration,
    steps: Mutex<VecDeque<Step>>,
    calls: Mutex<Vec<Instant>>,
}

impl Scripted {
    /// Answers with `steps` in order; the last one repeats. Each answer takes `delay`.
    pub(crate) fn new(name: &str, delay: Duration, steps: Vec<Step>) -> Scripted {
        Scripted {
            name: name.to_owned(),
            delay,
            steps: Mutex::new(steps.into()),
            calls: Mutex::default(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// When each call arrived.
    pub(crate) fn calls(&self) -> Vec<Instant> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn next(&self) -> Step {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Instant::now());
        let step = {
            let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
            match steps.len() {
                0 => Step::Fail(GatewayError::Internal("empty script".into())),
                1 => steps[0].clone(),
                _ => steps.pop_front().unwrap_or(Step::Ok("")),
            }
        };
        tokio::time::sleep(self.delay).await;
        step
    }

    pub(crate) async fn complete(&self) -> Result<Completion, GatewayError> {
        match self.next().await {
            Step::Ok(text) => Ok(Completion {
                id: "scripted".into(),
                model: self.name.clone(),
                content: text.into(),
                finish_reason: "stop".into(),
                usage: None,
                tool_calls: vec![],
                logprobs: vec![],
                reasoning: vec![],
            }),
            Step::Fail(e) | Step::StreamFails(e) => Err(e),
            Step::StreamStalls | Step::Events(_) => Err(GatewayError::Internal(
                "a stream scripted for a unary call".into(),
            )),
        }
    }

    pub(crate) async fn stream(&self) -> Result<ScriptedStream, GatewayError> {
        let events = match self.next().await {
            Step::Ok(text) => vec![
                Ok(StreamEvent::Delta(text.into())),
                Ok(StreamEvent::End(StreamEnd::default())),
            ],
            Step::Events(timed) => return Ok(ScriptedStream::timed(timed)),
            Step::Fail(e) => return Err(e),
            Step::StreamFails(e) => vec![Err(e)],
            Step::StreamStalls => {
                return Ok(ScriptedStream {
                    events: VecDeque::new(),
                    stalls: true,
                    taken: None,
                    timed: VecDeque::new(),
                })
            }
        };
        Ok(ScriptedStream {
            events: events.into(),
            stalls: false,
            taken: None,
            timed: VecDeque::new(),
        })
    }
}

pub(crate) struct ScriptedStream {
    events: VecDeque<Result<StreamEvent, GatewayError>>,
    /// Sends nothing, ever.
    stalls: bool,
    /// Counts the events handed out, for tests of how far a reader has pulled.
    taken: Option<Arc<AtomicUsize>>,
    /// Events due after a wait (from the previous one), handed out before the stall; the deadline of the next
    /// one once it is being waited for, so a dropped wait loses nothing.
    timed: VecDeque<(Duration, Result<StreamEvent, GatewayError>, Option<Instant>)>,
}

impl ScriptedStream {
    /// `n` deltas, then the end, each ready at once; `taken` counts those handed out.
    pub(crate) fn deltas(n: usize, taken: Arc<AtomicUsize>) -> ScriptedStream {
        let mut events: VecDeque<_> = (0..n)
            .map(|i| Ok(StreamEvent::Delta(format!("t{i} "))))
            .collect();
        events.push_back(Ok(StreamEvent::End(StreamEnd::default())));
        ScriptedStream {
            events,
            stalls: false,
            taken: Some(taken),
            timed: VecDeque::new(),
        }
    }

    /// Events each due after its wait from the previous one, then a stall.
    pub(crate) fn timed(
        events: Vec<(Duration, Result<StreamEvent, GatewayError>)>,
    ) -> ScriptedStream {
        ScriptedStream {
            events: VecDeque::new(),
            stalls: true,
            taken: None,
            timed: events.into_iter().map(|(w, e)| (w, e, None)).collect(),
        }
    }

    pub(crate) async fn next_event(&mut self) -> Option<Result<StreamEvent, GatewayError>> {
        if let Some((wait, _, due)) = self.timed.front_mut() {
            let at = *due.get_or_insert_with(|| Instant::now() + *wait);
            tokio::time::sleep_until(at).await;
            return self.timed.pop_front().map(|(_, event, _)| event);
        }
        if self.stalls {
            std::future::pending::<()>().await;
        }
        let event = self.events.pop_front();
        if let (Some(taken), Some(_)) = (&self.taken, &event) {
            taken.fetch_add(1, Ordering::SeqCst);
        }
        event
    }
}
