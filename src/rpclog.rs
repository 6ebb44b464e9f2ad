//! One structured log line per RPC: key name, model, upstream, status, latency, tokens. Never the client key,
//! the upstream key or any prompt or answer text.

use tokio::time::Instant;

use crate::{error::GatewayError, proto::Usage};

pub struct RpcLog {
    rpc: &'static str,
    key: String,
    request_id: String,
    model: String,
    upstream: String,
    start: Instant,
    usage: Usage,
    /// Turns answered, for InteractiveStream.
    turns: u32,
    /// Upstream attempts (more than one: retries or fallbacks).
    attempts: u32,
    /// Set by `finish`; a log dropped unfinished means the client went away (the handler future was dropped).
    outcome: Option<(tonic::Code, &'static str)>,
}

impl RpcLog {
    pub fn new(rpc: &'static str, key: &str, request_id: &str) -> RpcLog {
        RpcLog {
            rpc,
            key: key.to_owned(),
            request_id: request_id.to_owned(),
            model: String::new(),
            upstream: String::new(),
            start: Instant::now(),
            usage: Usage::default(),
            turns: 0,
            attempts: 0,
            outcome: None,
        }
    }

    pub fn model(&mut self, model: &str) {
        model.clone_into(&mut self.model);
    }

    /// The upstream that answered, and after how many attempts in all.
    pub fn upstream(&mut self, upstream: &str, attempts: u32) {
        upstream.clone_into(&mut self.upstream);
        self.attempts += attempts;
    }

    pub fn add_usage(&mut self, usage: Option<&Usage>) {
        if let Some(u) = usage {
            self.usage.prompt_tokens = self.usage.prompt_tokens.saturating_add(u.prompt_tokens);
            self.usage.completion_tokens = self
                .usage
                .completion_tokens
                .saturating_add(u.completion_tokens);
            self.usage.total_tokens = self.usage.total_tokens.saturating_add(u.total_tokens);
        }
        self.turns += 1;
    }

    /// Records the outcome; the line is written when the log is dropped. Errors are logged by code and label
    /// only: their messages can quote the upstream.
    pub fn finish(mut self, outcome: Result<(), &GatewayError>) {
        self.outcome = Some(match outcome {
            Ok(()) => (tonic::Code::Ok, ""),
            Err(e) => (e.code(), e.label()),
        });
    }
}

impl Drop for RpcLog {
    fn drop(&mut self) {
        let latency_ms = self.start.elapsed().as_secs_f64() * 1000.0;
        let (code, error) = self
            .outcome
            .unwrap_or((tonic::Code::Cancelled, "client_gone"));
        tracing::info!(
            target: "aigw::rpc",
            rpc = self.rpc,
            key = %self.key,
            request_id = %self.request_id,
            model = %self.model,
            upstream = %self.upstream,
            code = ?code,
            error,
            latency_ms = format_args!("{latency_ms:.2}"),
            prompt_tokens = self.usage.prompt_tokens,
            completion_tokens = self.usage.completion_tokens,
            turns = self.turns,
            attempts = self.attempts,
        );
    }
}
