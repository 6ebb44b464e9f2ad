//! `POST /v1/embeddings`: OpenAI's embeddings request becomes an embeddings call of the call layer, as gRPC's
//! `Embed` does, and the vectors go back as OpenAI's list, in floats or (as the official SDKs ask) base64.

use bytes::Bytes;
use http::Response;
use serde::{Deserialize, Serialize};
use tonic::body::Body;

use super::{error, Caller};
use crate::{
    call::{self, start::Reply},
    error::GatewayError,
    proto::EmbedRequest,
    upstream::openai::embeddings,
};

/// The name the REST door's embeddings calls have in logs and metrics.
pub(crate) const RPC: &str = "Embeddings";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InRequest {
    model: String,
    input: Input,
    dimensions: Option<i64>,
    #[serde(default)]
    encoding_format: Encoding,
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
    /// Token ids: the gateway routes texts, not one provider's tokens.
    Tokens(#[allow(dead_code)] serde_json::Value),
}

#[derive(Debug, Default, Deserialize, PartialEq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Encoding {
    #[default]
    Float,
    Base64,
}

#[derive(Serialize)]
struct OutList<'a> {
    object: &'static str,
    data: Vec<OutEmbedding>,
    model: &'a str,
    usage: OutUsage,
}

#[derive(Serialize)]
struct OutEmbedding {
    object: &'static str,
    index: usize,
    embedding: OutVector,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutVector {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct OutUsage {
    prompt_tokens: i32,
    total_tokens: i32,
    /// The gateway's own: present (true) only when the upstream reported no usage and the gateway counted it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    aigw_estimated: bool,
}

fn parse(body: &[u8]) -> Result<(EmbedRequest, Encoding), GatewayError> {
    let req: InRequest = super::read_json(body)
        .map_err(|e| GatewayError::InvalidArgument(format!("invalid request body: {e}")))?;
    let input = match req.input {
        Input::One(s) => vec![s],
        Input::Many(v) => v,
        Input::Tokens(_) => {
            return Err(GatewayError::InvalidArgument(
                "input: a string or a list of strings; token arrays are not taken".into(),
            ))
        }
    };
    // Out of range stays out of range (not wrapped) for the core to refuse.
    let dimensions = req.dimensions.map(|d| {
        d.clamp(i64::from(i32::MIN), i64::from(i32::MAX))
            .try_into()
            .unwrap_or_default()
    });
    let message = EmbedRequest {
        model: req.model,
        input,
        dimensions,
        user: req.user.unwrap_or_default(),
    };
    Ok((message, req.encoding_format))
}

pub(crate) async fn create(caller: Caller, body: Bytes) -> Response<Body> {
    let (message, encoding) = match parse(&body) {
        Ok(p) => p,
        Err(e) => return error::gateway(&e),
    };
    let run = |gw, start| call::embed::embed(gw, RPC, start, message);
    caller
        .whole(
            run,
            |reply: Reply<_>| {
                super::heavy(|| {
                    let Reply {
                        value: answer,
                        headers,
                    } = reply;
                    let usage = answer.usage.unwrap_or_default();
                    let data = answer
                        .embeddings
                        .into_iter()
                        .enumerate()
                        .map(|(index, e)| OutEmbedding {
                            object: "embedding",
                            index,
                            embedding: match encoding {
                                Encoding::Float => OutVector::Floats(e.values),
                                Encoding::Base64 => {
                                    OutVector::Base64(embeddings::to_base64(&e.values))
                                }
                            },
                        })
                        .collect();
                    let list = OutList {
                        object: "list",
                        data,
                        model: &answer.model,
                        usage: OutUsage {
                            prompt_tokens: usage.prompt_tokens,
                            total_tokens: usage.total_tokens,
                            aigw_estimated: answer.usage_estimated,
                        },
                    };
                    super::json_with(headers, &list)
                })
            },
            error::failure,
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_become_embed_calls_and_odd_inputs_are_refused_by_name() {
        let (req, enc) = parse(
            json!({"model": "e", "input": "one", "dimensions": 8, "encoding_format": "base64", "user": "u"})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            req,
            EmbedRequest {
                model: "e".into(),
                input: vec!["one".into()],
                dimensions: Some(8),
                user: "u".into(),
            }
        );
        assert_eq!(enc, Encoding::Base64);
        let (req, enc) = parse(
            json!({"model": "e", "input": ["a", "b"]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(req.input, ["a", "b"]);
        assert_eq!(enc, Encoding::Float);
        for (body, says) in [
            (json!({"model": "e", "input": [1, 2, 3]}), "token arrays"),
            (
                json!({"model": "e", "input": "x", "encoding_format": "int8"}),
                "encoding_format",
            ),
            (json!({"model": "e"}), "input"),
            (json!({"model": "e", "input": "x", "extra": 1}), "extra"),
        ] {
            let err = parse(body.to_string().as_bytes()).unwrap_err().to_string();
            assert!(err.contains(says), "{body}: {err}");
        }
    }
}
