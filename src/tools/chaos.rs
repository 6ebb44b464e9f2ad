//! Fault injection for `aigw mock-upstream`, in the spirit of chaos tools: error statuses with Retry-After,
//! streams broken by disconnect, truncation, a stall or a malformed chunk, and text that a JavaScript upstream
//! would send (an emoji's UTF-16 halves in two events). Draws come from one seeded generator, so a run is
//! repeatable for a given order of arrivals.
//!
//! The mock also keeps score of its clients: how many calls arrived, what it did to them, and how many retries
//! came back earlier than the Retry-After it asked for (per `x-request-id`). `GET /stats` returns the score.

use std::{
    collections::HashMap,
    str::FromStr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::Duration,
};

use serde::Serialize;
use tokio::time::Instant;

/// How a stream is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamFault {
    /// The connection is cut mid-body.
    Disconnect,
    /// The body ends cleanly, without `finish_reason` or `[DONE]`.
    Truncate,
    /// The stream goes silent for `--stall`, then carries on.
    Stall,
    /// An event that is not JSON, then the rest as if nothing happened.
    Malformed,
}

impl FromStr for StreamFault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "disconnect" => Ok(Self::Disconnect),
            "truncate" => Ok(Self::Truncate),
            "stall" => Ok(Self::Stall),
            "malformed" => Ok(Self::Malformed),
            _ => Err(format!(
                "'{s}' is not a stream fault (disconnect, truncate, stall, malformed)"
            )),
        }
    }
}

/// `KEY=P`, P a probability in [0, 1].
pub fn parse_rate<K: FromStr<Err = String>>(text: &str) -> Result<(K, f64), String> {
    let (key, p) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}': expected KEY=PROBABILITY"))?;
    let p: f64 = p.parse().map_err(|_| format!("'{p}' is not a number"))?;
    if !(0.0..=1.0).contains(&p) {
        return Err(format!("'{p}' is not a probability in [0, 1]"));
    }
    Ok((key.parse()?, p))
}

/// An HTTP status to inject, 400–599.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.parse::<u16>() {
            Ok(n @ 400..=599) => Ok(Status(n)),
            _ => Err(format!("'{s}' is not an error status (400-599)")),
        }
    }
}

/// What to inject, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct ChaosConfig {
    /// Each call answers with this status at this probability (in the order given).
    pub errors: Vec<(u16, f64)>,
    /// Sent with injected errors as `Retry-After` (whole seconds, rounded up) and `retry-after-ms`.
    pub retry_after: Option<Duration>,
    /// Each stream that got no error is broken this way at this probability.
    pub stream_faults: Vec<(StreamFault, f64)>,
    /// How long a stalled stream stays silent.
    pub stall: Duration,
    /// Every answer carries an emoji; streams send its two UTF-16 halves in two events.
    pub split_surrogates: bool,
    pub seed: u64,
}

/// What happens to one call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Fate {
    Answer,
    Error(u16),
    /// The stream breaks at token `at` (0: before the first).
    Break(StreamFault, usize),
}

/// The injector and the score.
pub(crate) struct Chaos {
    pub(crate) config: ChaosConfig,
    rng: Mutex<fastrand::Rng>,
    requests: AtomicU64,
    errors: AtomicU64,
    faults: AtomicU64,
    early_retries: AtomicU64,
    /// Request id -> when the wait it was told to take ends.
    told_to_wait: Mutex<HashMap<String, Instant>>,
}

/// Request ids remembered for the early-retry check; past this the oldest knowledge is dropped wholesale.
const MAX_REMEMBERED: usize = 100_000;

#[derive(Debug, Serialize)]
pub(crate) struct Stats {
    pub(crate) requests: u64,
    pub(crate) injected_errors: u64,
    pub(crate) stream_faults: u64,
    /// Retries that came before the Retry-After their request was given.
    pub(crate) early_retries: u64,
}

impl Chaos {
    pub(crate) fn new(config: ChaosConfig) -> Chaos {
        Chaos {
            rng: Mutex::new(fastrand::Rng::with_seed(config.seed)),
            config,
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            early_retries: AtomicU64::new(0),
            told_to_wait: Mutex::default(),
        }
    }

    /// Decides a call's fate; `tokens` is the length of its answer.
    pub(crate) fn fate(&self, request_id: Option<&str>, stream: bool, tokens: usize) -> Fate {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(id) = request_id {
            let mut told = self.told_to_wait.lock().unwrap_or_else(|p| p.into_inner());
            if told.remove(id).is_some_and(|until| Instant::now() < until) {
                self.early_retries.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(status) = pick(&mut rng, &self.config.errors) {
            self.errors.fetch_add(1, Ordering::Relaxed);
            if let (Some(id), Some(wait)) = (request_id, self.config.retry_after) {
                let mut told = self.told_to_wait.lock().unwrap_or_else(|p| p.into_inner());
                if told.len() >= MAX_REMEMBERED {
                    told.clear();
                }
                told.insert(id.to_owned(), Instant::now() + wait);
            }
            return Fate::Error(status);
        }
        if stream {
            if let Some(fault) = pick(&mut rng, &self.config.stream_faults) {
                self.faults.fetch_add(1, Ordering::Relaxed);
                return Fate::Break(fault, rng.usize(0..=tokens));
            }
        }
        Fate::Answer
    }

    pub(crate) fn stats(&self) -> Stats {
        Stats {
            requests: self.requests.load(Ordering::Relaxed),
            injected_errors: self.errors.load(Ordering::Relaxed),
            stream_faults: self.faults.load(Ordering::Relaxed),
            early_retries: self.early_retries.load(Ordering::Relaxed),
        }
    }
}

/// One draw against cumulative probabilities.
fn pick<T: Copy>(rng: &mut fastrand::Rng, table: &[(T, f64)]) -> Option<T> {
    if table.is_empty() {
        return None;
    }
    let mut draw = rng.f64();
    for &(what, p) in table {
        if draw < p {
            return Some(what);
        }
        draw -= p;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_refuse_nonsense() {
        assert_eq!(parse_rate::<Status>("503=0.1"), Ok((Status(503), 0.1)));
        assert_eq!(
            parse_rate::<StreamFault>("stall=0.05"),
            Ok((StreamFault::Stall, 0.05))
        );
        assert!(parse_rate::<Status>("200=0.1").is_err());
        assert!(parse_rate::<Status>("503=1.5").is_err());
        assert!(parse_rate::<StreamFault>("explode=0.1").is_err());
        assert!(parse_rate::<Status>("503").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn fates_follow_the_rates_and_early_retries_are_caught() {
        let chaos = Chaos::new(ChaosConfig {
            errors: vec![(503, 0.1), (429, 0.1)],
            retry_after: Some(Duration::from_secs(1)),
            stream_faults: vec![(StreamFault::Truncate, 0.5)],
            seed: 3,
            ..ChaosConfig::default()
        });
        let fates: Vec<Fate> = (0..10_000)
            .map(|i| chaos.fate(Some(&format!("r{i}")), true, 10))
            .collect();
        let count = |f: &dyn Fn(&Fate) -> bool| fates.iter().filter(|x| f(x)).count();
        let e503 = count(&|f| *f == Fate::Error(503));
        let broken = count(&|f| matches!(f, Fate::Break(StreamFault::Truncate, at) if *at <= 10));
        assert!((800..1200).contains(&e503), "{e503}");
        assert!(
            (3600..4400).contains(&broken),
            "{broken} (half of the 80% without an error)"
        );
        // A retry of an errored request within its second is early; after it, it is not.
        let errored = (0..10_000)
            .find(|i| matches!(fates[*i], Fate::Error(_)))
            .unwrap();
        chaos.fate(Some(&format!("r{errored}")), false, 10);
        assert_eq!(chaos.stats().early_retries, 1);
        let later = (errored + 1..10_000)
            .find(|i| matches!(fates[*i], Fate::Error(_)))
            .unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        chaos.fate(Some(&format!("r{later}")), false, 10);
        assert_eq!(chaos.stats().early_retries, 1);
    }
}
