//! Generation parameters' checks: their ranges, the model's output limit, tools and tool choice, response
//! formats, reasoning, and provider options that may not override what the gateway sets.

use crate::{
    error::GatewayError,
    proto::{response_format::Format, tool_choice::Choice, GenerationConfig},
    upstream::pass_through::PassThrough,
};

use super::message::{check_cache_control, json_object, valid_name};

/// OpenAI accepts at most four stop sequences.
pub(crate) const MAX_STOP: usize = 4;
/// The most messages one request may carry: far above any context window's worth of turns (a long agent
/// The largest thinking budget taken: above every model's output window. (Not the model's own output limit: to
/// an OpenAI-style upstream a budget is only a hint, mapped to an effort.)
pub(crate) const MAX_BUDGET_TOKENS: i32 = 1 << 20;
/// The most tools one request may define: above what agents send with every MCP server on (a few hundred).
pub(crate) const MAX_TOOLS: usize = 1_024;

/// Fields of the upstream request the gateway sets itself: `provider_options` may not override them.
pub(crate) const RESERVED: [&str; 21] = [
    "model",
    "messages",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "user",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "n",
    "system",
];

fn invalid(msg: String) -> GatewayError {
    GatewayError::InvalidArgument(msg)
}

/// Checks generation parameters against their ranges and the model's output limit.
pub(crate) fn check_config(
    config: Option<&GenerationConfig>,
    max_output_tokens: u32,
) -> Result<(), GatewayError> {
    let Some(c) = config else { return Ok(()) };
    if let Some(t) = c.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(invalid(format!("config.temperature: {t} is outside 0..2")));
        }
    }
    if let Some(p) = c.top_p {
        if !(0.0..=1.0).contains(&p) {
            return Err(invalid(format!("config.top_p: {p} is outside 0..1")));
        }
    }
    if let Some(n) = c.max_tokens {
        if n < 1 || n.unsigned_abs() > max_output_tokens {
            return Err(invalid(format!(
                "config.max_tokens: {n} is outside 1..{max_output_tokens} (this model's limit)"
            )));
        }
    }
    if c.stop.len() > MAX_STOP {
        return Err(invalid(format!(
            "config.stop: at most {MAX_STOP} sequences, got {}",
            c.stop.len()
        )));
    }
    if let Some(i) = c.stop.iter().position(String::is_empty) {
        return Err(invalid(format!("config.stop[{i}]: must not be empty")));
    }
    if c.tools.len() > MAX_TOOLS {
        return Err(invalid(format!(
            "config.tools: at most {MAX_TOOLS} tools, got {}",
            c.tools.len()
        )));
    }
    if let Some(b) = c
        .reasoning
        .as_ref()
        .and_then(|r| r.budget_tokens)
        .filter(|&b| b > MAX_BUDGET_TOKENS)
    {
        return Err(invalid(format!(
            "config.reasoning.budget_tokens: {b} is above {MAX_BUDGET_TOKENS}"
        )));
    }
    check_extras(c)
}

/// The generation parameters beyond temperature, top_p, max_tokens and stop.
fn check_extras(c: &GenerationConfig) -> Result<(), GatewayError> {
    for (name, v) in [
        ("presence_penalty", c.presence_penalty),
        ("frequency_penalty", c.frequency_penalty),
    ] {
        if let Some(v) = v.filter(|v| !(-2.0..=2.0).contains(v)) {
            return Err(invalid(format!("config.{name}: {v} is outside -2..2")));
        }
    }
    if let Some(r) = &c.reasoning {
        crate::upstream::reasoning::check(r)?;
    }
    if let Some(n) = c.top_logprobs {
        if !(0..=20).contains(&n) {
            return Err(invalid(format!(
                "config.top_logprobs: {n} is outside 0..20"
            )));
        }
        if !c.logprobs {
            return Err(invalid("config.top_logprobs: needs logprobs = true".into()));
        }
    }
    // A set, not a scan of the tools before each: a thousand tools cost a thousand lookups, not half a million.
    let mut names = std::collections::HashSet::with_capacity(c.tools.len());
    for (i, tool) in c.tools.iter().enumerate() {
        if let Some(c) = &tool.cache_control {
            check_cache_control(&format!("config.tools[{i}].cache_control"), c)?;
        }
        if !valid_name(&tool.name) {
            return Err(invalid(format!(
                "config.tools[{i}].name: '{}' must be 1..64 letters, digits, _ or -",
                tool.name
            )));
        }
        if !names.insert(tool.name.as_str()) {
            return Err(invalid(format!(
                "config.tools[{i}].name: '{}' is defined twice",
                tool.name
            )));
        }
        if !tool.parameters_json.is_empty() {
            json_object(
                &tool.parameters_json,
                &format!("config.tools[{i}].parameters_json"),
            )?;
        }
    }
    match c.tool_choice.as_ref().and_then(|t| t.choice.as_ref()) {
        None => {}
        Some(Choice::Mode(mode)) => {
            if !["none", "auto", "required"].contains(&mode.as_str()) {
                return Err(invalid(format!(
                    "config.tool_choice.mode: '{mode}' is not one of none, auto, required"
                )));
            }
            if mode == "required" && c.tools.is_empty() {
                return Err(invalid(
                    "config.tool_choice: 'required' needs config.tools".into(),
                ));
            }
        }
        Some(Choice::Function(name)) if !c.tools.iter().any(|t| &t.name == name) => {
            return Err(invalid(format!(
                "config.tool_choice.function: '{name}' is not in config.tools"
            )));
        }
        Some(Choice::Function(_)) => {}
    }
    if let Some(Format::JsonSchema(s)) = c.response_format.as_ref().and_then(|f| f.format.as_ref())
    {
        if !valid_name(&s.name) {
            return Err(invalid(format!(
                "config.response_format.json_schema.name: '{}' must be 1..64 letters, digits, _ or -",
                s.name
            )));
        }
        json_object(
            &s.schema_json,
            "config.response_format.json_schema.schema_json",
        )?;
    }
    Ok(())
}

/// The provider's fields may not set what the gateway sets itself.
pub(crate) fn check_pass_through(pass: &PassThrough) -> Result<(), GatewayError> {
    if let Some(key) = pass
        .provider
        .keys()
        .find(|k| RESERVED.contains(&k.as_str()))
    {
        return Err(invalid(format!(
            "config.provider_options.{key}: set by the gateway; use the typed field"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{JsonSchema, ResponseFormat, Tool, ToolChoice};
    use serde_json::json;

    fn cfg(
        temperature: Option<f32>,
        max_tokens: Option<i32>,
        top_p: Option<f32>,
        stop: &[&str],
    ) -> GenerationConfig {
        GenerationConfig {
            temperature,
            max_tokens,
            top_p,
            stop: stop.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn weather() -> Tool {
        Tool {
            name: "get_weather".into(),
            description: "Weather now".into(),
            parameters_json: r#"{"type":"object","properties":{"city":{"type":"string"}}}"#.into(),
            strict: Some(true),
            cache_control: None,
            anthropic_fields: None,
        }
    }

    #[test]
    fn config_checks() {
        let cases = [
            (
                cfg(Some(2.0), Some(100), Some(1.0), &["a", "b", "c", "d"]),
                None,
            ),
            (cfg(Some(0.0), Some(1), Some(0.0), &[]), None),
            (cfg(Some(-0.1), None, None, &[]), Some("config.temperature")),
            (cfg(Some(2.5), None, None, &[]), Some("config.temperature")),
            (
                cfg(Some(f32::NAN), None, None, &[]),
                Some("config.temperature"),
            ),
            (cfg(None, None, Some(1.5), &[]), Some("config.top_p")),
            (cfg(None, Some(0), None, &[]), Some("config.max_tokens")),
            (cfg(None, Some(-3), None, &[]), Some("config.max_tokens")),
            (cfg(None, Some(101), None, &[]), Some("config.max_tokens")),
            (
                cfg(None, None, None, &["a", "b", "c", "d", "e"]),
                Some("config.stop"),
            ),
            (cfg(None, None, None, &[""]), Some("config.stop[0]")),
        ];
        for (c, want) in cases {
            let got = check_config(Some(&c), 100);
            match want {
                None => assert!(got.is_ok(), "{c:?}: {got:?}"),
                Some(field) => {
                    let e = got.expect_err(field);
                    assert_eq!(e.code(), tonic::Code::InvalidArgument);
                    assert!(e.to_string().starts_with(field), "{e}");
                }
            }
        }
    }

    #[test]
    fn checks_name_the_field() {
        let ok = GenerationConfig {
            tools: vec![weather()],
            ..Default::default()
        };
        assert!(check_extras(&ok).is_ok());
        let with = |f: &dyn Fn(&mut GenerationConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            check_extras(&c).unwrap_err().to_string()
        };
        let cases: Vec<(String, &str)> = vec![
            (
                with(&|c| c.presence_penalty = Some(2.5)),
                "config.presence_penalty",
            ),
            (
                with(&|c| c.frequency_penalty = Some(-3.0)),
                "config.frequency_penalty",
            ),
            (
                with(&|c| c.top_logprobs = Some(2)),
                "config.top_logprobs: needs logprobs",
            ),
            (
                with(&|c| {
                    c.logprobs = true;
                    c.top_logprobs = Some(21)
                }),
                "config.top_logprobs",
            ),
            (
                with(&|c| c.tools[0].name = "bad name".into()),
                "config.tools[0].name",
            ),
            (with(&|c| c.tools.push(weather())), "config.tools[1].name"),
            (
                with(&|c| c.tools[0].parameters_json = "[1]".into()),
                "config.tools[0].parameters_json",
            ),
            (
                with(&|c| c.tools[0].parameters_json = "{".into()),
                "config.tools[0].parameters_json",
            ),
            (
                with(&|c| {
                    c.tool_choice = Some(ToolChoice {
                        choice: Some(Choice::Function("other".into())),
                    })
                }),
                "config.tool_choice.function",
            ),
            (
                with(&|c| {
                    c.tool_choice = Some(ToolChoice {
                        choice: Some(Choice::Mode("always".into())),
                    })
                }),
                "config.tool_choice.mode",
            ),
            (
                with(&|c| {
                    c.response_format = Some(ResponseFormat {
                        format: Some(Format::JsonSchema(JsonSchema {
                            name: "s".into(),
                            schema_json: "nope".into(),
                            ..Default::default()
                        })),
                    })
                }),
                "config.response_format.json_schema.schema_json",
            ),
        ];
        for (err, field) in cases {
            assert!(err.starts_with(field), "{err} (wanted {field})");
        }
    }

    #[test]
    fn the_providers_fields_may_not_set_what_the_gateway_sets() {
        let with = |fields: serde_json::Value| PassThrough {
            provider: fields.as_object().unwrap().clone(),
            ..Default::default()
        };
        assert!(check_pass_through(&with(json!({"top_k": 5}))).is_ok());
        for key in RESERVED {
            let e = check_pass_through(&with(json!({ key: 1 }))).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(
                e.to_string()
                    .starts_with(&format!("config.provider_options.{key}:")),
                "{e}"
            );
        }
        // A dialect's own fields are that dialect's to set (the typed fields win in the body).
        let mut dialect = PassThrough::default();
        dialect
            .dialect
            .insert("anthropic".into(), with(json!({"model": "x"})).provider);
        assert!(check_pass_through(&dialect).is_ok());
    }
}
