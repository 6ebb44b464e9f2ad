//! The fleet's usage books in Redis: per key, per group and per model, per UTC day, month and 10-second bucket.
//! Booked here per replica and sent once a second in one pipeline; read back by the usage API.

use std::{
    collections::HashMap,
    time::{SystemTime, UNIX_EPOCH},
};

use super::{Down, Period, Shared, DAY_TTL, MONTH_TTL};
use crate::admission::limits::{utc_day, utc_month};

impl Shared {
    /// The fleet's usage hashes of one period: today's, this month's, and the 10-second bucket.
    fn usage_names(&self, (day, month, bucket): Period) -> [String; 3] {
        [
            self.common(&format!("usage:day:{day}")),
            self.common(&format!("usage:month:{month}")),
            self.common(&format!("usage:10s:{bucket}")),
        ]
    }

    /// Books a request (and its tokens and cost, once known) in the fleet's usage. Counts add up here, per
    /// name and period, and go to Redis once a second in one pipeline (`flush_usage`): booking costs the request
    /// path a lock and a few additions (a name is copied only the first time it is seen in a second), and Redis
    /// one round trip a second per replica whatever the traffic.
    pub(crate) fn add_usage<'a>(
        &self,
        key: &str,
        model: &str,
        groups: impl IntoIterator<Item = &'a str>,
        add: (u64, u64, f64),
    ) {
        let wall = SystemTime::now();
        let bucket = wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 10);
        let period = (utc_day(wall), utc_month(wall), bucket);
        let mut pending = self.pending_usage.lock().unwrap_or_else(|p| p.into_inner());
        let [keys, models, group_book] = &mut *pending;
        book(keys, key, period, add);
        book(models, model, period, add);
        for group in groups {
            book(group_book, group, period, add);
        }
    }

    /// Sends the usage booked since the last flush, as fields `key:<name>:requests|tokens|cost`,
    /// `model:<name>:...` and `group:<name>:...` of each period's hashes. While Redis is down it is dropped: the fleet's usage view is an
    /// overview, and the usage records are the ledger.
    pub(crate) async fn flush_usage(&self) {
        let books =
            std::mem::take(&mut *self.pending_usage.lock().unwrap_or_else(|p| p.into_inner()));
        if books.iter().all(HashMap::is_empty) {
            return;
        }
        let mut pipe = redis::pipe();
        let mut expiring = std::collections::BTreeMap::new();
        for (kind, book) in ["key", "model", "group"].into_iter().zip(books) {
            for (name, periods) in book {
                for (period, (requests, tokens, cost)) in periods {
                    let [day, month, recent] = self.usage_names(period);
                    for hash in [&day, &month, &recent] {
                        pipe.hincr(hash, format!("{kind}:{name}:requests"), requests)
                            .ignore();
                        pipe.hincr(hash, format!("{kind}:{name}:tokens"), tokens)
                            .ignore();
                    }
                    for hash in [&day, &month] {
                        let field = format!("{kind}:{name}:cost");
                        pipe.cmd("HINCRBYFLOAT")
                            .arg(hash)
                            .arg(field)
                            .arg(cost)
                            .ignore();
                    }
                    expiring.insert(day, i64::try_from(DAY_TTL).unwrap_or(i64::MAX));
                    expiring.insert(month, i64::try_from(MONTH_TTL).unwrap_or(i64::MAX));
                    expiring.insert(recent, 80);
                }
            }
        }
        for (hash, ttl) in expiring {
            pipe.expire(hash, ttl).ignore();
        }
        let _ = self
            .run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await;
    }

    /// The fleet's usage: today's and this month's hashes, and the last minute's six 10-second buckets summed.
    pub(crate) async fn usage(&self) -> Result<[HashMap<String, f64>; 3], Down> {
        let wall = SystemTime::now();
        let now = wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 10);
        let (day_n, month_n) = (utc_day(wall), utc_month(wall));
        let [day, month, _] = self.usage_names((day_n, month_n, now));
        let recent: Vec<String> = (0..6)
            .map(|i| self.usage_names((day_n, month_n, now.saturating_sub(i)))[2].clone())
            .collect();
        let maps: Vec<HashMap<String, String>> = self
            .run(|mut c| async move {
                let mut pipe = redis::pipe();
                pipe.hgetall(&day).hgetall(&month);
                for r in &recent {
                    pipe.hgetall(r);
                }
                pipe.query_async(&mut c).await
            })
            .await?;
        let number = |m: &HashMap<String, String>| -> HashMap<String, f64> {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.parse().ok()?)))
                .collect()
        };
        let mut minute: HashMap<String, f64> = HashMap::new();
        for m in maps.iter().skip(2) {
            for (k, v) in number(m) {
                *minute.entry(k).or_default() += v;
            }
        }
        Ok([
            maps.first().map(number).unwrap_or_default(),
            maps.get(1).map(number).unwrap_or_default(),
            minute,
        ])
    }
}

/// Adds `add` to `name`'s counts for `period` (its name copied only the first time it is seen).
fn book(
    book: &mut super::Book,
    name: &str,
    period: Period,
    (requests, tokens, cost): (u64, u64, f64),
) {
    let periods = match book.get_mut(name) {
        Some(p) => p,
        None => book.entry(name.to_owned()).or_default(),
    };
    let c = periods.entry(period).or_default();
    c.0 += requests;
    c.1 += tokens;
    c.2 += cost;
}
