//! `POST /v1/messages`, Anthropic's Messages API, on the same pipeline as the other doors: the request becomes
//! a whole or streamed call of the call layer (any configured upstream serves it, OpenAI-style ones included), and
//! the answer goes back as an Anthropic message, or as its event stream: `message_start`, per content block
//! (thinking, text, tool use, in the order their first pieces came) `content_block_start` /
//! `content_block_delta` (`thinking_delta`, `signature_delta`, `text_delta`, `input_json_delta`, each as it
//! arrives) / `content_block_stop`, `event: ping` during silences, then `message_delta` with the stop reason and
//! usage, and `message_stop`. Keys come as `x-api-key` or bearer;
//! `anthropic-version` is accepted (any). Errors are Anthropic's `{"type": "error", "error": {...}}`, and a
//! stream that fails after it started ends with an `error` event, never `message_stop`.

mod count;
mod create;
mod events;
mod request;
mod shapes;

pub(crate) use count::count_tokens;
pub(crate) use create::create;
/// For the fuzz harness.
#[cfg(test)]
pub(crate) use request::parse as parse_request;
pub(crate) use shapes::{gateway_error, model_list, model_object, refusal};
