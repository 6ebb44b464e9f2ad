//! The record of one RPC: when it ends (however it ends — a dropped handler means the client went away) it
//! writes one structured log line and its metrics, and fills the response trailers. Key name, model, upstream,
//! status, latency, tokens, cost; never the client key, the upstream key or any prompt or answer text.

use std::{sync::Arc, time::SystemTime};

use crate::{
    admission::auth::Identity,
    config::Price,
    core::gateway::Gateway,
    error::GatewayError,
    observe::{
        log_line::LogLine,
        metrics::code_name,
        timing::{Timing, Trail},
    },
    proto::Usage,
    routing::router::Model,
    transport::trailers::TrailerSlot,
};

pub(crate) struct CallRecord {
    rpc: &'static str,
    key: String,
    request_id: String,
    model: String,
    price: Price,
    upstream: String,
    usage: Usage,
    /// Some usage was counted by the gateway because the upstream sent none.
    estimated: bool,
    cost: f64,
    /// Turns answered, for InteractiveStream.
    turns: u32,
    /// Upstream attempts (more than one: retries or fallbacks).
    attempts: u32,
    /// The response cache's part: "hit", "miss", "bypass", or "" when the model does not cache.
    cache: &'static str,
    pub(crate) timing: Timing,
    gw: Arc<Gateway>,
    who: Arc<Identity>,
    trailers: Option<Arc<TrailerSlot>>,
    /// Set by `finish`; a log dropped unfinished means the client went away (the handler future was dropped).
    outcome: Option<(tonic::Code, &'static str)>,
}

impl CallRecord {
    /// The key the call runs under.
    pub(crate) fn who(&self) -> Arc<Identity> {
        self.who.clone()
    }

    pub(crate) fn new(
        rpc: &'static str,
        gw: Arc<Gateway>,
        who: Arc<Identity>,
        request_id: &str,
        trailers: Option<Arc<TrailerSlot>>,
    ) -> CallRecord {
        gw.metrics.in_flight.with_label_values(&[rpc]).inc();
        gw.signal.count();
        CallRecord {
            rpc,
            key: who.name.clone(),
            request_id: request_id.to_owned(),
            model: String::new(),
            price: Price::default(),
            upstream: String::new(),
            usage: Usage::default(),
            estimated: false,
            cost: 0.0,
            turns: 0,
            attempts: 0,
            cache: "",
            timing: Timing::new(),
            gw,
            who,
            trailers,
            outcome: None,
        }
    }

    /// The request is for this model: from here it counts in the model's usage.
    pub(crate) fn model(&mut self, model: &Model) {
        model.name.clone_into(&mut self.model);
        self.price = model.price;
        self.timing.gap = Some(self.gw.metrics.chunk_gap.with_label_values(&[&model.name]));
        let groups = self.who.group_names();
        self.gw.usage.request(&self.key, &self.model, groups);
    }

    /// Upstream attempts made so far.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// What the response cache did for this call (see [`crate::core::cache::Plan`]).
    pub(crate) fn cache(&mut self, label: &'static str) {
        self.cache = label;
    }

    /// What the dispatcher did: the upstream of its last attempt, how many attempts in all, how long it
    /// waited between them. Called whether the call succeeded or not.
    pub(crate) fn dispatched(&mut self, trail: &Trail) {
        if !trail.upstream.is_empty() {
            trail.upstream.clone_into(&mut self.upstream);
        }
        self.attempts += trail.attempts;
        self.timing.upstream += trail.upstream_time;
        self.timing.retry_wait += trail.waited;
    }

    /// Adds a completed answer's usage (one per turn for InteractiveStream); returns its cost.
    pub(crate) fn add_usage(&mut self, usage: Option<&Usage>, estimated: bool) -> f64 {
        self.turns += 1;
        match usage {
            Some(u) => self.book(u, estimated),
            None => 0.0,
        }
    }

    /// Books what `lost` attempts spent (accepted by an upstream, then failed before the answer began): the
    /// prompt, estimated, each. They count in usage, cost and budgets like the answer, marked estimated.
    pub(crate) fn book_lost(&mut self, lost: u32, prompt: impl FnOnce() -> Usage) -> u64 {
        if lost == 0 {
            return 0;
        }
        let all = crate::admission::estimate::lost_usage(prompt(), lost);
        self.book(&all, true);
        u64::try_from(all.total_tokens).unwrap_or(0)
    }

    /// Adds usage to the call's and books it at once (usage book, spend, budgets); returns its cost.
    fn book(&mut self, u: &Usage, estimated: bool) -> f64 {
        self.usage.prompt_tokens = self.usage.prompt_tokens.saturating_add(u.prompt_tokens);
        self.usage.completion_tokens = self
            .usage
            .completion_tokens
            .saturating_add(u.completion_tokens);
        self.usage.total_tokens = self.usage.total_tokens.saturating_add(u.total_tokens);
        self.usage.cached_prompt_tokens = self
            .usage
            .cached_prompt_tokens
            .saturating_add(u.cached_prompt_tokens);
        self.usage.cache_write_tokens = self
            .usage
            .cache_write_tokens
            .saturating_add(u.cache_write_tokens);
        self.usage.reasoning_tokens = self
            .usage
            .reasoning_tokens
            .saturating_add(u.reasoning_tokens);
        self.estimated |= estimated;
        let cost = self.price.cost(u);
        self.cost += cost;
        // Booked as it happens, so a budget or the usage API sees a session's turns one by one.
        self.gw.usage.usage(
            (&self.key, &self.model, self.who.group_names()),
            u64::try_from(u.total_tokens).unwrap_or(0),
            cost,
        );
        if cost > 0.0 {
            let now = SystemTime::now();
            self.who.limiter.add_spend(cost, now);
            for group in self.who.group.iter().chain(&self.who.above) {
                group.add_spend(cost, now);
            }
            if let Some(shared) = &self.gw.shared {
                shared.add_spend(&self.key, cost);
                for group in self.who.group.iter().chain(&self.who.above) {
                    shared.add_spend(&group.store_name(), cost);
                }
            }
        }
        cost
    }

    /// Records the outcome and fills the trailers; the line and the metrics are written when the log is
    /// dropped. Errors are logged by code and label only: their messages can quote the upstream.
    pub(crate) fn finish(mut self, outcome: Result<(), &GatewayError>) {
        self.outcome = Some(match outcome {
            Ok(()) => (tonic::Code::Ok, ""),
            Err(e) => (e.code(), e.label()),
        });
        if let Some(slot) = &self.trailers {
            let overhead = self.timing.overhead_applies.then(|| self.timing.overhead());
            slot.set(overhead, (self.cost > 0.0).then_some(self.cost));
        }
    }

    fn record_metrics(&self, code: tonic::Code) {
        let m = &self.gw.metrics;
        let elapsed = self.timing.start.elapsed().as_secs_f64();
        m.in_flight.with_label_values(&[self.rpc]).dec();
        m.count_call(self.rpc, &self.model, &self.key, code);
        m.duration
            .with_label_values(&[self.rpc, &self.model])
            .observe(elapsed);
        if self.timing.overhead_applies {
            m.overhead
                .with_label_values(&[self.rpc, &self.model])
                .observe(self.timing.overhead().as_secs_f64());
        }
        if !self.upstream.is_empty() {
            m.upstream_duration
                .with_label_values(&[&self.model, &self.upstream])
                .observe(self.timing.upstream.as_secs_f64());
        }
        if let Some(ttft) = self.timing.first_token {
            m.first_token
                .with_label_values(&[&self.model])
                .observe(ttft.as_secs_f64());
        }
        let estimated = if self.estimated { "true" } else { "false" };
        for (kind, n) in [
            ("prompt", self.usage.prompt_tokens),
            ("completion", self.usage.completion_tokens),
        ] {
            if n > 0 {
                m.tokens
                    .with_label_values(&[&self.model, &self.key, kind, estimated])
                    .inc_by(u64::from(n.unsigned_abs()));
            }
        }
        if self.cost > 0.0 {
            m.cost
                .with_label_values(&[&self.model, &self.key])
                .inc_by(self.cost);
        }
        if code == tonic::Code::Cancelled {
            m.cancellations.with_label_values(&[self.rpc]).inc();
        }
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        let latency_ms = self.timing.start.elapsed().as_secs_f64() * 1000.0;
        // Left out for sessions, whose wall time includes waiting for the user.
        let overhead_us = self
            .timing
            .overhead_applies
            .then(|| u64::try_from(self.timing.overhead().as_micros()).unwrap_or(u64::MAX));
        let (code, error) = self
            .outcome
            .unwrap_or((tonic::Code::Cancelled, "client_gone"));
        self.record_metrics(code);
        if let Some(records) = &self.gw.records {
            // A call refused before its model was known bills nothing: no record.
            if !self.model.is_empty() {
                records.add(&crate::observe::usage_records::Record {
                    time_ms: crate::observe::usage_records::now_ms(),
                    request_id: &self.request_id,
                    rpc: self.rpc,
                    key: &self.key,
                    group: self.who.group.as_deref().map(|g| g.name()),
                    model: &self.model,
                    upstream: &self.upstream,
                    code: code_name(code),
                    prompt_tokens: self.usage.prompt_tokens,
                    completion_tokens: self.usage.completion_tokens,
                    cached_prompt_tokens: self.usage.cached_prompt_tokens,
                    cache_write_tokens: self.usage.cache_write_tokens,
                    reasoning_tokens: self.usage.reasoning_tokens,
                    usage_estimated: self.estimated,
                    cost_usd: self.cost,
                    latency_ms,
                });
            }
        }
        LogLine {
            rpc: self.rpc,
            key: &self.key,
            request_id: &self.request_id,
            model: &self.model,
            upstream: &self.upstream,
            code: code_name(code),
            error,
            latency_ms,
            overhead_us,
            prompt_tokens: self.usage.prompt_tokens,
            completion_tokens: self.usage.completion_tokens,
            cached_prompt_tokens: self.usage.cached_prompt_tokens,
            reasoning_tokens: self.usage.reasoning_tokens,
            usage_estimated: self.estimated,
            cost_usd: self.cost,
            turns: self.turns,
            attempts: self.attempts,
            cache: self.cache,
        }
        .write();
    }
}
