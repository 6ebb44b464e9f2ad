//! A session's conversation, kept server-side within its bounds: the oldest messages go first, the system
//! prompt always stays.

use std::collections::VecDeque;

use crate::{
    call::checks,
    config::InteractiveConfig,
    error::GatewayError,
    proto::{Message, UserTurn},
    upstream::openai::extras,
};

pub(crate) struct History {
    system: Option<Message>,
    messages: VecDeque<Message>,
    limits: InteractiveConfig,
}

fn message(role: &str, content: String, name: String) -> Message {
    Message {
        role: role.into(),
        content,
        name,
        ..Default::default()
    }
}

impl History {
    /// Starts from the session's system prompt and earlier conversation (trimmed to fit).
    pub(crate) fn new(
        system_prompt: String,
        earlier: Vec<Message>,
        limits: InteractiveConfig,
    ) -> Result<History, GatewayError> {
        for (i, m) in earlier.iter().enumerate() {
            if !checks::ROLES.contains(&m.role.as_str()) {
                return Err(GatewayError::InvalidArgument(format!(
                    "history[{i}].role: '{}' is not one of {}",
                    m.role,
                    checks::ROLES.join(", ")
                )));
            }
            checks::check_message("history", i, m)?;
        }
        if system_prompt.len() > limits.max_history_bytes / 2 {
            return Err(too_long("system_prompt", limits));
        }
        let system =
            (!system_prompt.is_empty()).then(|| message("system", system_prompt, String::new()));
        let mut history = History {
            system,
            messages: earlier.into(),
            limits,
        };
        history.trim();
        Ok(history)
    }

    /// The messages a turn adds: a tool message per result (answers to the calls the last answer made), then
    /// the user's message, if any.
    pub(crate) fn user_turn(&self, turn: UserTurn) -> Result<Vec<Message>, GatewayError> {
        let invalid = |msg: String| GatewayError::InvalidArgument(msg);
        if turn.content.is_empty() && turn.tool_results.is_empty() {
            return Err(invalid(
                "turn.content: must not be empty (unless the turn carries tool_results)".into(),
            ));
        }
        let size = turn.content.len()
            + turn
                .tool_results
                .iter()
                .map(|r| r.content.len())
                .sum::<usize>();
        if size > self.limits.max_history_bytes / 2 {
            return Err(too_long("turn.content", self.limits));
        }
        let asked: Vec<&str> = self
            .messages
            .back()
            .filter(|m| m.role == "assistant")
            .map(|m| m.tool_calls.iter().map(|c| c.id.as_str()).collect())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(turn.tool_results.len() + 1);
        for (i, r) in turn.tool_results.into_iter().enumerate() {
            if !asked.contains(&r.tool_call_id.as_str()) {
                return Err(invalid(format!(
                    "turn.tool_results[{i}].tool_call_id: '{}' is not a call of the last answer",
                    r.tool_call_id
                )));
            }
            out.push(Message {
                role: "tool".into(),
                content: r.content,
                tool_call_id: r.tool_call_id,
                ..Default::default()
            });
        }
        if !turn.content.is_empty() {
            out.push(message("user", turn.content, turn.name));
        }
        Ok(out)
    }

    /// What the upstream gets for a turn: the system prompt, the history, the turn's new messages.
    pub(crate) fn with(&self, turn: &[Message]) -> Vec<Message> {
        self.system
            .iter()
            .chain(&self.messages)
            .chain(turn)
            .cloned()
            .collect()
    }

    /// Appends a completed turn: its messages and the answer (text, tool calls or both).
    pub(crate) fn remember(&mut self, turn: Vec<Message>, answer: Message) {
        self.messages.extend(turn);
        self.messages.push_back(answer);
        self.trim();
    }

    fn trim(&mut self) {
        let fixed_messages = usize::from(self.system.is_some());
        let mut bytes = self.system.as_ref().map_or(0, |s| s.content.len())
            + self.messages.iter().map(extras::size).sum::<usize>();
        while !self.messages.is_empty()
            && (self.messages.len() + fixed_messages > self.limits.max_history_messages as usize
                || bytes > self.limits.max_history_bytes)
        {
            if let Some(old) = self.messages.pop_front() {
                bytes -= extras::size(&old);
            }
        }
        // A tool result without the call it answers is refused by providers: it goes with its call.
        while self.messages.front().is_some_and(|m| m.role == "tool") {
            self.messages.pop_front();
        }
    }
}

fn too_long(field: &str, limits: InteractiveConfig) -> GatewayError {
    GatewayError::InvalidArgument(format!(
        "{field}: longer than half of the server's history bound ({} bytes)",
        limits.max_history_bytes
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ToolCall, ToolResult};

    fn limits(messages: u32) -> InteractiveConfig {
        InteractiveConfig {
            max_history_messages: messages,
            max_history_bytes: 1 << 20,
        }
    }

    fn called(id: &str) -> Message {
        Message {
            role: "assistant".into(),
            tool_calls: vec![ToolCall {
                id: id.into(),
                name: "f".into(),
                arguments: "{}".into(),
            }],
            ..Default::default()
        }
    }

    fn result(id: &str) -> ToolResult {
        ToolResult {
            tool_call_id: id.into(),
            content: "r".into(),
        }
    }

    #[test]
    fn tool_results_answer_the_last_calls_and_never_outlive_them() {
        let mut h = History::new(String::new(), Vec::new(), limits(4)).unwrap();
        h.remember(
            vec![message("user", "q".into(), String::new())],
            called("c1"),
        );
        let turn = UserTurn {
            tool_results: vec![result("c1")],
            ..Default::default()
        };
        let added = h.user_turn(turn).unwrap();
        assert_eq!(added.len(), 1);
        assert_eq!(
            (added[0].role.as_str(), added[0].tool_call_id.as_str()),
            ("tool", "c1")
        );
        let stray = UserTurn {
            tool_results: vec![result("c2")],
            ..Default::default()
        };
        assert!(h.user_turn(stray).unwrap_err().to_string().contains("c2"));
        assert!(h.user_turn(UserTurn::default()).is_err(), "an empty turn");
        // Four messages fit: trimming the oldest two would leave the tool result first, without its call.
        h.remember(added, message("assistant", "done".into(), String::new()));
        h.remember(
            vec![message("user", "next".into(), String::new())],
            called("c3"),
        );
        let kept: Vec<&str> = h.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(kept, ["assistant", "user", "assistant"]);
        // An earlier conversation is checked like any request's messages.
        let orphan = vec![message("tool", "r".into(), String::new())];
        let err = History::new(String::new(), orphan, limits(4))
            .err()
            .unwrap();
        assert!(
            err.to_string().starts_with("history[0].tool_call_id"),
            "{err}"
        );
    }
}
