//! What the admin side reads from the metrics, at 100, 1,000 and 10,000 keys that have made calls: a snapshot of
//! the dashboard's history (taken every two seconds on a runtime worker, so its time is a stall for the calls
//! queued there) and a `/metrics` scrape's text (encoded off the workers). Run: `cargo bench --bench charts`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures stop the test

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

fn charts(c: &mut Criterion) {
    let mut group = c.benchmark_group("charts");
    group.sample_size(10);
    for keys in [100, 1_000, 10_000] {
        let (mut snapshot, mut scrape) = aigw::observe::charts::bench_registry(keys);
        group.bench_function(format!("history snapshot, {keys} keys"), |b| {
            b.iter(&mut snapshot)
        });
        group.bench_function(format!("metrics scrape, {keys} keys"), |b| {
            b.iter(|| black_box(scrape()))
        });
    }
    group.finish();
}

criterion_group!(benches, charts);
criterion_main!(benches);
