//! The app: a configured consumer, run until a signal or spawned in the background.

mod builder;
mod from_env;
mod logging;
#[cfg(all(feature = "cli", feature = "postgres"))]
pub(crate) use logging::install_default;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use builder::{AppBuilder, HandlerInfo};
pub use from_env::run;

use crate::metrics::MetricsSnapshot;
use crate::pipeline::Pipeline;
use crate::{Error, Result};

/// A consumer ready to run: handlers routed, transport and lock in place.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use iniesta::{App, Message, OutgoingMessage, transport::MemoryQueue};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), iniesta::Error> {
/// let queue = MemoryQueue::default();
/// queue.send(OutgoingMessage::new("Ping.demo"));
/// let app = App::builder()
///     .registered_handlers(false)
///     .transport(queue.clone())
///     .handler("Ping.demo", |_: Message| async {})
///     .build()?;
/// let running = app.spawn();
/// while running.metrics().handled < 1 {
///     tokio::time::sleep(Duration::from_millis(5)).await;
/// }
/// running.shutdown().await?;
/// assert!(queue.is_empty());
/// # Ok(()) }
/// ```
pub struct App {
    pipeline: Arc<Pipeline>,
    /// The metrics and health listener, bound, when `INIESTA_METRICS_ADDR` is set.
    listener: Option<crate::ops::Listener>,
}

impl App {
    /// Starts configuring an app.
    pub fn builder() -> AppBuilder {
        AppBuilder::default()
    }

    /// Consumes until SIGINT or SIGTERM, then shuts down gracefully: the in-flight long poll
    /// is abandoned at once, handlers get the grace period, pending deletes are flushed, and
    /// handlers still running after it return their messages to the queue.
    ///
    /// # Errors
    ///
    /// A permanent transport error (the queue was deleted, access denied), or failing to
    /// install the signal handlers.
    pub async fn run(self) -> Result<()> {
        let signals = shutdown_signal()?;
        self.run_until(signals).await
    }

    /// Consumes until `signal` completes, then shuts down as [`run`](Self::run) does.
    ///
    /// # Errors
    ///
    /// A permanent transport error.
    pub async fn run_until(self, signal: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let stopping = self.pipeline.stopping.clone();
        let trigger = tokio::spawn(async move {
            signal.await;
            tracing::info!("shutdown requested");
            stopping.cancel();
        });
        let result = serve_and_run(self.listener, Arc::clone(&self.pipeline)).await;
        trigger.abort();
        result
    }

    /// Runs the consumer in a background task.
    pub fn spawn(self) -> RunningApp {
        let stopping = self.pipeline.stopping.clone();
        let metrics_addr = self.metrics_addr();
        let task = tokio::spawn(serve_and_run(self.listener, Arc::clone(&self.pipeline)));
        RunningApp {
            stopping,
            pipeline: self.pipeline,
            task,
            metrics_addr,
        }
    }

    /// The consumer's counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.pipeline.snapshot()
    }

    /// The address the metrics and health listener is bound to, when
    /// [`AppBuilder::metrics_addr`] (`INIESTA_METRICS_ADDR`) is set: with port 0, the port
    /// picked.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().map(crate::ops::Listener::addr)
    }
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("queue", &self.pipeline.capabilities.name)
            .field("routes", &self.pipeline.router.describe())
            .field("metrics_addr", &self.metrics_addr())
            .finish_non_exhaustive()
    }
}

/// A consumer running in the background, from [`App::spawn`].
pub struct RunningApp {
    stopping: CancellationToken,
    pipeline: Arc<Pipeline>,
    task: JoinHandle<Result<()>>,
    metrics_addr: Option<SocketAddr>,
}

impl fmt::Debug for RunningApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningApp")
            .field("queue", &self.pipeline.capabilities.name)
            .field("finished", &self.task.is_finished())
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

impl RunningApp {
    /// The consumer's counters now.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.pipeline.snapshot()
    }

    /// The address of the metrics and health listener, when one was configured (see
    /// [`App::metrics_addr`]).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Whether the consumer has stopped (after shutdown, or a permanent error).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// A token that shuts the consumer down when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.stopping.clone()
    }

    /// Shuts down gracefully and waits until the consumer stopped.
    ///
    /// # Errors
    ///
    /// The consumer's error, if it stopped on one.
    pub async fn shutdown(self) -> Result<()> {
        self.stopping.cancel();
        self.wait().await
    }

    /// Waits until the consumer stops on its own (a permanent error) or is shut down.
    ///
    /// # Errors
    ///
    /// The consumer's error.
    pub async fn wait(self) -> Result<()> {
        match self.task.await {
            Ok(result) => result,
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Err(join) => Err(Error::Io(std::io::Error::other(join))),
        }
    }
}

/// Runs the consumer with its metrics and health listener, which stops once the consumer has
/// (readiness says `shutting down` meanwhile); every way of running an app ends here.
async fn serve_and_run(
    listener: Option<crate::ops::Listener>,
    pipeline: Arc<Pipeline>,
) -> Result<()> {
    let serving = match listener {
        Some(listener) => listener.start(Arc::clone(&pipeline)),
        None => crate::ops::sample_periodically(Arc::clone(&pipeline)),
    };
    #[cfg(feature = "postgres")]
    let database_tasks = crate::postgres::Background::start(&pipeline);
    let result = pipeline.run().await;
    #[cfg(feature = "postgres")]
    database_tasks.stop().await;
    serving.stop().await;
    // The last spans leave before the process does, however the app was run.
    crate::trace::flush().await;
    result
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub(crate) fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    })
}
