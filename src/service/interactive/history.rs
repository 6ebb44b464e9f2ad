//! A session's conversation, kept server-side within its bounds: the oldest messages go first, the system
//! prompt always stays.

use std::collections::VecDeque;

use crate::{config::InteractiveConfig, convert, error::GatewayError, proto::Message};

pub struct History {
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
    pub fn new(
        system_prompt: String,
        earlier: Vec<Message>,
        limits: InteractiveConfig,
    ) -> Result<History, GatewayError> {
        for (i, m) in earlier.iter().enumerate() {
            if !convert::ROLES.contains(&m.role.as_str()) {
                return Err(GatewayError::InvalidArgument(format!(
                    "history[{i}].role: '{}' is not one of {}",
                    m.role,
                    convert::ROLES.join(", ")
                )));
            }
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

    /// The message for a user turn, if it may be one.
    pub fn user_turn(&self, content: String, name: String) -> Result<Message, GatewayError> {
        if content.is_empty() {
            return Err(GatewayError::InvalidArgument(
                "turn.content: must not be empty".into(),
            ));
        }
        if content.len() > self.limits.max_history_bytes / 2 {
            return Err(too_long("turn.content", self.limits));
        }
        Ok(message("user", content, name))
    }

    /// What the upstream gets for a turn: the system prompt, the history, the new user message.
    pub fn with(&self, user: &Message) -> Vec<Message> {
        self.system
            .iter()
            .chain(&self.messages)
            .chain(std::iter::once(user))
            .cloned()
            .collect()
    }

    /// Appends a completed turn.
    pub fn remember(&mut self, user: Message, answer: String) {
        self.messages.push_back(user);
        self.messages
            .push_back(message("assistant", answer, String::new()));
        self.trim();
    }

    fn trim(&mut self) {
        let fixed_messages = usize::from(self.system.is_some());
        let mut bytes = self.system.as_ref().map_or(0, |s| s.content.len())
            + self.messages.iter().map(|m| m.content.len()).sum::<usize>();
        while !self.messages.is_empty()
            && (self.messages.len() + fixed_messages > self.limits.max_history_messages as usize
                || bytes > self.limits.max_history_bytes)
        {
            if let Some(old) = self.messages.pop_front() {
                bytes -= old.content.len();
            }
        }
    }
}

fn too_long(field: &str, limits: InteractiveConfig) -> GatewayError {
    GatewayError::InvalidArgument(format!(
        "{field}: longer than half of the server's history bound ({} bytes)",
        limits.max_history_bytes
    ))
}
