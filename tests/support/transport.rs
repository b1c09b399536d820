//! A transport with faults, around the in-memory queue.

use std::time::Duration;

use iniesta::transport::{MemoryQueue, QueueInfo, Transport};
use iniesta::{RawMessage, Receipt, TransportError};

/// A `MemoryQueue` with faults: bodies tampered with in transit, deletes that lag.
pub struct Faulty {
    /// The queue behind the faults.
    pub queue: MemoryQueue,
    /// Replace every received body with `tampered`.
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

    fn set_visibility(
        &self,
        receipt: Receipt,
        timeout: Duration,
    ) -> iniesta::BoxFuture<'_, Result<(), TransportError>> {
        self.queue.set_visibility(receipt, timeout)
    }

    fn queue_info(&self) -> QueueInfo {
        self.queue.queue_info()
    }
}
