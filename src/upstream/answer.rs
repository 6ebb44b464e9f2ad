//! What an upstream answers, whichever dialect it speaks: a whole completion, or a stream's events.

use crate::proto::{Reasoning, ReasoningDelta, TokenLogprob, ToolCall, ToolCallDelta, Usage};

/// A whole answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub id: String,
    pub model: String,
    pub content: String,
    pub finish_reason: String,
    pub usage: Option<Usage>,
    pub(crate) tool_calls: Vec<ToolCall>,
    pub(crate) logprobs: Vec<TokenLogprob>,
    /// The model's reasoning blocks, in order.
    pub(crate) reasoning: Vec<Reasoning>,
}

/// What a stream yields: the answer's pieces as they arrive (text, reasoning, tool-call pieces), signs of life,
/// then one end with the totals.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StreamEvent {
    /// Never empty: role-only and empty deltas are not forwarded.
    Delta(String),
    /// A piece of reasoning (thinking text, a signature, a redacted block).
    Reasoning(ReasoningDelta),
    /// A piece of a tool call (its id and name first, then its arguments in pieces).
    ToolCall(ToolCallDelta),
    /// The upstream is alive but sent nothing to relay (a role-only chunk, a ping, a comment, usage): resets the
    /// stall timers, and is not yet the answer (a failure before the answer's first piece may be retried).
    Progress,
    End(StreamEnd),
}

impl StreamEvent {
    /// A piece of the answer the client sees (or its end): once one has arrived, the call is never retried.
    pub(crate) fn is_answer(&self) -> bool {
        !matches!(self, Self::Progress)
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct StreamEnd {
    pub(crate) id: String,
    pub(crate) model: String,
    pub(crate) finish_reason: String,
    /// `None` when the upstream sent no usage despite being asked.
    pub(crate) usage: Option<Usage>,
    /// Re-assembled from the stream's pieces, whole.
    pub(crate) tool_calls: Vec<ToolCall>,
    pub(crate) logprobs: Vec<TokenLogprob>,
    /// Re-assembled from the stream's reasoning pieces, a block each.
    pub(crate) reasoning: Vec<Reasoning>,
}

/// Why a whole answer's body holds none: it is not an answer, or it is an error the API wrote in it whatever
/// the HTTP status (Anthropic's `{"type": "error", "error": {...}}`: a proxy or an overloaded edge may answer 200
/// with one), as the status it stands for.
#[derive(Debug)]
pub(crate) enum NoAnswer {
    Malformed(String),
    Api { status: u16, message: String },
}
