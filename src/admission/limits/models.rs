//! A key's (group's, token caller's) limits on its calls to one model (`model_limits`): each a limiter of its
//! own — windows, slots, and its own name in the fleet's state — held by its owner's limiter, so that it lives
//! as long as the owner's and, like it, keeps its windows through a reload that keeps its concurrency.

use std::sync::Arc;

use super::KeyLimiter;
use crate::config::ModelLimits;

impl KeyLimiter {
    /// Sets the owner's per-model limits to `limits` (by model name): a model that keeps its concurrency keeps
    /// its limiter with the new rates; the others start afresh; models no longer named lose theirs.
    pub(crate) fn set_model_limits(&self, limits: &ModelLimits) {
        let mut models = self.models.write().unwrap_or_else(|p| p.into_inner());
        let next = limits
            .iter()
            .map(|(model, new)| {
                let kept = models
                    .remove(model)
                    .filter(|l| l.limits().concurrency == new.concurrency);
                let limiter = match kept {
                    Some(l) => {
                        l.set_limits(*new);
                        l
                    }
                    None => Arc::new(KeyLimiter {
                        what: self.what,
                        model: Some(model.clone()),
                        ..KeyLimiter::new(&self.name, *new)
                    }),
                };
                (model.clone(), limiter)
            })
            .collect();
        *models = next;
    }

    /// The owner's limiter on calls to `model`, when it limits them.
    pub(crate) fn on_model(&self, model: &str) -> Option<Arc<KeyLimiter>> {
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        if models.is_empty() {
            return None;
        }
        models.get(model).cloned()
    }
}
