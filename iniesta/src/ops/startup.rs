//! The one INFO line that says what a consumer is about to consume, and how.

use std::fmt::Display;

use humantime::format_duration;

use crate::config::CircuitBreaker;
use crate::pipeline::Pipeline;

impl Pipeline {
    /// Logs the queue, where it lives, its redrive, the lock, the dead-letter sink, the
    /// circuit breaker, the concurrency (app-wide and per handler), the metrics listener and
    /// every route (the fallback marked), from what was read at start-up: no extra broker
    /// calls.
    pub(crate) fn log_startup(&self, pollers: usize) {
        let c = &self.capabilities;
        let lock = self
            .lock
            .as_ref()
            .map_or_else(|| "none".to_owned(), |lock| lock.describe());
        let lock_ttl = self.lock.as_ref().map(|lock| lock.ttl());
        let sink = self.dead_letters.as_ref();
        let limits = self.router.describe_limits();
        tracing::info!(
            queue = %c.name,
            endpoint = %or_none(c.endpoint.as_deref()),
            region = %or_none(c.region.as_deref()),
            visibility_timeout = %or_none(c.lease.map(format_duration)),
            max_receive_count = %or_none(c.max_deliveries),
            dead_letter_queue = %or_none(c.dead_letter_queue.as_deref()),
            fifo = c.ordered_groups,
            lock = %lock,
            lock_ttl = %or_none(lock_ttl.map(format_duration)),
            dead_letter_sink = %or_none(sink.map(|d| d.sink.destination())),
            dead_letter_after_receives = %or_none(sink.and_then(|d| d.after_receives)),
            circuit_breaker = %or_none(self.config.circuit_breaker.as_ref().map(breaker)),
            concurrency = self.config.concurrency,
            handler_concurrency = %or_none((!limits.is_empty()).then(|| limits.join(", "))),
            pollers,
            metrics_addr = %or_none(self.metrics_addr),
            handlers = %self.router.describe().join(", "),
            "consumer started"
        );
    }
}

/// The breaker's settings in one phrase: `5 of 20 failed: open 30s (up to 5m), trial 5`.
fn breaker(b: &CircuitBreaker) -> String {
    format!(
        "{} of {} failed: open {} (up to {}), trial {}",
        b.threshold,
        b.window,
        format_duration(b.cooldown),
        format_duration(b.max_cooldown),
        b.trial
    )
}

/// The value, or `none`.
fn or_none<T: Display>(value: Option<T>) -> String {
    value.map_or_else(|| "none".to_owned(), |v| v.to_string())
}
