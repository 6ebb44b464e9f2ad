//! Conversations kept for the Responses API's `previous_response_id`: each answered response's whole message
//! list (its input, the history it continued, and the answer), by response id, for the key that made it; with
//! the response object and the request's input items as the client sent them, for `GET /v1/responses/{id}` and
//! its `input_items`.
//!
//! Bounded in time and size: an entry lives `ttl`, the oldest go first past `max_bytes`, and one conversation
//! larger than a quarter of the bound is not kept; one key holds at most a quarter of the bound too (its own
//! oldest go first), so no key can crowd out everyone else's. Owners are keys' stable ids
//! (`Identity::owner`), never their names, which a later key may reuse. Per replica: with several replicas behind a balancer, a
//! continuation must reach the replica that answered (or the client sends the history itself).

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::Duration,
};

use tokio::time::Instant;

use crate::proto::Message;

/// How long a response stays continuable, and the memory all of them may take.
pub(crate) const KEEP_FOR: Duration = Duration::from_secs(3600);
pub(crate) const MAX_BYTES: usize = 64 * 1024 * 1024;

pub(crate) struct Conversations {
    inner: Mutex<Inner>,
    ttl: Duration,
    max_bytes: usize,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Kept>,
    /// Ids in the order they were kept: the front is the oldest.
    order: VecDeque<String>,
    bytes: usize,
    /// Bytes kept per owner.
    by_owner: HashMap<String, usize>,
}

struct Kept {
    owner: String,
    messages: Vec<Message>,
    stored: Stored,
    bytes: usize,
    expires: Instant,
}

/// A response as the Responses API shows it back: the response object, and the input items of its request.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Stored {
    pub(crate) response: std::sync::Arc<serde_json::Value>,
    pub(crate) input: std::sync::Arc<Vec<serde_json::Value>>,
}

impl Conversations {
    pub(crate) fn new(ttl: Duration, max_bytes: usize) -> Self {
        Conversations {
            inner: Mutex::default(),
            ttl,
            max_bytes,
        }
    }

    /// Keeps `messages` as response `id` of key `owner`, with what `GET` shows of it.
    pub(crate) fn keep(&self, id: &str, owner: &str, messages: Vec<Message>, stored: Stored) {
        let shown = |v: &serde_json::Value| serde_json::to_vec(v).map_or(0, |b| b.len());
        let bytes: usize = messages
            .iter()
            .map(|m| crate::upstream::openai::extras::size(m) + 64)
            .sum::<usize>()
            + shown(&stored.response)
            + stored.input.iter().map(shown).sum::<usize>();
        if bytes > self.max_bytes / 4 {
            return;
        }
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.expire(now);
        // This owner's share first: its own oldest go.
        while inner.by_owner.get(owner).copied().unwrap_or_default() + bytes > self.max_bytes / 4 {
            let Some(oldest) = inner
                .order
                .iter()
                .find(|id| inner.by_id.get(*id).is_some_and(|k| k.owner == owner))
                .cloned()
            else {
                break;
            };
            inner.remove(&oldest);
        }
        while inner.bytes + bytes > self.max_bytes {
            if !inner.drop_oldest() {
                break;
            }
        }
        let kept = Kept {
            owner: owner.to_owned(),
            messages,
            stored,
            bytes,
            expires: now + self.ttl,
        };
        if let Some(old) = inner.by_id.insert(id.to_owned(), kept) {
            inner.bytes -= old.bytes;
            inner.less(&old.owner, old.bytes);
        } else {
            inner.order.push_back(id.to_owned());
        }
        inner.bytes += bytes;
        *inner.by_owner.entry(owner.to_owned()).or_default() += bytes;
    }

    /// What `read` takes of response `id`, if `owner` made it and it is still kept.
    fn kept<T>(&self, id: &str, owner: &str, read: impl FnOnce(&Kept) -> T) -> Option<T> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.expire(Instant::now());
        inner.by_id.get(id).filter(|k| k.owner == owner).map(read)
    }

    /// The messages of response `id`, if `owner` made it and it is still kept.
    pub(crate) fn get(&self, id: &str, owner: &str) -> Option<Vec<Message>> {
        self.kept(id, owner, |k| k.messages.clone())
    }

    /// The response object and input items of response `id`, if `owner` made it and it is still kept.
    pub(crate) fn stored(&self, id: &str, owner: &str) -> Option<Stored> {
        self.kept(id, owner, |k| k.stored.clone())
    }

    /// Forgets response `id` of `owner`; whether it was kept.
    pub(crate) fn delete(&self, id: &str, owner: &str) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.expire(Instant::now());
        if inner.by_id.get(id).is_none_or(|k| k.owner != owner) {
            return false;
        }
        inner.remove(id);
        true
    }
}

impl Inner {
    /// Drops entries past their time (the oldest are at the front, and all share one ttl).
    fn expire(&mut self, now: Instant) {
        while let Some(id) = self.order.front() {
            match self.by_id.get(id) {
                Some(k) if k.expires > now => break,
                _ => {
                    self.drop_oldest();
                }
            }
        }
    }

    fn drop_oldest(&mut self) -> bool {
        let Some(id) = self.order.pop_front() else {
            return false;
        };
        if let Some(k) = self.by_id.remove(&id) {
            self.bytes -= k.bytes;
            self.less(&k.owner, k.bytes);
        }
        true
    }

    /// Forgets one entry wherever it is in the order.
    fn remove(&mut self, id: &str) {
        if let Some(k) = self.by_id.remove(id) {
            self.bytes -= k.bytes;
            self.less(&k.owner, k.bytes);
        }
        self.order.retain(|kept| kept != id);
    }

    fn less(&mut self, owner: &str, bytes: usize) {
        if let Some(held) = self.by_owner.get_mut(owner) {
            *held = held.saturating_sub(bytes);
            if *held == 0 {
                self.by_owner.remove(owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(text: &str) -> Vec<Message> {
        vec![Message {
            role: "user".into(),
            content: text.into(),
            ..Default::default()
        }]
    }

    #[tokio::test(start_paused = true)]
    async fn kept_for_their_owner_until_they_expire_or_crowd_out() {
        let store = Conversations::new(Duration::from_secs(60), 1000);
        store.keep("r1", "alice", said("one"), Stored::default());
        assert_eq!(store.get("r1", "alice"), Some(said("one")));
        assert_eq!(store.get("r1", "bob"), None, "another key's response");
        assert_eq!(store.get("r2", "alice"), None);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(store.get("r1", "alice"), None, "expired");
        // Each is about 70 bytes: the oldest go first past 1000.
        for i in 0..20 {
            store.keep(&format!("r{i}"), "alice", said("x"), Stored::default());
        }
        assert_eq!(store.get("r0", "alice"), None);
        assert!(store.get("r19", "alice").is_some());
        assert!(store.inner.lock().unwrap().bytes <= 1000);
        // Larger than a quarter of the bound: not kept.
        store.keep("big", "alice", said(&"y".repeat(300)), Stored::default());
        assert_eq!(store.get("big", "alice"), None);
        // One owner holds at most a quarter of the store: its own oldest go, never another's.
        store.keep("bob-1", "bob", said("b"), Stored::default());
        for i in 0..10 {
            store.keep(&format!("a{i}"), "alice", said("x"), Stored::default());
        }
        assert!(
            store.get("bob-1", "bob").is_some(),
            "alice's turns crowd out only hers"
        );
        assert!(store.get("a9", "alice").is_some());
        assert_eq!(store.get("a0", "alice"), None);
        assert!(store.inner.lock().unwrap().by_owner["alice"] <= 250);
        // Deleted by its owner alone, and gone for good.
        assert!(!store.delete("a9", "bob"));
        assert!(store.delete("a9", "alice"));
        assert_eq!(store.get("a9", "alice"), None);
        assert!(!store.delete("a9", "alice"));
    }
}
