//! What operations cost: the in-memory pipeline (no lock, concurrency 32, no-op handler)
//! with logs, metrics and traces on, as a ratio to the same pipeline with them off.
//!
//! Each case runs in a process of its own, set up as a service would be: its subscriber is
//! the process's global one and, with metrics, each drain's app serves iniesta's Prometheus
//! recorder (the first app of the process installs it as the global recorder; later ones,
//! the timed drains among them, keep one of their own, as a second app in a service would). (In one process, several live subscribers make tracing ask each of them about
//! every span, which no service pays.) The cases run in turn, round after round, and each
//! ratio is the median of one round's ratios: this machine's speed drifts by more than the
//! differences measured, and a round is short enough to see one speed.
//!
//! Cases:
//! - `off`: no subscriber, no metrics listener;
//! - `logged`: text logs at `INFO` to a sink, filtered as `iniesta::run()`'s default
//!   subscriber is (delivery spans kept out of log lines);
//! - `metered`: `/metrics` served (`metrics_addr`), iniesta's recorder records every delivery;
//! - `observed`: `logged` and `metered`, what `iniesta::run()` sets up with
//!   `INIESTA_METRICS_ADDR`;
//! - `traced`: `metered` and every delivery span exported through OpenTelemetry (batch
//!   processor, an exporter that drops what it gets);
//! - `traced_1pct`: `traced` with a parent-based 1% trace-id ratio sampler.
//!
//! `cargo bench -p iniesta --bench ops_overhead [-- ROUNDS]` (default 7 rounds).

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[path = "support/drain.rs"]
mod support;

use support::{MESSAGES, drain};

/// The cases, in the order each round runs them; `off` first, the reference of every ratio.
const CASES: &[&str] = &[
    "off",
    "logged",
    "metered",
    "observed",
    "traced",
    "traced_1pct",
];
/// Drains per case and round: two to warm up, the median of the rest is the round's figure.
const WARM_UP: usize = 2;
const TIMED: usize = 5;
const DEFAULT_ROUNDS: usize = 7;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|a| a == "--case") {
        let case = args.get(at + 1).expect("--case NAME");
        let (wall, cpu) = run_case(case);
        println!("{} {}", wall.as_nanos(), cpu.as_nanos());
        return;
    }
    // `cargo bench` passes `--bench`: the first argument that is a number is the rounds.
    let rounds = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    compare(rounds);
}

/// One case's figures over the rounds, in milliseconds per drain.
#[derive(Debug, Default, Clone)]
struct Series {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

/// Runs every case `rounds` times in turn, each in a child process, and prints the table.
fn compare(rounds: usize) {
    let exe = std::env::current_exe().expect("own path");
    let mut series = vec![Series::default(); CASES.len()];
    for round in 1..=rounds {
        for (case, series) in CASES.iter().zip(&mut series) {
            let output = Command::new(&exe)
                .args(["--case", case])
                .output()
                .expect("run a case");
            assert!(output.status.success(), "case {case} failed: {output:?}");
            let stdout = String::from_utf8_lossy(&output.stdout);
            let mut figures = stdout
                .split_whitespace()
                .map(|f| f.parse::<f64>().expect("a case prints two medians in ns") / 1e6);
            series.wall.extend(figures.next());
            series.cpu.extend(figures.next());
        }
        eprintln!("round {round}/{rounds} done");
    }
    println!(
        "ops overhead: in-memory pipeline, no lock, concurrency 32, {MESSAGES} messages per \
         drain, {rounds} rounds, {} cores",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "{:<12} {:>9} {:>9} {:>19} {:>9} {:>19}",
        "case", "wall ms", "msg/s", "wall ratio (range)", "cpu ms", "cpu ratio (range)"
    );
    let off = series[0].clone();
    for (case, series) in CASES.iter().zip(&series) {
        let wall = median(series.wall.clone());
        let cpu = median(series.cpu.clone());
        println!(
            "{case:<12} {wall:>9.1} {:>9.0} {:>19} {cpu:>9.1} {:>19}",
            MESSAGES as f64 / (wall / 1e3),
            ratios(&off.wall, &series.wall),
            ratios(&off.cpu, &series.cpu),
        );
    }
    println!(
        "ratio: off's figure over the case's in the same round, median of the rounds (1.00 = \
         free); cpu: time on a CPU of every thread, which leaves out what the hypervisor stole"
    );
}

/// The median and range of the per-round ratios `off / case`.
fn ratios(off: &[f64], case: &[f64]) -> String {
    let ratios: Vec<f64> = off.iter().zip(case).map(|(off, t)| off / t).collect();
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let high = ratios.iter().copied().fold(0.0, f64::max);
    format!("{:.2} ({low:.2}-{high:.2})", median(ratios))
}

/// Sets up `case` for this process and returns the medians of its timed drains: wall-clock
/// and CPU time.
fn run_case(case: &str) -> (Duration, Duration) {
    let (metrics, provider) = match case {
        "off" => (false, None),
        "logged" => {
            logged().init();
            (false, None)
        }
        "metered" => (true, None),
        "observed" => {
            logged().init();
            (true, None)
        }
        "traced" => (true, Some(traced(Sampler::AlwaysOn))),
        "traced_1pct" => (
            true,
            Some(traced(Sampler::ParentBased(Box::new(
                Sampler::TraceIdRatioBased(0.01),
            )))),
        ),
        other => panic!("unknown case {other}; cases: {CASES:?}"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (mut walls, mut cpus): (Vec<Duration>, Vec<Duration>) = (0..WARM_UP + TIMED)
        .map(|_| {
            let drained = runtime.block_on(drain(|builder| {
                let builder = builder.concurrency(32).without_lock();
                if metrics {
                    builder.metrics_addr(([127, 0, 0, 1], 0).into())
                } else {
                    builder
                }
            }));
            (drained.elapsed, drained.cpu)
        })
        .skip(WARM_UP)
        .unzip();
    if let Some(provider) = provider {
        let _ = provider.force_flush();
        if case == "traced" {
            assert!(EXPORTED.load(Ordering::Relaxed) > 0, "nothing was exported");
        }
    }
    walls.sort();
    cpus.sort();
    (walls[TIMED / 2], cpus[TIMED / 2])
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Text logs at `INFO` to a sink, as `iniesta::run()`'s default subscriber writes them: its
/// filter keeps the delivery spans (target `iniesta::trace`) out of log lines.
fn logged() -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::sink)
            .with_filter(EnvFilter::new("info,iniesta::trace=off")),
    )
}

/// Spans the traced case exported, to check it traced at all.
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

/// The OpenTelemetry layer at `INFO` with `sampler`, as the process's subscriber.
fn traced(sampler: Sampler) -> SdkTracerProvider {
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_batch_exporter(DropSpans)
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"));
    tracing_subscriber::registry()
        .with(layer)
        .with(LevelFilter::INFO)
        .init();
    provider
}
