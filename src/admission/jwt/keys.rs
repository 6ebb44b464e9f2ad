//! Reading an issuer's signing keys (its JWKS document) at start, every `refresh`, and when a call asks for a
//! read (a token with an unknown `kid`; calls ask at most once per `min_refresh`). A failed read keeps the keys
//! the gateway has; a changed set makes every remembered token verify again.

use std::sync::{atomic::Ordering, Arc, Weak};

use tokio_util::sync::CancellationToken;

use super::{verify::KeySet, Issuer, Issuers};

/// The largest key set read; identity providers publish a few keys (a few KiB).
const MAX_BODY: usize = 256 * 1024;
/// How long one read may take.
pub(super) const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Starts the task that keeps `issuer`'s keys; it ends with `stop`.
pub(super) fn read_keys(
    issuer: Arc<Issuer>,
    issuers: Weak<Issuers>,
    client: reqwest::Client,
    stop: CancellationToken,
) {
    crate::observe::tasks::spawn("jwks reader", async move {
        loop {
            issuer.reading.store(true, Ordering::Release);
            let read = tokio::select! {
                read = fetch(&client, &issuer.cfg.jwks_url) => read,
                () = stop.cancelled() => return,
            };
            issuer.reading.store(false, Ordering::Release);
            match read {
                Ok(set) => {
                    let changed = {
                        let mut keys = issuer.keys.write().unwrap_or_else(|p| p.into_inner());
                        let changed = **keys != set;
                        if changed {
                            *keys = Arc::new(set);
                        }
                        changed
                    };
                    if changed {
                        if let Some(all) = issuers.upgrade() {
                            all.forget_verified();
                        }
                        tracing::info!(issuer = %issuer.cfg.name, keys = issuer.keys().len(), "read the issuer's signing keys");
                    }
                }
                Err(e) => {
                    tracing::warn!(issuer = %issuer.cfg.name, error = %e, "could not read the issuer's signing keys; keeping the ones held")
                }
            }
            issuer.reads.send_modify(|n| *n += 1);
            // The next read: at `refresh`, or sooner when a call asks (`Issuer::want_read` spaces those).
            tokio::select! {
                () = tokio::time::sleep(issuer.cfg.refresh) => {}
                () = issuer.wanted.notified() => {}
                () = stop.cancelled() => return,
            }
        }
    });
}

/// One read of a key set.
async fn fetch(client: &reqwest::Client, url: &str) -> Result<KeySet, String> {
    let mut resp = client
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .timeout(READ_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: HTTP {}", resp.status().as_u16()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{url}: {e}"))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("{url}: the key set is larger than 256 KiB"));
        }
        body.extend_from_slice(&chunk);
    }
    KeySet::parse(&body).map_err(|e| format!("{url}: {e}"))
}
