//! The one INFO line that says what a consumer is about to consume, and how.

use std::fmt::Display;

use crate::pipeline::Pipeline;

impl Pipeline {
    /// Logs the queue, where it lives, its redrive, the lock, the concurrency and every
    /// route (the fallback marked), from what was read at start-up: no extra broker calls.
    pub(crate) fn log_startup(&self, pollers: usize) {
        let c = &self.capabilities;
        let lock = self
            .lock
            .as_ref()
            .map_or_else(|| "none".to_owned(), |lock| lock.describe());
        let lock_ttl = self.lock.as_ref().map(|lock| lock.ttl());
        tracing::info!(
            queue = %c.name,
            endpoint = %or_none(c.endpoint.as_deref()),
            region = %or_none(c.region.as_deref()),
            visibility_timeout = %or_none(c.lease.map(humantime::format_duration)),
            max_receive_count = %or_none(c.max_deliveries),
            dead_letter_queue = %or_none(c.dead_letter_queue.as_deref()),
            fifo = c.ordered_groups,
            lock = %lock,
            lock_ttl = %or_none(lock_ttl.map(humantime::format_duration)),
            concurrency = self.config.concurrency,
            pollers,
            handlers = %self.router.describe().join(", "),
            "consumer started"
        );
    }
}

/// The value, or `none`.
fn or_none<T: Display>(value: Option<T>) -> String {
    value.map_or_else(|| "none".to_owned(), |v| v.to_string())
}
