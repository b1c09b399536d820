//! The operations settings of [`AppBuilder`]: the metrics and health listener, the circuit
//! breaker and the dead-letter sink.

use std::sync::Arc;
use std::time::Duration;

use super::AppBuilder;
use crate::config::CircuitBreaker;
use crate::dead_letter::{DeadLetterSink, DeadLetters};
use crate::error::ConfigError;
use crate::transport::Capabilities;

impl AppBuilder {
    /// Stops receiving while handlers keep failing, then tries a few messages before
    /// receiving as usual (default off; see [`CircuitBreaker`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use iniesta::{App, config::CircuitBreaker, transport::MemoryQueue};
    ///
    /// let app = App::builder()
    ///     .transport(MemoryQueue::default())
    ///     .circuit_breaker(CircuitBreaker::default().with_threshold(5, 10))
    ///     .build()?;
    /// # drop(app);
    /// # Ok::<(), iniesta::Error>(())
    /// ```
    pub fn circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.consumer.circuit_breaker = Some(breaker);
        self
    }

    /// Serves `GET /metrics` (Prometheus text), `GET /health/live` and `GET /health/ready` on
    /// `addr` while the app runs (`INIESTA_METRICS_ADDR`). Port 0 picks a free port:
    /// [`RunningApp::metrics_addr`](crate::RunningApp::metrics_addr) tells which.
    ///
    /// iniesta installs a Prometheus recorder as the process's `metrics` recorder, so the
    /// handlers' own `metrics::counter!` calls show on `/metrics` too. When the program
    /// installed a recorder already, that one is left alone and receives none of iniesta's
    /// metrics; `/metrics` then shows iniesta's only (a warning says so).
    ///
    /// # Examples
    ///
    /// ```
    /// use iniesta::{App, Message, transport::MemoryQueue};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), iniesta::Error> {
    /// let app = App::builder()
    ///     .transport(MemoryQueue::default())
    ///     .handler("Ping.demo", |_: Message| async {})
    ///     .metrics_addr(([127, 0, 0, 1], 0).into())
    ///     .build()?;
    /// let running = app.spawn();
    /// println!("scrape http://{}/metrics", running.metrics_addr().unwrap());
    /// running.shutdown().await
    /// # }
    /// ```
    pub fn metrics_addr(mut self, addr: std::net::SocketAddr) -> Self {
        self.ops.metrics_addr = Some(addr);
        self
    }

    /// Liveness fails when a receive has been outstanding this long with no receive finished
    /// meanwhile, or when every handler slot has been busy this long plus the handler timeout
    /// with no delivery finished (`INIESTA_LIVENESS_STALL_AFTER`; default three long-poll
    /// waits plus 30 s, 90 s on SQS).
    pub fn liveness_stall_after(mut self, after: Duration) -> Self {
        self.ops.stall_after = Some(after);
        self
    }

    /// Sends messages that cannot succeed to `sink` and then deletes them from the queue (see
    /// [`dead_letter`](crate::dead_letter)); default: none, they stay for the queue's redrive
    /// policy. `INIESTA_DEAD_LETTER_QUEUE_NAME` sets an
    /// [`SqsDeadLetterSink`](crate::dead_letter::SqsDeadLetterSink) up in
    /// [`App::from_env`](crate::App::from_env).
    pub fn dead_letter(mut self, sink: impl DeadLetterSink) -> Self {
        self.dead_letter = Some(Arc::new(sink));
        self
    }

    /// With a [`dead_letter`](Self::dead_letter) sink: a message goes there once it failed
    /// `receives` receives, or arrives with more (after crashes); default: only permanent,
    /// unroutable and corrupt messages go (`INIESTA_DEAD_LETTER_AFTER_RECEIVES`).
    pub fn dead_letter_after_receives(mut self, receives: u32) -> Self {
        self.dead_letter_after_receives = Some(receives);
        self
    }
}

/// The dead-letter policy, checked: a receive limit needs a sink, and the sink must not be
/// the consumed queue.
pub(super) fn dead_letters(
    sink: Option<Arc<dyn DeadLetterSink>>,
    after_receives: Option<u32>,
    capabilities: &Capabilities,
) -> Result<Option<DeadLetters>, ConfigError> {
    if after_receives == Some(0) {
        return Err(ConfigError::invalid(
            "dead_letter_after_receives",
            "at least 1",
            "0",
        ));
    }
    let Some(sink) = sink else {
        return match after_receives {
            Some(_) => Err(ConfigError::Conflict(
                "INIESTA_DEAD_LETTER_AFTER_RECEIVES (AppBuilder::dead_letter_after_receives) \
                 needs a dead-letter sink: set INIESTA_DEAD_LETTER_QUEUE_NAME \
                 (AppBuilder::dead_letter)"
                    .into(),
            )),
            None => Ok(None),
        };
    };
    if sink.destination() == capabilities.name {
        return Err(ConfigError::Conflict(format!(
            "the dead-letter sink sends to `{}`, the queue being consumed: name another queue \
             in INIESTA_DEAD_LETTER_QUEUE_NAME (AppBuilder::dead_letter)",
            capabilities.name
        )));
    }
    if let (Some(ours), Some(queue)) = (after_receives, capabilities.max_deliveries)
        && ours >= queue
    {
        tracing::warn!(
            dead_letter_after_receives = ours,
            max_receive_count = queue,
            queue = %capabilities.name,
            "the queue's redrive policy moves a message after {queue} receives, before the \
             dead-letter sink's limit of {ours} is reached: lower \
             INIESTA_DEAD_LETTER_AFTER_RECEIVES below maxReceiveCount"
        );
    }
    Ok(Some(DeadLetters {
        sink,
        after_receives,
    }))
}
