//! Operations: the metrics and health listener (`INIESTA_METRICS_ADDR`) and the startup log.
//!
//! One HTTP/1.1 listener serves `GET /metrics` (Prometheus text), `GET /health/live` and
//! `GET /health/ready` (200 `ok`, or 503 with a short reason). It starts with the app and
//! stops when the consumer has stopped. Without it, the metrics that are read rather than
//! counted are sampled on a timer instead, for the program's own recorder.

mod health;
mod http;
mod startup;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::export::Sample;
use crate::pipeline::Pipeline;

pub(crate) use health::stall_after;

/// How often the sampled metrics are set when no listener scrapes them.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// A bound, not yet serving listener, made by `AppBuilder::build`.
#[derive(Debug)]
pub(crate) struct Listener {
    socket: std::net::TcpListener,
    addr: SocketAddr,
    prometheus: PrometheusHandle,
    stall_after: Duration,
}

impl Listener {
    /// Binds `addr` now, so a taken port fails `build()` rather than the running app.
    pub(crate) fn bind(
        addr: SocketAddr,
        prometheus: PrometheusHandle,
        stall_after: Duration,
    ) -> std::io::Result<Self> {
        let socket = std::net::TcpListener::bind(addr).map_err(|error| {
            std::io::Error::new(
                error.kind(),
                format!("binding the metrics listener (INIESTA_METRICS_ADDR) to {addr}: {error}"),
            )
        })?;
        socket.set_nonblocking(true)?;
        let addr = socket.local_addr()?;
        Ok(Listener {
            socket,
            addr,
            prometheus,
            stall_after,
        })
    }

    /// The bound address (the port chosen when 0 was asked).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts serving for `pipeline`; must run inside the tokio runtime.
    pub(crate) fn start(self, pipeline: Arc<Pipeline>) -> Serving {
        let stop = CancellationToken::new();
        tracing::info!(
            addr = %self.addr,
            stall_after = ?self.stall_after,
            "metrics and health listening: /metrics, /health/live, /health/ready"
        );
        let state = Arc::new(http::State {
            pipeline,
            prometheus: self.prometheus,
            stall_after: self.stall_after,
        });
        let task = tokio::spawn(http::serve(self.socket, state, stop.clone()));
        Serving {
            stop,
            task: Some(task),
        }
    }
}

/// Sets the metrics that are read, not counted (in flight, time since the last receive,
/// paused, transport requests): at each scrape, or every [`SAMPLE_EVERY`] without a listener.
fn sample(pipeline: &Pipeline) {
    let snapshot = pipeline.snapshot();
    let requests = pipeline.transport.request_counts();
    pipeline.metrics.handles().sample(&Sample {
        in_flight: snapshot.in_flight,
        since_last_receive: snapshot.since_last_receive,
        paused: snapshot.paused.is_some(),
        requests: &requests,
    });
}

/// Without a listener, samples [`sample`]'s metrics every 10 s (and once more at the end) so
/// a program's own recorder gets them too; a scrape samples them otherwise.
pub(crate) fn sample_periodically(pipeline: Arc<Pipeline>) -> Serving {
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        let first = tokio::time::Instant::now() + SAMPLE_EVERY;
        let mut every = tokio::time::interval_at(first, SAMPLE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stopped.cancelled() => break,
                _ = every.tick() => sample(&pipeline),
            }
        }
        sample(&pipeline);
    });
    Serving {
        stop,
        task: Some(task),
    }
}

/// A listener serving, or the sampler without one; stopped with the app, and when dropped: a
/// consumer task that panics must not leave a listener behind that still answers "alive".
#[derive(Debug)]
pub(crate) struct Serving {
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Serving {
    /// Stops accepting, closes open connections and waits for the listener (or the sampler)
    /// to end.
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
