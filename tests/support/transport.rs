//! A transport with faults, around the in-memory queue.

use std::time::Duration;

use iniesta::transport::{Capabilities, MemoryQueue, Transport};
use iniesta::{DecodeError, RawMessage, Receipt, TransportError};

/// A `MemoryQueue` with faults: bodies tampered with in transit, deletes that lag.
pub struct Faulty {
    /// The queue behind the faults.
    pub queue: MemoryQueue,
    /// Replace every received body with `tampered`, and report it corrupt as the SQS
    /// transport does when a body fails its `MD5OfBody` check.
    pub tamper_bodies: bool,
    /// How long each delete takes.
    pub delete_delay: Duration,
}

impl Transport for Faulty {
    fn receive(
        &self,
        max: usize,
    ) -> iniesta::BoxFuture<'_, Result<Vec<RawMessage>, TransportError>> {
        Box::pin(async move {
            let mut got = self.queue.receive(max).await?;
            if self.tamper_bodies {
                for m in &mut got {
                    m.body = "tampered".into();
                    m.corrupt = Some(DecodeError::Md5Mismatch {
                        expected: "md5 of the original body".into(),
                        actual: "md5 of the tampered body".into(),
                    });
                }
            }
            Ok(got)
        })
    }

    fn ack(&self, receipt: Receipt) -> iniesta::BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delete_delay).await;
            self.queue.ack(receipt).await
        })
    }

    fn nack(
        &self,
        receipt: Receipt,
        delay: Option<Duration>,
    ) -> iniesta::BoxFuture<'_, Result<(), TransportError>> {
        self.queue.nack(receipt, delay)
    }

    fn extend(
        &self,
        receipt: Receipt,
        by: Duration,
    ) -> iniesta::BoxFuture<'_, Result<(), TransportError>> {
        self.queue.extend(receipt, by)
    }

    fn capabilities(&self) -> Capabilities {
        self.queue.capabilities()
    }
}

/// A transport whose receive never returns while `stuck` is set (a connection that stopped
/// answering without closing), and fails with a retryable error while `failing` is set;
/// otherwise the in-memory queue.
pub struct Unreliable {
    pub queue: MemoryQueue,
    pub stuck: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Transport for Unreliable {
    fn receive(
        &self,
        max: usize,
    ) -> iniesta::BoxFuture<'_, Result<Vec<RawMessage>, TransportError>> {
        use std::sync::atomic::Ordering;
        if self.stuck.load(Ordering::SeqCst) {
            return Box::pin(std::future::pending());
        }
        if self.failing.load(Ordering::SeqCst) {
            return Box::pin(std::future::ready(Err(TransportError::Service {
                operation: "ReceiveMessage",
                retryable: true,
                source: "connection refused".into(),
            })));
        }
        self.queue.receive(max)
    }

    fn ack(&self, receipt: Receipt) -> iniesta::BoxFuture<'_, Result<(), TransportError>> {
        self.queue.ack(receipt)
    }

    fn nack(
        &self,
        receipt: Receipt,
        delay: Option<Duration>,
    ) -> iniesta::BoxFuture<'_, Result<(), TransportError>> {
        self.queue.nack(receipt, delay)
    }

    fn extend(
        &self,
        receipt: Receipt,
        by: Duration,
    ) -> iniesta::BoxFuture<'_, Result<(), TransportError>> {
        self.queue.extend(receipt, by)
    }

    fn capabilities(&self) -> Capabilities {
        self.queue.capabilities()
    }
}

/// A `MemoryQueue` whose first `failures` deletes fail (throttled, unreachable), each leaving
/// its message in the queue.
pub struct FailingDeletes {
    pub queue: MemoryQueue,
    pub failures: std::sync::atomic::AtomicU32,
}

impl Transport for FailingDeletes {
    fn receive(
        &self,
        max: usize,
    ) -> iniesta::BoxFuture<'_, Result<Vec<RawMessage>, TransportError>> {
        self.queue.receive(max)
    }

    fn ack(&self, receipt: Receipt) -> iniesta::BoxFuture<'_, Result<(), TransportError>> {
        use std::sync::atomic::Ordering;
        let fail = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Box::pin(std::future::ready(Err(TransportError::Service {
                operation: "DeleteMessage",
                retryable: true,
                source: "throttled".into(),
            })));
        }
        self.queue.ack(receipt)
    }

    fn nack(
        &self,
        receipt: Receipt,
        delay: Option<Duration>,
    ) -> iniesta::BoxFuture<'_, Result<(), TransportError>> {
        self.queue.nack(receipt, delay)
    }

    fn extend(
        &self,
        receipt: Receipt,
        by: Duration,
    ) -> iniesta::BoxFuture<'_, Result<(), TransportError>> {
        self.queue.extend(receipt, by)
    }

    fn capabilities(&self) -> Capabilities {
        self.queue.capabilities()
    }
}
