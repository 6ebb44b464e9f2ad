//! Telling the streams that run under keys that the keys changed, so that each asks whether its key still holds.
//!
//! Each change cancels the current token and puts a fresh one in its place; a stream watches a child of the
//! token current when it looked, so its waits lock only its own token's node. (A watch channel shared by every
//! stream made each of them lock the channel's one waiter list every time it waited for its next chunk.) The
//! version is a plain number for the stream's check between chunks.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Mutex,
};

use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub(crate) struct KeyChanges {
    version: AtomicU64,
    current: Mutex<CancellationToken>,
}

/// What a stream watches: the version it has seen, and a token cancelled at the next change after it.
pub(crate) struct KeyWatch {
    pub(crate) seen: u64,
    pub(crate) changed: CancellationToken,
}

impl KeyChanges {
    /// Tells every watcher; the change itself must be in place before.
    pub(crate) fn tell(&self) {
        let old = {
            let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            self.version.fetch_add(1, Ordering::Release);
            std::mem::replace(&mut *current, CancellationToken::new())
        };
        old.cancel();
    }

    /// Changes told so far.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// A watch from now on: its token is cancelled by the first change told after this call.
    pub(crate) fn watch(&self) -> KeyWatch {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        KeyWatch {
            seen: self.version.load(Ordering::Acquire),
            changed: current.child_token(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_fires_at_the_next_change_and_not_before() {
        let changes = KeyChanges::default();
        let before = changes.watch();
        assert_eq!(before.seen, 0);
        assert!(!before.changed.is_cancelled());
        changes.tell();
        assert!(before.changed.is_cancelled());
        assert_eq!(changes.version(), 1);
        let after = changes.watch();
        assert_eq!(after.seen, 1);
        assert!(
            !after.changed.is_cancelled(),
            "a watch sees only changes after it"
        );
        changes.tell();
        assert!(after.changed.is_cancelled());
        assert_eq!(changes.version(), 2);
    }
}
