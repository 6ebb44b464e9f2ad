//! Reasoning across dialects: one table, here, for how a client's reasoning request and an earlier answer's
//! reasoning blocks are spelled to each kind of upstream (docs/api.md, "Reasoning", shows it to users).
//!
//! | the client asks                | OpenAI-style upstream          | Anthropic upstream                          |
//! |--------------------------------|--------------------------------|---------------------------------------------|
//! | `effort` minimal/low/medium/high/xhigh | `reasoning_effort` as given | `thinking` enabled, budget 1024/4096/16384/32768/65536; "none" disabled; another word 16384 |
//! | `budget_tokens` N (no effort)  | `reasoning_effort` low (< 4096), medium (< 16384), high | `thinking` enabled, budget N |
//! | `mode` "adaptive"              | `reasoning_effort` if an effort is given, else nothing | `thinking` adaptive  |
//! | `mode` "disabled"              | nothing                        | `thinking` disabled                         |
//! | history: reasoning text        | `reasoning_content` on the assistant message | signed blocks as `thinking`; unsigned text is dropped (Anthropic refuses thinking without its signature) |
//! | history: redacted block        | dropped (no such thing)        | `redacted_thinking`, data byte-exact        |
//!
//! Anthropic's budget must be at least 1024 and below `max_tokens`: a larger one is cut to `max_tokens - 1`,
//! and a request whose `max_tokens` leaves no room for 1024 thinking tokens goes without thinking.

use std::borrow::Cow;

use serde_json::{json, Value};

use crate::{
    error::GatewayError,
    proto::{Reasoning, ReasoningConfig},
};

/// Anthropic's smallest thinking budget.
pub(crate) const MIN_BUDGET: u32 = 1024;

/// The efforts with an Anthropic budget of their own; others (providers add new ones) go to OpenAI-style
/// upstreams as they are, and to Anthropic as "medium".
const BUDGETS: [(&str, u32); 6] = [
    ("minimal", MIN_BUDGET),
    ("low", 4096),
    ("medium", 16384),
    ("high", 32768),
    ("xhigh", 65536),
    ("max", 65536),
];

/// The modes a client may name.
pub(crate) const MODES: [&str; 4] = ["", "enabled", "adaptive", "disabled"];

/// Checks a reasoning request: a known effort and mode, a budget that is not negative.
pub(crate) fn check(r: &ReasoningConfig) -> Result<(), GatewayError> {
    let invalid = |msg: String| Err(GatewayError::InvalidArgument(msg));
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if r.effort.len() > 32 || !r.effort.chars().all(word) {
        return invalid(format!(
            "config.reasoning.effort: '{}' is not an effort (minimal, low, medium, high, ...)",
            r.effort.chars().take(40).collect::<String>()
        ));
    }
    if !MODES.contains(&r.mode.as_str()) {
        return invalid(format!(
            "config.reasoning.mode: '{}' is not one of enabled, adaptive, disabled",
            r.mode
        ));
    }
    if let Some(b) = r.budget_tokens.filter(|b| *b < 0) {
        return invalid(format!("config.reasoning.budget_tokens: {b} is negative"));
    }
    Ok(())
}

/// Anthropic's `thinking` object as a reasoning request, on whichever door a client sends it: `{"type": "enabled", "budget_tokens": N}`, `{"type": "adaptive"}` or `{"type": "disabled"}`.
pub(crate) fn from_thinking(t: &Value) -> Result<ReasoningConfig, GatewayError> {
    let invalid = |msg: &str| GatewayError::InvalidArgument(msg.to_owned());
    let mode = t.get("type").and_then(Value::as_str).unwrap_or_default();
    if !["enabled", "adaptive", "disabled"].contains(&mode) {
        return Err(invalid(
            "thinking.type: must be \"enabled\", \"adaptive\" or \"disabled\"",
        ));
    }
    let budget_tokens = match t.get("budget_tokens") {
        None | Some(Value::Null) => None,
        Some(b) => Some(
            b.as_i64()
                .filter(|b| *b >= 0)
                .ok_or_else(|| invalid("thinking.budget_tokens: must be a whole number"))?
                .min(i64::from(i32::MAX))
                .try_into()
                .unwrap_or(i32::MAX),
        ),
    };
    if mode == "enabled" && budget_tokens.is_none() {
        return Err(invalid(
            "thinking.budget_tokens: required when thinking is enabled",
        ));
    }
    Ok(ReasoningConfig {
        mode: mode.to_owned(),
        budget_tokens,
        ..Default::default()
    })
}

/// The OpenAI-style `reasoning_effort` for a request.
pub(crate) fn effort(r: &ReasoningConfig) -> Option<&str> {
    if r.mode == "disabled" {
        return None;
    }
    if !r.effort.is_empty() {
        return Some(&r.effort);
    }
    if r.mode == "adaptive" {
        return None;
    }
    r.budget_tokens.map(|b| match b {
        ..4096 => "low",
        4096..16384 => "medium",
        _ => "high",
    })
}

/// Anthropic's `thinking` for a request whose output limit is `max_tokens`; `None` to send none.
pub(crate) fn anthropic_thinking(r: &ReasoningConfig, max_tokens: u32) -> Option<Value> {
    match r.mode.as_str() {
        "disabled" => return Some(json!({"type": "disabled"})),
        "adaptive" => return Some(json!({"type": "adaptive"})),
        _ => {}
    }
    let asked = match (r.budget_tokens, r.effort.as_str()) {
        (Some(b), _) => b.max(0).unsigned_abs(),
        (None, "") => return None,
        (None, "none") => return Some(json!({"type": "disabled"})),
        (None, effort) => BUDGETS
            .iter()
            .find(|(e, _)| *e == effort)
            .map_or(16384, |&(_, b)| b),
    };
    let budget = asked.max(MIN_BUDGET).min(max_tokens.saturating_sub(1));
    (budget >= MIN_BUDGET).then(|| json!({"type": "enabled", "budget_tokens": budget}))
}

/// An assistant message's reasoning text for an OpenAI-style upstream: the blocks' text joined.
pub(crate) fn joined_text(blocks: &[Reasoning]) -> Option<Cow<'_, str>> {
    let mut texts = blocks
        .iter()
        .map(|b| b.text.as_str())
        .filter(|t| !t.is_empty());
    let first = texts.next()?;
    match texts.next() {
        None => Some(Cow::Borrowed(first)),
        Some(second) => {
            let mut all = format!("{first}{second}");
            texts.for_each(|t| all.push_str(t));
            Some(Cow::Owned(all))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(effort: &str, budget: Option<i32>, mode: &str) -> ReasoningConfig {
        ReasoningConfig {
            effort: effort.into(),
            budget_tokens: budget,
            mode: mode.into(),
        }
    }

    #[test]
    fn the_translation_table() {
        // (config, max_tokens, OpenAI's reasoning_effort, Anthropic's thinking)
        let rows = [
            (
                cfg("low", None, ""),
                64_000,
                Some("low"),
                json!({"type": "enabled", "budget_tokens": 4096}),
            ),
            (
                cfg("minimal", None, ""),
                64_000,
                Some("minimal"),
                json!({"type": "enabled", "budget_tokens": 1024}),
            ),
            (
                cfg("medium", None, ""),
                64_000,
                Some("medium"),
                json!({"type": "enabled", "budget_tokens": 16384}),
            ),
            (
                cfg("high", None, ""),
                64_000,
                Some("high"),
                json!({"type": "enabled", "budget_tokens": 32768}),
            ),
            (
                cfg("high", None, ""),
                8_000,
                Some("high"),
                json!({"type": "enabled", "budget_tokens": 7999}),
            ),
            (
                cfg("", Some(2_000), ""),
                64_000,
                Some("low"),
                json!({"type": "enabled", "budget_tokens": 2000}),
            ),
            (
                cfg("", Some(10_000), ""),
                64_000,
                Some("medium"),
                json!({"type": "enabled", "budget_tokens": 10000}),
            ),
            (
                cfg("", Some(20_000), ""),
                64_000,
                Some("high"),
                json!({"type": "enabled", "budget_tokens": 20000}),
            ),
            (
                cfg("", Some(100), ""),
                64_000,
                Some("low"),
                json!({"type": "enabled", "budget_tokens": 1024}),
            ),
            (
                cfg("", Some(5_000), "enabled"),
                64_000,
                Some("medium"),
                json!({"type": "enabled", "budget_tokens": 5000}),
            ),
            (
                cfg("", None, "adaptive"),
                64_000,
                None,
                json!({"type": "adaptive"}),
            ),
            (
                cfg("high", None, "adaptive"),
                64_000,
                Some("high"),
                json!({"type": "adaptive"}),
            ),
            (
                cfg("high", None, "disabled"),
                64_000,
                None,
                json!({"type": "disabled"}),
            ),
            (
                cfg("none", None, ""),
                64_000,
                Some("none"),
                json!({"type": "disabled"}),
            ),
            (
                cfg("xhigh", None, ""),
                100_000,
                Some("xhigh"),
                json!({"type": "enabled", "budget_tokens": 65536}),
            ),
            (
                cfg("turbo", None, ""),
                64_000,
                Some("turbo"),
                json!({"type": "enabled", "budget_tokens": 16384}),
            ),
            (cfg("", None, ""), 64_000, None, Value::Null),
            // No room for the smallest budget: no thinking.
            (cfg("high", None, ""), 1_024, Some("high"), Value::Null),
        ];
        for (c, max, openai, anthropic) in rows {
            assert_eq!(effort(&c), openai, "{c:?}");
            assert_eq!(
                anthropic_thinking(&c, max).unwrap_or(Value::Null),
                anthropic,
                "{c:?}"
            );
        }
    }

    #[test]
    fn history_blocks_per_dialect() {
        let blocks = [
            Reasoning {
                text: "Let me think".into(),
                signature: "sig/+=".into(),
                ..Default::default()
            },
            Reasoning {
                redacted: "EncRypted==".into(),
                ..Default::default()
            },
            Reasoning {
                text: " more".into(),
                ..Default::default()
            },
        ];
        assert_eq!(joined_text(&blocks).as_deref(), Some("Let me think more"));
        assert_eq!(joined_text(&blocks[..1]).as_deref(), Some("Let me think"));
        assert_eq!(joined_text(&blocks[1..2]), None);
    }
}
