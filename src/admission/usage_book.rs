//! The usage book behind the admin usage API: per key and per model, requests and tokens in the rolling
//! minute, and today's (UTC) requests, tokens and cost. It holds the configured keys and models, and those a
//! reload adds (`know`): it grows only with the config, never with traffic.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, RwLock},
    time::SystemTime,
};

use serde::Serialize;
use tokio::time::Instant;

use crate::{
    admission::limits::{utc_day, utc_month, Log},
    config::{Config, KeyLimits},
};

#[derive(Debug, Default)]
struct Counters {
    minute: Mutex<(Log, Log)>,
    /// (UTC day, requests, tokens, cost).
    today: Mutex<(u64, u64, u64, f64)>,
    /// (UTC month as YYYYMM, requests, tokens, cost).
    month: Mutex<(u64, u64, u64, f64)>,
}

impl Counters {
    fn request(&self, now: Instant, wall: SystemTime) {
        self.minute
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .add(now, 1);
        self.with_today(wall, |t| t.1 = t.1.saturating_add(1));
        self.with_month(wall, |t| t.1 = t.1.saturating_add(1));
    }

    fn usage(&self, tokens: u64, cost: f64, now: Instant, wall: SystemTime) {
        self.minute
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .add(now, tokens);
        // Saturating: usage reported by an upstream is not trusted to stay small.
        let add = |t: &mut (u64, u64, u64, f64)| {
            t.2 = t.2.saturating_add(tokens);
            t.3 += cost;
        };
        self.with_today(wall, add);
        self.with_month(wall, add);
    }

    fn with_today(&self, wall: SystemTime, f: impl FnOnce(&mut (u64, u64, u64, f64))) {
        period(&self.today, utc_day(wall), f);
    }

    fn with_month(&self, wall: SystemTime, f: impl FnOnce(&mut (u64, u64, u64, f64))) {
        period(&self.month, u64::from(utc_month(wall)), f);
    }

    fn report(&self, now: Instant, wall: SystemTime) -> Entry {
        let (requests, tokens) = {
            let mut m = self.minute.lock().unwrap_or_else(|p| p.into_inner());
            (m.0.total(now), m.1.total(now))
        };
        let read = |t: &(u64, u64, u64, f64)| Today {
            requests: t.1,
            tokens: t.2,
            cost_usd: t.3,
        };
        let (mut today, mut this_month) = (Today::default(), Today::default());
        self.with_today(wall, |t| today = read(t));
        self.with_month(wall, |t| this_month = read(t));
        Entry {
            requests_last_minute: requests,
            tokens_last_minute: tokens,
            today,
            this_month,
            limits: None,
        }
    }
}

/// A period's counts, restarted when the period (its `0`) changes.
fn period(
    cell: &Mutex<(u64, u64, u64, f64)>,
    current: u64,
    f: impl FnOnce(&mut (u64, u64, u64, f64)),
) {
    let mut t = cell.lock().unwrap_or_else(|p| p.into_inner());
    if t.0 != current {
        *t = (current, 0, 0, 0.0);
    }
    f(&mut t);
}

/// Requests, tokens and cost over a period (today, this month; UTC).
#[derive(Debug, Default, Serialize, PartialEq)]
pub(crate) struct Today {
    pub(crate) requests: u64,
    pub(crate) tokens: u64,
    pub(crate) cost_usd: f64,
}

#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct Entry {
    pub(crate) requests_last_minute: u64,
    pub(crate) tokens_last_minute: u64,
    pub(crate) today: Today,
    pub(crate) this_month: Today,
    /// Keys only: the limits in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) limits: Option<LimitsView>,
}

#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct LimitsView {
    pub(crate) rpm: Option<u32>,
    pub(crate) tpm: Option<u64>,
    pub(crate) concurrency: Option<u32>,
    pub(crate) daily_budget_usd: Option<f64>,
    pub(crate) monthly_budget_usd: Option<f64>,
}

impl From<KeyLimits> for LimitsView {
    fn from(l: KeyLimits) -> Self {
        LimitsView {
            rpm: l.rpm,
            tpm: l.tpm,
            concurrency: l.concurrency,
            daily_budget_usd: l.daily_budget_usd,
            monthly_budget_usd: l.monthly_budget_usd,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// "replica" (this replica's calls) or "fleet" (every replica's, from Redis).
    pub(crate) scope: &'static str,
    pub(crate) keys: BTreeMap<String, Entry>,
    pub(crate) models: BTreeMap<String, Entry>,
    pub(crate) groups: BTreeMap<String, Entry>,
}

type Book = RwLock<HashMap<String, Arc<Counters>>>;

pub(crate) struct UsageBook {
    keys: Book,
    models: Book,
    /// Groups (teams, organisations): a call counts in its key's group and every group above it.
    groups: Book,
    /// With `[shared]`: every call is also booked in the fleet's usage in Redis.
    fleet: std::sync::OnceLock<Arc<crate::admission::fleet::Shared>>,
}

fn names<'a>(names: impl Iterator<Item = &'a String>) -> Book {
    RwLock::new(names.map(|n| (n.clone(), Arc::default())).collect())
}

fn get(book: &Book, name: &str) -> Option<Arc<Counters>> {
    book.read()
        .unwrap_or_else(|p| p.into_inner())
        .get(name)
        .cloned()
}

fn list(book: &Book) -> Vec<(String, Arc<Counters>)> {
    let book = book.read().unwrap_or_else(|p| p.into_inner());
    book.iter().map(|(n, c)| (n.clone(), c.clone())).collect()
}

impl UsageBook {
    pub(crate) fn new(cfg: &Config) -> UsageBook {
        UsageBook {
            keys: names(cfg.keys.iter().map(|k| &k.name)),
            models: names(cfg.models.iter().map(|m| &m.name)),
            groups: names(cfg.groups.iter().map(|g| &g.name)),
            fleet: std::sync::OnceLock::new(),
        }
    }

    /// Books every call in the fleet's usage too.
    pub(crate) fn share(&self, shared: Arc<crate::admission::fleet::Shared>) {
        let _ = self.fleet.set(shared);
    }

    /// Adds the keys, models and groups of a reloaded config; those already known keep their counts.
    pub(crate) fn know(&self, cfg: &Config) {
        for (book, names) in [
            (
                &self.keys,
                cfg.keys.iter().map(|k| &k.name).collect::<Vec<_>>(),
            ),
            (&self.models, cfg.models.iter().map(|m| &m.name).collect()),
            (&self.groups, cfg.groups.iter().map(|g| &g.name).collect()),
        ] {
            let mut book = book.write().unwrap_or_else(|p| p.into_inner());
            for name in names {
                book.entry(name.clone()).or_default();
            }
        }
    }

    /// Adds a key made at run time.
    pub(crate) fn know_key(&self, name: &str) {
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_owned())
            .or_default();
    }

    /// The counters of the key, the model and each group (a group is booked from its first call).
    fn all<'a>(
        &self,
        key: &str,
        model: &str,
        groups: impl Iterator<Item = &'a str>,
    ) -> impl Iterator<Item = Arc<Counters>> {
        let groups: Vec<Arc<Counters>> = groups
            .map(|g| {
                get(&self.groups, g).unwrap_or_else(|| {
                    let mut book = self.groups.write().unwrap_or_else(|p| p.into_inner());
                    book.entry(g.to_owned()).or_default().clone()
                })
            })
            .collect();
        get(&self.keys, key)
            .into_iter()
            .chain(get(&self.models, model))
            .chain(groups)
    }

    /// A request of `key` (in `groups`: its group and those above) for `model`.
    pub(crate) fn request<'a>(
        &self,
        key: &str,
        model: &str,
        groups: impl Iterator<Item = &'a str> + Clone,
    ) {
        let (now, wall) = (Instant::now(), SystemTime::now());
        // A token's caller (`[[auth.jwt]]`) is booked from its first call: no list names them beforehand.
        if get(&self.keys, key).is_none() {
            self.know_key(key);
        }
        self.all(key, model, groups.clone())
            .for_each(|c| c.request(now, wall));
        if let Some(fleet) = self.fleet.get() {
            fleet.add_usage(key, model, groups, (1, 0, 0.0));
        }
    }

    pub(crate) fn usage<'a>(
        &self,
        (key, model, groups): (&str, &str, impl Iterator<Item = &'a str> + Clone),
        tokens: u64,
        cost: f64,
    ) {
        let (now, wall) = (Instant::now(), SystemTime::now());
        self.all(key, model, groups.clone())
            .for_each(|c| c.usage(tokens, cost, now, wall));
        if let Some(fleet) = self.fleet.get() {
            fleet.add_usage(key, model, groups, (0, tokens, cost));
        }
    }

    /// The fleet's usage from Redis (with `[shared]`), with each key's and group's limits from `limits_of`; None without
    /// `[shared]`, or while Redis is down.
    pub(crate) async fn fleet_report(
        &self,
        limits_of: impl Fn(&str, &str) -> Option<KeyLimits>,
    ) -> Option<Report> {
        let [day, month, minute] = self.fleet.get()?.usage().await.ok()?;
        let mut report = Report {
            scope: "fleet",
            keys: BTreeMap::new(),
            models: BTreeMap::new(),
            groups: BTreeMap::new(),
        };
        let known = |book: &Book| list(book).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        let kinds = [
            ("key", known(&self.keys)),
            ("model", known(&self.models)),
            ("group", known(&self.groups)),
        ];
        for (kind, names) in kinds {
            for name in names {
                let get = |m: &HashMap<String, f64>, what: &str| {
                    m.get(&format!("{kind}:{name}:{what}"))
                        .copied()
                        .unwrap_or(0.0)
                };
                let period = |m: &HashMap<String, f64>| Today {
                    requests: whole(get(m, "requests")),
                    tokens: whole(get(m, "tokens")),
                    cost_usd: get(m, "cost"),
                };
                let entry = Entry {
                    requests_last_minute: whole(get(&minute, "requests")),
                    tokens_last_minute: whole(get(&minute, "tokens")),
                    today: period(&day),
                    this_month: period(&month),
                    limits: limits_of(kind, &name).map(LimitsView::from),
                };
                let into = match kind {
                    "key" => &mut report.keys,
                    "model" => &mut report.models,
                    _ => &mut report.groups,
                };
                into.insert(name, entry);
            }
        }
        Some(report)
    }

    /// Everything, with each key's and group's limits from `limits_of` (given "key" or "group", and the name).
    pub(crate) fn report(&self, limits_of: impl Fn(&str, &str) -> Option<KeyLimits>) -> Report {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let entries = |book: &Book, kind: &str| {
            list(book)
                .into_iter()
                .map(|(name, c)| {
                    let mut e = c.report(now, wall);
                    e.limits = limits_of(kind, &name).map(LimitsView::from);
                    (name, e)
                })
                .collect()
        };
        Report {
            scope: "replica",
            keys: entries(&self.keys, "key"),
            models: entries(&self.models, "model"),
            groups: entries(&self.groups, "group"),
        }
    }
}

/// A count of the fleet's usage hash (read as floats, the cost among them) as a whole number: negative and NaN are 0.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a float to an integer: `as` saturates, NaN is 0"
)]
fn whole(n: f64) -> u64 {
    n as u64
}
