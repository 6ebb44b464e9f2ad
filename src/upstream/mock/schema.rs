//! Values that satisfy a JSON Schema, for the mock's tool calls and structured answers: clients that validate
//! what a model returns (pydantic, LangChain's structured output, instructor) get something valid to parse.
//!
//! The subset that OpenAI tool parameters and `json_schema` response formats use: `type` (one or a list),
//! `properties` (every one is filled, required or not), `items`, `enum`, `const`, `anyOf` / `oneOf` (the first
//! alternative that is not null), `allOf` (merged), local `$ref`s into `$defs` / `definitions`, string
//! `format`s, and numeric and length bounds. Values come from the prompt where one fits: a capitalised word
//! for a string (else the prompt itself), a number for a number, an enum member the prompt names; otherwise a
//! fixed, valid value.

use serde_json::{Map, Value};

/// Nesting deeper than this (a recursive schema) ends in the smallest valid value the level allows.
const MAX_DEPTH: usize = 12;

/// What the prompt offers to fill values with, each taken once in order.
pub(crate) struct Picks {
    /// The user's words, the fallback for a string.
    text: String,
    /// Lower-cased, to find enum members in.
    prompt: String,
    words: Vec<String>,
    numbers: Vec<f64>,
}

impl Picks {
    pub(crate) fn new(prompt: &str) -> Picks {
        let mut words = Vec::new();
        let mut numbers = Vec::new();
        let mut sentence_start = true;
        for raw in prompt.split_whitespace() {
            let token = raw.trim_matches(|c: char| !c.is_alphanumeric() && c != '.' && c != '-');
            let token = token.trim_end_matches('.');
            if let Ok(n) = token.parse::<f64>() {
                if n.is_finite() {
                    numbers.push(n);
                }
            } else if !sentence_start
                && token.chars().next().is_some_and(char::is_uppercase)
                && token.chars().all(|c| c.is_alphabetic() || c == '-')
            {
                words.push(token.to_owned());
            }
            sentence_start = raw.ends_with(['.', '?', '!', ':']);
        }
        words.reverse();
        numbers.reverse();
        Picks {
            text: prompt.split_whitespace().collect::<Vec<_>>().join(" "),
            prompt: prompt.to_lowercase(),
            words,
            numbers,
        }
    }
}

/// A value valid against `schema`; `root` is the document that `$ref`s point into.
pub(crate) fn instance(schema: &Value, root: &Value, picks: &mut Picks) -> Value {
    value(schema, root, picks, 0)
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a float to an integer: `as` saturates, NaN is 0"
)]
fn value(schema: &Value, root: &Value, picks: &mut Picks, depth: usize) -> Value {
    let Some(s) = schema.as_object() else {
        // `true` or `{}`-like: anything goes.
        return Value::Object(Map::new());
    };
    if let Some(target) = s.get("$ref").and_then(Value::as_str) {
        let resolved = target.strip_prefix('#').and_then(|p| root.pointer(p));
        return match resolved {
            Some(r) if depth < MAX_DEPTH => value(r, root, picks, depth + 1),
            _ => Value::Null,
        };
    }
    if let Some(c) = s.get("const") {
        return c.clone();
    }
    if let Some(options) = s.get("enum").and_then(Value::as_array) {
        let named = options.iter().find(|o| {
            o.as_str()
                .is_some_and(|t| picks.prompt.contains(&t.to_lowercase()))
        });
        return named.or(options.first()).cloned().unwrap_or(Value::Null);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alternatives) = s.get(key).and_then(Value::as_array) {
            let not_null = |a: &&Value| a.get("type").and_then(Value::as_str) != Some("null");
            if let Some(first) = alternatives.iter().find(not_null).or(alternatives.first()) {
                return value(first, root, picks, depth + 1);
            }
        }
    }
    if let Some(parts) = s.get("allOf").and_then(Value::as_array) {
        return value(&merged(s, parts, root), root, picks, depth + 1);
    }
    match kind(s) {
        "object" => object(s, root, picks, depth),
        "array" => {
            let min = s.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            let max = s
                .get("maxItems")
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            let n = if depth >= MAX_DEPTH {
                min
            } else {
                min.max(1).min(max)
            };
            let items = s.get("items").cloned().unwrap_or(Value::Bool(true));
            Value::Array(
                (0..n)
                    .map(|_| value(&items, root, picks, depth + 1))
                    .collect(),
            )
        }
        "string" => string(s, picks),
        "integer" => {
            let n = picks.numbers.pop().map_or(1.0, f64::trunc);
            Value::from(bounded(n, s, true) as i64)
        }
        "number" => {
            let n = picks.numbers.pop().unwrap_or(1.5);
            serde_json::Number::from_f64(bounded(n, s, false)).map_or(Value::Null, Value::Number)
        }
        "boolean" => Value::Bool(true),
        "null" => Value::Null,
        _ => Value::Object(Map::new()),
    }
}

/// The schema's type: the first that is not null when it lists several; an object when it has properties.
fn kind(s: &Map<String, Value>) -> &str {
    match s.get("type") {
        Some(Value::String(t)) => t,
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if s.contains_key("properties") => "object",
        _ if s.contains_key("items") => "array",
        _ => "any",
    }
}

fn object(s: &Map<String, Value>, root: &Value, picks: &mut Picks, depth: usize) -> Value {
    let mut out = Map::new();
    let required: Vec<&str> = s
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            // Past the depth limit only what is required, so a recursive schema ends.
            if depth < MAX_DEPTH || required.contains(&name.as_str()) {
                out.insert(name.clone(), value(prop, root, picks, depth + 1));
            }
        }
    }
    Value::Object(out)
}

/// `allOf`: the parts (their `$ref`s resolved) and the schema's own keywords, properties and required merged.
fn merged(s: &Map<String, Value>, parts: &[Value], root: &Value) -> Value {
    let mut out = s.clone();
    out.remove("allOf");
    for part in parts {
        let part = match part.get("$ref").and_then(Value::as_str) {
            Some(r) => r
                .strip_prefix('#')
                .and_then(|p| root.pointer(p))
                .unwrap_or(part),
            None => part,
        };
        let Some(p) = part.as_object() else { continue };
        for (k, v) in p {
            match (k.as_str(), out.get_mut(k), v) {
                ("properties", Some(Value::Object(mine)), Value::Object(theirs)) => {
                    mine.extend(theirs.clone());
                }
                ("required", Some(Value::Array(mine)), Value::Array(theirs)) => {
                    mine.extend(theirs.iter().cloned());
                }
                (_, None, _) => {
                    out.insert(k.clone(), v.clone());
                }
                _ => {}
            }
        }
    }
    Value::Object(out)
}

fn string(s: &Map<String, Value>, picks: &mut Picks) -> Value {
    let text = match s.get("format").and_then(Value::as_str) {
        Some("date") => "2026-01-01".to_owned(),
        Some("date-time") => "2026-01-01T00:00:00Z".to_owned(),
        Some("time") => "12:00:00Z".to_owned(),
        Some("email") => "user@example.com".to_owned(),
        Some("uri" | "url") => "https://example.com/".to_owned(),
        Some("uuid") => "00000000-0000-4000-8000-000000000000".to_owned(),
        Some("ipv4") => "192.0.2.1".to_owned(),
        _ => match picks.words.pop() {
            Some(word) => word,
            None if !picks.text.is_empty() => picks.text.clone(),
            None => "example".to_owned(),
        },
    };
    let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0);
    let min = usize::try_from(min).unwrap_or(usize::MAX);
    let max = s
        .get("maxLength")
        .and_then(Value::as_u64)
        .map(|m| usize::try_from(m).unwrap_or(usize::MAX));
    let mut text: String = text.chars().take(max.unwrap_or(usize::MAX)).collect();
    while text.chars().count() < min {
        text.push('x');
    }
    Value::String(text)
}

/// `n` within the schema's bounds (inclusive and exclusive), a whole number when `whole`.
fn bounded(n: f64, s: &Map<String, Value>, whole: bool) -> f64 {
    let get = |k: &str| s.get(k).and_then(Value::as_f64);
    let step = if whole { 1.0 } else { 0.5 };
    let mut n = n;
    if let Some(lo) = get("minimum") {
        n = n.max(lo);
    }
    if let Some(lo) = get("exclusiveMinimum") {
        if n <= lo {
            n = lo + step;
        }
    }
    if let Some(hi) = get("maximum") {
        n = n.min(hi);
    }
    if let Some(hi) = get("exclusiveMaximum") {
        if n >= hi {
            n = hi - step;
        }
    }
    if whole {
        n = n.ceil();
    }
    n
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fill(schema: Value, prompt: &str) -> Value {
        instance(&schema, &schema, &mut Picks::new(prompt))
    }

    #[test]
    fn a_required_city_and_days_come_from_the_prompt() {
        let schema = json!({
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        });
        assert_eq!(
            fill(
                schema,
                "What will the weather be in Paris over the next 3 days?"
            ),
            json!({"city": "Paris", "days": 3})
        );
    }

    #[test]
    fn enums_refs_unions_and_bounds_are_honoured() {
        let schema = json!({
            "$defs": {"Unit": {"enum": ["celsius", "fahrenheit"]}},
            "type": "object",
            "properties": {
                "unit": {"$ref": "#/$defs/Unit"},
                "note": {"anyOf": [{"type": "null"}, {"type": "string", "minLength": 12}]},
                "score": {"type": "number", "exclusiveMaximum": 1},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                "when": {"type": "string", "format": "date"},
                "count": {"type": ["integer", "null"], "minimum": 5},
            },
        });
        let v = fill(schema, "in fahrenheit please");
        assert_eq!(v["unit"], "fahrenheit");
        assert_eq!(v["note"], "in fahrenheit please");
        assert_eq!(v["score"], 0.5);
        assert_eq!(v["tags"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["when"], "2026-01-01");
        assert_eq!(v["count"], 5);
    }

    #[test]
    fn a_recursive_schema_ends() {
        let schema = json!({
            "$defs": {"Node": {"type": "object", "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
            }, "required": ["name"]}},
            "$ref": "#/$defs/Node",
        });
        let v = fill(schema, "");
        assert_eq!(v["name"], "example");
        // Twelve levels deep, then no more children.
        let mut node = &v;
        let mut levels = 0;
        while let Some(child) = node["children"].get(0) {
            node = child;
            levels += 1;
        }
        assert!(levels <= MAX_DEPTH, "{levels}");
    }
}
