use super::*;
use serde_json::json;

fn msg(role: &str, content: &str) -> Message {
    Message {
        role: role.into(),
        content: content.into(),
        name: String::new(),
        ..Default::default()
    }
}

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

/// name, messages, config, max-tokens dialect, stream, expected JSON.
type Case = (
    &'static str,
    Vec<Message>,
    Option<GenerationConfig>,
    MaxTokensField,
    bool,
    serde_json::Value,
);

#[test]
fn requests_to_json() {
    let named = Message {
        role: "user".into(),
        content: "hi".into(),
        name: "ann".into(),
        ..Default::default()
    };
    let full = cfg(Some(0.7), Some(64), Some(0.9), &["END"]);
    let zero = cfg(Some(0.0), None, None, &[]);
    let cases: Vec<Case> = vec![
        (
            "no config: nothing but model and messages",
            vec![msg("user", "hi")],
            None,
            MaxTokensField::MaxTokens,
            false,
            json!({"model": "up", "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "every parameter",
            vec![msg("system", "be brief"), named.clone()],
            Some(full.clone()),
            MaxTokensField::MaxTokens,
            false,
            json!({"model": "up", "messages": [{"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi", "name": "ann"}],
                "temperature": 0.7, "top_p": 0.9, "max_tokens": 64, "stop": ["END"]}),
        ),
        (
            "temperature 0 is sent, not confused with unset",
            vec![msg("user", "hi")],
            Some(zero),
            MaxTokensField::MaxTokens,
            false,
            json!({"model": "up", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.0}),
        ),
        (
            "max_completion_tokens dialect",
            vec![msg("user", "hi")],
            Some(cfg(None, Some(5), None, &[])),
            MaxTokensField::MaxCompletionTokens,
            false,
            json!({"model": "up", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 5}),
        ),
        (
            "the reasoning request wins over the same provider field: one key in the body",
            vec![msg("user", "hi")],
            Some(GenerationConfig {
                reasoning: Some(crate::proto::ReasoningConfig {
                    effort: "high".into(),
                    ..Default::default()
                }),
                provider_options: Some(crate::upstream::pass_through::json_to_struct(
                    json!({"reasoning_effort": "low", "top_k": 3})
                        .as_object()
                        .unwrap()
                        .clone(),
                )),
                ..Default::default()
            }),
            MaxTokensField::MaxTokens,
            false,
            json!({"model": "up", "messages": [{"role": "user", "content": "hi"}],
                "reasoning_effort": "high", "top_k": 3}),
        ),
        (
            "streams ask for usage",
            vec![msg("user", "안녕")],
            None,
            MaxTokensField::MaxTokens,
            true,
            json!({"model": "up", "messages": [{"role": "user", "content": "안녕"}],
                "stream": true, "stream_options": {"include_usage": true}}),
        ),
    ];
    for (name, messages, config, field, stream, want) in cases {
        let req = grpc_chat_request("up", &messages, config.as_ref(), field, stream);
        let got: serde_json::Value =
            serde_json::from_slice(&serde_json::to_vec(&req).unwrap()).unwrap();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn usage_is_exact_and_saturates() {
    let u = usage(WireUsage {
        prompt_tokens: 10,
        completion_tokens: 5,
        total_tokens: 15,
        ..Default::default()
    });
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (10, 5, 15)
    );
    let u = usage(WireUsage {
        prompt_tokens: 3,
        completion_tokens: 4,
        total_tokens: 0,
        ..Default::default()
    });
    assert_eq!(u.total_tokens, 7);
    let u = usage(WireUsage {
        prompt_tokens: u64::MAX,
        completion_tokens: 0,
        total_tokens: u64::MAX,
        ..Default::default()
    });
    assert_eq!(u.prompt_tokens, i32::MAX);
}

#[test]
fn cached_and_reasoning_tokens_are_read_as_parts_of_the_totals() {
    let read = |body: &str| usage(serde_json::from_str::<WireUsage>(body).unwrap());
    let u = read(
        r#"{"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0}}"#,
    );
    assert_eq!(
        (
            u.prompt_tokens,
            u.cached_prompt_tokens,
            u.completion_tokens,
            u.reasoning_tokens
        ),
        (2006, 1920, 300, 256)
    );
    // DeepSeek's field; nulls where a provider does not count; a part never exceeds its total.
    let u = read(r#"{"prompt_tokens": 50, "completion_tokens": 5, "prompt_cache_hit_tokens": 40}"#);
    assert_eq!((u.cached_prompt_tokens, u.total_tokens), (40, 55));
    let u = read(
        r#"{"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": null,
            "completion_tokens_details": {"reasoning_tokens": null}}"#,
    );
    assert_eq!((u.cached_prompt_tokens, u.reasoning_tokens), (0, 0));
    let u = read(
        r#"{"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 99},
            "completion_tokens_details": {"reasoning_tokens": 99}}"#,
    );
    assert_eq!((u.cached_prompt_tokens, u.reasoning_tokens), (10, 5));
}
