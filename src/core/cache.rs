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

use std::borrow::Cow;

use crate::{
    config::{CacheConfig, ModelCache, ModelKind},
    proto::{GenerationConfig, Message, Reasoning, Usage},
    upstream::openai::embeddings,
    upstream::pass_through::PassThrough,
};

/// A canonical request's SHA-256.
pub(crate) type Key = [u8; 32];

/// A kept answer: what it answers with, by the kind of call, and what it cost.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) body: Body,
    pub(crate) model: String,
    pub(crate) usage: Usage,
    pub(crate) usage_estimated: bool,
    expires: Instant,
    bytes: usize,
}

/// What a kept answer answers with. (The two kinds' keys never meet: each is made from its own prefix.)
#[derive(Debug, PartialEq)]
pub(crate) enum Body {
    Chat(Chat),
    /// Embeddings: one vector per input, in order.
    Vectors(Vec<Vec<f32>>),
}

/// A kept chat completion.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Chat {
    /// The text, in the pieces it was streamed in.
    pub(crate) chunks: Vec<String>,
    /// The reasoning blocks, replayed before the text.
    pub(crate) reasoning: Vec<Reasoning>,
    pub(crate) id: String,
    pub(crate) finish_reason: String,
}

impl Chat {
    /// The whole text, for a unary reply.
    pub(crate) fn content(&self) -> String {
        self.chunks.concat()
    }
}

/// A kept answer as the fleet's cache stores it (JSON, in Redis): a chat answer's text pieces, or the vectors
/// in base64 (little-endian f32s), in `chunks`. Borrowed when encoding, owned when decoding. Replicas of other
/// releases read and write the same fields.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored<'a> {
    chunks: Cow<'a, [String]>,
    id: Cow<'a, str>,
    model: Cow<'a, str>,
    finish_reason: Cow<'a, str>,
    usage: [i32; 3],
    /// The usage's parts: cached and cache-write prompt tokens, reasoning tokens (priced apart). Left out when
    /// all are 0; replicas of releases before it read the three counts alone.
    #[serde(default, skip_serializing_if = "no_parts")]
    usage_parts: [i32; 3],
    usage_estimated: bool,
    /// Each block as [text, signature, redacted].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reasoning: Vec<[Cow<'a, str>; 3]>,
    /// Each block's provider id, when any block has one (a Responses API upstream's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reasoning_ids: Vec<Cow<'a, str>>,
}

fn no_parts(parts: &[i32; 3]) -> bool {
    parts == &[0; 3]
}

impl Entry {
    /// The entry as the fleet's cache stores it.
    pub(crate) fn encode(&self) -> Option<Vec<u8>> {
        let none = Chat::default();
        let (chunks, chat): (Cow<'_, [String]>, &Chat) = match &self.body {
            Body::Chat(chat) => ((&chat.chunks[..]).into(), chat),
            Body::Vectors(vectors) => (
                vectors.iter().map(|v| embeddings::to_base64(v)).collect(),
                &none,
            ),
        };
        let stored = Stored {
            chunks,
            id: chat.id.as_str().into(),
            model: self.model.as_str().into(),
            finish_reason: chat.finish_reason.as_str().into(),
            usage: [
                self.usage.prompt_tokens,
                self.usage.completion_tokens,
                self.usage.total_tokens,
            ],
            usage_parts: [
                self.usage.cached_prompt_tokens,
                self.usage.cache_write_tokens,
                self.usage.reasoning_tokens,
            ],
            usage_estimated: self.usage_estimated,
            reasoning: chat
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
            reasoning_ids: if chat.reasoning.iter().any(|r| !r.id.is_empty()) {
                chat.reasoning
                    .iter()
                    .map(|r| r.id.as_str().into())
                    .collect()
            } else {
                Vec::new()
            },
        };
        serde_json::to_vec(&stored).ok()
    }

    /// An entry of a model of `kind` from the fleet's cache; `None` when the bytes are not one (a vector that
    /// is not base64 of f32s included: a miss, never an empty answer).
    pub(crate) fn decode(bytes: &[u8], kind: ModelKind) -> Option<Entry> {
        let stored: Stored = serde_json::from_slice(bytes).ok()?;
        let [prompt_tokens, completion_tokens, total_tokens] = stored.usage;
        let [cached_prompt_tokens, cache_write_tokens, reasoning_tokens] = stored.usage_parts;
        let usage = Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens,
            cached_prompt_tokens,
            cache_write_tokens,
            reasoning_tokens,
        };
        let body = match kind {
            ModelKind::Embedding => Body::Vectors(
                stored
                    .chunks
                    .iter()
                    .map(|c| embeddings::from_base64(c).ok())
                    .collect::<Option<_>>()?,
            ),
            ModelKind::Chat => {
                let ids = stored.reasoning_ids.into_iter().map(Some);
                let reasoning = stored
                    .reasoning
                    .into_iter()
                    .zip(ids.chain(std::iter::repeat(None)))
                    .map(|([text, signature, redacted], id)| Reasoning {
                        text: text.into_owned(),
                        signature: signature.into_owned(),
                        redacted: redacted.into_owned(),
                        id: id.map(Cow::into_owned).unwrap_or_default(),
                    })
                    .collect();
                Body::Chat(Chat {
                    chunks: stored.chunks.into_owned(),
                    reasoning,
                    id: stored.id.into_owned(),
                    finish_reason: stored.finish_reason.into_owned(),
                })
            }
        };
        Some(Entry::of(
            body,
            stored.model.into_owned(),
            usage,
            stored.usage_estimated,
        ))
    }

    /// A chat answer's entry, without reasoning (see [`Entry::with_reasoning`]).
    pub(crate) fn new(
        chunks: Vec<String>,
        id: String,
        model: String,
        finish_reason: String,
        usage: Usage,
        usage_estimated: bool,
    ) -> Entry {
        let chat = Chat {
            chunks,
            reasoning: Vec::new(),
            id,
            finish_reason,
        };
        Entry::of(Body::Chat(chat), model, usage, usage_estimated)
    }

    /// An entry of `body`, its size counted: the answer plus a fixed allowance per entry and per piece for the
    /// bookkeeping around it.
    pub(crate) fn of(body: Body, model: String, usage: Usage, usage_estimated: bool) -> Entry {
        let bytes = 128
            + model.len()
            + match &body {
                Body::Chat(c) => {
                    c.id.len()
                        + c.finish_reason.len()
                        + c.chunks.iter().map(|c| c.len() + 24).sum::<usize>()
                        + c.reasoning.iter().map(reasoning_bytes).sum::<usize>()
                }
                Body::Vectors(v) => v.iter().map(|v| v.len() * 4 + 24).sum(),
            };
        Entry {
            body,
            model,
            usage,
            usage_estimated,
            expires: Instant::now(),
            bytes,
        }
    }

    /// The chat entry with the answer's reasoning, counted in its size (an embeddings entry has none).
    pub(crate) fn with_reasoning(mut self, reasoning: Vec<Reasoning>) -> Entry {
        if let Body::Chat(chat) = &mut self.body {
            self.bytes += reasoning.iter().map(reasoning_bytes).sum::<usize>();
            chat.reasoning = reasoning;
        }
        self
    }

    /// What it counts for against the cache's bounds.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The kept chat answer, if that is what it keeps.
    pub(crate) fn chat(&self) -> Option<&Chat> {
        match &self.body {
            Body::Chat(chat) => Some(chat),
            Body::Vectors(_) => None,
        }
    }

    /// The kept vectors, if that is what it keeps.
    pub(crate) fn vectors(&self) -> Option<&[Vec<f32>]> {
        match &self.body {
            Body::Vectors(v) => Some(v),
            Body::Chat(_) => None,
        }
    }
}

/// A reasoning block's four strings and 24 bytes around them.
fn reasoning_bytes(r: &Reasoning) -> usize {
    r.text.len() + r.signature.len() + r.redacted.len() + r.id.len() + 24
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
    pub(crate) fn read(metadata: &http::HeaderMap) -> CacheControl {
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
    (messages, config, pass): (&[Message], Option<&GenerationConfig>, &PassThrough),
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
    Plan::Use {
        key: key(policy.scope(caller), model, (messages, config, pass)),
        read: !control.no_cache,
    }
}

/// SHA-256 over the canonical request: the caller (empty when the model shares answers between keys), the
/// model's canonical name, every message (role, name, content) and every generation parameter, each
/// length-prefixed so no two requests can run together into one text.
pub(crate) fn key(
    caller: &str,
    model: &str,
    (messages, config, pass): (&[Message], Option<&GenerationConfig>, &PassThrough),
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
    // Everything else (tools, formats, seed, penalties, ...) as its protobuf encoding, which is deterministic:
    // fields in number order (the config's maps, which would not be, are empty: their fields are in `pass`).
    field(&c.encode_to_vec());
    // The pass-through fields in one order of keys; none adds nothing, so keys of requests without them are
    // those older replicas make.
    if !pass.is_empty() {
        field(&pass.canonical());
    }
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
    field(policy.scope(caller).as_bytes());
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
mod tests;
