//! A Responses request's function tools and `tool_choice`, read into the call's.

use serde_json::{Map, Value};

use super::{invalid, Namespaces};
use crate::{
    error::GatewayError,
    proto::{tool_choice::Choice, Tool, ToolChoice},
};

/// `{"type": "function", "name": ..., "parameters": {...}}`, of a namespace tool when `namespace` is not empty.
pub(super) fn tool(
    at: &str,
    t: &Map<String, Value>,
    namespace: &str,
) -> Result<Tool, GatewayError> {
    let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        return Err(invalid(format!("{at}.name: required")));
    }
    Ok(Tool {
        name: if namespace.is_empty() {
            name.to_owned()
        } else {
            Namespaces::flat(namespace, name)
        },
        description: t
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        parameters_json: t
            .get("parameters")
            .filter(|p| p.is_object())
            .map(Value::to_string)
            .unwrap_or_default(),
        strict: t.get("strict").and_then(Value::as_bool),
        cache_control: None,
        anthropic_fields: None,
    })
}

pub(super) fn tool_choice(v: &Value) -> Result<ToolChoice, GatewayError> {
    let choice = match v {
        Value::String(mode) => Choice::Mode(mode.clone()),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            Choice::Function(
                o.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
        _ => return Err(invalid(
            "tool_choice: 'none', 'auto', 'required' or {\"type\": \"function\", \"name\": ...}",
        )),
    };
    Ok(ToolChoice {
        choice: Some(choice),
    })
}
