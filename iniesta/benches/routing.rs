//! Prefix routing inside the in-memory pipeline: one prefix pattern against 1,000, with keys
//! that match a pattern and keys that match none (they go to the fallback).
//!
//! Each iteration drains 20,000 messages as `benches/pipeline.rs` does (no lock, concurrency
//! 32), so the figures are pipeline throughput. Compare them as ratios taken in one run:
//! `patterns_1000_*` / `patterns_1_*`, and `*_unmatched` / `*_matched`. Every key and pattern
//! is the same length in each case, so only the number of patterns differs.
//!
//! `cargo bench -p iniesta --bench routing --no-default-features`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "support/drain.rs"]
mod support;

use support::{MESSAGES, Routes, drain_routes};

/// `patterns` prefix patterns `Domain000.*`, `Domain001.*` ..., a fallback, and events that
/// cycle through the patterns (`matched`) or share no prefix with any (`unmatched`).
fn routes(patterns: usize, matched: bool) -> Routes {
    let head = if matched { "Domain" } else { "Unrouted" };
    Routes {
        keys: (0..patterns).map(|i| format!("Domain{i:03}.*")).collect(),
        fallback: true,
        events: (0..patterns)
            .map(|i| format!("{head}{i:03}.user.updated"))
            .collect(),
    }
}

fn routing(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("prefix_routing");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.sample_size(10);
    for (name, patterns, matched) in [
        ("patterns_1_matched", 1, true),
        ("patterns_1000_matched", 1000, true),
        ("patterns_1_unmatched", 1, false),
        ("patterns_1000_unmatched", 1000, false),
    ] {
        let routes = routes(patterns, matched);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let drained = runtime.block_on(drain_routes(&routes, |builder| {
                            builder.concurrency(32).without_lock()
                        }));
                        drained.elapsed
                    })
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
