//! `InteractiveStream`: a chat session on one bidirectional stream.
//!
//! The first message names the model, config and optional system prompt/history. Each user turn is numbered
//! (1, 2, ...) and answered by its own task with deltas tagged by the turn, then `TurnComplete`; the answer is
//! appended to the server-side history, so the next turn has the context. One turn runs at a time: a turn sent
//! while another is in flight is refused in-band. `CancelTurn` stops the turn in flight and the session goes
//! on. A failed or cancelled turn is reported in-band (`TurnError`) and leaves the history as it was, so the
//! client may simply send it again. Whole-session problems end the stream with a status: auth, permissions,
//! a bad start, limits (the session holds one concurrency slot for its life; each turn is a request for the
//! rate limits), the client's deadline, shutdown.

mod history;
mod open;
mod replies;
mod session;
mod turn;

pub(crate) use open::handle;

#[cfg(test)]
mod tests;
