//! `POST /v1/chat/completions`: the OpenAI request becomes a `Generate` or `StreamGenerate` call to the same
//! handlers the gRPC door uses (auth, limits, cache, routing, retries, metrics, logs are theirs), and the answer
//! goes back as OpenAI JSON, or as OpenAI's SSE chunks ending in `data: [DONE]`.

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::{header, HeaderValue, Response};
use http_body::Frame;
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use tonic::{body::Body, metadata::MetadataMap, Status};

use super::{
    error,
    wire::{self, ChatCompletionRequest, Content, Part, Stop},
};
use crate::{
    auth::Identity,
    error::GatewayError,
    gateway::Gateway,
    proto::{
        GenerateRequest, GenerateResponse, GenerationConfig, Message, StreamChunk,
        StreamGenerateRequest, Usage,
    },
    service::{generate, stream},
};

/// The names the REST door's calls have in logs and metrics.
pub const RPC_UNARY: &str = "ChatCompletions";
pub const RPC_STREAM: &str = "ChatCompletionsStream";

/// A request, read and turned into the gRPC request's parts.
#[derive(Debug, PartialEq)]
pub struct Parsed {
    pub model: String,
    pub messages: Vec<Message>,
    pub config: Option<GenerationConfig>,
    pub stream: bool,
    pub include_usage: bool,
}

fn invalid(msg: impl Into<String>) -> GatewayError {
    GatewayError::InvalidArgument(msg.into())
}

/// Reads a request body. Range checks are the core's (the same as over gRPC); here only what has no gRPC
/// counterpart is refused.
pub fn parse(body: &[u8]) -> Result<Parsed, GatewayError> {
    // The error names the field it is about ("messages[0].content: ...").
    let req: ChatCompletionRequest =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body))
            .map_err(|e| invalid(format!("invalid request body: {e}")))?;
    if req.n.is_some_and(|n| n != 1) {
        return Err(invalid("n: only 1 is supported"));
    }
    let stream = req.stream.unwrap_or(false);
    if req.stream_options.is_some() && !stream {
        return Err(invalid("stream_options: only allowed when stream is true"));
    }
    let messages = req
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            Ok(Message {
                content: text(m.content).map_err(|e| invalid(format!("messages[{i}].{e}")))?,
                role: m.role,
                name: m.name.unwrap_or_default(),
                ..Default::default()
            })
        })
        .collect::<Result<_, GatewayError>>()?;
    let stop = match req.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    // Out-of-range counts are kept out of range (not wrapped) for the core to refuse.
    let max_tokens = req
        .max_completion_tokens
        .or(req.max_tokens)
        .map(|n| n.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32);
    let config = (req.temperature.is_some()
        || req.top_p.is_some()
        || max_tokens.is_some()
        || !stop.is_empty())
    .then_some(GenerationConfig {
        temperature: req.temperature,
        max_tokens,
        top_p: req.top_p,
        stop,
        ..Default::default()
    });
    Ok(Parsed {
        model: req.model,
        messages,
        config,
        stream,
        include_usage: req.stream_options.is_some_and(|o| o.include_usage),
    })
}

/// A message's text: a string, or text parts joined.
fn text(content: Option<Content>) -> Result<String, String> {
    match content {
        None => Ok(String::new()),
        Some(Content::Text(s)) => Ok(s),
        Some(Content::Parts(parts)) => parts
            .into_iter()
            .map(|p| match p {
                Part::Text { text } => Ok(text),
                _ => Err("content: only text parts are supported".to_owned()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|texts| texts.concat()),
    }
}

pub async fn completions(
    gw: Arc<Gateway>,
    who: Arc<Identity>,
    metadata: MetadataMap,
    body: Bytes,
) -> Response<Body> {
    let parsed = match parse(&body) {
        Ok(p) => p,
        Err(e) => return error::gateway(&e),
    };
    let created = unix_now();
    let mut extensions = http::Extensions::new();
    extensions.insert(who);
    let Parsed {
        model,
        messages,
        config,
        ..
    } = parsed;
    if parsed.stream {
        let message = StreamGenerateRequest {
            model: model.clone(),
            messages,
            config,
        };
        let request = tonic::Request::from_parts(metadata, extensions, message);
        match stream::handle(gw, RPC_STREAM, request).await {
            Ok(resp) => sse(resp, created, model, parsed.include_usage),
            Err(status) => error::status(&status),
        }
    } else {
        let message = GenerateRequest {
            model,
            messages,
            config,
        };
        let request = tonic::Request::from_parts(metadata, extensions, message);
        match generate::handle(gw, RPC_UNARY, request).await {
            Ok(resp) => whole(resp, created),
            Err(status) => error::status(&status),
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn out_usage(u: Option<Usage>, estimated: bool) -> Option<wire::OutUsage> {
    u.map(|u| wire::OutUsage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.total_tokens,
        aigw_estimated: estimated,
    })
}

/// The id the REST door gives an answer: the upstream's when it is known up front (unary), else one made from
/// the request id, the same on every chunk of a stream.
fn made_up_id(metadata: &MetadataMap) -> String {
    let request_id = metadata
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    format!("chatcmpl-{request_id}")
}

fn whole(resp: tonic::Response<GenerateResponse>, created: u64) -> Response<Body> {
    let (metadata, answer, _) = resp.into_parts();
    let id = if answer.id.is_empty() {
        made_up_id(&metadata)
    } else {
        answer.id.clone()
    };
    let body = wire::ChatCompletion {
        id: &id,
        object: "chat.completion",
        created,
        model: &answer.model,
        choices: [wire::CompletionChoice {
            index: 0,
            message: wire::OutMessage {
                role: "assistant",
                content: &answer.content,
                refusal: None,
            },
            logprobs: None,
            finish_reason: (!answer.finish_reason.is_empty())
                .then_some(answer.finish_reason.as_str()),
        }],
        usage: out_usage(answer.usage, answer.usage_estimated),
        system_fingerprint: None,
    };
    let mut resp = super::json(http::StatusCode::OK, &body);
    resp.headers_mut().extend(metadata.into_headers());
    resp
}

/// The stream as OpenAI's server-sent events.
fn sse(
    resp: tonic::Response<ReceiverStream<Result<StreamChunk, Status>>>,
    created: u64,
    model: String,
    include_usage: bool,
) -> Response<Body> {
    let (metadata, chunks, _) = resp.into_parts();
    let events = Events {
        id: made_up_id(&metadata),
        created,
        model,
        include_usage,
    };
    // The role comes first, as OpenAI sends it, then one event per chunk until the last or an error.
    let first = events.chunk(
        wire::Delta {
            role: Some("assistant"),
            content: Some(""),
        },
        None,
    );
    let mut done = false;
    let rest = chunks.map_while(move |chunk| {
        if done {
            return None;
        }
        let event = match chunk {
            Ok(c) if !c.is_complete => events.chunk(
                wire::Delta {
                    role: None,
                    content: Some(&c.delta),
                },
                None,
            ),
            Ok(last) => {
                done = true;
                events.last(&last)
            }
            Err(status) => {
                done = true;
                error::event(&status)
            }
        };
        Some(event)
    });
    let frames = tokio_stream::once(first)
        .chain(rest)
        .map(|bytes| Ok::<_, Infallible>(Frame::data(bytes)));
    let mut resp = Response::new(Body::new(http_body_util::StreamBody::new(frames)));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.extend(metadata.into_headers());
    resp
}

/// Writes the events of one stream.
struct Events {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
}

impl Events {
    fn chunk(&self, delta: wire::Delta<'_>, finish_reason: Option<&str>) -> Bytes {
        self.event(&wire::ChatChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            system_fingerprint: None,
            choices: vec![wire::ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason,
            }],
            usage: self.include_usage.then_some(None),
        })
    }

    /// The finish reason, then (when asked for) a chunk with no choices and the usage, then `[DONE]`.
    fn last(&self, last: &StreamChunk) -> Bytes {
        let reason = (!last.finish_reason.is_empty()).then_some(last.finish_reason.as_str());
        let mut out = self.chunk(wire::Delta::default(), reason).to_vec();
        if self.include_usage {
            out.extend_from_slice(&self.event(&wire::ChatChunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                system_fingerprint: None,
                choices: Vec::new(),
                usage: Some(out_usage(last.usage, last.usage_estimated)),
            }));
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        Bytes::from(out)
    }

    fn event(&self, chunk: &wire::ChatChunk<'_>) -> Bytes {
        sse_event(chunk)
    }
}

/// `data: <json>\n\n`.
pub fn sse_event(value: &impl serde::Serialize) -> Bytes {
    let mut out = b"data: ".to_vec();
    // Serializing these types cannot fail: no maps with non-string keys, no failing Serialize impls.
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_json(v: serde_json::Value) -> Result<Parsed, GatewayError> {
        parse(v.to_string().as_bytes())
    }

    fn msg(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
            name: String::new(),
            ..Default::default()
        }
    }

    #[test]
    fn requests_become_the_grpc_request() {
        let base = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let with = |extra: serde_json::Value| {
            let mut v = base.clone();
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            parse_json(v).unwrap()
        };
        let plain = with(json!({}));
        assert_eq!(
            plain,
            Parsed {
                model: "m".into(),
                messages: vec![msg("user", "hi")],
                config: None,
                stream: false,
                include_usage: false,
            }
        );
        let cases: &[(serde_json::Value, GenerationConfig)] = &[
            (
                json!({"temperature": 0.5, "top_p": 0.9}),
                GenerationConfig {
                    temperature: Some(0.5),
                    top_p: Some(0.9),
                    ..Default::default()
                },
            ),
            (
                json!({"max_tokens": 7}),
                GenerationConfig {
                    max_tokens: Some(7),
                    ..Default::default()
                },
            ),
            // The newer field wins when both are sent.
            (
                json!({"max_tokens": 7, "max_completion_tokens": 9}),
                GenerationConfig {
                    max_tokens: Some(9),
                    ..Default::default()
                },
            ),
            // Out of range stays out of range for the core to refuse.
            (
                json!({"max_tokens": 1_u64 << 40}),
                GenerationConfig {
                    max_tokens: Some(i32::MAX),
                    ..Default::default()
                },
            ),
            (
                json!({"stop": "END"}),
                GenerationConfig {
                    stop: vec!["END".into()],
                    ..Default::default()
                },
            ),
            (
                json!({"stop": ["a", "b"]}),
                GenerationConfig {
                    stop: vec!["a".into(), "b".into()],
                    ..Default::default()
                },
            ),
        ];
        for (extra, config) in cases {
            assert_eq!(with(extra.clone()).config.as_ref(), Some(config), "{extra}");
        }
        let streamed = with(json!({"stream": true, "stream_options": {"include_usage": true}}));
        assert!(streamed.stream && streamed.include_usage);
        // Nulls are the same as absent, as OpenAI treats them.
        assert_eq!(with(json!({"temperature": null, "stop": null})), plain);
        let parts = with(json!({"messages": [
            {"role": "system", "content": [{"type": "text", "text": "be "}, {"type": "text", "text": "brief"}]},
            {"role": "user", "content": "hi", "name": "ann"},
            {"role": "assistant", "content": null},
        ]}));
        let mut named = msg("user", "hi");
        named.name = "ann".into();
        assert_eq!(
            parts.messages,
            vec![msg("system", "be brief"), named, msg("assistant", "")]
        );
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (json!({"messages": []}), "model"),
            (json!({"model": "m"}), "messages"),
            (
                json!({"model": "m", "messages": [], "tools": []}),
                "unknown field `tools`",
            ),
            (json!({"model": "m", "messages": [], "n": 2}), "n: only 1"),
            (
                json!({"model": "m", "messages": [], "stream_options": {"include_usage": true}}),
                "stream_options",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
                "messages[0].content",
            ),
            (
                json!({"model": "m", "messages": [], "temperature": "hot"}),
                "temperature",
            ),
        ];
        for (body, says) in cases {
            let err = parse_json(body.clone()).unwrap_err();
            assert!(
                matches!(&err, GatewayError::InvalidArgument(m) if m.contains(says)),
                "{body} -> {err}"
            );
        }
        assert!(parse(b"{not json").is_err());
    }

    #[test]
    fn stream_events_are_openai_chunks() {
        let events = Events {
            id: "chatcmpl-1".into(),
            created: 7,
            model: "m".into(),
            include_usage: true,
        };
        let delta = events.chunk(
            wire::Delta {
                role: None,
                content: Some("hi"),
            },
            None,
        );
        let text = std::str::from_utf8(&delta).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(text.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert_eq!(
            json,
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m",
                   "system_fingerprint": null, "usage": null,
                   "choices": [{"index": 0, "delta": {"content": "hi"}, "logprobs": null, "finish_reason": null}]})
        );
        let last = StreamChunk {
            is_complete: true,
            usage: Some(Usage {
                prompt_tokens: 1,
                completion_tokens: 2,
                total_tokens: 3,
            }),
            finish_reason: "stop".into(),
            ..Default::default()
        };
        let out = events.last(&last);
        let text = std::str::from_utf8(&out).unwrap();
        let parts: Vec<&str> = text.split("\n\n").filter(|s| !s.is_empty()).collect();
        assert_eq!(parts.len(), 3, "{text}");
        let finish: serde_json::Value =
            serde_json::from_str(parts[0].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        assert_eq!(finish["choices"][0]["delta"], json!({}));
        let usage: serde_json::Value =
            serde_json::from_str(parts[1].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(
            usage["usage"],
            json!({"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})
        );
        assert_eq!(parts[2], "data: [DONE]");
    }
}
