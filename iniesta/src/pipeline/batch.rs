//! One received batch: decode, lock in one round trip, then run (FIFO groups in order).

use std::sync::Arc;

use futures_util::future::join_all;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::{Outcome, Pipeline, Report};
use crate::lock::{Acquisition, Lease};
use crate::{Message, RawMessage};

/// A step with the handler slot it holds until it is settled.
type Item = (Step, Option<OwnedSemaphorePermit>);

/// A decoded delivery and what the lock said about it.
enum Step {
    Run(Message, Option<Lease>),
    /// Handled before: delete without running.
    Delete(Message),
    /// Settled without running (busy, corrupt, lock down).
    Done(Report),
}

impl Pipeline {
    /// Handles one received batch; each message's permit is released when it is settled.
    pub(crate) async fn process_batch(
        self: &Arc<Self>,
        raws: Vec<RawMessage>,
        received_at: Instant,
        mut permits: Option<OwnedSemaphorePermit>,
    ) -> Vec<Report> {
        self.metrics.batch_started(raws.len());
        let steps = self.prepare(raws).await;
        let mut items = Vec::with_capacity(steps.len());
        for step in steps {
            let permit = permits.as_mut().and_then(|p| {
                if p.num_permits() > 1 {
                    p.split(1)
                } else {
                    None
                }
            });
            items.push((step, permit));
        }
        // The last item holds what is left of the batch's permits.
        if let (Some(last), Some(rest)) = (items.last_mut(), permits) {
            last.1 = Some(rest);
        }
        if self.queue.fifo {
            self.run_fifo(items, received_at).await
        } else {
            join_all(
                items
                    .into_iter()
                    .map(|(step, permit)| self.run_step(step, received_at, permit)),
            )
            .await
        }
    }

    async fn prepare(&self, raws: Vec<RawMessage>) -> Vec<Step> {
        let mut steps = Vec::with_capacity(raws.len());
        let mut messages = Vec::with_capacity(raws.len());
        for raw in raws {
            let id = raw.id.clone();
            match raw.decode(&self.config.decode) {
                Ok(message) => messages.push(message),
                Err(error) => {
                    tracing::error!(message_id = %id, %error, "corrupt message: not handled, not deleted");
                    self.metrics.corrupt();
                    steps.push(Step::Done(Report::new(id, None, Outcome::Corrupt)));
                }
            }
        }
        let Some(lock) = &self.lock else {
            steps.extend(messages.into_iter().map(|m| Step::Run(m, None)));
            return steps;
        };
        let keys: Vec<&str> = messages.iter().map(Message::idempotency_key).collect();
        let acquisitions = if keys.is_empty() {
            Vec::new()
        } else {
            lock.acquire(&keys).await
        };
        for (message, acquisition) in messages.into_iter().zip(acquisitions) {
            steps.push(match acquisition {
                Ok(Acquisition::Acquired(lease)) => Step::Run(message, Some(lease)),
                Ok(Acquisition::AlreadyProcessed) => Step::Delete(message),
                Ok(Acquisition::Busy) => {
                    tracing::debug!(message_id = message.id(), "locked by another consumer: skipped");
                    self.metrics.busy();
                    Step::Done(Report::new(message.id(), message.event(), Outcome::Busy))
                }
                Err(error) if self.policy.fail_open => {
                    tracing::warn!(message_id = message.id(), %error, "lock unavailable: handling without it (fail-open)");
                    Step::Run(message, None)
                }
                Err(error) => {
                    tracing::warn!(message_id = message.id(), %error, "lock unavailable: not handled, left for redelivery");
                    self.metrics.lock_unavailable();
                    Step::Done(Report::new(
                        message.id(),
                        message.event(),
                        Outcome::LockUnavailable,
                    ))
                }
            });
        }
        steps
    }

    async fn run_step(
        self: &Arc<Self>,
        step: Step,
        received_at: Instant,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Report {
        let report = match step {
            Step::Run(message, lease) => self.deliver(message, lease, received_at, permit).await,
            Step::Delete(message) => {
                drop(permit);
                self.delete_processed(message).await
            }
            Step::Done(report) => {
                drop(permit);
                report
            }
        };
        self.metrics.delivery_settled();
        report
    }

    /// FIFO: groups run in parallel, each group's messages one at a time in order. After a
    /// message of a group is not handled, the later ones return to the queue unstarted, so
    /// the group's order holds.
    async fn run_fifo(self: &Arc<Self>, items: Vec<Item>, received_at: Instant) -> Vec<Report> {
        let mut groups: Vec<(Option<String>, Vec<Item>)> = Vec::new();
        for item in items {
            let group = match &item.0 {
                Step::Run(m, _) | Step::Delete(m) => m.group_id().map(str::to_owned),
                Step::Done(_) => None,
            };
            match groups
                .iter_mut()
                .find(|(g, _)| group.is_some() && *g == group)
            {
                Some((_, members)) => members.push(item),
                None => groups.push((group, vec![item])),
            }
        }
        let hold_limit = self
            .queue
            .visibility_timeout
            .mul_f64(self.config.heartbeat_fraction);
        let runs = groups.into_iter().map(|(_, members)| async move {
            let mut reports = Vec::with_capacity(members.len());
            let mut blocked = false;
            for (step, permit) in members {
                let waited_too_long = received_at.elapsed() > hold_limit;
                if blocked || waited_too_long || self.stopping.is_cancelled() {
                    reports.push(self.return_unstarted(step).await);
                    self.metrics.delivery_settled();
                    continue;
                }
                let report = self.run_step(step, received_at, permit).await;
                blocked = !matches!(report.outcome, Outcome::Handled | Outcome::AlreadyProcessed);
                reports.push(report);
            }
            reports
        });
        join_all(runs).await.into_iter().flatten().collect()
    }

    /// Makes an unstarted delivery visible again at once and drops its lock.
    async fn return_unstarted(&self, step: Step) -> Report {
        let (message, lease) = match step {
            Step::Run(message, lease) => (message, lease),
            Step::Delete(message) => (message, None),
            Step::Done(report) => return report,
        };
        self.return_message(&message).await;
        self.metrics.returned();
        if let Some(lease) = lease {
            self.release(&lease).await;
        }
        Report::new(message.id(), message.event(), Outcome::Returned)
    }
}
