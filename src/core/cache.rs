//! The exact-match response cache: answers kept by a hash of the canonical request, so the same question to
//! the same model with the same parameters is answered without the upstream.
//!
//! Off unless a model turns it on (`[[models]] cache = {...}`). Only deterministic requests (temperature 0) are
//! kept unless the model says `any_temperature = true`. A client bypasses it with `cache-control: no-cache`
//! (do not read; a fresh answer is still kept) or `no-store` (neither read nor keep). Bounded by bytes and
//! entries across all models, least recently used out first; each entry lives for its model's TTL.
//! An answer is kept as the chunks it was streamed in, so a stream is replayed chunk for chunk; a unary
//! answer is one chunk. Only complete answers are kept: a failed or cancelled stream never is.

use std::sync::{Arc, Mutex};

use lru::LruCache;
use prost::Message as _;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tonic::metadata::MetadataMap;

use crate::{
    config::{CacheConfig, ModelCache},
    proto::{GenerationConfig, Message, Reasoning, Usage},
};

/// A canonical request's SHA-256.
pub(crate) type Key = [u8; 32];

/// A kept answer.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) chunks: Vec<String>,
    /// The answer's reasoning blocks, replayed before its text.
    pub(crate) reasoning: Vec<Reasoning>,
    pub(crate) id: String,
    pub(crate) model: String,
    pub(crate) finish_reason: String,
    pub(crate) usage: Usage,
    pub(crate) usage_estimated: bool,
    expires: Instant,
    bytes: usize,
}

/// A kept answer as the fleet's cache stores it (JSON, in Redis).
/// Borrowed when encoding (nothing is copied), owned when decoding.
#[derive(serde::Serialize, serde::Deserialize)]
struct Kept<'a> {
    chunks: std::borrow::Cow<'a, [String]>,
    id: std::borrow::Cow<'a, str>,
    model: std::borrow::Cow<'a, str>,
    finish_reason: std::borrow::Cow<'a, str>,
    usage: [i32; 3],
    usage_estimated: bool,
    /// Each block as [text, signature, redacted].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reasoning: Vec<[std::borrow::Cow<'a, str>; 3]>,
    /// Each block's provider id, when any block has one (a Responses API upstream's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reasoning_ids: Vec<std::borrow::Cow<'a, str>>,
}

impl Entry {
    /// The entry as the fleet's cache stores it.
    pub(crate) fn encode(&self) -> Option<Vec<u8>> {
        let kept = Kept {
            chunks: (&self.chunks[..]).into(),
            id: self.id.as_str().into(),
            model: self.model.as_str().into(),
            finish_reason: self.finish_reason.as_str().into(),
            usage: [
                self.usage.prompt_tokens,
                self.usage.completion_tokens,
                self.usage.total_tokens,
            ],
            usage_estimated: self.usage_estimated,
            reasoning: self
                .reasoning
                .iter()
                .map(|r| {
                    [
                        r.text.as_str().into(),
                        r.signature.as_str().into(),
                        r.redacted.as_str().into(),
                    ]
                })
                .collect(),
            reasoning_ids: if self.reasoning.iter().any(|r| !r.id.is_empty()) {
                self.reasoning
                    .iter()
                    .map(|r| r.id.as_str().into())
                    .collect()
            } else {
                Vec::new()
            },
        };
        serde_json::to_vec(&kept).ok()
    }

    /// An entry from the fleet's cache; `None` when the bytes are not one.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Entry> {
        let kept: Kept = serde_json::from_slice(bytes).ok()?;
        let [prompt_tokens, completion_tokens, total_tokens] = kept.usage;
        Some(
            Entry::new(
                kept.chunks.into_owned(),
                kept.id.into_owned(),
                kept.model.into_owned(),
                kept.finish_reason.into_owned(),
                Usage {
                    prompt_tokens,
                    completion_tokens,
                    total_tokens,
                    ..Default::default()
                },
                kept.usage_estimated,
            )
            .with_reasoning(
                kept.reasoning
                    .into_iter()
                    .zip(
                        kept.reasoning_ids
                            .into_iter()
                            .map(Some)
                            .chain(std::iter::repeat(None)),
                    )
                    .map(|([text, signature, redacted], id)| Reasoning {
                        text: text.into_owned(),
                        signature: signature.into_owned(),
                        redacted: redacted.into_owned(),
                        id: id.map(|id| id.into_owned()).unwrap_or_default(),
                    })
                    .collect(),
            ),
        )
    }

    /// The entry with the answer's reasoning, counted in its size.
    pub(crate) fn with_reasoning(mut self, reasoning: Vec<Reasoning>) -> Entry {
        self.bytes += reasoning
            .iter()
            .map(|r| r.text.len() + r.signature.len() + r.redacted.len() + r.id.len() + 24)
            .sum::<usize>();
        self.reasoning = reasoning;
        self
    }

    pub(crate) fn new(
        chunks: Vec<String>,
        id: String,
        model: String,
        finish_reason: String,
        usage: Usage,
        usage_estimated: bool,
    ) -> Entry {
        // The text plus a fixed allowance per entry and per chunk for the bookkeeping around it.
        let bytes = 128
            + id.len()
            + model.len()
            + finish_reason.len()
            + chunks.iter().map(|c| c.len() + 24).sum::<usize>();
        Entry {
            chunks,
            reasoning: Vec::new(),
            id,
            model,
            finish_reason,
            usage,
            usage_estimated,
            expires: Instant::now(),
            bytes,
        }
    }

    /// What it counts for against the cache's bounds.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The whole answer, for a unary reply.
    pub(crate) fn content(&self) -> String {
        self.chunks.concat()
    }
}

/// What one request does with the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The model does not cache, or the request is not deterministic: nothing to do.
    Off,
    /// The client said `no-store`: neither read nor keep.
    Bypass,
    /// Look it up (unless `read` is false: the client said `no-cache`), and keep a fresh answer.
    Use { key: Key, read: bool },
}

impl Plan {
    /// The `aigw-cache` response metadata for a call that was not a hit.
    pub(crate) fn miss_label(self) -> Option<&'static str> {
        match self {
            Plan::Off => None,
            Plan::Bypass | Plan::Use { read: false, .. } => Some("bypass"),
            Plan::Use { .. } => Some("miss"),
        }
    }

    pub(crate) fn key(self) -> Option<Key> {
        match self {
            Plan::Use { key, .. } => Some(key),
            _ => None,
        }
    }
}

pub(crate) struct ResponseCache {
    entries: Mutex<Lru>,
    max_bytes: usize,
    max_entries: usize,
}

struct Lru {
    map: LruCache<Key, Arc<Entry>>,
    bytes: usize,
}

impl ResponseCache {
    pub(crate) fn new(cfg: &CacheConfig) -> ResponseCache {
        ResponseCache {
            entries: Mutex::new(Lru {
                map: LruCache::unbounded(),
                bytes: 0,
            }),
            max_bytes: cfg.max_bytes,
            max_entries: cfg.max_entries.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The kept answer, if there is one and it has not expired.
    pub(crate) fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        let mut lru = self.lock();
        let entry = lru.map.get(key)?.clone();
        if entry.expires > Instant::now() {
            return Some(entry);
        }
        lru.map.pop(key);
        lru.bytes -= entry.bytes;
        None
    }

    /// Keeps an answer for `ttl`, evicting the least recently used to make room. An answer larger than an
    /// eighth of the whole cache is not kept: one long answer must not flush everything else.
    pub(crate) fn put(&self, key: Key, mut entry: Entry, ttl: std::time::Duration) {
        if entry.bytes > self.max_bytes / 8 {
            return;
        }
        entry.expires = Instant::now() + ttl;
        let bytes = entry.bytes;
        let mut lru = self.lock();
        if let Some(old) = lru.map.put(key, Arc::new(entry)) {
            lru.bytes -= old.bytes;
        }
        lru.bytes += bytes;
        while lru.bytes > self.max_bytes || lru.map.len() > self.max_entries {
            match lru.map.pop_lru() {
                Some((_, old)) => lru.bytes -= old.bytes,
                None => break,
            }
        }
    }

    /// Entries and bytes held, for the gauges.
    pub(crate) fn size(&self) -> (usize, usize) {
        let lru = self.lock();
        (lru.map.len(), lru.bytes)
    }

    /// Whether the largest answer a stream may keep collecting is still within what `put` would keep.
    pub(crate) fn fits(&self, bytes: usize) -> bool {
        bytes <= self.max_bytes / 8
    }
}

/// The client's `cache-control` metadata: `no-cache` (do not answer from the cache) and `no-store` (do not
/// keep the answer either). Other directives are ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CacheControl {
    pub(crate) no_cache: bool,
    pub(crate) no_store: bool,
}

impl CacheControl {
    pub(crate) fn read(metadata: &MetadataMap) -> CacheControl {
        let mut control = CacheControl::default();
        let directives = metadata
            .get_all("cache-control")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim);
        for d in directives {
            control.no_cache |= d.eq_ignore_ascii_case("no-cache");
            control.no_store |= d.eq_ignore_ascii_case("no-store");
        }
        control
    }
}

/// What this request does with the cache: whether its model caches, whether its parameters are deterministic
/// enough (temperature 0, unless the model widens it), and what the client asked. `caller` is the key's stable
/// identity (`Identity::owner`): answers are kept per caller unless the model shares them (`scope = "all"`).
pub(crate) fn plan(
    policy: Option<&ModelCache>,
    control: CacheControl,
    caller: &str,
    model: &str,
    messages: &[Message],
    config: Option<&GenerationConfig>,
) -> Plan {
    let Some(policy) = policy else {
        return Plan::Off;
    };
    let deterministic = config.and_then(|c| c.temperature) == Some(0.0);
    if !(deterministic || policy.any_temperature) {
        return Plan::Off;
    }
    if control.no_store {
        return Plan::Bypass;
    }
    let caller = if policy.per_key { caller } else { "" };
    Plan::Use {
        key: key(caller, model, messages, config),
        read: !control.no_cache,
    }
}

/// SHA-256 over the canonical request: the caller (empty when the model shares answers between keys), the
/// model's canonical name, every message (role, name, content) and every generation parameter, each
/// length-prefixed so no two requests can run together into one text.
pub(crate) fn key(
    caller: &str,
    model: &str,
    messages: &[Message],
    config: Option<&GenerationConfig>,
) -> Key {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(b"aigw-cache-v4");
    field(caller.as_bytes());
    field(model.as_bytes());
    field(&(messages.len() as u64).to_le_bytes());
    for m in messages {
        field(m.role.as_bytes());
        field(m.name.as_bytes());
        field(m.content.as_bytes());
        field(m.tool_call_id.as_bytes());
        field(&(m.tool_calls.len() as u64).to_le_bytes());
        for call in &m.tool_calls {
            field(&call.encode_to_vec());
        }
        field(&(m.parts.len() as u64).to_le_bytes());
        for part in &m.parts {
            field(&part.encode_to_vec());
        }
        field(&(m.reasoning.len() as u64).to_le_bytes());
        for block in &m.reasoning {
            field(&block.encode_to_vec());
        }
    }
    let mut c = config.cloned().unwrap_or_default();
    let opt = |v: Option<[u8; 4]>| v.map_or([0u8; 5], |b| [1, b[0], b[1], b[2], b[3]]);
    field(&opt(c.temperature.take().map(f32::to_le_bytes)));
    field(&opt(c.top_p.take().map(f32::to_le_bytes)));
    field(&opt(c.max_tokens.take().map(i32::to_le_bytes)));
    field(&(c.stop.len() as u64).to_le_bytes());
    for s in std::mem::take(&mut c.stop) {
        field(s.as_bytes());
    }
    // Everything else (tools, formats, seed, penalties, provider options, ...) as its protobuf encoding, which
    // is deterministic: fields in number order, and Struct's map is sorted.
    field(&c.encode_to_vec());
    h.finalize().into()
}

/// An embeddings request's plan: embeddings are deterministic, so any request to a caching model is kept,
/// keyed by the caller (as [`plan`]), the model, the texts and the asked size.
pub(crate) fn embed_plan(
    policy: Option<&ModelCache>,
    control: CacheControl,
    caller: &str,
    model: &str,
    input: &[String],
    dimensions: Option<i32>,
) -> Plan {
    let Some(policy) = policy else {
        return Plan::Off;
    };
    if control.no_store {
        return Plan::Bypass;
    }
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(b"aigw-embed-v2");
    field(if policy.per_key { caller } else { "" }.as_bytes());
    field(model.as_bytes());
    field(&dimensions.unwrap_or(0).to_le_bytes());
    field(&(input.len() as u64).to_le_bytes());
    for text in input {
        field(text.as_bytes());
    }
    Plan::Use {
        key: h.finalize().into(),
        read: !control.no_cache,
    }
}

#[cfg(test)]
mod tests {
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
        let policy = ModelCache {
            ttl: Duration::from_secs(60),
            any_temperature: false,
            charge_hits: false,
            per_key: true,
        };
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
                    provider_options: Some(crate::upstream::openai::extras::json_to_struct(
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
        let mut policy = ModelCache {
            ttl: Duration::from_secs(60),
            any_temperature: false,
            charge_hits: false,
            per_key: true,
        };
        let m = [msg("user", "hi")];
        let none = CacheControl::default();
        let texts = ["a".to_owned()];
        let chat =
            |p: &ModelCache, caller| plan(Some(p), none, caller, "m", &m, Some(&zero())).key();
        let embed =
            |p: &ModelCache, caller| embed_plan(Some(p), none, caller, "e", &texts, None).key();
        assert_ne!(chat(&policy, "api:1"), chat(&policy, "api:2"));
        assert_ne!(embed(&policy, "api:1"), embed(&policy, "api:2"));
        assert_eq!(chat(&policy, "api:1"), chat(&policy, "api:1"));
        policy.per_key = false;
        assert_eq!(chat(&policy, "api:1"), chat(&policy, "api:2"));
        assert_eq!(embed(&policy, "api:1"), embed(&policy, "api:2"));
    }

    #[test]
    fn only_deterministic_requests_unless_widened_and_cache_control_is_obeyed() {
        let policy = ModelCache {
            ttl: Duration::from_secs(60),
            any_temperature: false,
            charge_hits: false,
            per_key: true,
        };
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
        let mut md = MetadataMap::new();
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
        assert_eq!(cache.get(&[1; 32]).unwrap().content(), "a"); // 1 is now the most recent
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
            ..Default::default()
        };
        let kept = Entry::new(
            vec!["Hel".into(), "lo".into()],
            "chatcmpl-1".into(),
            "big".into(),
            "length".into(),
            usage,
            true,
        );
        assert_eq!(kept.content(), "Hello");
        let bytes = kept.encode().unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("reasoning"),
            "no reasoning, no field"
        );
        let back = Entry::decode(&bytes).unwrap();
        assert_eq!(back.chunks, kept.chunks);
        assert_eq!(
            (
                back.id.as_str(),
                back.model.as_str(),
                back.finish_reason.as_str()
            ),
            ("chatcmpl-1", "big", "length")
        );
        assert_eq!(back.usage, usage);
        assert!(back.usage_estimated);
        assert_eq!(back.bytes(), kept.bytes());
        assert!(Entry::decode(b"{\"chunks\": 1}").is_none());
        // Blocks without provider ids are kept without ids.
        let plain = entry("a").with_reasoning(vec![Reasoning {
            text: "t".into(),
            ..Default::default()
        }]);
        let bytes = plain.encode().unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("reasoning_ids"));
        assert_eq!(Entry::decode(&bytes).unwrap().reasoning, plain.reasoning);
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
        let back = Entry::decode(&kept.encode().unwrap()).unwrap();
        assert_eq!(back.reasoning, blocks);
        assert_eq!(back.bytes(), kept.bytes());
        let old = br#"{"chunks":["a"],"id":"i","model":"m","finish_reason":"stop","usage":[1,2,3],"usage_estimated":false}"#;
        assert!(Entry::decode(old).unwrap().reasoning.is_empty());
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
}
