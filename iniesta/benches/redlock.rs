//! Throughput of the pipeline with the Redis Redlock: SQS simulator, no-op handler, the real
//! lock on Redis servers on loopback that the bench starts (`redis-server` must be installed).
//!
//! Per message: the batch's acquire (one pipeline of `SET NX PX` + `EXISTS` per ten messages
//! per server), the processed marker (`SET PX`) and the release (compare-and-delete script).
//! Each iteration fills a fresh queue and times a consumer draining it; sending, connecting and
//! flushing Redis are outside the timing. Target on a 2-core machine, one server: at least
//! 50,000 messages/s.
//!
//! `cargo bench -p iniesta --bench redlock`

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use iniesta::lock::redlock::Redlock;
use iniesta::lock::redlock::RedlockConfig;

#[path = "support/drain.rs"]
mod support;

use support::MESSAGES;

/// A `redis-server` child on a free loopback port, killed on drop.
struct Server {
    port: u16,
    child: Child,
}

impl Server {
    fn start() -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server not found ({e}): apt-get install redis-server")
            });
        let server = Server { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.cli(&["PING"]) != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn drain(
    runtime: &tokio::runtime::Runtime,
    servers: &[Server],
    concurrency: usize,
    fencing: bool,
    marker: bool,
) -> Duration {
    for server in servers {
        server.cli(&["FLUSHALL"]);
    }
    runtime.block_on(async {
        let config = RedlockConfig::default()
            .with_urls(servers.iter().map(Server::url))
            .with_fencing(fencing);
        let lock = Redlock::connect(&config).await.expect("redlock");
        let drained = support::drain(|builder| {
            builder
                .lock(lock)
                .processed_marker(marker)
                .concurrency(concurrency)
        })
        .await;
        // Every message went through the lock: none skipped or left.
        let metrics = drained.metrics;
        assert_eq!(metrics.busy + metrics.lock_unavailable, 0, "{metrics:?}");
        drained.elapsed
    })
}

fn redlock(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let one = vec![Server::start()];
    let three: Vec<Server> = (0..3).map(|_| Server::start()).collect();
    let mut group = c.benchmark_group("redlock_pipeline");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.sample_size(10);
    // (name, servers, concurrency, fencing, processed marker)
    for (name, servers, concurrency, fencing, marker) in [
        ("one_server_concurrency_32", &one, 32, false, true),
        ("one_server_concurrency_256", &one, 256, false, true),
        ("one_server_fenced_concurrency_32", &one, 32, true, true),
        (
            "one_server_no_marker_concurrency_32",
            &one,
            32,
            false,
            false,
        ),
        ("three_servers_concurrency_32", &three, 32, false, true),
        ("three_servers_concurrency_256", &three, 256, false, true),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| drain(&runtime, servers, concurrency, fencing, marker))
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, redlock);
criterion_main!(benches);
