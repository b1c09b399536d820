//! Test handlers without AWS or Redis: the real router and pipeline on the SQS simulator.
//!
//! [`TestClient`] sends messages into a [`MemoryQueue`], runs them through the same pipeline
//! as production (decode, lock, route, handle, delete) with a [`MemoryLock`], and reports
//! which handler ran, whether the message was deleted, and the error. Run tests under a paused
//! clock (`#[tokio::test(start_paused = true)]`) and [`TestClient::advance`] moves time: a
//! visibility timeout or a redrive takes milliseconds.
//!
//! # Examples
//!
//! ```
//! use iniesta::testing::TestClient;
//! use iniesta::{App, Json, OutgoingMessage, Outcome};
//!
//! #[derive(serde::Deserialize)]
//! struct Order { id: u64 }
//!
//! async fn order_created(Json(order): Json<Order>) -> Result<(), iniesta::BoxError> {
//!     if order.id == 0 { return Err("order id 0".into()); }
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let client = TestClient::new(
//!     App::builder().registered_handlers(false).handler("Order.created", order_created),
//! )
//! .unwrap();
//!
//! let ok = client.deliver(OutgoingMessage::new("Order.created").body(r#"{"id": 1}"#)).await;
//! assert_eq!(ok.outcome, Outcome::Handled);
//! assert!(ok.acked);
//!
//! let bad = client.deliver(OutgoingMessage::new("Order.created").body("not json")).await;
//! assert_eq!(bad.outcome, Outcome::Failed);
//! assert!(!bad.acked);
//! assert!(bad.error.unwrap().contains("not valid JSON"));
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join;
use tokio::time::Instant;

use crate::app::AppBuilder;
use crate::lock::{IdempotencyLock, MemoryLock};
use crate::metrics::MetricsSnapshot;
use crate::pipeline::{Pipeline, Report};
use crate::transport::{MemoryQueue, Transport};
use crate::{OutgoingMessage, Result};

/// Drives messages through the real pipeline on a [`MemoryQueue`] and a [`MemoryLock`].
pub struct TestClient {
    pipeline: Arc<Pipeline>,
    queue: MemoryQueue,
    lock: Arc<MemoryLock>,
}

impl TestClient {
    /// A client for the handlers of `builder`, on a fresh standard queue (30 s visibility).
    ///
    /// The builder's transport and lock are replaced.
    ///
    /// # Errors
    ///
    /// As [`AppBuilder::build`].
    pub fn new(builder: AppBuilder) -> Result<TestClient> {
        TestClient::with_queue(builder, MemoryQueue::builder().name("test"))
    }

    /// A client on a queue you configure (visibility, dead-letter queue, FIFO).
    ///
    /// The queue never long-polls: an empty receive returns at once.
    ///
    /// # Errors
    ///
    /// As [`AppBuilder::build`].
    pub fn with_queue(
        builder: AppBuilder,
        queue: crate::transport::MemoryQueueBuilder,
    ) -> Result<TestClient> {
        let queue = queue.wait_time(Duration::ZERO).build();
        let lock = Arc::new(MemoryLock::new());
        let pipeline = builder
            .set_transport_arc(Arc::new(queue.clone()))
            .set_lock_arc(Some(Arc::clone(&lock) as Arc<dyn IdempotencyLock>))
            .into_pipeline()?;
        Ok(TestClient {
            pipeline: Arc::new(pipeline),
            queue,
            lock,
        })
    }

    /// Sends a message without processing it; returns its id.
    pub fn send(&self, message: OutgoingMessage) -> String {
        self.queue.send(message)
    }

    /// Sends a message and processes everything visible; returns this message's report.
    ///
    /// # Panics
    ///
    /// When the message was not delivered (it was delayed, or deduplicated on a FIFO queue).
    pub async fn deliver(&self, message: OutgoingMessage) -> Report {
        let id = self.send(message);
        self.process_all()
            .await
            .into_iter()
            .find(|r| *r.message_id == *id)
            .unwrap_or_else(|| panic!("message {id} was not delivered (delayed or deduplicated?)"))
    }

    /// Sends a message and delivers it to two consumers at the same time, as SQS occasionally
    /// does. With the lock, exactly one of the two runs the handler.
    pub async fn deliver_twice(&self, message: OutgoingMessage) -> [Report; 2] {
        let id = self.send(message);
        let first = self.queue.receive(1).await.unwrap_or_default();
        assert!(
            first.first().is_some_and(|m| m.id == id),
            "message {id} was not the next visible message"
        );
        self.queue.inject_duplicate(&id);
        let second = self.queue.receive(1).await.unwrap_or_default();
        let now = Instant::now();
        let (a, b) = join(
            self.pipeline.process_batch(first, now, None),
            self.pipeline.process_batch(second, now, None),
        )
        .await;
        let mut reports = a.into_iter().chain(b);
        let one = reports.next().expect("first delivery reported");
        let two = reports.next().expect("duplicate delivery reported");
        [one, two]
    }

    /// Receives one visible message and processes it.
    pub async fn process_next(&self) -> Option<Report> {
        let received = self.queue.receive(1).await.unwrap_or_default();
        if received.is_empty() {
            return None;
        }
        self.pipeline
            .process_batch(received, Instant::now(), None)
            .await
            .pop()
    }

    /// Receives one visible message, lets `tamper` change the delivery (mark it corrupt), and
    /// processes it.
    #[cfg(test)]
    pub(crate) async fn process_next_tampered(
        &self,
        tamper: impl FnOnce(&mut crate::RawMessage),
    ) -> Option<Report> {
        let mut received = self.queue.receive(1).await.unwrap_or_default();
        tamper(received.first_mut()?);
        self.pipeline
            .process_batch(received, Instant::now(), None)
            .await
            .pop()
    }

    /// Processes visible messages, a batch of ten at a time, until none is visible.
    pub async fn process_all(&self) -> Vec<Report> {
        let mut reports = Vec::new();
        loop {
            let received = self.queue.receive(10).await.unwrap_or_default();
            if received.is_empty() {
                return reports;
            }
            reports.extend(
                self.pipeline
                    .process_batch(received, Instant::now(), None)
                    .await,
            );
        }
    }

    /// Moves tokio's paused clock forward, so visibility timeouts and delays expire.
    ///
    /// Needs the `test-util` feature.
    ///
    /// # Panics
    ///
    /// When the clock is not paused (use `#[tokio::test(start_paused = true)]`).
    #[cfg(feature = "test-util")]
    pub async fn advance(&self, by: Duration) {
        tokio::time::advance(by).await;
    }

    /// The simulated queue.
    pub fn queue(&self) -> &MemoryQueue {
        &self.queue
    }

    /// The lock.
    pub fn lock(&self) -> &MemoryLock {
        &self.lock
    }

    /// The pipeline's counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.pipeline.snapshot()
    }
}

impl fmt::Debug for TestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestClient")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}
