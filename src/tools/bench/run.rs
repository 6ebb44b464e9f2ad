//! One `aigw bench` run: the load (a rate or a concurrency) paced over its duration against one target, each
//! call's outcome recorded, a report at the end.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{sync::Semaphore, time::Instant};

use super::{Recorder, Report, Setup, Target, Workload};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// This many calls in flight at all times.
    Closed { concurrency: usize },
    /// This many calls started per second, on a fixed schedule.
    Open { rate: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    Rest,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub protocol: Protocol,
    /// gRPC: `http://host:port` of the gateway. REST: the OpenAI base URL, e.g. `http://127.0.0.1:8081/v1`.
    pub target: String,
    pub key: Option<String>,
    /// REST: headers sent with every call, each `name: value`.
    pub headers: Vec<String>,
    pub work: Workload,
    pub load: Load,
    /// gRPC: HTTP/2 connections to spread calls over.
    pub connections: usize,
    /// Calls started in this first stretch run but are not counted.
    pub warmup: Duration,
    /// How long calls are started for, after the warm-up.
    pub duration: Duration,
    /// Stop after starting this many calls (warm-up included), if sooner.
    pub max_calls: Option<u64>,
    /// Open loop: at most this many calls in flight; the schedule waits (and its lag is counted) beyond it.
    pub max_in_flight: usize,
    /// A progress line on standard error once a second (calls, rate, errors, p99 so far).
    pub progress: bool,
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "grpc" => Ok(Self::Grpc),
            "rest" => Ok(Self::Rest),
            _ => Err("one of: grpc, rest".into()),
        }
    }
}

/// Runs the benchmark and returns its report.
pub async fn run(opts: &Options) -> Result<Report, String> {
    if opts.duration.is_zero() {
        return Err("--duration must be above 0".into());
    }
    let target = Arc::new(match opts.protocol {
        Protocol::Grpc if !opts.headers.is_empty() => {
            return Err("--header is for REST targets (gRPC calls carry --key)".into())
        }
        Protocol::Grpc => {
            Target::grpc(
                &opts.target,
                opts.connections,
                opts.key.as_deref(),
                &opts.work,
            )
            .await?
        }
        Protocol::Rest => {
            Target::rest(&opts.target, opts.key.as_deref(), &opts.headers, &opts.work)?
        }
    });
    let begin = Instant::now();
    let rec = Arc::new(Recorder::new(begin + opts.warmup));
    let stop = rec.measure_from() + opts.duration;
    let budget = Arc::new(AtomicU64::new(opts.max_calls.unwrap_or(u64::MAX)));
    let work = Arc::new(opts.work.clone());
    let ticker = crate::observe::tasks::spawn(
        "bench progress",
        tick_every_second(rec.clone(), opts.progress),
    );
    match opts.load {
        Load::Closed { concurrency } => {
            let mut workers = tokio::task::JoinSet::new();
            for _ in 0..concurrency.max(1) {
                let (target, work, rec, budget) =
                    (target.clone(), work.clone(), rec.clone(), budget.clone());
                workers.spawn(async move {
                    while Instant::now() < stop && take(&budget) {
                        target.call(&work, Instant::now(), stop, &rec).await;
                    }
                });
            }
            while workers.join_next().await.is_some() {}
        }
        Load::Open { rate } => {
            if !(rate.is_finite() && rate > 0.0) {
                return Err("--rate must be above 0".into());
            }
            let slots = Arc::new(Semaphore::new(opts.max_in_flight.max(1)));
            let pacer = Pacer {
                begin,
                stop,
                rate,
                slots: slots.clone(),
                budget,
                rec: rec.clone(),
                target,
                work,
            };
            let handle = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || pacer.run(handle))
                .await
                .map_err(|e| format!("pacer: {e}"))?;
            // Every call holds a slot until it ends: all slots back means all calls ended.
            let _all = slots
                .acquire_many(u32::try_from(opts.max_in_flight.max(1)).unwrap_or(u32::MAX))
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    ticker.abort();
    // The last, partial second.
    let end = Instant::now()
        .saturating_duration_since(rec.measure_from())
        .as_secs_f64();
    let last = rec.tick(end.max(0.001));
    if opts.progress {
        eprintln!("\r{last}");
    }
    let (concurrency, rate_per_s, load) = match opts.load {
        Load::Closed { concurrency } => (Some(concurrency), None, "closed"),
        Load::Open { rate } => (None, Some(rate), "open"),
    };
    let setup = Setup {
        target: opts.target.clone(),
        protocol: match opts.protocol {
            Protocol::Grpc => "grpc",
            Protocol::Rest => "rest",
        },
        rpc: opts.work.rpc.name(),
        load,
        concurrency,
        rate_per_s,
        connections: match opts.protocol {
            Protocol::Grpc => opts.connections.max(1),
            Protocol::Rest => 0, // a pool: as many as the load needs
        },
        warmup_s: opts.warmup.as_secs_f64(),
    };
    Ok(rec.report(setup, opts.duration))
}

/// Folds each second after the warm-up into the timeline, printing the progress line if asked.
pub(super) async fn tick_every_second(rec: Arc<Recorder>, progress: bool) {
    use std::io::Write;
    for n in 1u32.. {
        tokio::time::sleep_until(rec.measure_from() + Duration::from_secs(u64::from(n))).await;
        let now = rec.tick(f64::from(n));
        if progress {
            // One line rewritten in place; a closed stderr is no reason to stop the run.
            let _ = write!(std::io::stderr().lock(), "\r{now}");
        }
    }
}

/// Takes one call from the budget; false when it is spent.
pub(super) fn take(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// The open loop's schedule, kept on its own thread: a blocking sleep wakes within tens of microseconds,
/// where the runtime's timer rounds up to whole milliseconds and would smear every call's start.
pub(super) struct Pacer {
    begin: Instant,
    stop: Instant,
    rate: f64,
    slots: Arc<Semaphore>,
    budget: Arc<AtomicU64>,
    rec: Arc<Recorder>,
    target: Arc<Target>,
    work: Arc<Workload>,
}

impl Pacer {
    fn run(self, handle: tokio::runtime::Handle) {
        for i in 0u64.. {
            let slot = self.begin + Duration::from_secs_f64(i as f64 / self.rate);
            if slot >= self.stop || !take(&self.budget) {
                return;
            }
            let now = Instant::now();
            if slot > now {
                std::thread::sleep(slot - now);
            }
            let permit = match self.slots.clone().try_acquire_owned() {
                Ok(p) => p,
                // Full: wait for a call to end; the wait shows as lag and in the latency.
                Err(_) => match handle.block_on(self.slots.clone().acquire_owned()) {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            self.rec.lag(slot, Instant::now());
            let (target, work, rec, stop) = (
                self.target.clone(),
                self.work.clone(),
                self.rec.clone(),
                self.stop,
            );
            handle.spawn(async move {
                target.call(&work, slot, stop, &rec).await;
                drop(permit);
            });
        }
    }
}
