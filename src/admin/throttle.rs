//! Failed admin authentications per address, so an admin key cannot be guessed at speed.

use std::time::Duration;

use tokio::time::Instant;

/// Failed admin authentications per address: past [`Throttle::MAX`] in a minute, the address is answered 429
/// (Retry-After: the rest of its minute) without its key being looked at, so an admin key cannot be guessed at
/// speed. Bounded: past [`Throttle::ADDRESSES`] addresses, the ones whose minute has passed are forgotten first.
#[derive(Default)]
pub(crate) struct Throttle(
    std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (u32, Instant)>>,
);

impl Throttle {
    const MAX: u32 = 10;
    const WINDOW: Duration = Duration::from_secs(60);
    const ADDRESSES: usize = 4096;

    /// How long `ip` must wait, if it is throttled now.
    pub(super) fn blocked(&self, ip: std::net::IpAddr, now: Instant) -> Option<Duration> {
        let seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let &(failures, since) = seen.get(&ip)?;
        let ends = since + Self::WINDOW;
        (failures >= Self::MAX && now < ends).then(|| ends - now)
    }

    pub(super) fn failed(&self, ip: std::net::IpAddr, now: Instant) {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= Self::ADDRESSES {
            seen.retain(|_, (_, since)| now < *since + Self::WINDOW);
            if seen.len() >= Self::ADDRESSES {
                seen.clear();
            }
        }
        let entry = seen.entry(ip).or_insert((0, now));
        if now >= entry.1 + Self::WINDOW {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
    }
}
