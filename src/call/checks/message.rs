//! A conversation's checks: its size, its roles, and each message's fields — tool calls and results, content
//! parts (images as the providers take them, opaque blocks named for their dialect), cache marks.

use serde_json::{Map, Value};

use crate::{
    error::GatewayError,
    proto::{content_part::Part, CacheControl, Message},
    upstream::openai::extras::{image_url_allowed, IMAGE_TYPES},
};

/// Roles a client may send (`tool` needs a `tool_call_id`).
pub(crate) const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];
/// session holds a few thousand), far below what a body could hold.
pub(crate) const MAX_MESSAGES: usize = 50_000;
/// The most content parts, and tool calls, one message may carry.
pub(crate) const MAX_PARTS: usize = 10_000;

fn invalid(msg: String) -> GatewayError {
    GatewayError::InvalidArgument(msg)
}

/// OpenAI's rule for function and schema names.
pub(super) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// JSON text that must hold an object; `what` names the field in the error.
pub(super) fn json_object(text: &str, what: &str) -> Result<Map<String, Value>, GatewayError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(invalid(format!("{what}: must be a JSON object"))),
        Err(e) => Err(invalid(format!("{what}: invalid JSON: {e}"))),
    }
}

/// Checks a conversation: not empty, known roles.
pub(crate) fn check_messages(messages: &[Message]) -> Result<(), GatewayError> {
    if messages.is_empty() {
        return Err(invalid("messages: at least one message is required".into()));
    }
    if messages.len() > MAX_MESSAGES {
        return Err(invalid(format!(
            "messages: at most {MAX_MESSAGES} messages, got {}",
            messages.len()
        )));
    }
    for (i, m) in messages.iter().enumerate() {
        for (field, n) in [("parts", m.parts.len()), ("tool_calls", m.tool_calls.len())] {
            if n > MAX_PARTS {
                return Err(invalid(format!(
                    "messages[{i}].{field}: at most {MAX_PARTS}, got {n}"
                )));
            }
        }
        if !ROLES.contains(&m.role.as_str()) {
            return Err(invalid(format!(
                "messages[{i}].role: '{}' is not one of {}",
                m.role,
                ROLES.join(", ")
            )));
        }
        check_message("messages", i, m)?;
    }
    Ok(())
}

/// The fields of one message beyond role, content and name; `list` names where it is ("messages", "history").
pub(crate) fn check_message(list: &str, i: usize, m: &Message) -> Result<(), GatewayError> {
    let at = |field: &str| format!("{list}[{i}].{field}");
    if m.role == "tool" {
        if m.tool_call_id.is_empty() {
            return Err(invalid(format!(
                "{}: required for role 'tool'",
                at("tool_call_id")
            )));
        }
    } else if !m.tool_call_id.is_empty() {
        return Err(invalid(format!(
            "{}: only for role 'tool'",
            at("tool_call_id")
        )));
    }
    if let Some(c) = &m.cache_control {
        check_cache_control(&at("cache_control"), c)?;
    }
    if !m.tool_calls.is_empty() && m.role != "assistant" {
        return Err(invalid(format!(
            "{}: only for role 'assistant'",
            at("tool_calls")
        )));
    }
    for (j, call) in m.tool_calls.iter().enumerate() {
        if call.id.is_empty() || !valid_name(&call.name) {
            return Err(invalid(format!(
                "{}: needs an id and a function name (letters, digits, _ and -, at most 64)",
                at(&format!("tool_calls[{j}]"))
            )));
        }
    }
    if m.parts.is_empty() {
        return Ok(());
    }
    if !m.content.is_empty() {
        return Err(invalid(format!(
            "{}: set content or parts, not both",
            at("parts")
        )));
    }
    for (j, part) in m.parts.iter().enumerate() {
        let here = at(&format!("parts[{j}]"));
        match &part.part {
            None => return Err(invalid(format!("{here}: empty part"))),
            Some(Part::Text(_)) => {}
            Some(Part::Opaque(_)) if m.role == "system" => {
                return Err(invalid(format!(
                    "{here}: no opaque blocks in system messages"
                )))
            }
            Some(Part::Opaque(block)) => check_opaque(&here, block)?,
            Some(_) if m.role != "user" && m.role != "tool" => {
                return Err(invalid(format!(
                    "{here}: images only in user and tool messages"
                )))
            }
            Some(Part::ImageUrl(img)) if img.url.is_empty() => {
                return Err(invalid(format!("{here}.image_url.url: required")))
            }
            Some(Part::ImageUrl(img)) if !image_url_allowed(&img.url) => {
                return Err(invalid(format!(
                    "{here}.image_url.url: only http, https and data URLs are accepted"
                )))
            }
            Some(Part::Image(img)) if img.data.is_empty() => {
                return Err(invalid(format!("{here}.image.data: required")))
            }
            Some(Part::Image(img)) if !IMAGE_TYPES.contains(&img.mime_type.as_str()) => {
                return Err(invalid(format!(
                    "{here}.image.mime_type: '{}' is not one of {}",
                    img.mime_type,
                    IMAGE_TYPES.join(", ")
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// An opaque block names its dialect and is a JSON object with a `type`: what every writer relies on.
fn check_opaque(here: &str, block: &crate::proto::OpaquePart) -> Result<(), GatewayError> {
    if !matches!(block.dialect.as_str(), "anthropic" | "openai") {
        return Err(invalid(format!(
            "{here}.opaque.dialect: '{}' is not 'anthropic' or 'openai'",
            block.dialect
        )));
    }
    if crate::upstream::openai::wire::opaque_type(&block.json).is_none() {
        return Err(invalid(format!(
            "{here}.opaque.json: must be a JSON object with a \"type\""
        )));
    }
    Ok(())
}

pub(super) fn check_cache_control(at: &str, c: &CacheControl) -> Result<(), GatewayError> {
    if !matches!(c.r#type.as_str(), "" | "ephemeral") {
        return Err(invalid(format!(
            "{at}.type: '{}' is not 'ephemeral'",
            c.r#type
        )));
    }
    if !matches!(c.ttl.as_str(), "" | "5m" | "1h") {
        return Err(invalid(format!(
            "{at}.ttl: '{}' is not '5m' or '1h'",
            c.ttl
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ContentPart, ImageData, ToolCall};

    fn msg(role: &str, content: &str) -> Message {
        Message::text(role, content)
    }

    fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    #[test]
    fn message_checks() {
        assert!(
            check_messages(&[msg("system", "s"), msg("user", "u"), msg("assistant", "a")]).is_ok()
        );
        assert!(check_messages(&[])
            .unwrap_err()
            .to_string()
            .contains("at least one"));
        let e = check_messages(&[msg("user", "u"), msg("wizard", "w")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("messages[1].role") && e.contains("user"), "{e}");
    }

    #[test]
    fn message_checks_name_the_field() {
        let messages: Vec<(Message, &str)> = vec![
            (msg("tool", "x"), "messages[0].tool_call_id: required"),
            (
                Message {
                    tool_call_id: "c".into(),
                    ..msg("user", "x")
                },
                "messages[0].tool_call_id: only",
            ),
            (
                Message {
                    tool_calls: vec![call("c", "f", "{}")],
                    ..msg("user", "x")
                },
                "messages[0].tool_calls",
            ),
            (
                Message {
                    tool_calls: vec![call("", "f", "{}")],
                    ..msg("assistant", "")
                },
                "messages[0].tool_calls[0]",
            ),
            (
                Message {
                    parts: vec![ContentPart { part: None }],
                    ..msg("user", "")
                },
                "messages[0].parts[0]",
            ),
            (
                Message {
                    parts: vec![ContentPart {
                        part: Some(Part::Text("a".into())),
                    }],
                    ..msg("user", "also content")
                },
                "messages[0].parts: set content or parts",
            ),
            (
                Message {
                    parts: vec![ContentPart {
                        part: Some(Part::Image(ImageData {
                            data: b"x".to_vec(),
                            mime_type: "image/tiff".into(),
                            detail: String::new(),
                        })),
                    }],
                    ..msg("user", "")
                },
                "messages[0].parts[0].image.mime_type",
            ),
            (
                Message {
                    parts: vec![ContentPart {
                        part: Some(Part::ImageUrl(Default::default())),
                    }],
                    ..msg("system", "")
                },
                "messages[0].parts[0]: images only",
            ),
        ];
        for (m, says) in messages {
            let err = check_message("messages", 0, &m).unwrap_err().to_string();
            assert!(err.starts_with(says), "{err} (wanted {says})");
        }
    }
}
