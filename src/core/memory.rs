//! The gateway's memory budget (`[limits] memory_budget_mib`): what the requests it is reading hold — their
//! bodies and what parsing them builds — counted against one budget for the whole process. Many large requests
//! at once wait briefly for room, then are refused (RESOURCE_EXHAUSTED; 503 with Retry-After on the REST doors)
//! instead of growing the process until the kernel kills it.
//!
//! A body is charged twice over: before it is read, for its declared length (`BASE` and `BYTE_COST` a byte), so
//! many large bodies are not all read at once; then, before it is parsed, from one pass over its bytes:
//! `BYTE_COST` per byte and `VALUE_COST` per JSON value in it (the parsed tree's nodes, and the proto messages
//! built from them), plus `BASE`. The fuzz
//! harness (`src/fuzz.rs`) holds the charge to account: for the bodies it makes, parsing never allocates more
//! at its peak than the body is charged. The charge is held until the answer begins (a whole unary answer, or
//! a stream's first event); what an open stream keeps afterwards (its request, about its body's size) is
//! bounded by `max_in_flight` and the body limits.

use std::{sync::Arc, time::Duration};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::GatewayError;

/// Charged per byte of a body: the bytes themselves, and the strings parsed out of them (twice: the JSON
/// tree's and the proto message's).
pub(crate) const BYTE_COST: u64 = 4;
/// Charged per JSON value (object, array, member, element): a tree node, a map entry, a proto message.
pub(crate) const VALUE_COST: u64 = 512;
/// Charged per body whatever its size.
pub(crate) const BASE: u64 = 64 << 10;
/// How long a request waits for room before it is refused.
const WAIT: Duration = Duration::from_millis(500);
/// The budget is kept in units of this many bytes (a semaphore counts in `u32` per acquire).
const UNIT: u64 = 1 << 10;

pub(crate) struct MemoryBudget {
    units: Arc<Semaphore>,
    total: u64,
    /// Bytes held now, for `aigw_memory_held_bytes`.
    gauge: prometheus::IntGauge,
}

/// A part of the budget, given back when dropped.
pub(crate) struct Held {
    _permit: Option<OwnedSemaphorePermit>,
    bytes: u64,
    gauge: prometheus::IntGauge,
}

impl Held {
    /// The bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge
            .sub(i64::try_from(self.bytes).unwrap_or(i64::MAX));
    }
}

/// What parsing `body` as JSON may hold at its peak (see the module's note).
pub(crate) fn json_charge(body: &[u8]) -> u64 {
    // Values are counted by the structural bytes outside strings: each `{`, `[`, `,` and `:` opens one.
    let mut values = 1u64;
    let mut at = 0;
    loop {
        let next = memchr::memchr3(b'"', b'{', b'[', &body[at..]).map_or(body.len(), |i| at + i);
        values += body[at..next]
            .iter()
            .filter(|&&b| b == b',' || b == b':')
            .count() as u64;
        match body.get(next) {
            None => break,
            Some(b'"') => at = string_end(body, next + 1),
            Some(_) => {
                values += 1;
                at = next + 1;
            }
        }
    }
    BASE + body.len() as u64 * BYTE_COST + values * VALUE_COST
}

/// Where the string whose contents start at `from` ends: past its closing quote (one not escaped), or at the
/// end of the body.
fn string_end(body: &[u8], mut from: usize) -> usize {
    while let Some(k) = body
        .get(from..)
        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
    {
        if body[from + k] == b'"' {
            return from + k + 1;
        }
        from += k + 2; // a backslash and the byte it escapes
    }
    body.len()
}

impl MemoryBudget {
    pub(crate) fn new(bytes: u64, gauge: prometheus::IntGauge) -> MemoryBudget {
        let units = (bytes / UNIT).clamp(1, Semaphore::MAX_PERMITS as u64 / 2);
        MemoryBudget {
            units: Arc::new(Semaphore::new(usize::try_from(units).unwrap_or(usize::MAX))),
            total: units * UNIT,
            gauge,
        }
    }

    /// Takes `bytes` of the budget, waiting up to half a second for room; a request that could never fit, or
    /// finds no room in time, is refused.
    pub(crate) async fn hold(&self, bytes: u64) -> Result<Held, GatewayError> {
        let units = bytes.div_ceil(UNIT);
        let refused = |retry_after| {
            GatewayError::ResourceExhausted {
            message: format!(
                "the gateway's memory budget (limits.memory_budget_mib, {} MiB) has no room for this request \
                 (about {} MiB to read and parse)",
                self.total >> 20,
                bytes.div_ceil(1 << 20)
            ),
            retry_after,
            limit: "memory",
        }
        };
        if units * UNIT > self.total {
            return Err(refused(None));
        }
        let n = u32::try_from(units).map_err(|_| refused(None))?;
        let permit = match self.units.clone().try_acquire_many_owned(n) {
            Ok(p) => p,
            Err(_) => tokio::time::timeout(WAIT, self.units.clone().acquire_many_owned(n))
                .await
                .map_err(|_| refused(Some(Duration::from_secs(1))))?
                .map_err(|_| refused(Some(Duration::from_secs(1))))?,
        };
        self.gauge.add(i64::try_from(bytes).unwrap_or(i64::MAX));
        Ok(Held {
            _permit: Some(permit),
            bytes,
            gauge: self.gauge.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(bytes: u64) -> MemoryBudget {
        MemoryBudget::new(bytes, prometheus::IntGauge::new("g", "g").unwrap())
    }

    #[test]
    fn a_body_is_charged_its_base_its_bytes_and_its_values() {
        // 64 KiB whatever the size, 4 bytes a byte, 512 a value: `{}` is two bytes and two values.
        assert_eq!(json_charge(b"{}"), (64 << 10) + 2 * 4 + 2 * 512);
        assert_eq!(json_charge(b""), (64 << 10) + 512);
    }

    #[test]
    fn values_are_counted_outside_strings_only() {
        let charge =
            |s: &str| (json_charge(s.as_bytes()) - BASE - s.len() as u64 * BYTE_COST) / VALUE_COST;
        assert_eq!(charge(""), 1);
        assert_eq!(charge("{}"), 2);
        assert_eq!(charge(r#"{"a":1,"b":[1,2]}"#), 1 + 1 + 1 + 1 + 1 + 1 + 1);
        assert_eq!(charge(r#""{[,:]}""#), 1, "inside a string");
        assert_eq!(
            charge(r#""a\"{,""#),
            1,
            "an escaped quote does not end the string"
        );
        assert_eq!(charge(r#""unterminated {,"#), 1);
        assert_eq!(
            charge(r#"["\\",{}]"#),
            1 + 1 + 1 + 1,
            "an escaped backslash does"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_budget_waits_briefly_then_refuses_with_a_retry_after() {
        let b = budget(1 << 20);
        let held = b.hold(700 << 10).await.unwrap();
        assert_eq!(b.gauge.get(), 700 << 10);
        let refused = b.hold(700 << 10).await.err().unwrap();
        assert_eq!(refused.label(), "limit_memory");
        assert_eq!(refused.retry_after(), Some(Duration::from_secs(1)));
        drop(held);
        assert_eq!(b.gauge.get(), 0);
        let again = b.hold(700 << 10).await;
        assert!(again.is_ok(), "room again once the first is done");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_larger_than_the_whole_budget_is_refused_at_once() {
        let b = budget(1 << 20);
        let refused = b.hold((2 << 20) - 100).await.err().unwrap();
        assert_eq!(refused.retry_after(), None, "waiting would not help");
        let message = refused.to_string();
        assert!(
            message.contains("limits.memory_budget_mib, 1 MiB") && message.contains("about 2 MiB"),
            "{message}"
        );
        // The whole budget, to the byte, fits.
        let all = b.hold(1 << 20).await.unwrap();
        assert_eq!(all.bytes(), 1 << 20);
        assert_eq!(b.gauge.get(), 1 << 20);
    }

    /// A request that finds no room waits for it, up to half a second.
    #[tokio::test(start_paused = true)]
    async fn room_made_within_half_a_second_is_taken() {
        let b = budget(1 << 20);
        let first = b.hold(800 << 10).await.unwrap();
        let start = tokio::time::Instant::now();
        let (second, ()) = tokio::join!(b.hold(800 << 10), async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            drop(first);
        });
        let second = second.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(400));
        let (third, ()) = tokio::join!(b.hold(800 << 10), async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            drop(second);
        });
        assert!(third.is_err(), "the room came after the half second");
    }
}
