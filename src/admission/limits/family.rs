//! Groups within groups: a team's limiter points at its organisation's (`[[groups]] parent`), so a call of the
//! team's keys must fit every level's limits, and spends every level's budget. The config refuses circles and
//! chains deeper than `MAX_GROUP_DEPTH`; the walk here stops there too.

use std::sync::Arc;

use super::KeyLimiter;
use crate::config::MAX_GROUP_DEPTH;

impl KeyLimiter {
    /// Sets the group's parent group (none: it is a top-level group).
    pub(crate) fn set_parent(&self, parent: Option<Arc<KeyLimiter>>) {
        *self.parent.write().unwrap_or_else(|p| p.into_inner()) = parent;
    }

    fn parent(&self) -> Option<Arc<KeyLimiter>> {
        self.parent
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// This group and the groups above it, nearest first.
    pub(crate) fn lineage(self: &Arc<Self>) -> Vec<Arc<KeyLimiter>> {
        let mut line = vec![self.clone()];
        while line.len() < MAX_GROUP_DEPTH {
            match line.last().and_then(|g| g.parent()) {
                Some(parent) => line.push(parent),
                None => break,
            }
        }
        line
    }
}
