//! The app: a configured consumer, run until a signal or spawned in the background.

mod builder;
mod from_env;
mod logging;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use builder::AppBuilder;
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
        let result = Arc::clone(&self.pipeline).run().await;
        trigger.abort();
        // The last spans leave before the process does.
        crate::trace::flush().await;
        result
    }

    /// Runs the consumer in a background task.
    pub fn spawn(self) -> RunningApp {
        let stopping = self.pipeline.stopping.clone();
        let task = tokio::spawn(Arc::clone(&self.pipeline).run());
        RunningApp {
            stopping,
            pipeline: self.pipeline,
            task,
        }
    }

    /// The consumer's counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.pipeline.snapshot()
    }
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("queue", &self.pipeline.capabilities.name)
            .field("routes", &self.pipeline.router.describe())
            .finish_non_exhaustive()
    }
}

/// A consumer running in the background, from [`App::spawn`].
pub struct RunningApp {
    stopping: CancellationToken,
    pipeline: Arc<Pipeline>,
    task: JoinHandle<Result<()>>,
}

impl fmt::Debug for RunningApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningApp")
            .field("queue", &self.pipeline.capabilities.name)
            .field("finished", &self.task.is_finished())
            .finish_non_exhaustive()
    }
}

impl RunningApp {
    /// The consumer's counters now.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.pipeline.snapshot()
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

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static> {
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
