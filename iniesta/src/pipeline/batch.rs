//! One received batch: decode, lock in one round trip, then run (FIFO groups in order).

use std::sync::Arc;
use std::time::Duration;

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
    /// Settled without running (busy, corrupt, lock down), with its FIFO group: a skipped
    /// message still holds back the later messages of its group.
    Done(Report, Option<String>),
}

impl Step {
    fn group(&self) -> Option<&str> {
        match self {
            Step::Run(m, _) | Step::Delete(m) => m.group_id(),
            Step::Done(_, group) => group.as_deref(),
        }
    }
}

impl Pipeline {
    /// The lock key of a message: its idempotency key within this queue. An SNS publish
    /// reaches every subscribed queue with one SNS message id; each queue's service must
    /// handle it once, so one service's processed marker must not settle another's copy.
    pub(super) fn lock_key(&self, message: &Message) -> String {
        format!("{}:{}", self.queue.name, message.idempotency_key())
    }

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

    /// Decodes and locks a batch; the steps keep the batch's order (FIFO relies on it).
    async fn prepare(&self, raws: Vec<RawMessage>) -> Vec<Step> {
        // Decoding may wait for an SNS signing certificate (fetched once per URL).
        let mut decoded: Vec<Result<Message, Box<Step>>> = Vec::with_capacity(raws.len());
        for raw in raws {
            decoded.push(match raw.verify(&self.config.decode) {
                Ok(()) => Ok(raw.into_message(&self.config.decode).await),
                Err(error) => {
                    tracing::error!(message_id = %raw.id, %error, "corrupt message: not handled, not deleted");
                    self.metrics.corrupt();
                    let report = Report::undecoded(&raw.id, Outcome::Corrupt);
                    Err(Box::new(Step::Done(report, raw.system.message_group_id)))
                }
            });
        }
        let Some(lock) = &self.lock else {
            return decoded
                .into_iter()
                .map(|d| d.map_or_else(|step| *step, |m| Step::Run(m, None)))
                .collect();
        };
        let keys: Vec<String> = decoded.iter().flatten().map(|m| self.lock_key(m)).collect();
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut acquisitions = if key_refs.is_empty() {
            Vec::new()
        } else {
            lock.acquire(&key_refs).await
        };
        if acquisitions.len() != keys.len() {
            // A lock that answers for fewer keys than asked must not lose the rest.
            tracing::error!(
                asked = keys.len(),
                answered = acquisitions.len(),
                "the lock answered for the wrong number of keys: treating it as unavailable"
            );
            acquisitions.clear();
            acquisitions.resize_with(keys.len(), || {
                Err(crate::LockError::NoQuorum {
                    answered: 0,
                    total: 1,
                    needed: 1,
                })
            });
        }
        let mut acquisitions = acquisitions.into_iter();
        decoded
            .into_iter()
            .map(|d| match d {
                Err(step) => *step,
                Ok(message) => {
                    let acquisition = acquisitions.next().expect("one acquisition per message");
                    self.settle_acquisition(message, acquisition)
                }
            })
            .collect()
    }

    fn settle_acquisition(
        &self,
        message: Message,
        acquisition: Result<Acquisition, crate::LockError>,
    ) -> Step {
        let group = message.group_id().map(str::to_owned);
        match acquisition {
            Ok(Acquisition::Acquired(lease)) => Step::Run(message, Some(lease)),
            Ok(Acquisition::AlreadyProcessed) => Step::Delete(message),
            Ok(Acquisition::Busy) => {
                tracing::debug!(
                    message_id = message.id(),
                    "locked by another consumer: skipped"
                );
                self.metrics.busy();
                Step::Done(Report::of(&message, Outcome::Busy), group)
            }
            Err(error) if self.policy.fail_open => {
                tracing::warn!(message_id = message.id(), %error, "lock unavailable: handling without it (fail-open)");
                Step::Run(message, None)
            }
            Err(error) => {
                tracing::warn!(message_id = message.id(), %error, "lock unavailable: not handled, left for redelivery");
                self.metrics.lock_unavailable();
                Step::Done(Report::of(&message, Outcome::LockUnavailable), group)
            }
        }
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
            Step::Done(report, _) => {
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
            let group = item.0.group().map(str::to_owned);
            match groups
                .iter_mut()
                .find(|(g, _)| group.is_some() && *g == group)
            {
                Some((_, members)) => members.push(item),
                None => groups.push((group, vec![item])),
            }
        }
        // Waiting messages have no lease keeper yet: they must start (or go back) while both
        // their visibility and their lock still hold.
        let lock_ttl = self.lock.as_ref().map_or(Duration::MAX, |l| l.ttl());
        let hold_limit = self
            .queue
            .visibility_timeout
            .min(lock_ttl)
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
            Step::Done(report, _) => return report,
        };
        // Unlock first: a consumer that receives it right away must not find it busy.
        if let Some(lease) = lease {
            self.release(&lease).await;
        }
        self.return_message(&message).await;
        self.metrics.returned();
        Report::of(&message, Outcome::Returned)
    }
}
