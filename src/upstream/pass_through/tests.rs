use serde_json::{json, Value};

use super::*;
use crate::proto::Tool;

fn object(v: Value) -> Fields {
    v.as_object().unwrap().clone()
}

#[test]
fn structs_and_json_round_trip() {
    let v = json!({"a": 1, "b": 1.5, "c": "s", "d": true, "e": null, "f": [1, {"g": []}]});
    let back = struct_to_json(&json_to_struct(object(v.clone())));
    assert_eq!(Value::Object(back), v);
}

#[test]
fn a_grpc_config_gives_up_its_structs() {
    let mut config = GenerationConfig {
        provider_options: Some(json_to_struct(object(json!({"top_k": 5})))),
        dialect_options: [(
            "anthropic".to_owned(),
            json_to_struct(object(json!({"context_management": {"edits": []}}))),
        )]
        .into(),
        tools: vec![
            Tool {
                name: "a".into(),
                ..Default::default()
            },
            Tool {
                name: "b".into(),
                anthropic_fields: Some(json_to_struct(object(json!({"defer_loading": true})))),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let pass = PassThrough::take_from(&mut config);
    assert_eq!(pass.provider, object(json!({"top_k": 5})));
    assert_eq!(
        Value::Object(pass.dialect("anthropic")),
        json!({"context_management": {"edits": []}})
    );
    assert!(pass.dialect("openai").is_empty());
    assert_eq!(pass.tool(0), None);
    assert_eq!(pass.tool(1), Some(&object(json!({"defer_loading": true}))));
    assert_eq!(pass.tool(2), None);
    // Nothing is left behind in the proto config for anyone to read twice.
    assert_eq!(config.provider_options, None);
    assert!(config.dialect_options.is_empty());
    assert!(config.tools.iter().all(|t| t.anthropic_fields.is_none()));

    let mut bare = GenerationConfig::default();
    assert!(PassThrough::take_from(&mut bare).is_empty());
}

#[test]
fn the_canonical_text_does_not_depend_on_the_order_fields_came_in() {
    let a = PassThrough {
        provider: object(serde_json::from_str(r#"{"b": 1, "a": 2}"#).unwrap()),
        dialect: [
            ("responses".to_owned(), object(json!({"include": ["x"]}))),
            ("openai".to_owned(), object(json!({"store": true}))),
        ]
        .into(),
        tools: Vec::new(),
    };
    let mut b = a.clone();
    b.provider = object(serde_json::from_str(r#"{"a": 2, "b": 1}"#).unwrap());
    assert_eq!(a.canonical(), b.canonical());
    b.provider.insert("c".into(), json!(0));
    assert_ne!(a.canonical(), b.canonical());
}
