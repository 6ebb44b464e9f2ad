//! OpenAI's embeddings API (`POST {base_url}/embeddings`): the request the gateway sends and the answer it
//! reads back. Vectors arrive as JSON floats or, when the provider prefers, base64 of little-endian f32s.

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::wire::WireUsage;
use crate::proto::Usage;

/// What is asked, independent of the route.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EmbedAsk<'a> {
    pub(crate) input: &'a [String],
    pub(crate) dimensions: Option<u32>,
    pub(crate) user: &'a str,
}

#[derive(Debug, Serialize)]
pub(crate) struct EmbeddingsRequest<'a> {
    pub(crate) model: &'a str,
    pub(crate) input: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dimensions: Option<u32>,
    /// Always "base64": a quarter of the bytes of JSON floats, and what the official SDKs ask for, so
    /// OpenAI-compatible servers support it. An answer in floats is read too.
    pub(crate) encoding_format: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub(crate) user: &'a str,
}

impl<'a> EmbeddingsRequest<'a> {
    pub(crate) fn new(model: &'a str, ask: EmbedAsk<'a>) -> Self {
        EmbeddingsRequest {
            model,
            input: ask.input,
            dimensions: ask.dimensions,
            encoding_format: "base64",
            user: ask.user,
        }
    }
}

/// The vectors, one per input in the request's order, and what they cost.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Embeddings {
    pub(crate) vectors: Vec<Vec<f32>>,
    pub(crate) model: String,
    /// `None` when the upstream reported none.
    pub(crate) usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Answer {
    data: Vec<Item>,
    #[serde(default)]
    model: String,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Item {
    embedding: Vector,
    #[serde(default)]
    index: Option<usize>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Vector {
    Floats(Vec<f32>),
    Base64(String),
}

/// Reads an answer to `inputs` inputs; the error says what is wrong with it. Items are put in the order of
/// their `index` (providers may answer out of order), and every input must have exactly one.
pub(crate) fn parse(body: &[u8], inputs: usize) -> Result<Embeddings, String> {
    let answer: Answer =
        serde_json::from_slice(body).map_err(|e| format!("invalid embeddings JSON: {e}"))?;
    if answer.data.len() != inputs {
        return Err(format!(
            "{} embeddings for {inputs} inputs",
            answer.data.len()
        ));
    }
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; inputs];
    for (i, item) in answer.data.into_iter().enumerate() {
        let at = item.index.unwrap_or(i);
        let slot = vectors
            .get_mut(at)
            .ok_or_else(|| format!("embedding index {at} is out of range"))?;
        if slot.is_some() {
            return Err(format!("embedding index {at} appears twice"));
        }
        *slot = Some(match item.embedding {
            Vector::Floats(v) => v,
            Vector::Base64(text) => from_base64(&text)?,
        });
    }
    Ok(Embeddings {
        // Every slot is filled: as many items as slots, none twice.
        vectors: vectors.into_iter().flatten().collect(),
        model: answer.model,
        usage: answer.usage.map(|u| Usage {
            completion_tokens: 0,
            total_tokens: i32::try_from(u.prompt_tokens).unwrap_or(i32::MAX),
            ..super::convert::usage(u)
        }),
    })
}

/// Base64 of little-endian f32s, as OpenAI sends `encoding_format: "base64"`.
pub(crate) fn to_base64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(crate) fn from_base64(text: &str) -> Result<Vec<f32>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("embedding base64: {e}"))?;
    if bytes.len() % 4 != 0 {
        return Err("embedding base64 is not a whole number of f32s".into());
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Input tokens when the upstream reports none, as the chat estimate counts text: about 4 bytes a token.
pub(crate) fn estimate(input: &[String]) -> u64 {
    input.iter().map(|s| (s.len() as u64).div_ceil(4)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_are_read_in_index_order_as_floats_or_base64() {
        let b64 = to_base64(&[0.5, -0.25]);
        let body = json!({"object": "list", "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 1, "embedding": b64},
                     {"object": "embedding", "index": 0, "embedding": [1.0, 0.0]}],
            "usage": {"prompt_tokens": 8, "total_tokens": 8}});
        let e = parse(body.to_string().as_bytes(), 2).unwrap();
        assert_eq!(e.vectors, vec![vec![1.0, 0.0], vec![0.5, -0.25]]);
        assert_eq!(e.model, "text-embedding-3-small");
        let u = e.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (8, 0, 8)
        );
    }

    #[test]
    fn malformed_answers_say_what_is_wrong() {
        let cases = [
            (json!({"data": []}), "0 embeddings for 1 inputs"),
            (
                json!({"data": [{"index": 3, "embedding": [1.0]}]}),
                "index 3",
            ),
            (json!({"data": [{"embedding": "@@@"}]}), "base64"),
            (json!({"data": [{"embedding": "AAA="}]}), "whole number"),
            (
                json!({"data": [{"embedding": {"x": 1}}]}),
                "invalid embeddings JSON",
            ),
        ];
        for (body, says) in cases {
            let err = parse(body.to_string().as_bytes(), 1).unwrap_err();
            assert!(err.contains(says), "{body}: {err}");
        }
        let twice =
            json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}]});
        assert!(parse(twice.to_string().as_bytes(), 2)
            .unwrap_err()
            .contains("twice"));
    }
}
