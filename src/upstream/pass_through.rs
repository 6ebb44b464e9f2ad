//! The request fields the gateway does not model, kept as the JSON the client sent: the provider's fields for
//! any upstream, fields for upstreams of one dialect only, and the extra fields of a tool's definition. The REST
//! doors read them straight from their JSON bodies; the gRPC door takes them out of the contract's
//! `google.protobuf.Struct` fields once. JSON all the way keeps a number as the client wrote it (a Struct holds
//! doubles: `2.0` came out as `2`, and integers past 2^53 were rounded) and gives every call one order of keys.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::proto::GenerationConfig;

/// A JSON object.
pub type Fields = Map<String, Value>;

/// What travels to an upstream unchanged, beside the typed request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassThrough {
    /// For every upstream (`GenerationConfig.provider_options`; the chat door's unnamed fields).
    pub provider: Fields,
    /// For upstreams of one dialect only, by its name (`dialect_options`: "anthropic", "openai", "responses",
    /// "gemini", "bedrock").
    pub dialect: BTreeMap<String, Fields>,
    /// The Anthropic-only fields of each tool's definition, in the order of `GenerationConfig.tools` (missing at
    /// the end: none).
    pub tools: Vec<Option<Fields>>,
}

impl PassThrough {
    /// Takes the contract's Struct fields out of `config` (left empty) as JSON.
    pub fn take_from(config: &mut GenerationConfig) -> Self {
        let tools = config
            .tools
            .iter_mut()
            .map(|t| t.anthropic_fields.take().map(|s| struct_to_json(&s)))
            .collect::<Vec<_>>();
        let any_tool = tools.iter().any(Option::is_some);
        Self {
            provider: config
                .provider_options
                .take()
                .map(|s| struct_to_json(&s))
                .unwrap_or_default(),
            dialect: std::mem::take(&mut config.dialect_options)
                .into_iter()
                .map(|(k, s)| (k, struct_to_json(&s)))
                .collect(),
            tools: if any_tool { tools } else { Vec::new() },
        }
    }

    pub fn is_empty(&self) -> bool {
        self.provider.is_empty()
            && self.dialect.values().all(Map::is_empty)
            && self.tools.iter().all(Option::is_none)
    }

    /// The fields for upstreams of `dialect` only (empty when there are none).
    pub fn dialect(&self, dialect: &str) -> Fields {
        self.dialect.get(dialect).cloned().unwrap_or_default()
    }

    /// The Anthropic-only fields of tool `i`.
    pub fn tool(&self, i: usize) -> Option<&Fields> {
        self.tools.get(i).and_then(Option::as_ref)
    }

    /// One text for the same fields, whatever order they came in (`serde_json`'s maps are sorted): the cache
    /// key's part.
    pub fn canonical(&self) -> Vec<u8> {
        let value = serde_json::json!([self.provider, self.dialect, self.tools]);
        serde_json::to_vec(&value).unwrap_or_default()
    }
}

/// A Struct as JSON. Struct numbers are doubles: whole ones go out as integers, which strict APIs want for
/// counts.
pub fn struct_to_json(s: &prost_types::Struct) -> Fields {
    s.fields
        .iter()
        .map(|(k, v)| (k.clone(), value_to_json(v)))
        .collect()
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a float to an integer: `as` saturates, NaN is 0"
)]
fn value_to_json(v: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 => {
            Value::from(*n as i64)
        }
        Some(Kind::NumberValue(n)) => {
            serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
        }
        Some(Kind::StringValue(s)) => Value::from(s.as_str()),
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StructValue(s)) => Value::Object(struct_to_json(s)),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(value_to_json).collect()),
    }
}

/// JSON as a Struct: what a gRPC client (the bench, the tests) writes into the contract's Struct fields.
pub fn json_to_struct(map: Fields) -> prost_types::Struct {
    prost_types::Struct {
        fields: map
            .into_iter()
            .map(|(k, v)| (k, json_to_value(v)))
            .collect(),
    }
}

fn json_to_value(v: Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.into_iter().map(json_to_value).collect(),
        }),
        Value::Object(m) => Kind::StructValue(json_to_struct(m)),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests;
