//! `POST /v1/responses`, OpenAI's Responses API, on the same pipeline as chat completions: the request becomes
//! a whole or streamed call of the call layer (so every upstream kind serves it, with the same limits, cache,
//! routing, metrics and logs), and the answer goes back as a response object, or as the documented event
//! stream: `response.created`, `response.in_progress`, then the output items in the order their first pieces
//! came — reasoning items with `response.reasoning_summary_text.delta`s, the message with its
//! `response.output_text.delta`s, each function call with its `response.function_call_arguments.delta`s — then
//! `response.completed` (or `response.incomplete` when the output limit cut it); a failure after the start is an `error` event and `response.failed`, never a
//! completion.
//!
//! `store` (true unless the request says false) keeps the conversation for `previous_response_id`
//! (`core::conversations`: an hour, bounded in memory, per replica, for the key that made it).

mod answer;
mod create;
mod events;
mod reasoning_items;
mod request;
mod stored;

pub(crate) use create::create;
/// For the fuzz harness.
#[cfg(test)]
pub(crate) use request::parse as parse_request;
pub(crate) use stored::{delete, input_items, retrieve};
