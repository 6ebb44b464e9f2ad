//! The checks every call takes before it is admitted, whichever door it came by and whichever dialect will
//! carry it (docs/errors.md lists them): a model this key may use, of the call's kind; the conversation; the
//! parameters against their ranges and the model's output limit; the context window, with the model's
//! larger-window fallbacks; an embeddings call's inputs. Each refusal is INVALID_ARGUMENT naming its field.

use std::sync::Arc;

mod config;
mod message;

pub(crate) use config::{check_config, check_pass_through};
pub(crate) use message::{check_message, check_messages, ROLES};

use crate::{
    admission::{auth::Identity, estimate::estimate_tokens},
    config::ModelKind,
    core::gateway::Gateway,
    error::GatewayError,
    proto::{GenerationConfig, Message},
    routing::router::Model,
    upstream::openai::extras,
};

use super::request::Request;

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
        .map_or(u64::from(model.default_output_tokens), |n| {
            u64::from(n.max(1).unsigned_abs())
        });
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
    req: &Request,
) -> Result<Arc<Model>, GatewayError> {
    let (messages, config) = (req.messages.as_slice(), req.config.as_ref());
    let catalog = gw.catalog();
    let model = of_kind(catalog.router.resolve(&req.model, who)?, ModelKind::Chat)?;
    check_messages(messages)?;
    check_config(config, model.max_output_tokens)?;
    check_pass_through(&req.pass)?;
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
    let numbers = input.len() as u64 * dimensions.map_or(3072, |d| u64::from(d.unsigned_abs()));
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
