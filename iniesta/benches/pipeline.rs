//! Throughput of the in-memory pipeline: SQS simulator, no-op handler, no lock.
//!
//! Each iteration fills a `MemoryQueue`, then times a consumer draining it: receive in
//! batches of ten, decode (MD5 check included), route, run the handler, delete. Sending is
//! outside the timing. Target on a 2-core machine: at least 500,000 messages/s.
//!
//! `cargo bench -p iniesta --bench pipeline`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use iniesta::transport::MemoryQueue;
use iniesta::{App, Message, OutgoingMessage};
use tokio::sync::Notify;

const MESSAGES: usize = 20_000;

fn drain(runtime: &tokio::runtime::Runtime, lock: bool, concurrency: usize) -> Duration {
    runtime.block_on(async {
        let queue = MemoryQueue::builder()
            .wait_time(Duration::from_millis(50))
            .build();
        for i in 0..MESSAGES {
            let key = if i % 2 == 0 {
                "UserUpdated.user"
            } else {
                "Order.created"
            };
            queue.send(OutgoingMessage::new(key).body(r#"{"id":1}"#));
        }
        let handled = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(Notify::new());
        let handler = {
            let handled = Arc::clone(&handled);
            let done = Arc::clone(&done);
            move |_: Message| {
                if handled.fetch_add(1, Ordering::Relaxed) + 1 == MESSAGES {
                    done.notify_one();
                }
                std::future::ready(())
            }
        };
        let builder = App::builder()
            .registered_handlers(false)
            .transport(queue.clone())
            .concurrency(concurrency)
            .handler("UserUpdated.user", handler.clone())
            .handler("Order.*", handler);
        let builder = if lock {
            builder
        } else {
            builder.without_lock()
        };
        let app = builder.build().expect("valid app");
        let start = Instant::now();
        let running = app.spawn();
        done.notified().await;
        let elapsed = start.elapsed();
        running.shutdown().await.expect("clean shutdown");
        assert!(queue.is_empty());
        elapsed
    })
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
            b.iter_custom(|iters| (0..iters).map(|_| drain(&runtime, lock, concurrency)).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
