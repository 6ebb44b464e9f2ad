use super::*;
use std::time::Duration;

fn msg(role: &str, content: &str) -> Message {
    Message {
        role: role.into(),
        content: content.into(),
        name: String::new(),
        ..Default::default()
    }
}

/// Caching on for a minute, temperature 0 only, free hits, per key.
fn policy() -> ModelCache {
    ModelCache {
        ttl: Duration::from_secs(60),
        any_temperature: false,
        charge_hits: false,
        per_key: true,
    }
}

/// A gRPC request's key: its config's Struct fields taken out as the gRPC door takes them.
fn key(caller: &str, model: &str, messages: &[Message], config: Option<&GenerationConfig>) -> Key {
    let mut config = config.cloned();
    let pass = config
        .as_mut()
        .map(PassThrough::take_from)
        .unwrap_or_default();
    super::key(caller, model, (messages, config.as_ref(), &pass))
}

/// A gRPC request's plan (as [`key`]).
fn plan(
    policy: Option<&ModelCache>,
    control: CacheControl,
    caller: &str,
    model: &str,
    messages: &[Message],
    config: Option<&GenerationConfig>,
) -> Plan {
    let mut config = config.cloned();
    let pass = config
        .as_mut()
        .map(PassThrough::take_from)
        .unwrap_or_default();
    super::plan(
        policy,
        control,
        caller,
        model,
        (messages, config.as_ref(), &pass),
    )
}

fn zero() -> GenerationConfig {
    GenerationConfig {
        temperature: Some(0.0),
        ..Default::default()
    }
}

fn entry(text: &str) -> Entry {
    Entry::new(
        vec![text.into()],
        "id".into(),
        "m".into(),
        "stop".into(),
        Usage::default(),
        false,
    )
}

#[test]
fn embeddings_are_kept_by_model_texts_and_size() {
    let policy = policy();
    let plan = |model: &str, input: &[&str], dims: Option<i32>| {
        let input: Vec<String> = input.iter().map(|s| (*s).to_owned()).collect();
        embed_plan(
            Some(&policy),
            CacheControl::default(),
            "",
            model,
            &input,
            dims,
        )
        .key()
    };
    let base = plan("e", &["a", "b"], None);
    assert!(base.is_some());
    assert_eq!(base, plan("e", &["a", "b"], None));
    for other in [
        plan("f", &["a", "b"], None),
        plan("e", &["ab"], None),
        plan("e", &["b", "a"], None),
        plan("e", &["a", "b"], Some(8)),
    ] {
        assert_ne!(base, other);
    }
    let input = ["a".to_owned()];
    assert_eq!(
        embed_plan(None, CacheControl::default(), "", "e", &input, None),
        Plan::Off
    );
    // The client's cache-control holds for embeddings too.
    let asked = |no_cache, no_store| {
        let control = CacheControl { no_cache, no_store };
        embed_plan(Some(&policy), control, "", "e", &input, None)
    };
    assert!(matches!(asked(false, false), Plan::Use { read: true, .. }));
    assert!(matches!(asked(true, false), Plan::Use { read: false, .. }));
    assert_eq!(asked(false, true), Plan::Bypass);
}

#[test]
fn the_key_covers_every_part_of_the_request() {
    let base = key("", "m", &[msg("user", "hi")], Some(&zero()));
    assert_eq!(base, key("", "m", &[msg("user", "hi")], Some(&zero())));
    let others = [
        key("", "n", &[msg("user", "hi")], Some(&zero())),
        key("", "m", &[msg("system", "hi")], Some(&zero())),
        key("", "m", &[msg("user", "hi!")], Some(&zero())),
        key(
            "",
            "m",
            &[msg("user", "h"), msg("user", "i")],
            Some(&zero()),
        ),
        key("", "m", &[msg("user", "hi")], None),
        key(
            "",
            "m",
            &[Message {
                name: "ann".into(),
                ..msg("user", "hi")
            }],
            Some(&zero()),
        ),
        key(
            "",
            "m",
            &[msg("user", "hi")],
            Some(&GenerationConfig {
                max_tokens: Some(5),
                ..zero()
            }),
        ),
        key(
            "",
            "m",
            &[msg("user", "hi")],
            Some(&GenerationConfig {
                top_p: Some(0.5),
                ..zero()
            }),
        ),
        key(
            "",
            "m",
            &[msg("user", "hi")],
            Some(&GenerationConfig {
                stop: vec!["x".into()],
                ..zero()
            }),
        ),
        // The fields beyond text: a tool result, a tool call, an image, tools, a seed, provider options.
        key(
            "",
            "m",
            &[Message {
                tool_call_id: "call_1".into(),
                ..msg("tool", "hi")
            }],
            Some(&zero()),
        ),
        key(
            "",
            "m",
            &[Message {
                tool_calls: vec![crate::proto::ToolCall {
                    id: "c".into(),
                    name: "f".into(),
                    arguments: "{}".into(),
                }],
                ..msg("user", "hi")
            }],
            Some(&zero()),
        ),
        key(
            "",
            "m",
            &[Message {
                parts: vec![crate::proto::ContentPart {
                    part: Some(crate::proto::content_part::Part::Text("x".into())),
                }],
                ..msg("user", "hi")
            }],
            Some(&zero()),
        ),
        key(
            "",
            "m",
            &[msg("user", "hi")],
            Some(&GenerationConfig {
                tools: vec![crate::proto::Tool {
                    name: "f".into(),
                    ..Default::default()
                }],
                ..zero()
            }),
        ),
        key(
            "",
            "m",
            &[msg("user", "hi")],
            Some(&GenerationConfig {
                seed: Some(1),
                ..zero()
            }),
        ),
        key(
            "",
            "m",
            &[msg("user", "hi")],
            Some(&GenerationConfig {
                provider_options: Some(crate::upstream::pass_through::json_to_struct(
                    serde_json::json!({"top_k": 1}).as_object().unwrap().clone(),
                )),
                ..zero()
            }),
        ),
    ];
    for (i, k) in others.iter().enumerate() {
        assert_ne!(*k, base, "variant {i} collided");
    }
    // Fields run together would collide: every field is length-prefixed.
    let named = |name: &str, content: &str| Message {
        name: name.into(),
        ..msg("user", content)
    };
    assert_ne!(
        key("", "m", &[named("", "ab")], None),
        key("", "m", &[named("a", "b")], None)
    );
}

/// Per key, the caller is part of the key; shared, it is not.
#[test]
fn the_caller_is_in_the_key_unless_the_model_shares_answers() {
    let mut policy = policy();
    let m = [msg("user", "hi")];
    let none = CacheControl::default();
    let texts = ["a".to_owned()];
    let chat = |p: &ModelCache, caller| plan(Some(p), none, caller, "m", &m, Some(&zero())).key();
    let embed = |p: &ModelCache, caller| embed_plan(Some(p), none, caller, "e", &texts, None).key();
    assert_ne!(chat(&policy, "api:1"), chat(&policy, "api:2"));
    assert_ne!(embed(&policy, "api:1"), embed(&policy, "api:2"));
    assert_eq!(chat(&policy, "api:1"), chat(&policy, "api:1"));
    policy.per_key = false;
    assert_eq!(chat(&policy, "api:1"), chat(&policy, "api:2"));
    assert_eq!(embed(&policy, "api:1"), embed(&policy, "api:2"));
}

#[test]
fn only_deterministic_requests_unless_widened_and_cache_control_is_obeyed() {
    let policy = policy();
    let m = [msg("user", "hi")];
    let none = CacheControl::default();
    assert_eq!(plan(None, none, "", "m", &m, Some(&zero())), Plan::Off);
    assert_eq!(plan(Some(&policy), none, "", "m", &m, None), Plan::Off);
    assert!(matches!(
        plan(Some(&policy), none, "", "m", &m, Some(&zero())),
        Plan::Use { read: true, .. }
    ));
    let wide = ModelCache {
        any_temperature: true,
        ..policy.clone()
    };
    assert!(matches!(
        plan(Some(&wide), none, "", "m", &m, None),
        Plan::Use { .. }
    ));
    let mut md = http::HeaderMap::new();
    md.insert("cache-control", "max-age=0, No-Cache".parse().unwrap());
    let control = CacheControl::read(&md);
    assert_eq!(
        control,
        CacheControl {
            no_cache: true,
            no_store: false
        }
    );
    assert!(matches!(
        plan(Some(&policy), control, "", "m", &m, Some(&zero())),
        Plan::Use { read: false, .. }
    ));
    md.insert("cache-control", "no-store".parse().unwrap());
    let control = CacheControl::read(&md);
    assert_eq!(
        plan(Some(&policy), control, "", "m", &m, Some(&zero())),
        Plan::Bypass
    );
}

#[tokio::test(start_paused = true)]
async fn entries_expire_and_the_bounds_evict_the_least_recently_used() {
    let cache = ResponseCache::new(&CacheConfig {
        max_bytes: 100_000,
        max_entries: 2,
    });
    let ttl = Duration::from_secs(10);
    cache.put([1; 32], entry("a"), ttl);
    cache.put([2; 32], entry("b"), ttl);
    assert_eq!(cache.get(&[1; 32]).unwrap().chat().unwrap().content(), "a"); // 1 is now the most recent
    cache.put([3; 32], entry("c"), ttl);
    assert!(
        cache.get(&[2; 32]).is_none(),
        "the least recently used went"
    );
    assert!(cache.get(&[1; 32]).is_some() && cache.get(&[3; 32]).is_some());
    tokio::time::advance(ttl).await;
    assert!(cache.get(&[1; 32]).is_none(), "expired");
    assert_eq!(cache.size().0, 1);

    // Bytes: each entry counts 160 bytes here; a 1,600-byte cache keeps ten, and refuses one larger than
    // an eighth of it.
    let small = ResponseCache::new(&CacheConfig {
        max_bytes: 1_600,
        max_entries: 100,
    });
    for i in 0..12u8 {
        small.put([i; 32], entry("x"), ttl);
    }
    assert_eq!(small.size(), (10, 1_600));
    assert!(small.get(&[0; 32]).is_none() && small.get(&[11; 32]).is_some());
    small.put([99; 32], entry(&"y".repeat(200)), ttl);
    assert!(small.get(&[99; 32]).is_none());
}

/// The fleet's cache (Redis) keeps every field of an answer; bytes that are not an entry are none.
#[test]
fn an_entry_survives_the_fleet_encoding_field_by_field() {
    let usage = Usage {
        prompt_tokens: 3,
        completion_tokens: 5,
        total_tokens: 8,
        cached_prompt_tokens: 2,
        cache_write_tokens: 1,
        reasoning_tokens: 4,
    };
    let kept = Entry::new(
        vec!["Hel".into(), "lo".into()],
        "chatcmpl-1".into(),
        "big".into(),
        "length".into(),
        usage,
        true,
    );
    assert_eq!(kept.chat().unwrap().content(), "Hello");
    let bytes = kept.encode().unwrap();
    assert!(
        !String::from_utf8_lossy(&bytes).contains("reasoning"),
        "no reasoning, no field"
    );
    let back = Entry::decode(&bytes, ModelKind::Chat).unwrap();
    assert_eq!(back.body, kept.body);
    let chat = back.chat().unwrap();
    assert_eq!(
        (
            chat.id.as_str(),
            back.model.as_str(),
            chat.finish_reason.as_str()
        ),
        ("chatcmpl-1", "big", "length")
    );
    assert_eq!(back.usage, usage);
    assert!(back.usage_estimated);
    assert_eq!(back.bytes(), kept.bytes());
    assert!(Entry::decode(b"{\"chunks\": 1}", ModelKind::Chat).is_none());
    // The usage's parts (priced apart) are kept; an entry without them, as older replicas write it, reads as
    // parts of 0, and one with all parts 0 is written as they wrote it.
    assert!(String::from_utf8_lossy(&bytes).contains(r#""usage_parts":[2,1,4]"#));
    let plain = entry("a");
    assert!(!String::from_utf8_lossy(&plain.encode().unwrap()).contains("usage_parts"));
    // Blocks without provider ids are kept without ids.
    let plain = entry("a").with_reasoning(vec![Reasoning {
        text: "t".into(),
        ..Default::default()
    }]);
    let bytes = plain.encode().unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains("reasoning_ids"));
    assert_eq!(
        Entry::decode(&bytes, ModelKind::Chat).unwrap().body,
        plain.body
    );
}

#[test]
fn a_plan_says_what_a_call_that_was_not_a_hit_reports() {
    let key = [7; 32];
    assert_eq!(Plan::Off.miss_label(), None);
    assert_eq!(Plan::Bypass.miss_label(), Some("bypass"));
    assert_eq!(Plan::Use { key, read: false }.miss_label(), Some("bypass"));
    assert_eq!(Plan::Use { key, read: true }.miss_label(), Some("miss"));
    assert_eq!(Plan::Use { key, read: true }.key(), Some(key));
    assert_eq!(Plan::Bypass.key(), None);
    assert_eq!(Plan::Off.key(), None);
}

/// The byte count stays exact as entries expire and are replaced; an answer of exactly an eighth of the
/// cache is kept, one byte more is not.
#[tokio::test(start_paused = true)]
async fn the_byte_count_is_exact_and_an_eighth_of_the_cache_fits() {
    let cache = ResponseCache::new(&CacheConfig {
        max_bytes: 1_600,
        max_entries: 100,
    });
    let ttl = Duration::from_secs(10);
    cache.put([1; 32], entry("x"), ttl);
    cache.put([1; 32], entry("xy"), ttl);
    assert_eq!(
        cache.size(),
        (1, 161),
        "the replaced entry no longer counts"
    );
    tokio::time::advance(ttl).await;
    assert!(cache.get(&[1; 32]).is_none());
    assert_eq!(
        cache.size(),
        (0, 0),
        "an expired entry leaves with its bytes"
    );
    // An eighth: 200 bytes, 160 of them the bookkeeping around one one-byte chunk.
    assert!(cache.fits(200) && !cache.fits(201));
    cache.put([2; 32], entry(&"z".repeat(41)), ttl);
    assert!(cache.get(&[2; 32]).is_some(), "200 bytes fit");
    cache.put([3; 32], entry(&"z".repeat(42)), ttl);
    assert!(cache.get(&[3; 32]).is_none(), "201 bytes do not");
}

/// The fleet's cache (Redis) keeps an answer's reasoning, signatures byte-exact; an entry written before
/// reasoning was kept reads as one without.
#[test]
fn reasoning_survives_the_fleet_encoding() {
    let blocks = vec![
        Reasoning {
            text: "Hm.".into(),
            signature: "EqQB/+==".into(),
            redacted: String::new(),
            id: "rs_1".into(),
        },
        Reasoning {
            redacted: "R\u{1}".into(),
            ..Default::default()
        },
    ];
    let kept = entry("answer").with_reasoning(blocks.clone());
    // Each block counts its four strings and 24 bytes: (3 + 8 + 0 + 4 + 24) + (0 + 0 + 2 + 0 + 24).
    assert_eq!(kept.bytes(), entry("answer").bytes() + 65);
    let back = Entry::decode(&kept.encode().unwrap(), ModelKind::Chat).unwrap();
    assert_eq!(back.chat().unwrap().reasoning, blocks);
    assert_eq!(back.bytes(), kept.bytes());
    let old = br#"{"chunks":["a"],"id":"i","model":"m","finish_reason":"stop","usage":[1,2,3],"usage_estimated":false}"#;
    let old = Entry::decode(old, ModelKind::Chat).unwrap();
    assert!(old.chat().unwrap().reasoning.is_empty());
    // The history's reasoning is part of the key.
    let said = |signature: &str| Message {
        role: "assistant".into(),
        reasoning: vec![Reasoning {
            text: "t".into(),
            signature: signature.into(),
            ..Default::default()
        }],
        ..msg("assistant", "a")
    };
    assert_ne!(
        key("", "m", &[said("one")], Some(&zero())),
        key("", "m", &[said("two")], Some(&zero()))
    );
}

/// Replicas share answers through Redis by key, and a fleet is upgraded one replica at a time: a request without
/// pass-through fields keeps the key that the release before them made (computed by 623ec35).
#[test]
fn a_key_without_pass_through_fields_is_the_one_older_replicas_make() {
    let k = key("", "m", &[msg("user", "hi")], Some(&zero()));
    let hex: String = k.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "10aeb54ba9fb56b287c015025d8d24f2ed3d8a2ccbd1a87ff2b552c8b3c27590"
    );
}

/// Vectors are kept as f32s here and as base64 in the fleet's cache, the format replicas of other releases read
/// and write; bytes that do not decode to f32s are no entry (a miss, never an empty vector).
#[test]
fn vectors_survive_the_fleet_encoding_and_bad_ones_are_a_miss() {
    let usage = Usage {
        prompt_tokens: 4,
        total_tokens: 4,
        ..Default::default()
    };
    let vectors = vec![vec![0.6, 0.8], vec![0.0, -1.0]];
    let kept = Entry::of(Body::Vectors(vectors.clone()), "emb".into(), usage, false);
    assert!(kept.chat().is_none());
    // 128 + the model's 3 + two vectors of 2 f32s and 24 each.
    assert_eq!(kept.bytes(), 128 + 3 + 2 * (8 + 24));
    let bytes = kept.encode().unwrap();
    let stored: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        stored["chunks"],
        serde_json::json!(["mpkZP83MTD8=", "AAAAAAAAgL8="])
    );
    let back = Entry::decode(&bytes, ModelKind::Embedding).unwrap();
    assert_eq!(back.vectors(), Some(&vectors[..]));
    assert_eq!((back.usage, back.bytes()), (usage, kept.bytes()));
    let bad = br#"{"chunks":["not base64!"],"id":"","model":"emb","finish_reason":"","usage":[1,0,1],"usage_estimated":false}"#;
    assert!(Entry::decode(bad, ModelKind::Embedding).is_none());
}
