//! The Gemini API dialect (`kind = "gemini"`): the gateway's request (OpenAI-shaped, see
//! `openai::ChatRequest`) translated to `POST {base_url}/models/{model}:generateContent` (streams:
//! `:streamGenerateContent?alt=sse`), and Gemini's answers and stream chunks translated back. Pure functions
//! and a small stream state; the HTTP client is `http.rs`'s.
//!
//! Translation choices: system and developer messages become `systemInstruction`; the assistant is the `model`
//! role; `tool` messages become `functionResponse` parts in a user turn, named after the call they answer (a
//! result that is a JSON object goes as it is, other text as `{"output": text}`); consecutive messages of one
//! role are one turn. Tools go as `functionDeclarations` with their JSON Schema (`parametersJsonSchema`); JSON
//! output as `responseMimeType` and `responseJsonSchema`; reasoning as `thinkingConfig` with thoughts included.
//! `logprobs` is refused (INVALID_ARGUMENT); `user` and `parallel_tool_calls` have no Gemini counterpart and are
//! not sent.
//!
//! Thought signatures: Gemini signs its thinking by putting a `thoughtSignature` on a part — a thought, the
//! first function call of a step, or the last part of a text answer — and wants each back on the part it came
//! with. The gateway hands a signature out as a reasoning block's (the thought's before it, or a block of its
//! own), and puts a turn's signatures back in order: on its function calls first, then on its last text part. A
//! function call that comes back without one (a client that drops reasoning) gets Google's documented stand-in,
//! `SKIP_SIGNATURE`, rather than have a Gemini 3 model refuse the conversation. Thought text is not sent back.
//!
//! Streams: every chunk is a whole `GenerateContentResponse` with the parts that are new; a function call
//! arrives whole, and is relayed as its id and name, then its arguments in one piece. A call Gemini gives no id
//! (2.5 gives none) gets one made up (`call_` and 16 hex digits), unique across the conversation's answers. A stream has no end
//! event: it is complete when its body ends after a finish reason, and broken when it ends before one.

use serde::Serialize;

use crate::{
    error::GatewayError,
    upstream::openai::{
        embeddings::{EmbedAsk, Embeddings},
        wire::ChatRequest,
    },
};

/// The thought signature Google documents for a function call whose own signature is lost (a conversation
/// from another model, or from a client that keeps no reasoning): the model skips the check.
pub(crate) const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

fn unsupported(what: &str) -> GatewayError {
    GatewayError::InvalidArgument(format!(
        "{what}: not supported by upstreams of kind \"gemini\""
    ))
}

/// The request body, as sent.
pub fn body(req: &ChatRequest<'_>) -> Result<Vec<u8>, GatewayError> {
    serde_json::to_vec(&request::request(req)?)
        .map_err(|e| GatewayError::Internal(format!("encoding request: {e}")))
}

/// A model's resource name under the API's base: `models/{model}`, or the name as configured when it names its
/// collection itself (`tunedModels/...`, `publishers/google/models/...`).
pub(crate) fn resource(model: &str) -> String {
    if model.contains('/') {
        model.to_owned()
    } else {
        format!("models/{model}")
    }
}

/// `countTokens`' body for the request `req` would send: Gemini's API counts a whole `generateContentRequest`
/// (the model named in it); Vertex AI's takes the request's contents, system instruction, tools and generation
/// config at the top level, and no other field.
pub(crate) fn count_body(req: &ChatRequest<'_>, vertex: bool) -> Result<Vec<u8>, GatewayError> {
    let encode = |e: serde_json::Error| GatewayError::Internal(format!("encoding request: {e}"));
    let mut body = serde_json::to_value(request::request(req)?).map_err(encode)?;
    let body = match (vertex, body.as_object_mut()) {
        (true, Some(fields)) => {
            fields.retain(|k, _| {
                ["contents", "systemInstruction", "tools", "generationConfig"].contains(&k.as_str())
            });
            body
        }
        (false, Some(fields)) => {
            fields.insert("model".into(), resource(req.model).into());
            serde_json::json!({ "generateContentRequest": body })
        }
        (_, None) => body,
    };
    serde_json::to_vec(&body).map_err(encode)
}

/// `countTokens`' answer: the request's tokens.
pub(crate) fn counted(body: &[u8]) -> Result<u64, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Counted {
        total_tokens: u64,
    }
    serde_json::from_slice::<Counted>(body)
        .map(|c| c.total_tokens)
        .map_err(|e| format!("countTokens: {e}"))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbedRequest<'a> {
    requests: Vec<EmbedOne<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbedOne<'a> {
    model: &'a str,
    content: EmbedContent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<u32>,
}

#[derive(Serialize)]
struct EmbedContent<'a> {
    parts: [EmbedText<'a>; 1],
}

#[derive(Serialize)]
struct EmbedText<'a> {
    text: &'a str,
}

/// `batchEmbedContents`' body: one request per input, each naming the model.
pub(crate) fn embed_body(model: &str, ask: EmbedAsk<'_>) -> Result<Vec<u8>, GatewayError> {
    let model = resource(model);
    let body = EmbedRequest {
        requests: ask
            .input
            .iter()
            .map(|text| EmbedOne {
                model: &model,
                content: EmbedContent {
                    parts: [EmbedText { text }],
                },
                output_dimensionality: ask.dimensions,
            })
            .collect(),
    };
    serde_json::to_vec(&body).map_err(|e| GatewayError::Internal(format!("encoding request: {e}")))
}

#[derive(serde::Deserialize)]
struct EmbedAnswer {
    #[serde(default)]
    embeddings: Vec<Values>,
}

#[derive(serde::Deserialize)]
struct Values {
    values: Vec<f32>,
}

/// `batchEmbedContents`' answer to `inputs` inputs, in their order. Gemini reports no usage for embeddings.
pub(crate) fn embeddings(body: &[u8], inputs: usize) -> Result<Embeddings, String> {
    let answer: EmbedAnswer =
        serde_json::from_slice(body).map_err(|e| format!("invalid embeddings JSON: {e}"))?;
    if answer.embeddings.len() != inputs {
        return Err(format!(
            "{} embeddings for {inputs} inputs",
            answer.embeddings.len()
        ));
    }
    Ok(Embeddings {
        vectors: answer.embeddings.into_iter().map(|e| e.values).collect(),
        model: String::new(),
        usage: None,
    })
}

/// Vertex AI's embeddings request (`:predict`): one instance per input.
pub(crate) fn predict_body(ask: EmbedAsk<'_>) -> Result<Vec<u8>, GatewayError> {
    let instances: Vec<serde_json::Value> = ask
        .input
        .iter()
        .map(|text| serde_json::json!({ "content": text }))
        .collect();
    let mut body = serde_json::json!({ "instances": instances });
    if let Some(d) = ask.dimensions {
        body["parameters"] = serde_json::json!({ "outputDimensionality": d });
    }
    serde_json::to_vec(&body).map_err(|e| GatewayError::Internal(format!("encoding request: {e}")))
}

#[derive(serde::Deserialize)]
struct Predictions {
    #[serde(default)]
    predictions: Vec<Prediction>,
}

#[derive(serde::Deserialize)]
struct Prediction {
    embeddings: PredictedVector,
}

#[derive(serde::Deserialize)]
struct PredictedVector {
    values: Vec<f32>,
    #[serde(default)]
    statistics: Statistics,
}

#[derive(serde::Deserialize, Default)]
struct Statistics {
    #[serde(default)]
    token_count: f64,
}

/// Vertex AI's embeddings answer to `inputs` inputs, in their order; its usage is the inputs' token counts.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a token count Vertex writes as a float: `as` saturates, NaN is 0"
)]
pub(crate) fn predictions(body: &[u8], inputs: usize) -> Result<Embeddings, String> {
    let answer: Predictions =
        serde_json::from_slice(body).map_err(|e| format!("invalid predictions JSON: {e}"))?;
    if answer.predictions.len() != inputs {
        return Err(format!(
            "{} embeddings for {inputs} inputs",
            answer.predictions.len()
        ));
    }
    let tokens: u64 = answer
        .predictions
        .iter()
        .map(|p| p.embeddings.statistics.token_count as u64)
        .sum();
    let clamp = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
    Ok(Embeddings {
        vectors: answer
            .predictions
            .into_iter()
            .map(|p| p.embeddings.values)
            .collect(),
        model: String::new(),
        usage: (tokens > 0).then(|| crate::proto::Usage {
            prompt_tokens: clamp(tokens),
            total_tokens: clamp(tokens),
            ..Default::default()
        }),
    })
}

mod answer;
mod request;

pub(crate) use answer::{chunk, completion, finish, StreamState};

#[cfg(test)]
mod tests;
