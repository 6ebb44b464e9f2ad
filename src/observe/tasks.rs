//! Every task the gateway spawns goes through [`spawn`], by name (clippy.toml refuses a bare `tokio::spawn`
//! elsewhere). tokio keeps the runtime going when a task panics, but the panic goes to stderr outside the log
//! and nothing counts it, so a background loop that died (the Redis monitor, the fleet's key follower, a
//! connection) would go unseen. Here a panic is an error line naming the task, counted in
//! `aigw_panics_total{where="<the task's name>"}`; the task is over. A stream's task also ends its stream with
//! INTERNAL (`call::relay::spawn_guarded`), a session turn's its turn.

use std::{any::Any, future::Future, panic::AssertUnwindSafe, sync::Mutex};

use futures_util::FutureExt;
use tokio::task::JoinHandle;

/// Panics caught in spawned tasks since the process started, by task name (one count for the process, as there
/// is one runtime; the metrics take it in when they are gathered).
static PANICKED: Mutex<Vec<(&'static str, u64)>> = Mutex::new(Vec::new());

/// Spawns `task` on the runtime; its output is `None` if it panicked.
pub(crate) fn spawn<T: Send + 'static>(
    name: &'static str,
    task: impl Future<Output = T> + Send + 'static,
) -> JoinHandle<Option<T>> {
    #[allow(clippy::disallowed_methods)] // the one place that spawns
    tokio::spawn(async move {
        match AssertUnwindSafe(task).catch_unwind().await {
            Ok(out) => Some(out),
            Err(panic) => {
                caught(name, panic.as_ref());
                None
            }
        }
    })
}

/// Logs and counts a panic caught in the task `name`.
pub(crate) fn caught(name: &'static str, panic: &(dyn Any + Send)) {
    {
        let mut counts = PANICKED.lock().unwrap_or_else(|p| p.into_inner());
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => counts.push((name, 1)),
        }
    }
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(task = name, %message, "a task panicked and is gone");
}

/// How many spawned tasks have panicked, by name.
pub(crate) fn panicked() -> Vec<(&'static str, u64)> {
    PANICKED.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The panics of the task `name` so far.
#[cfg(test)]
pub(crate) fn panicked_in(name: &str) -> u64 {
    panicked()
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, c)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_counted_and_its_handle_says_so() {
        assert_eq!(spawn("fine", async { 7 }).await.unwrap(), Some(7));
        assert_eq!(panicked_in("fine"), 0);
        let gone = spawn("broken", async {
            if true {
                panic!("a bug in a background loop");
            }
        });
        assert_eq!(gone.await.unwrap(), None);
        assert_eq!(panicked_in("broken"), 1);
        let metrics = super::super::metrics::Metrics::new().render();
        assert!(
            metrics.contains("aigw_panics_total{where=\"broken\"} 1"),
            "{metrics}"
        );
    }
}
