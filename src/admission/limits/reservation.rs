//! What an admitted call holds in the rate windows until it ends: a request and its tokens at each level that
//! limits it (key, group, the groups above, their limits on the model), each in this replica's windows or the
//! fleet's. Reconciled with the real usage at the end; cancelled (taken back) when another level refuses.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::Log;
use crate::transport::standing::Standing;

/// The token reservations of one request: the key's, and its group's when it has one. A pair, not a list, so
/// admitting a call allocates nothing for it.
#[derive(Debug, Default)]
pub(crate) struct Reserved {
    pub(crate) key: Option<Reservation>,
    pub(crate) group: Option<Reservation>,
    /// The key's and the group's windows on the model, when they limit it.
    pub(crate) key_model: Option<Reservation>,
    pub(crate) group_model: Option<Reservation>,
    /// The windows of the groups above the key's group (and their limits on the model): empty, and so
    /// allocating nothing, unless groups nest.
    pub(crate) above: Vec<Reservation>,
}

impl Reserved {
    /// A refusal at one level: the requests and tokens the other levels recorded are taken back.
    pub(crate) async fn cancel(&mut self) {
        let all = [
            self.key.take(),
            self.group.take(),
            self.key_model.take(),
            self.group_model.take(),
        ];
        let above = std::mem::take(&mut self.above);
        for r in all.into_iter().flatten().chain(above) {
            r.cancel().await;
        }
    }

    /// Where the caller stands: the tighter of the key's windows and its group's.
    pub(crate) fn standing(&self) -> Standing {
        let of = |r: &Option<Reservation>| r.as_ref().map(|r| r.standing).unwrap_or_default();
        let above = self.above.iter().map(|r| r.standing);
        [&self.group, &self.key_model, &self.group_model]
            .into_iter()
            .map(of)
            .chain(above)
            .fold(of(&self.key), Standing::tighter)
    }

    /// Every reservation made becomes the real figure.
    pub(crate) fn reconcile(&mut self, total_tokens: u64) {
        let all = [
            self.key.take(),
            self.group.take(),
            self.key_model.take(),
            self.group_model.take(),
        ];
        for r in all.into_iter().flatten().chain(self.above.drain(..)) {
            r.reconcile(total_tokens);
        }
    }
}

/// Tokens held against a key's tpm until the call's real usage is known: in this replica's window, or in the
/// fleet's (Redis); and where the key stood once it was made.
#[derive(Debug)]
pub(crate) struct Reservation {
    pub(super) held: Held,
    pub(super) standing: Standing,
}

#[derive(Debug)]
pub(super) enum Held {
    Local {
        /// The request window, and the time of the entry that holds the request (to take it back).
        requests: (Arc<Mutex<Log>>, Instant),
        tokens: Arc<Mutex<Log>>,
        at: Instant,
        amount: u64,
    },
    Shared(Box<dyn FleetReservation>),
}

impl Reservation {
    pub(crate) fn shared(r: impl FleetReservation + 'static, standing: Standing) -> Reservation {
        Reservation {
            held: Held::Shared(Box::new(r)),
            standing,
        }
    }

    /// Takes the request and its tokens back out of the windows: a refusal at another level (the key's
    /// group's, say) leaves no trace in this one's.
    async fn cancel(self) {
        match self.held {
            Held::Local {
                requests: (requests, when),
                tokens,
                at,
                amount,
            } => {
                requests
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .adjust(when, -1);
                let mut log = tokens.lock().unwrap_or_else(|p| p.into_inner());
                log.adjust(at, -i64::try_from(amount).unwrap_or(i64::MAX));
            }
            Held::Shared(r) => r.cancel().await,
        }
    }

    /// Replaces the reserved amount with the real one.
    pub(crate) fn reconcile(self, total_tokens: u64) {
        match self.held {
            Held::Local {
                tokens, at, amount, ..
            } => {
                let mut log = tokens.lock().unwrap_or_else(|p| p.into_inner());
                let (real, held) = (i128::from(total_tokens), i128::from(amount));
                log.adjust(at, i64::try_from(real - held).unwrap_or(i64::MAX));
            }
            Held::Shared(r) => r.reconcile(total_tokens),
        }
    }
}

/// A reservation the fleet holds (in Redis: `admission::fleet` makes them). A trait, so that this file, which
/// `shared` builds on, does not import it back.
pub(crate) trait FleetReservation: std::fmt::Debug + Send + Sync {
    /// Replaces the reserved amount with the real one.
    fn reconcile(self: Box<Self>, total_tokens: u64);

    /// Takes the request and its tokens back out of the fleet's windows; done when the fleet has.
    fn cancel(self: Box<Self>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}
