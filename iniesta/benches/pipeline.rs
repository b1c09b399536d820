//! Throughput of the in-memory pipeline: SQS simulator, no-op handler, no lock.
//!
//! Each iteration fills a `MemoryQueue`, then times a consumer draining it: receive in
//! batches of ten, decode (MD5 check included), route, run the handler, delete. Sending is
//! outside the timing. Target on a 2-core machine: at least 500,000 messages/s.
//!
//! What logs, metrics and traces cost on top: the `ops_overhead` bench.
//!
//! `cargo bench -p iniesta --bench pipeline`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "support/drain.rs"]
mod support;

use support::{MESSAGES, drain};

fn run(runtime: &tokio::runtime::Runtime, lock: bool, concurrency: usize) -> Duration {
    let drained = runtime.block_on(drain(|builder| {
        let builder = builder.concurrency(concurrency);
        if lock {
            builder
        } else {
            builder.without_lock()
        }
    }));
    drained.elapsed
}

fn pipeline(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("memory_pipeline");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.sample_size(10);
    for (name, lock, concurrency) in [
        ("no_lock_concurrency_32", false, 32),
        ("no_lock_concurrency_256", false, 256),
        ("memory_lock_concurrency_32", true, 32),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run(&runtime, lock, concurrency)).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
