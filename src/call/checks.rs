//! The checks every call takes before it is admitted, whichever door it came by and whichever dialect will
//! carry it (docs/errors.md lists them): a model this key may use, of the call's kind; the conversation; the
//! parameters against their ranges and the model's output limit; the context window, with the model's
//! larger-window fallbacks; an embeddings call's inputs. Each refusal is INVALID_ARGUMENT naming its field.

use std::sync::Arc;

use crate::{
    admission::{auth::Identity, estimate::estimate_tokens},
    config::ModelKind,
    core::gateway::Gateway,
    error::GatewayError,
    proto::{GenerationConfig, Message},
    routing::router::Model,
    upstream::openai::extras,
};

/// Roles a client may send (`tool` needs a `tool_call_id`).
pub(crate) const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];
/// OpenAI accepts at most four stop sequences.
pub(crate) const MAX_STOP: usize = 4;
/// The most messages one request may carry: far above any context window's worth of turns (a long agent
/// session holds a few thousand), far below what a body could hold.
pub(crate) const MAX_MESSAGES: usize = 50_000;
/// The most content parts, and tool calls, one message may carry.
pub(crate) const MAX_PARTS: usize = 10_000;
/// The largest thinking budget taken: above every model's output window. (Not the model's own output limit: to
/// an OpenAI-style upstream a budget is only a hint, mapped to an effort.)
pub(crate) const MAX_BUDGET_TOKENS: i32 = 1 << 20;
/// The most tools one request may define: above what agents send with every MCP server on (a few hundred).
pub(crate) const MAX_TOOLS: usize = 1_024;

fn invalid(msg: String) -> GatewayError {
    GatewayError::InvalidArgument(msg)
}

/// Checks a conversation: not empty, known roles.
pub(crate) fn check_messages(messages: &[Message]) -> Result<(), GatewayError> {
    if messages.is_empty() {
        return Err(invalid("messages: at least one message is required".into()));
    }
    if messages.len() > MAX_MESSAGES {
        return Err(invalid(format!(
            "messages: at most {MAX_MESSAGES} messages, got {}",
            messages.len()
        )));
    }
    for (i, m) in messages.iter().enumerate() {
        for (field, n) in [("parts", m.parts.len()), ("tool_calls", m.tool_calls.len())] {
            if n > MAX_PARTS {
                return Err(invalid(format!(
                    "messages[{i}].{field}: at most {MAX_PARTS}, got {n}"
                )));
            }
        }
        if !ROLES.contains(&m.role.as_str()) {
            return Err(invalid(format!(
                "messages[{i}].role: '{}' is not one of {}",
                m.role,
                ROLES.join(", ")
            )));
        }
        extras::check_message("messages", i, m)?;
    }
    Ok(())
}

/// Checks generation parameters against their ranges and the model's output limit.
pub(crate) fn check_config(
    config: Option<&GenerationConfig>,
    max_output_tokens: u32,
) -> Result<(), GatewayError> {
    let Some(c) = config else { return Ok(()) };
    if let Some(t) = c.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(invalid(format!("config.temperature: {t} is outside 0..2")));
        }
    }
    if let Some(p) = c.top_p {
        if !(0.0..=1.0).contains(&p) {
            return Err(invalid(format!("config.top_p: {p} is outside 0..1")));
        }
    }
    if let Some(n) = c.max_tokens {
        if n < 1 || n as u32 > max_output_tokens {
            return Err(invalid(format!(
                "config.max_tokens: {n} is outside 1..{max_output_tokens} (this model's limit)"
            )));
        }
    }
    if c.stop.len() > MAX_STOP {
        return Err(invalid(format!(
            "config.stop: at most {MAX_STOP} sequences, got {}",
            c.stop.len()
        )));
    }
    if let Some(i) = c.stop.iter().position(String::is_empty) {
        return Err(invalid(format!("config.stop[{i}]: must not be empty")));
    }
    if c.tools.len() > MAX_TOOLS {
        return Err(invalid(format!(
            "config.tools: at most {MAX_TOOLS} tools, got {}",
            c.tools.len()
        )));
    }
    if let Some(b) = c
        .reasoning
        .as_ref()
        .and_then(|r| r.budget_tokens)
        .filter(|&b| b > MAX_BUDGET_TOKENS)
    {
        return Err(invalid(format!(
            "config.reasoning.budget_tokens: {b} is above {MAX_BUDGET_TOKENS}"
        )));
    }
    extras::check_config(c)
}

/// The most texts one embeddings call takes, as OpenAI's API.
pub(crate) const MAX_EMBED_INPUTS: usize = 2048;
/// The most dimensions an embedding may ask for: above every model offered today (3072, 4096), far below what
/// would let one request allocate gigabytes.
pub(crate) const MAX_EMBED_DIMENSIONS: i32 = 8192;
/// The most numbers one embeddings call may ask for (texts × dimensions): 32 MiB of f32 at most.
pub(crate) const MAX_EMBED_NUMBERS: u64 = 8 << 20;

/// The model, if it does what the call asks (chat or embeddings); else INVALID_ARGUMENT naming the right call.
pub(crate) fn of_kind(model: &Arc<Model>, kind: ModelKind) -> Result<Arc<Model>, GatewayError> {
    if model.kind == kind {
        return Ok(model.clone());
    }
    let what = match model.kind {
        ModelKind::Chat => "a chat model: call Generate, StreamGenerate or InteractiveStream (POST /v1/chat/completions or /v1/responses)",
        ModelKind::Embedding => "an embedding model: call Embed (POST /v1/embeddings)",
    };
    Err(GatewayError::InvalidArgument(format!(
        "model '{}' is {what}",
        model.name
    )))
}

/// Refuses a request whose estimated prompt plus the output it asks for (its max_tokens, else the model's
/// default output budget) cannot fit the model's context window: the upstream would refuse it anyway, after
/// a round trip and perhaps a charge.
pub(crate) fn fits_the_window(
    model: &Model,
    messages: &[Message],
    config: Option<&GenerationConfig>,
) -> Result<(), GatewayError> {
    let Some(window) = model.context_window else {
        return Ok(());
    };
    let output = config
        .and_then(|c| c.max_tokens)
        .map_or(u64::from(model.default_output_tokens), |n| n.max(1) as u64);
    let prompt = estimate_tokens(messages.iter().map(extras::size), 0);
    let needed = prompt + output;
    if needed > u64::from(window) {
        return Err(GatewayError::ContextLengthExceeded {
            model: model.name.clone(),
            window,
            needed,
            prompt,
            output,
        });
    }
    Ok(())
}

/// Resolves the model for this key and checks the request against it.
pub(crate) fn chat(
    gw: &Gateway,
    who: &Identity,
    model: &str,
    messages: &[Message],
    config: Option<&GenerationConfig>,
) -> Result<Arc<Model>, GatewayError> {
    let catalog = gw.catalog();
    let model = of_kind(catalog.router.resolve(model, who)?, ModelKind::Chat)?;
    check_messages(messages)?;
    check_config(config, model.max_output_tokens)?;
    let Err(too_large) = fits_the_window(&model, messages, config) else {
        return Ok(model);
    };
    // A larger-window model the key may use, in the order the config names them.
    for name in &model.context_fallbacks {
        let Ok(bigger) = catalog.router.resolve(name, who) else {
            continue;
        };
        if check_config(config, bigger.max_output_tokens).is_ok()
            && fits_the_window(bigger, messages, config).is_ok()
        {
            tracing::info!(from = %model.name, to = %bigger.name, "context fallback: the request does not fit its model's window");
            gw.metrics
                .context_fallbacks
                .with_label_values(&[&model.name, &bigger.name])
                .inc();
            return Ok(bigger.clone());
        }
    }
    Err(too_large)
}

/// After the upstream refused a request as too long for the model's window (its 400 says so): the first
/// of the model's `context_fallbacks` the key may use, logged and counted.
pub(crate) fn fallback_for_length(
    gw: &Gateway,
    who: &Identity,
    model: &Model,
    err: &GatewayError,
    config: Option<&GenerationConfig>,
) -> Option<Arc<Model>> {
    let GatewayError::UpstreamRejected { message, .. } = err else {
        return None;
    };
    let message = message.to_lowercase();
    let too_long = [
        "context_length_exceeded",
        "maximum context length",
        "prompt is too long",
    ]
    .iter()
    .any(|sign| message.contains(sign));
    if !too_long || model.context_fallbacks.is_empty() {
        return None;
    }
    let catalog = gw.catalog();
    let bigger = model.context_fallbacks.iter().find_map(|name| {
        let bigger = catalog.router.resolve(name, who).ok()?;
        check_config(config, bigger.max_output_tokens).ok()?;
        Some(bigger.clone())
    })?;
    tracing::info!(from = %model.name, to = %bigger.name, "context fallback: the upstream refused the prompt as too long");
    gw.metrics
        .context_fallbacks
        .with_label_values(&[&model.name, &bigger.name])
        .inc();
    Some(bigger)
}

/// Resolves and checks an embeddings request: a model of kind "embedding", 1..=2048 inputs, none empty,
/// and `dimensions` of at least 1 when set.
pub(crate) fn embedding(
    gw: &Gateway,
    who: &Identity,
    model: &str,
    input: &[String],
    dimensions: Option<i32>,
) -> Result<Arc<Model>, GatewayError> {
    let model = of_kind(
        gw.catalog().router.resolve(model, who)?,
        ModelKind::Embedding,
    )?;
    let invalid = |m: String| Err(GatewayError::InvalidArgument(m));
    if input.is_empty() || input.len() > MAX_EMBED_INPUTS {
        return invalid(format!(
            "input: {} texts; between 1 and {MAX_EMBED_INPUTS} are taken",
            input.len()
        ));
    }
    if let Some(i) = input.iter().position(String::is_empty) {
        return invalid(format!("input[{i}]: must not be empty"));
    }
    if let Some(d) = dimensions.filter(|&d| d < 1) {
        return invalid(format!("dimensions: {d} is not a positive number"));
    }
    if let Some(d) = dimensions.filter(|&d| d > MAX_EMBED_DIMENSIONS) {
        return invalid(format!(
            "dimensions: {d} is more than the {MAX_EMBED_DIMENSIONS} the gateway takes"
        ));
    }
    let numbers = input.len() as u64 * dimensions.map_or(3072, |d| d as u64);
    if numbers > MAX_EMBED_NUMBERS {
        return invalid(format!(
            "input: {} texts of {} dimensions are {numbers} numbers, more than the {MAX_EMBED_NUMBERS} one \
             call may ask for; send fewer texts per call",
            input.len(),
            dimensions.map_or(3072, |d| d)
        ));
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> Message {
        Message::text(role, content)
    }

    fn cfg(
        temperature: Option<f32>,
        max_tokens: Option<i32>,
        top_p: Option<f32>,
        stop: &[&str],
    ) -> GenerationConfig {
        GenerationConfig {
            temperature,
            max_tokens,
            top_p,
            stop: stop.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn config_checks() {
        let cases = [
            (
                cfg(Some(2.0), Some(100), Some(1.0), &["a", "b", "c", "d"]),
                None,
            ),
            (cfg(Some(0.0), Some(1), Some(0.0), &[]), None),
            (cfg(Some(-0.1), None, None, &[]), Some("config.temperature")),
            (cfg(Some(2.5), None, None, &[]), Some("config.temperature")),
            (
                cfg(Some(f32::NAN), None, None, &[]),
                Some("config.temperature"),
            ),
            (cfg(None, None, Some(1.5), &[]), Some("config.top_p")),
            (cfg(None, Some(0), None, &[]), Some("config.max_tokens")),
            (cfg(None, Some(-3), None, &[]), Some("config.max_tokens")),
            (cfg(None, Some(101), None, &[]), Some("config.max_tokens")),
            (
                cfg(None, None, None, &["a", "b", "c", "d", "e"]),
                Some("config.stop"),
            ),
            (cfg(None, None, None, &[""]), Some("config.stop[0]")),
        ];
        for (c, want) in cases {
            let got = check_config(Some(&c), 100);
            match want {
                None => assert!(got.is_ok(), "{c:?}: {got:?}"),
                Some(field) => {
                    let e = got.expect_err(field);
                    assert_eq!(e.code(), tonic::Code::InvalidArgument);
                    assert!(e.to_string().starts_with(field), "{e}");
                }
            }
        }
    }

    #[test]
    fn message_checks() {
        assert!(
            check_messages(&[msg("system", "s"), msg("user", "u"), msg("assistant", "a")]).is_ok()
        );
        assert!(check_messages(&[])
            .unwrap_err()
            .to_string()
            .contains("at least one"));
        let e = check_messages(&[msg("user", "u"), msg("wizard", "w")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("messages[1].role") && e.contains("user"), "{e}");
    }
}
