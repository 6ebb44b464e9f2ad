//! The built-in `mock` upstream: deterministic text derived from the conversation, paced like a real model
//! (latency to the first token, then a steady token rate), with honest usage counts. It runs in-process, so
//! demos, the default config and load tests need no network.

pub(crate) mod embed;
mod schema;

use std::time::Duration;

use tokio::time::Instant;

use super::{answer::Completion, answer::StreamEnd, answer::StreamEvent};
use crate::{
    config::UpstreamConfig,
    proto::{ToolCall, Usage},
    upstream::openai::wire::ChatRequest,
};

const WORDS: [&str; 32] = [
    "gateway", "stream", "token", "latency", "model", "request", "answer", "context", "signal",
    "replica", "budget", "route", "channel", "window", "message", "deadline", "upstream", "cache",
    "status", "metric", "session", "prompt", "delta", "header", "trailer", "frame", "buffer",
    "limit", "quota", "proxy", "socket", "cluster",
];
/// Per-message overhead in the prompt count, as chat formats add role markers.
const TOKENS_PER_MESSAGE: usize = 4;

pub(crate) struct MockUpstream {
    name: String,
    pacing: Pacing,
    request_timeout: Duration,
}

/// How the mock paces a reply: latency to the first token, then a steady rate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pacing {
    first_token_latency: Duration,
    token_interval: Duration,
}

impl Pacing {
    pub(crate) fn new(first_token_latency: Duration, tokens_per_second: f64) -> Pacing {
        Pacing {
            first_token_latency,
            token_interval: Duration::from_secs_f64(1.0 / tokens_per_second),
        }
    }

    /// When token `i` (0-based) of a reply started at `start` is ready.
    pub(crate) fn ready_at(&self, start: Instant, i: usize) -> Instant {
        start
            + self.first_token_latency
            + self.token_interval * u32::try_from(i).unwrap_or(u32::MAX)
    }

    /// Waits until token `i` of a reply started at `start` is ready.
    pub(crate) async fn token(&self, start: Instant, i: usize) {
        pace(self.ready_at(start, i)).await
    }
}

/// The whole answer the mock gives to one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub(crate) id: String,
    pub(crate) model: String,
    pub(crate) tokens: Vec<String>,
    pub(crate) finish_reason: &'static str,
    pub(crate) usage: Usage,
    /// When the request offered tools and the last message is the user's: a call instead of text.
    pub(crate) tool_calls: Vec<ToolCall>,
}

impl MockUpstream {
    pub(crate) fn new(cfg: &UpstreamConfig) -> Self {
        Self {
            name: cfg.name.clone(),
            pacing: Pacing::new(cfg.first_token_latency, cfg.tokens_per_second),
            request_timeout: cfg.request_timeout,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    pub(crate) async fn complete(&self, req: &ChatRequest<'_>) -> Completion {
        let reply = reply(req);
        let start = Instant::now();
        self.pacing
            .token(start, reply.tokens.len().saturating_sub(1))
            .await;
        Completion {
            id: reply.id,
            model: reply.model,
            content: reply.tokens.concat(),
            finish_reason: reply.finish_reason.to_owned(),
            usage: Some(reply.usage),
            tool_calls: reply.tool_calls,
            logprobs: Vec::new(),
            reasoning: Vec::new(),
        }
    }

    /// Embeddings after the first-token latency (see `mock::embed`). The vectors are CPU work (texts ×
    /// dimensions), done off the async workers so that other calls and the health probes do not wait behind them.
    pub(crate) async fn embed(
        &self,
        model: &str,
        ask: crate::upstream::openai::embeddings::EmbedAsk<'_>,
    ) -> Result<crate::upstream::openai::embeddings::Embeddings, crate::error::GatewayError> {
        self.pacing.token(Instant::now(), 0).await;
        let (model, input) = (model.to_owned(), ask.input.to_vec());
        let (dimensions, user) = (ask.dimensions, ask.user.to_owned());
        tokio::task::spawn_blocking(move || {
            let ask = crate::upstream::openai::embeddings::EmbedAsk {
                input: &input,
                dimensions,
                user: &user,
            };
            embed::embed(&model, ask)
        })
        .await
        .map_err(|e| crate::error::GatewayError::Internal(format!("the mock's embeddings: {e}")))
    }

    pub(crate) fn stream(&self, req: &ChatRequest<'_>) -> MockStream {
        let reply = reply(req);
        let start = Instant::now();
        let schedule = (0..reply.tokens.len())
            .map(|i| self.pacing.ready_at(start, i))
            .collect();
        MockStream {
            end: Some(StreamEnd {
                id: reply.id,
                model: reply.model,
                finish_reason: reply.finish_reason.to_owned(),
                usage: Some(reply.usage),
                tool_calls: reply.tool_calls,
                logprobs: Vec::new(),
                reasoning: Vec::new(),
            }),
            tokens: reply.tokens.into_iter(),
            schedule,
            next: 0,
        }
    }
}

pub(crate) struct MockStream {
    tokens: std::vec::IntoIter<String>,
    schedule: Vec<Instant>,
    next: usize,
    end: Option<StreamEnd>,
}

impl MockStream {
    /// Cancel-safe: the token is taken only after its time has come.
    pub(crate) async fn next(&mut self) -> Option<StreamEvent> {
        if let Some(&at) = self.schedule.get(self.next) {
            pace(at).await;
            self.next += 1;
            return self.tokens.next().map(StreamEvent::Delta);
        }
        self.end.take().map(StreamEvent::End)
    }
}

/// Waits until `at`, unless that is less than a millisecond away: tokio's timers have millisecond resolution,
/// so such a wait would last a whole millisecond. A token due within the millisecond is sent at once instead,
/// which keeps a fast mock (benchmarks) fast without changing the pacing of a slow one.
async fn pace(at: Instant) {
    if at.saturating_duration_since(Instant::now()) >= Duration::from_millis(1) {
        tokio::time::sleep_until(at).await;
    }
}

/// FNV-1a: a stable hash, so the same conversation always gets the same answer on every machine.
fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn quote(text: &str) -> String {
    let cut: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(48)
        .collect();
    format!("\"{cut}\"")
}

/// The deterministic answer: it names the turn and quotes the last user message (and the one before, so a
/// second turn visibly depends on the first), then adds words chosen by a hash of the whole conversation.
pub(crate) fn reply(req: &ChatRequest<'_>) -> Reply {
    let hash = req.messages.iter().fold(0xcbf2_9ce4_8422_2325, |h, m| {
        fnv(fnv(h, m.role.as_bytes()), m.text().as_bytes())
    });
    let texts: Vec<_> = req.messages.iter().map(|m| m.text()).collect();
    let users: Vec<&str> = req
        .messages
        .iter()
        .zip(&texts)
        .filter(|(m, _)| m.role == "user")
        .map(|(_, t)| t.as_ref())
        .collect();
    let last = req.messages.last();
    if let Some(call) = last
        .filter(|m| m.role == "user")
        .and_then(|_| tool_call(req, users.last().copied().unwrap_or_default(), hash))
    {
        return Reply {
            id: format!("mock-{hash:016x}"),
            model: req.model.to_owned(),
            usage: usage(prompt_tokens(req), 8),
            tokens: Vec::new(),
            finish_reason: "tool_calls",
            tool_calls: vec![call],
        };
    }
    let mut text = match users.as_slice() {
        _ if last.is_some_and(|m| m.role == "tool") => format!(
            "The tool said {}.",
            quote(texts.last().map_or("", |t| t.as_ref()))
        ),
        [] => "Hello from the mock model.".to_owned(),
        [only] => format!("Reply 1 to {}.", quote(only)),
        [.., prev, last] => format!(
            "Reply {} to {}; earlier you said {}.",
            users.len(),
            quote(last),
            quote(prev)
        ),
    };
    let extra = 12 + (hash % 13) as usize;
    let mut h = hash;
    for _ in 0..extra {
        h = fnv(h, b"w");
        text.push(' ');
        text.push_str(WORDS[usize::try_from(h % WORDS.len() as u64).unwrap_or(0)]);
    }
    text.push('.');
    // JSON mode: a `json_schema` format gets an object valid against its schema, `json_object` the answer as
    // an object.
    if let Some(format) = req.response_format.as_ref() {
        match format["type"].as_str() {
            Some("json_schema") => {
                let schema = &format["json_schema"]["schema"];
                let user = users.last().copied().unwrap_or_default();
                text = schema::instance(schema, schema, &mut schema::Picks::new(user)).to_string();
            }
            Some("json_object") => text = serde_json::json!({ "answer": text }).to_string(),
            _ => {}
        }
    }

    let mut finish_reason = "stop";
    if let Some(cut) = req.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
        text.truncate(cut);
    }
    // One token per word, each carrying its leading space, as real tokenizers mostly do.
    let mut tokens: Vec<String> = text.split_inclusive(' ').map(str::to_owned).collect();
    tokens.retain(|t| !t.is_empty());
    if let Some(max) = req.max_output_tokens() {
        if tokens.len() > max as usize {
            tokens.truncate(max as usize);
            finish_reason = "length";
        }
    }
    Reply {
        id: format!("mock-{hash:016x}"),
        model: req.model.to_owned(),
        usage: usage(prompt_tokens(req), tokens.len()),
        tokens,
        finish_reason,
        tool_calls: Vec::new(),
    }
}

fn prompt_tokens(req: &ChatRequest<'_>) -> usize {
    req.messages
        .iter()
        .map(|m| TOKENS_PER_MESSAGE + m.text().split_whitespace().count())
        .sum()
}

fn usage(prompt: usize, completion: usize) -> Usage {
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    Usage {
        prompt_tokens: count(prompt),
        completion_tokens: count(completion),
        total_tokens: count(prompt + completion),
        ..Default::default()
    }
}

/// The mock's tool use: with tools offered and `tool_choice` not "none", it calls the chosen function (or the
/// first) with arguments valid against its parameters' schema, filled from the user's last message.
fn tool_call(req: &ChatRequest<'_>, user: &str, hash: u64) -> Option<ToolCall> {
    let chosen = match &req.tool_choice {
        Some(serde_json::Value::String(mode)) if mode == "none" => return None,
        Some(choice) => choice["function"]["name"].as_str(),
        None => None,
    };
    let name = chosen.or_else(|| req.tools.first()?["function"]["name"].as_str())?;
    let params = req
        .tools
        .iter()
        .find(|t| t["function"]["name"] == name)
        .map(|t| &t["function"]["parameters"])
        .filter(|p| p.is_object());
    let arguments = match params {
        Some(schema) => schema::instance(schema, schema, &mut schema::Picks::new(user)),
        None => serde_json::json!({}),
    };
    Some(ToolCall {
        id: format!("call_{:012x}", hash & 0xffff_ffff_ffff),
        name: name.to_owned(),
        arguments: arguments.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::openai::wire::{ChatContent, ChatMessage};

    fn req<'a>(
        messages: &[(&'a str, &'a str)],
        max_tokens: Option<u32>,
        stop: &'a [String],
    ) -> ChatRequest<'a> {
        ChatRequest {
            model: "m",
            messages: messages
                .iter()
                .map(|&(role, content)| ChatMessage {
                    role,
                    content: Some(ChatContent::Text(content)),
                    ..ChatMessage::default()
                })
                .collect(),
            max_tokens,
            stop,
            stream: true,
            ..ChatRequest::default()
        }
    }

    #[test]
    fn replies_are_deterministic_and_depend_on_the_conversation() {
        let one = reply(&req(&[("user", "hello there")], None, &[]));
        assert_eq!(one, reply(&req(&[("user", "hello there")], None, &[])));
        assert!(one
            .tokens
            .concat()
            .starts_with("Reply 1 to \"hello there\"."));
        let two = reply(&req(
            &[
                ("user", "hello there"),
                ("assistant", "x"),
                ("user", "and now?"),
            ],
            None,
            &[],
        ));
        let text = two.tokens.concat();
        assert!(
            text.starts_with("Reply 2 to \"and now?\"; earlier you said \"hello there\"."),
            "{text}"
        );
    }

    #[test]
    fn usage_is_honest() {
        let r = reply(&req(
            &[("system", "be brief"), ("user", "one two three")],
            None,
            &[],
        ));
        assert_eq!(r.usage.prompt_tokens, (4 + 2) + (4 + 3));
        assert_eq!(r.usage.completion_tokens as usize, r.tokens.len());
        assert_eq!(
            r.usage.total_tokens,
            r.usage.prompt_tokens + r.usage.completion_tokens
        );
        assert_eq!(r.finish_reason, "stop");
    }

    #[test]
    fn max_tokens_and_stop_cut_the_answer() {
        let r = reply(&req(&[("user", "hi")], Some(3), &[]));
        assert_eq!((r.tokens.len(), r.finish_reason), (3, "length"));
        let stop = ["to".to_owned()];
        let r = reply(&req(&[("user", "hi")], None, &stop));
        assert_eq!(r.tokens.concat(), "Reply 1 ");
    }

    #[tokio::test(start_paused = true)]
    async fn streams_are_paced() {
        let cfg =
            crate::config::Config::parse(include_str!("../../config.toml"), |_| None).unwrap();
        let mock = MockUpstream::new(&cfg.upstreams[0]); // 50ms to the first token, then 100 tokens/s
        let start = Instant::now();
        let mut s = mock.stream(&req(&[("user", "hi")], None, &[]));
        let mut at = Vec::new();
        while let Some(StreamEvent::Delta(_)) = s.next().await {
            at.push(start.elapsed());
        }
        assert_eq!(at[0], Duration::from_millis(50));
        assert_eq!(at[1], Duration::from_millis(60));
        assert_eq!(at[4], Duration::from_millis(90));
        assert!(s.next().await.is_none(), "nothing after the end");
    }

    #[tokio::test(start_paused = true)]
    async fn sub_millisecond_waits_are_not_rounded_up_to_a_millisecond() {
        let mut cfg =
            crate::config::Config::parse(include_str!("../../config.toml"), |_| None).unwrap();
        cfg.upstreams[0].first_token_latency = Duration::ZERO;
        cfg.upstreams[0].tokens_per_second = 1_000_000.0;
        let mock = MockUpstream::new(&cfg.upstreams[0]);
        let start = Instant::now();
        let done = mock.complete(&req(&[("user", "hi")], None, &[])).await;
        assert!(!done.content.is_empty());
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "paused time did not move: no timer was waited on"
        );
    }
}
