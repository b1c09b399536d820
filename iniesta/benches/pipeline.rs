//! Throughput of the in-memory pipeline: SQS simulator, no-op handler, no lock.
//!
//! Each iteration fills a `MemoryQueue`, then times a consumer draining it: receive in
//! batches of ten, decode (MD5 check included), route, run the handler, delete. Sending is
//! outside the timing. Target on a 2-core machine: at least 500,000 messages/s.
//!
//! The cases after the first three measure operations on; compare each with its twin above,
//! in the same run:
//! - `logged_*` logs as `iniesta::run()`'s default subscriber does (text at `INFO`, the
//!   delivery spans filtered out of log lines), to a sink;
//! - `metered_*` serves `/metrics` (`metrics_addr`: iniesta's Prometheus recorder records
//!   every delivery), with no subscriber;
//! - `observed_*` does both;
//! - `traced_*` serves `/metrics` and exports every delivery span through OpenTelemetry
//!   (`INFO` filter, batch processor, an exporter that drops what it gets).
//!
//! `cargo bench -p iniesta --bench pipeline`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing::dispatcher::{self, DefaultGuard, Dispatch};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;

#[path = "support/drain.rs"]
mod support;

use support::{MESSAGES, drain};

fn run(runtime: &tokio::runtime::Runtime, lock: bool, concurrency: usize) -> Duration {
    drain_with(runtime, lock, concurrency, false)
}

fn drain_with(
    runtime: &tokio::runtime::Runtime,
    lock: bool,
    concurrency: usize,
    metrics: bool,
) -> Duration {
    let (elapsed, _) = runtime.block_on(drain(|builder| {
        let mut builder = builder.concurrency(concurrency);
        if metrics {
            builder = builder.metrics_addr(([127, 0, 0, 1], 0).into());
        }
        if lock {
            builder
        } else {
            builder.without_lock()
        }
    }));
    elapsed
}

/// Spans the traced cases exported, to check they traced at all.
static EXPORTED: AtomicUsize = AtomicUsize::new(0);

/// An exporter that counts and drops every batch: the cost measured is the spans', not a
/// collector's.
#[derive(Debug)]
struct DropSpans;

impl SpanExporter for DropSpans {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        EXPORTED.fetch_add(batch.len(), Ordering::Relaxed);
        Ok(())
    }
}

thread_local! {
    /// Keeps a worker thread's default subscriber set for the thread's life.
    static TRACED: RefCell<Option<DefaultGuard>> = const { RefCell::new(None) };
}

/// A registry with the OpenTelemetry layer, filtered at `INFO`, as a service would run it.
fn traced_dispatch() -> (Dispatch, SdkTracerProvider) {
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(DropSpans)
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"));
    let subscriber = tracing_subscriber::registry()
        .with(layer)
        .with(LevelFilter::INFO);
    (Dispatch::new(subscriber), provider)
}

/// Text logs at `INFO` to a sink, as `iniesta::run()`'s default subscriber writes them: its
/// filter keeps the delivery spans (target `iniesta::trace`) out of log lines.
fn logged_dispatch() -> Dispatch {
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::sink)
            .with_filter(EnvFilter::new("info,iniesta::trace=off")),
    );
    Dispatch::new(subscriber)
}

/// Two workers, as the untraced runtime; with `dispatch`, every worker thread (and the caller
/// of `block_on`, set where it is called) has it as its default subscriber.
fn build_runtime(dispatch: Option<Dispatch>) -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    if let Some(dispatch) = dispatch {
        builder.on_thread_start(move || {
            let guard = dispatcher::set_default(&dispatch);
            TRACED.with(|slot| *slot.borrow_mut() = Some(guard));
        });
    }
    builder.build().expect("runtime")
}

fn pipeline(c: &mut Criterion) {
    let runtime = build_runtime(None);
    let (dispatch, provider) = traced_dispatch();
    let traced = build_runtime(Some(dispatch.clone()));
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
    // tracing caches a callsite's interest when it is first hit, asking only the thread's
    // default subscriber while a single one exists: the cases above left iniesta's spans
    // cached as never wanted. Each case asks again, with its subscriber as the default.
    //
    // `logged_*` comes first: the first app with a metrics listener installs iniesta's
    // Prometheus recorder as the process's, and every later app records into it.
    let none = Dispatch::none();
    let logged = logged_dispatch();
    let logged_runtime = build_runtime(Some(logged.clone()));
    for (name, subscriber, runtime, lock, metrics) in [
        (
            "logged_no_lock_concurrency_32",
            &logged,
            &logged_runtime,
            false,
            false,
        ),
        (
            "metered_no_lock_concurrency_32",
            &none,
            &runtime,
            false,
            true,
        ),
        (
            "observed_no_lock_concurrency_32",
            &logged,
            &logged_runtime,
            false,
            true,
        ),
        (
            "traced_no_lock_concurrency_32",
            &dispatch,
            &traced,
            false,
            true,
        ),
        (
            "traced_memory_lock_concurrency_32",
            &dispatch,
            &traced,
            true,
            true,
        ),
    ] {
        dispatcher::with_default(subscriber, tracing::callsite::rebuild_interest_cache);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                dispatcher::with_default(subscriber, || {
                    (0..iters)
                        .map(|_| drain_with(runtime, lock, 32, metrics))
                        .sum()
                })
            })
        });
    }
    group.finish();
    let _ = provider.force_flush();
    assert!(
        EXPORTED.load(Ordering::Relaxed) > 0,
        "the traced cases exported no span"
    );
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
