//! proto <-> OpenAI JSON: the request body and the answer, whole or in chunks. Pure functions: no I/O, no state.

use crate::{
    config::MaxTokensField,
    proto::{GenerationConfig, Message, Reasoning, ReasoningDelta, ToolCallDelta, Usage},
    upstream::openai::extras,
    upstream::openai::wire::{
        ChatChunk, ChatCompletion, ChatMessage, ChatRequest, ReasoningText, StreamOptions,
        WireUsage,
    },
    upstream::pass_through::PassThrough,
    upstream::{
        answer::Completion,
        answer::StreamEnd,
        utf16::{RawText, Utf16Joiner},
    },
};

/// Builds the upstream request. Unset parameters stay out of the JSON; streams ask for usage in the stream.
pub fn chat_request<'a>(
    upstream_model: &'a str,
    messages: impl IntoIterator<Item = &'a Message>,
    config: Option<&'a GenerationConfig>,
    pass: &PassThrough,
    max_tokens_field: MaxTokensField,
    stream: bool,
) -> ChatRequest<'a> {
    let max = config
        .and_then(|c| c.max_tokens)
        .map(|n| n.max(1).unsigned_abs());
    let reasoning_effort = config
        .and_then(|c| c.reasoning.as_ref())
        .and_then(crate::upstream::reasoning::effort);
    let mut provider_options = pass.provider.clone();
    // The typed request wins over the same field among the provider's (one key, never two, in the body).
    if reasoning_effort.is_some() {
        provider_options.remove("reasoning_effort");
    }
    // Each dialect's fields are kept apart for upstreams of that dialect; the provider's options win.
    let mut openai_options = pass.dialect("openai");
    openai_options.retain(|k, _| !provider_options.contains_key(k));
    let (max_tokens, max_completion_tokens) = match max_tokens_field {
        MaxTokensField::MaxTokens => (max, None),
        MaxTokensField::MaxCompletionTokens => (None, max),
    };
    ChatRequest {
        model: upstream_model,
        messages: messages.into_iter().map(chat_message).collect(),
        temperature: config.and_then(|c| c.temperature),
        top_p: config.and_then(|c| c.top_p),
        max_tokens,
        max_completion_tokens,
        stop: config.map_or(&[], |c| c.stop.as_slice()),
        stream,
        stream_options: stream.then_some(StreamOptions {
            include_usage: true,
        }),
        seed: config.and_then(|c| c.seed),
        presence_penalty: config.and_then(|c| c.presence_penalty),
        frequency_penalty: config.and_then(|c| c.frequency_penalty),
        logprobs: config.is_some_and(|c| c.logprobs),
        top_logprobs: config.and_then(|c| c.top_logprobs),
        user: config.map(|c| c.user.as_str()).filter(|u| !u.is_empty()),
        response_format: extras::response_format(config.and_then(|c| c.response_format.as_ref())),
        tools: config.map(|c| extras::tools(&c.tools)).unwrap_or_default(),
        tool_choice: extras::tool_choice(config.and_then(|c| c.tool_choice.as_ref())),
        parallel_tool_calls: config.and_then(|c| c.parallel_tool_calls),
        reasoning_effort,
        reasoning: config.and_then(|c| c.reasoning.as_ref()),
        provider_options,
        tool_cache_control: config
            .map(|c| {
                c.tools
                    .iter()
                    .map(|t| extras::cache_control(t.cache_control.as_ref()))
                    .collect()
            })
            .unwrap_or_default(),
        tool_anthropic_fields: config
            .map(|c| (0..c.tools.len()).map(|i| pass.tool(i).cloned()).collect())
            .unwrap_or_default(),
        openai_options,
        anthropic_options: pass.dialect("anthropic"),
        responses_options: pass.dialect("responses"),
        gemini_options: pass.dialect("gemini"),
        bedrock_options: pass.dialect("bedrock"),
        api_headers: None,
    }
}

/// [`chat_request`] for a request as a gRPC client sends it: its config's Struct fields are what passes through.
#[cfg(test)]
pub(crate) fn grpc_chat_request<'a>(
    upstream_model: &'a str,
    messages: impl IntoIterator<Item = &'a Message>,
    config: Option<&'a GenerationConfig>,
    max_tokens_field: MaxTokensField,
    stream: bool,
) -> ChatRequest<'a> {
    let pass = config
        .cloned()
        .as_mut()
        .map(PassThrough::take_from)
        .unwrap_or_default();
    chat_request(
        upstream_model,
        messages,
        config,
        &pass,
        max_tokens_field,
        stream,
    )
}

fn chat_message(m: &Message) -> ChatMessage<'_> {
    ChatMessage {
        role: &m.role,
        content: extras::content(m),
        name: (!m.name.is_empty()).then_some(m.name.as_str()),
        tool_call_id: (!m.tool_call_id.is_empty()).then_some(m.tool_call_id.as_str()),
        tool_calls: extras::tool_calls(&m.tool_calls),
        reasoning_content: crate::upstream::reasoning::joined_text(&m.reasoning),
        cache_control: extras::cache_control(m.cache_control.as_ref()),
        reasoning: &m.reasoning,
    }
}

/// Upstream usage to proto usage; counts beyond `i32` saturate rather than wrap.
pub(crate) fn usage(u: WireUsage) -> Usage {
    let clamp = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
    let total = if u.total_tokens == 0 {
        u.prompt_tokens + u.completion_tokens
    } else {
        u.total_tokens
    };
    let cached = u
        .prompt_tokens_details
        .cached_tokens
        .max(u.prompt_cache_hit_tokens);
    Usage {
        prompt_tokens: clamp(u.prompt_tokens),
        completion_tokens: clamp(u.completion_tokens),
        total_tokens: clamp(total),
        // Parts of the totals, never more than them whatever the upstream says.
        cached_prompt_tokens: clamp(cached.min(u.prompt_tokens)),
        cache_write_tokens: 0,
        reasoning_tokens: clamp(
            u.completion_tokens_details
                .reasoning_tokens
                .min(u.completion_tokens),
        ),
    }
}

/// A non-streamed answer's body, parsed; the error says what is wrong with it.
/// A whole answer; its log probabilities only when the client asked for them (`logprobs`), and bounded.
pub fn completion(body: &[u8], logprobs: bool) -> Result<Completion, String> {
    let parsed: ChatCompletion =
        serde_json::from_slice(body).map_err(|e| format!("invalid completion JSON: {e}"))?;
    let choice = parsed.choices.into_iter().next().ok_or("no choices")?;
    let message = choice.message;
    let reasoning = message
        .reasoning_content
        .and_then(ReasoningText::into_text)
        .or_else(|| message.reasoning.and_then(ReasoningText::into_text))
        .filter(|t| !t.is_empty())
        .map(|text| Reasoning {
            text,
            ..Default::default()
        });
    Ok(Completion {
        id: parsed.id,
        model: parsed.model,
        content: message
            .content
            .or(message.refusal)
            .map(RawText::into_lossy)
            .unwrap_or_default(),
        finish_reason: choice.finish_reason.unwrap_or_default(),
        usage: parsed.usage.map(usage),
        tool_calls: extras::from_wire_calls(message.tool_calls.unwrap_or_default()),
        logprobs: {
            let mut kept = Vec::new();
            if logprobs {
                extras::add_logprobs(&mut kept, &mut 0, choice.logprobs)?;
            }
            kept
        },
        reasoning: reasoning.into_iter().collect(),
    })
}

/// Why one `data:` event of a stream is not a chunk.
#[derive(Debug)]
pub enum ChunkError {
    Invalid(serde_json::Error),
    /// An error object sent in the stream instead of a chunk; its message.
    Upstream(String),
    /// An error in the stream saying the provider is overloaded (Anthropic's `overloaded_error`).
    Overloaded(String),
    /// JSON, but not a chunk the gateway can take: past what it holds (tool calls, logprobs), or inconsistent.
    Malformed(String),
}

/// What one chunk brought.
#[derive(Debug, PartialEq)]
pub enum Piece {
    /// Text for the client (never empty).
    Text(String),
    /// A piece of reasoning.
    Reasoning(ReasoningDelta),
    /// A piece of a tool call.
    ToolCall(ToolCallDelta),
    /// Nothing to forward, but the upstream is alive (a role-only chunk, usage, a finish reason, a ping).
    Progress,
    /// Nothing.
    Nothing,
}

/// What a stream's reader carries from one chunk to the next.
#[derive(Debug, Default)]
pub struct Reading {
    /// Id, model, finish reason, usage, tool calls, reasoning and logprobs, collected for the end.
    pub(crate) end: StreamEnd,
    /// The answer's text pieces, joined across surrogate pairs split between chunks.
    pub(crate) text: Utf16Joiner,
    /// The client asked for log probabilities: without that, an upstream's are dropped, never held.
    pub(crate) logprobs: bool,
    /// Bytes of log probabilities kept so far (see `extras::MAX_LOGPROB_BYTES`).
    pub(crate) logprob_bytes: usize,
    /// Bytes of reasoning kept so far (see `extras::MAX_REASONING_BYTES`).
    pub(crate) reasoning_bytes: usize,
    /// The reasoning block pieces go to, while no text or tool call has come since it began.
    pub(crate) reasoning_open: Option<u32>,
    /// Pieces of one upstream event past its first, handed out before the next event is read.
    pub(crate) queued: std::collections::VecDeque<Piece>,
}

impl Reading {
    /// The text of one chunk; `Progress` when it only held back half a surrogate pair.
    pub(crate) fn text_piece(&mut self, raw: RawText) -> Piece {
        self.reasoning_open = None;
        let text = self.text.text(raw.0);
        if text.is_empty() {
            Piece::Progress
        } else {
            Piece::Text(text)
        }
    }

    /// A piece of reasoning: added to its block in the end (a new block when `new_block`, or when text or a
    /// tool call came since the last piece), and returned for the client.
    pub(crate) fn reasoning_piece(
        &mut self,
        new_block: bool,
        text: String,
        signature: String,
        redacted: String,
    ) -> Result<Piece, ChunkError> {
        self.reasoning_bytes += text.len() + signature.len() + redacted.len();
        if self.reasoning_bytes > extras::MAX_REASONING_BYTES {
            return Err(ChunkError::Malformed(format!(
                "reasoning over {} bytes",
                extras::MAX_REASONING_BYTES
            )));
        }
        let blocks = &mut self.end.reasoning;
        let index = match self.reasoning_open {
            Some(i) if !new_block => i,
            _ => {
                if blocks.len() >= extras::MAX_REASONING_BLOCKS {
                    return Err(ChunkError::Malformed(format!(
                        "over {} reasoning blocks",
                        extras::MAX_REASONING_BLOCKS
                    )));
                }
                blocks.push(Reasoning::default());
                u32::try_from(blocks.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.reasoning_open = Some(index);
        let block = &mut blocks[index as usize];
        block.text.push_str(&text);
        block.signature.push_str(&signature);
        block.redacted.push_str(&redacted);
        Ok(Piece::Reasoning(ReasoningDelta {
            index,
            text,
            signature,
            redacted,
            id: String::new(),
        }))
    }

    /// A new tool call (its id and name, no arguments yet), bounded in number: its index, and its first piece.
    pub(crate) fn call_begins(
        &mut self,
        id: String,
        name: String,
    ) -> Result<(usize, Piece), ChunkError> {
        let end = &mut self.end;
        if end.tool_calls.len() >= extras::MAX_TOOL_CALLS {
            return Err(ChunkError::Malformed(format!(
                "over {} tool calls",
                extras::MAX_TOOL_CALLS
            )));
        }
        let index = end.tool_calls.len();
        end.tool_calls.push(crate::proto::ToolCall {
            id: id.clone(),
            name: name.clone(),
            arguments: String::new(),
        });
        let piece = Piece::ToolCall(ToolCallDelta {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            id,
            name,
            arguments: String::new(),
        });
        Ok((index, piece))
    }

    /// The next piece of call `index`'s arguments, all calls' bounded together.
    pub(crate) fn call_arguments(
        &mut self,
        index: usize,
        piece: String,
    ) -> Result<Piece, ChunkError> {
        let calls = &mut self.end.tool_calls;
        let total: usize = calls.iter().map(|c| c.arguments.len()).sum();
        if total + piece.len() > extras::MAX_TOOL_CALL_BYTES {
            return Err(ChunkError::Malformed(format!(
                "tool calls over {} bytes",
                extras::MAX_TOOL_CALL_BYTES
            )));
        }
        if piece.is_empty() {
            return Ok(Piece::Progress);
        }
        calls[index].arguments.push_str(&piece);
        Ok(Piece::ToolCall(ToolCallDelta {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            arguments: piece,
            ..Default::default()
        }))
    }

    /// A new reasoning block under the provider's id for it (a Responses API reasoning item's), which the
    /// block's first piece carries to the client.
    pub(crate) fn reasoning_begins(&mut self, id: String) -> Result<Piece, ChunkError> {
        let mut piece = self.reasoning_piece(true, String::new(), String::new(), String::new())?;
        if let Piece::Reasoning(delta) = &mut piece {
            self.end.reasoning[delta.index as usize].id.clone_from(&id);
            delta.id = id;
        }
        Ok(piece)
    }

    /// Hands out one event's pieces: the first is returned, the rest queued in order.
    fn hand_out(&mut self, mut pieces: impl Iterator<Item = Piece>) -> Piece {
        let first = pieces.next().unwrap_or(Piece::Progress);
        self.queued.extend(pieces);
        first
    }
}

/// One streamed chunk: its id, model, finish reason, usage, tool-call pieces (re-assembled) and logprobs go
/// into `reading.end` as they pass; its pieces come back in order, reasoning, then text, then tool-call pieces
/// (the first returned, the rest in `reading.queued`). Every chunk is a sign of life (`Progress` at least).
pub fn chunk(data: &str, reading: &mut Reading) -> Result<Piece, ChunkError> {
    let chunk = serde_json::from_str::<ChatChunk>(data).map_err(ChunkError::Invalid)?;
    let end = &mut reading.end;
    if let Some(err) = chunk.error {
        return Err(ChunkError::Upstream(err.message));
    }
    if end.id.is_empty() {
        end.id = chunk.id.into_owned();
    }
    if end.model.is_empty() {
        end.model = chunk.model.into_owned();
    }
    if let Some(u) = chunk.usage {
        end.usage = Some(usage(u));
    }
    // We never ask for n > 1, so the first choice is the answer.
    let Some(choice) = chunk.choices.into_iter().next() else {
        return Ok(Piece::Progress);
    };
    if let Some(reason) = choice.finish_reason {
        end.finish_reason = reason;
    }
    if reading.logprobs {
        extras::add_logprobs(
            &mut end.logprobs,
            &mut reading.logprob_bytes,
            choice.logprobs,
        )
        .map_err(ChunkError::Malformed)?;
    }
    let delta = choice.delta;
    let reasoning = delta
        .reasoning_content
        .and_then(ReasoningText::into_text)
        .or_else(|| delta.reasoning.and_then(ReasoningText::into_text))
        .filter(|t| !t.is_empty());
    let text = delta.content.or(delta.refusal).filter(|t| !t.0.is_empty());
    let calls = delta.tool_calls.filter(|c| !c.is_empty());
    // The common chunk, one piece of text: no queue.
    if reasoning.is_none() && calls.is_none() {
        return Ok(match text {
            Some(text) => reading.text_piece(text),
            None => Piece::Progress,
        });
    }
    // An agent's common chunk, one piece of one call: no queue either.
    let calls = match calls {
        Some(calls) if reasoning.is_none() && text.is_none() && calls.len() == 1 => {
            reading.reasoning_open = None;
            let mut piece = Piece::Progress;
            extras::merge_tool_deltas(&mut reading.end.tool_calls, calls, &mut |d| {
                piece = Piece::ToolCall(d)
            })
            .map_err(ChunkError::Malformed)?;
            return Ok(piece);
        }
        calls => calls,
    };
    let mut pieces = Vec::new();
    if let Some(r) = reasoning {
        pieces.push(reading.reasoning_piece(false, r, String::new(), String::new())?);
    }
    if let Some(text) = text {
        pieces.push(reading.text_piece(text));
    }
    if let Some(calls) = calls {
        reading.reasoning_open = None;
        extras::merge_tool_deltas(&mut reading.end.tool_calls, calls, &mut |d| {
            pieces.push(Piece::ToolCall(d))
        })
        .map_err(ChunkError::Malformed)?;
    }
    Ok(reading.hand_out(pieces.into_iter().filter(|p| *p != Piece::Progress)))
}

#[cfg(test)]
mod tests;
