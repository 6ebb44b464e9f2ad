//! `POST /v1/chat/completions`: the OpenAI request becomes a whole or streamed call of the call layer, as gRPC's
//! `Generate` and `StreamGenerate` do (auth, limits, cache, routing, retries, metrics, logs are its), and the
//! answer goes back as OpenAI JSON, or as OpenAI's SSE chunks ending in `data: [DONE]`.

use bytes::Bytes;
use http::{HeaderMap, Response};
use tonic::body::Body;

use super::{
    error,
    request::{parse, Parsed},
    wire, Caller,
};
use crate::{
    call::{request::Request, start::Reply},
    error::GatewayError,
    proto::{
        GenerateResponse, Reasoning, ReasoningDelta, StreamChunk, TokenLogprob, ToolCall,
        ToolCallDelta, Usage,
    },
};

/// The names the REST door's calls have in logs and metrics.
pub(crate) const RPC_UNARY: &str = "ChatCompletions";
pub(crate) const RPC_STREAM: &str = "ChatCompletionsStream";

pub(crate) async fn completions(caller: Caller, body: Bytes) -> Response<Body> {
    let parsed = match parse(&body) {
        Ok(p) => p,
        Err(e) => return error::gateway(&e),
    };
    let created = super::unix_now();
    let Parsed {
        model,
        messages,
        config,
        pass,
        ..
    } = parsed;
    let message = Request {
        model,
        messages,
        config,
        pass,
    };
    if parsed.stream {
        let model = message.model.clone();
        let writer = |headers: &HeaderMap| Events {
            id: made_up_id(headers),
            created,
            model,
            include_usage: parsed.include_usage,
            calls_streamed: 0,
        };
        caller
            .stream(RPC_STREAM, message, writer, error::failure)
            .await
    } else {
        let answer = |reply| whole(reply, created);
        caller
            .generate(RPC_UNARY, message, answer, error::failure)
            .await
    }
}

fn out_usage(u: Option<Usage>, estimated: bool) -> Option<wire::OutUsage> {
    u.map(|u| wire::OutUsage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.total_tokens,
        prompt_tokens_details: wire::PromptTokensDetails {
            cached_tokens: u.cached_prompt_tokens,
            cache_write_tokens: u.cache_write_tokens,
        },
        completion_tokens_details: wire::CompletionTokensDetails {
            reasoning_tokens: u.reasoning_tokens,
        },
        aigw_estimated: estimated,
    })
}

/// Tool calls as OpenAI writes them, whole; in a stream each has its `index` (from `first` on).
fn out_calls(calls: &[ToolCall], indexed: Option<usize>) -> Vec<wire::OutToolCall<'_>> {
    calls
        .iter()
        .enumerate()
        .map(|(i, c)| wire::OutToolCall {
            index: indexed.map(|first| first + i),
            id: Some(&c.id),
            kind: Some("function"),
            function: wire::OutFunction {
                name: Some(&c.name),
                arguments: &c.arguments,
            },
        })
        .collect()
}

/// A piece of a tool call, as OpenAI streams it.
fn out_call_piece(c: &ToolCallDelta) -> wire::OutToolCall<'_> {
    let first = !c.id.is_empty();
    wire::OutToolCall {
        index: Some(c.index as usize),
        id: first.then_some(c.id.as_str()),
        kind: first.then_some("function"),
        function: wire::OutFunction {
            name: (!c.name.is_empty()).then_some(c.name.as_str()),
            arguments: &c.arguments,
        },
    }
}

/// Reasoning blocks in LiteLLM's shape, when any is signed or redacted (unsigned text needs only
/// `reasoning_content`).
fn thinking_blocks(blocks: &[Reasoning]) -> Vec<wire::ThinkingBlock> {
    if blocks
        .iter()
        .all(|b| b.signature.is_empty() && b.redacted.is_empty())
    {
        return Vec::new();
    }
    blocks.iter().map(thinking_block).collect()
}

fn thinking_block(b: &Reasoning) -> wire::ThinkingBlock {
    if b.redacted.is_empty() {
        wire::ThinkingBlock::Thinking {
            thinking: b.text.clone(),
            signature: b.signature.clone(),
        }
    } else {
        wire::ThinkingBlock::RedactedThinking {
            data: b.redacted.clone(),
        }
    }
}

/// `{"content": [...]}`, or `null` when none were asked for.
fn out_logprobs(logprobs: &[TokenLogprob]) -> Option<wire::OutLogprobs<'_>> {
    fn one(token: &str, logprob: f64) -> wire::OutLogprob<'_> {
        wire::OutLogprob {
            token,
            logprob,
            bytes: token.as_bytes().to_vec(),
            top_logprobs: None,
        }
    }
    (!logprobs.is_empty()).then(|| wire::OutLogprobs {
        content: logprobs
            .iter()
            .map(|t| wire::OutLogprob {
                top_logprobs: Some(
                    t.top_logprobs
                        .iter()
                        .map(|t| one(&t.token, t.logprob))
                        .collect(),
                ),
                ..one(&t.token, t.logprob)
            })
            .collect(),
    })
}

/// The id the REST door gives an answer: the upstream's when it is known up front (unary), else one made from
/// the request id, the same on every chunk of a stream.
fn made_up_id(headers: &HeaderMap) -> String {
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    format!("chatcmpl-{request_id}")
}

fn whole(reply: Reply<GenerateResponse>, created: u64) -> Response<Body> {
    let Reply {
        value: answer,
        headers,
    } = reply;
    let reasoning_text = crate::upstream::reasoning::joined_text(&answer.reasoning);
    let id = if answer.id.is_empty() {
        made_up_id(&headers)
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
                content: (!answer.content.is_empty() || answer.tool_calls.is_empty())
                    .then_some(answer.content.as_str()),
                refusal: None,
                tool_calls: out_calls(&answer.tool_calls, None),
                reasoning_content: reasoning_text.as_deref(),
                thinking_blocks: thinking_blocks(&answer.reasoning),
            },
            logprobs: out_logprobs(&answer.logprobs),
            finish_reason: (!answer.finish_reason.is_empty())
                .then_some(answer.finish_reason.as_str()),
        }],
        usage: out_usage(answer.usage, answer.usage_estimated),
        system_fingerprint: None,
    };
    super::json_with(headers, &body)
}

/// Writes the events of one stream as OpenAI's server-sent events.
struct Events {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    /// Tool calls whose pieces were streamed (indices below this); the rest go out whole at the end.
    calls_streamed: usize,
}

impl Events {
    fn chunk(&self, delta: wire::Delta<'_>, finish_reason: Option<&str>) -> Bytes {
        self.with_logprobs(delta, None, finish_reason)
    }

    fn with_logprobs(
        &self,
        delta: wire::Delta<'_>,
        logprobs: Option<wire::OutLogprobs<'_>>,
        finish_reason: Option<&str>,
    ) -> Bytes {
        wire::sse_event(&wire::ChatChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            system_fingerprint: None,
            choices: vec![wire::ChunkChoice {
                index: 0,
                delta,
                logprobs,
                finish_reason,
            }],
            usage: self.include_usage.then_some(None),
        })
    }

    /// The tool calls not streamed in pieces (each whole, in one piece) and the logprobs, if any; the finish
    /// reason; then (when asked for) a chunk with no choices and the usage; then `[DONE]`.
    fn last(&self, last: &StreamChunk) -> Bytes {
        let reason = (!last.finish_reason.is_empty()).then_some(last.finish_reason.as_str());
        let mut out = Vec::new();
        let unstreamed = last.tool_calls.get(self.calls_streamed..).unwrap_or(&[]);
        if !unstreamed.is_empty() {
            let calls = wire::Delta {
                tool_calls: out_calls(unstreamed, Some(self.calls_streamed)),
                ..Default::default()
            };
            out.extend_from_slice(&self.chunk(calls, None));
        }
        let logprobs = out_logprobs(&last.logprobs);
        out.extend_from_slice(&self.with_logprobs(wire::Delta::default(), logprobs, reason));
        if self.include_usage {
            out.extend_from_slice(&wire::sse_event(&wire::ChatChunk {
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
}

impl super::StreamWriter for Events {
    /// The role comes first, as OpenAI sends it.
    fn start(&mut self) -> Bytes {
        let role = wire::Delta {
            role: Some("assistant"),
            content: Some(""),
            ..Default::default()
        };
        self.chunk(role, None)
    }

    fn text(&mut self, text: &str) -> Bytes {
        let delta = wire::Delta {
            content: Some(text),
            ..Default::default()
        };
        self.chunk(delta, None)
    }

    /// Text as `reasoning_content`; a signature or a redacted block as a one-block `thinking_blocks`.
    fn reasoning(&mut self, r: &ReasoningDelta) -> Bytes {
        let mut delta = wire::Delta::default();
        if !r.text.is_empty() {
            delta.reasoning_content = Some(&r.text);
        }
        if !r.signature.is_empty() || !r.redacted.is_empty() {
            delta.thinking_blocks = vec![thinking_block(&Reasoning {
                text: String::new(),
                signature: r.signature.clone(),
                redacted: r.redacted.clone(),
                id: String::new(),
            })];
        }
        self.chunk(delta, None)
    }

    fn tool_call(&mut self, c: &ToolCallDelta) -> Bytes {
        self.calls_streamed = self.calls_streamed.max(c.index as usize + 1);
        let delta = wire::Delta {
            tool_calls: vec![out_call_piece(c)],
            ..Default::default()
        };
        self.chunk(delta, None)
    }

    fn last(&mut self, last: &StreamChunk) -> Bytes {
        Events::last(self, last)
    }

    fn failed(&mut self, error: &GatewayError) -> Bytes {
        error::event(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stream_events_are_openai_chunks() {
        let events = Events {
            id: "chatcmpl-1".into(),
            created: 7,
            model: "m".into(),
            include_usage: true,
            calls_streamed: 0,
        };
        let delta = events.chunk(
            wire::Delta {
                content: Some("hi"),
                ..Default::default()
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
                ..Default::default()
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
            json!({"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3,
                   "prompt_tokens_details": {"cached_tokens": 0},
                   "completion_tokens_details": {"reasoning_tokens": 0}})
        );
        assert_eq!(parts[2], "data: [DONE]");
    }
}
