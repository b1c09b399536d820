//! One received batch: decode, lock in one round trip, then run (FIFO groups in order).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tracing::{Instrument as _, Span};

use super::delivery::Delivery;
use super::settle::Settle;
use super::slot::Slot;
use super::{Outcome, Pipeline, Report};
use crate::dead_letter::DeadLetterReason;
use crate::lock::Acquisition;
use crate::trace::span as trace;
use crate::{LockError, Message, RawMessage};

/// A little past the holder's lock expiry, so the next receive does not find it still held.
const BUSY_MARGIN: Duration = Duration::from_millis(500);

/// A received delivery and what the lock said about it.
enum Step {
    /// Locked (or no lock): run its handler.
    Run(Delivery),
    /// Settled without running, reported with the outcome.
    Settle(Delivery, Settle, Outcome),
    /// Could not be decoded (corrupt): nothing to settle. Keeps its FIFO group, since a
    /// skipped message still holds back the later messages of its group.
    Undecoded(Report, Option<String>, Slot),
}

impl Step {
    fn group(&self) -> Option<&str> {
        match self {
            Step::Run(d) | Step::Settle(d, ..) => d.message.group_id(),
            Step::Undecoded(_, group, _) => group.as_deref(),
        }
    }

    /// The delivery span, to run the step inside.
    fn take_span(&mut self) -> Span {
        match self {
            Step::Run(d) | Step::Settle(d, ..) => std::mem::replace(&mut d.span, Span::none()),
            Step::Undecoded(..) => Span::none(),
        }
    }
}

impl Pipeline {
    /// The lock key of a message: its idempotency key within this queue. An SNS publish
    /// reaches every subscribed queue with one SNS message id; each queue's service must
    /// handle it once, so one service's processed marker must not settle another's copy.
    pub(super) fn lock_key(&self, message: &Message) -> String {
        format!("{}:{}", self.capabilities.name, message.idempotency_key())
    }

    /// Handles one received batch; each delivery's handler permit goes back when its handler
    /// returns, its in-flight place when it is settled.
    pub(crate) async fn process_batch(
        self: &Arc<Self>,
        raws: Vec<RawMessage>,
        received_at: Instant,
        mut permits: Option<OwnedSemaphorePermit>,
    ) -> Vec<Report> {
        let mut claims = Slot::claim(&self.in_flight, raws.len());
        let slots = raws.iter().map(|_| claims.take(&mut permits)).collect();
        let steps = self.prepare(raws, slots, received_at).await;
        if self.capabilities.ordered_groups {
            self.run_fifo(steps, received_at).await
        } else {
            join_all(steps.into_iter().map(|step| self.run_step(step))).await
        }
    }

    /// Decodes and locks a batch; the steps keep the batch's order (FIFO relies on it).
    async fn prepare(&self, raws: Vec<RawMessage>, slots: Vec<Slot>, at: Instant) -> Vec<Step> {
        // Boxed: the rare undecodable step must not make every decoded entry as large.
        let decoded: Vec<Result<Delivery, Box<Step>>> = raws
            .into_iter()
            .zip(slots)
            .map(|(mut raw, slot)| match raw.corrupt.take() {
                // The hot path moves the delivery into its message without copying.
                None => {
                    let message = raw.into_message(&self.config.decode);
                    Ok(Delivery {
                        span: self.spans.start(&message),
                        message,
                        lease: None,
                        slot,
                        received_at: at,
                    })
                }
                Some(error) => {
                    self.metrics.corrupt();
                    // Corruption in transit passes and the queue's copy is intact: only a
                    // body corrupt on a redelivery too is taken for a lasting fault. Even then
                    // only this copy is known to be corrupt, and a dead letter would replace
                    // the intact stored one: a queue with its own redrive policy moves that
                    // copy itself. Without one nothing else would ever take it out, so it goes
                    // to the sink as received, and the letter says so.
                    if raw.delivery_count >= 2
                        && self.dead_letters.is_some()
                        && self.capabilities.max_deliveries.is_none()
                    {
                        let how = Settle::DeadLetter {
                            reason: DeadLetterReason::Corrupt,
                            error: format!("body as received; failed its MD5 check: {error}"),
                            handler: None,
                        };
                        let message = raw.into_message(&self.config.decode);
                        let delivery = Delivery {
                            span: self.spans.start(&message),
                            message,
                            lease: None,
                            slot,
                            received_at: at,
                        };
                        // Corrupt, unless the sink takes it.
                        return Err(Box::new(Step::Settle(delivery, how, Outcome::Corrupt)));
                    }
                    self.spans.corrupt(&raw.id);
                    tracing::error!(message_id = %raw.id, %error, "corrupt message: not handled, not deleted");
                    self.metrics.finished(Outcome::Corrupt, at);
                    let report = Report::undecoded(&raw.id, Outcome::Corrupt);
                    Err(Box::new(Step::Undecoded(report, raw.group_id, slot)))
                }
            })
            .collect();
        self.metrics
            .message_ages(decoded.iter().flatten().map(|d| d.message.sent_at()));
        let Some(lock) = &self.lock else {
            return decoded
                .into_iter()
                .map(|d| d.map_or_else(|step| *step, Step::Run))
                .collect();
        };
        let keys: Vec<String> = decoded
            .iter()
            .flatten()
            .map(|d| self.lock_key(&d.message))
            .collect();
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        // One lock span per delivery, all as long as the batch's one round trip; none (and no
        // allocation) when nothing traces.
        let lock_spans: Vec<Span> = if decoded.iter().flatten().all(|d| d.span.is_disabled()) {
            Vec::new()
        } else {
            decoded
                .iter()
                .flatten()
                .map(|d| trace::lock(&d.span))
                .collect()
        };
        let mut acquisitions = if key_refs.is_empty() {
            Vec::new()
        } else {
            let asked = std::time::Instant::now();
            let acquisitions = lock.acquire(&key_refs).await;
            self.metrics.lock_waited(asked.elapsed());
            acquisitions
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
                Err(LockError::NoQuorum {
                    answered: 0,
                    total: 1,
                    needed: 1,
                })
            });
        }
        for (span, acquisition) in lock_spans.iter().zip(&acquisitions) {
            trace::record_lock(span, acquisition);
        }
        drop(lock_spans);
        let mut acquisitions = acquisitions.into_iter();
        decoded
            .into_iter()
            .map(|d| match d {
                Err(step) => *step,
                Ok(delivery) => {
                    let acquisition = acquisitions.next().expect("one acquisition per message");
                    self.after_acquisition(lock, delivery, acquisition)
                }
            })
            .collect()
    }

    fn after_acquisition(
        &self,
        lock: &Arc<dyn crate::lock::IdempotencyLock>,
        mut delivery: Delivery,
        acquisition: Result<Acquisition, LockError>,
    ) -> Step {
        let message_id = delivery.message.id();
        match acquisition {
            Ok(Acquisition::Acquired(lease)) => {
                delivery.lease = Some(lease);
                Step::Run(delivery)
            }
            Ok(Acquisition::AlreadyProcessed) => {
                tracing::info!(message_id, "already processed: deleted without handling");
                self.metrics.already_processed();
                Step::Settle(delivery, Settle::AlreadyDone, Outcome::AlreadyProcessed)
            }
            Ok(Acquisition::Busy { expires_in }) => {
                self.metrics.busy();
                // The holder may have crashed: waiting out only the visibility timeout would
                // spend another delivery while its lock still holds. A lock that cannot tell
                // the remaining ttl gets its whole ttl.
                let delay = expires_in.unwrap_or_else(|| lock.ttl()) + BUSY_MARGIN;
                tracing::info!(
                    message_id,
                    retry_in = ?delay,
                    "locked by another consumer: given back for when its lock can expire"
                );
                Step::Settle(delivery, Settle::ReturnAfter(delay), Outcome::Busy)
            }
            Err(error) if self.policy.fail_open => {
                tracing::warn!(message_id, %error, "lock unavailable: handling without it (fail-open)");
                Step::Run(delivery)
            }
            Err(error) => {
                self.metrics.lock_unavailable();
                if self.pause.lock_unavailable(lock, &error, &self.stopping) {
                    self.metrics.lock_outages();
                }
                // Left invisible rather than given back: polls still in flight would only
                // receive it again and spend another delivery before the pause holds.
                tracing::debug!(message_id, %error, "lock unavailable: left unhandled until its lease runs out");
                Step::Settle(delivery, Settle::Leave, Outcome::LockUnavailable)
            }
        }
    }

    /// Runs a step inside its delivery span, and records how it ended there.
    async fn run_step(self: &Arc<Self>, mut step: Step) -> Report {
        let span = step.take_span();
        let report = self.run_untraced(step).instrument(span.clone()).await;
        trace::finish(&span, &report);
        report
    }

    async fn run_untraced(self: &Arc<Self>, step: Step) -> Report {
        // A delivery that runs tells the breaker itself; the rest say nothing of the
        // downstream, which the breaker still hears of (a trial counts them).
        let report = match step {
            Step::Run(delivery) => return self.deliver(delivery).await,
            Step::Settle(delivery, how, outcome) => {
                let report = Report::of(&delivery.message, outcome);
                let received_at = delivery.received_at;
                self.settle_reported(delivery, how, report, received_at)
                    .await
            }
            Step::Undecoded(report, _, slot) => {
                drop(slot);
                report
            }
        };
        self.breaker.record(report.outcome);
        report
    }

    /// FIFO: groups run in parallel, each group's messages one at a time in order. After a
    /// message of a group is not handled, the later ones return to the queue unstarted, so
    /// the group's order holds.
    async fn run_fifo(self: &Arc<Self>, steps: Vec<Step>, received_at: Instant) -> Vec<Report> {
        let mut groups: Vec<(Option<String>, Vec<Step>)> = Vec::new();
        for step in steps {
            let group = step.group().map(str::to_owned);
            match groups
                .iter_mut()
                .find(|(g, _)| group.is_some() && *g == group)
            {
                Some((_, members)) => members.push(step),
                None => groups.push((group, vec![step])),
            }
        }
        // Waiting messages have no lease keeper yet: they must start (or go back) while both
        // their lease and their lock still hold.
        let lock_ttl = self.lock.as_ref().map_or(Duration::MAX, |l| l.ttl());
        let hold_limit = self
            .capabilities
            .lease
            .unwrap_or(Duration::MAX)
            .min(lock_ttl)
            .mul_f64(self.config.heartbeat_fraction);
        let runs = groups.into_iter().map(|(_, members)| async move {
            let mut reports = Vec::with_capacity(members.len());
            let mut blocked = false;
            for step in members {
                let waited_too_long = received_at.elapsed() > hold_limit;
                if blocked || waited_too_long || self.stopping.is_cancelled() {
                    reports.push(self.return_unstarted(step).await);
                    continue;
                }
                let report = self.run_step(step).await;
                // A dead-lettered message left the queue as a handled one did, once deleted:
                // one the sink stored but whose delete failed comes back ahead of the rest.
                blocked = match report.outcome {
                    Outcome::Handled | Outcome::AlreadyProcessed => false,
                    Outcome::DeadLettered => !report.acked,
                    _ => true,
                };
                reports.push(report);
            }
            reports
        });
        join_all(runs).await.into_iter().flatten().collect()
    }

    /// Gives an unstarted delivery back at once (its lock released first). Deliveries that
    /// were not going to run settle as decided: an already processed one is acked, one that
    /// met an unavailable lock stays invisible.
    async fn return_unstarted(self: &Arc<Self>, step: Step) -> Report {
        let mut delivery = match step {
            Step::Run(delivery) => delivery,
            not_run => return self.run_step(not_run).await,
        };
        self.metrics.returned();
        self.breaker.record(Outcome::Returned);
        let report = Report::of(&delivery.message, Outcome::Returned);
        let span = std::mem::replace(&mut delivery.span, Span::none());
        let received_at = delivery.received_at;
        // The settle span is made inside the delivery span, so it is its child.
        let report = self
            .settle_reported(delivery, Settle::Return, report, received_at)
            .instrument(span.clone())
            .await;
        trace::finish(&span, &report);
        report
    }
}
