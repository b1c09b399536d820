//! Batching deletes and visibility changes ten at a time.
//!
//! Callers hand an entry to a background task and wait on a oneshot for their own entry's
//! result. The task sends a batch when ten entries are pending, when the first pending entry
//! has waited the flush interval, or when asked to flush. Batches go out concurrently, so a
//! slow request never holds up the next batch.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::errors::{EntryFailure, Target, classify, fan_out};
use crate::{Receipt, TransportError};

use super::limits::MAX_BATCH;

/// Extra attempts for single entries that failed on the server side. A whole request that
/// failed was already retried by the SDK (its standard retry mode): not retried again here.
const ENTRY_RETRIES: usize = 2;
/// First and largest pause before retrying failed entries.
const ENTRY_BACKOFF_FIRST: Duration = Duration::from_millis(50);
const ENTRY_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Longest one batch request may take. The SDK sets no read timeout, and a half-open
/// connection would otherwise hold every caller's delete, and shutdown's flush, forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Which batch operation a batcher sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `DeleteMessageBatch`.
    Delete,
    /// `ChangeMessageVisibilityBatch`.
    ChangeVisibility,
}

impl Kind {
    pub(super) fn operation(self) -> &'static str {
        match self {
            Kind::Delete => "DeleteMessageBatch",
            Kind::ChangeVisibility => "ChangeMessageVisibilityBatch",
        }
    }
}

/// One caller's entry: the receipt and, for visibility changes, the timeout in seconds.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) receipt: Receipt,
    pub(super) visibility: i32,
}

type Reply = oneshot::Sender<Result<(), TransportError>>;

enum Command {
    Entry(Entry, Reply),
    Flush(oneshot::Sender<()>),
}

/// The handle callers use; the task ends when the last handle is dropped, after sending
/// what is pending.
#[derive(Debug)]
pub(super) struct Batcher {
    tx: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Entry(entry, _) => f.debug_tuple("Entry").field(entry).finish(),
            Command::Flush(_) => f.write_str("Flush"),
        }
    }
}

/// What a batch request needs besides its entries.
#[derive(Debug, Clone)]
pub(super) struct Sender {
    pub(super) client: Client,
    pub(super) queue_url: String,
    pub(super) target: Target,
    pub(super) kind: Kind,
}

impl Batcher {
    /// Spawns the batching task on the current tokio runtime.
    pub(super) fn spawn(sender: Sender, flush_interval: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(collect(sender, flush_interval, rx));
        Batcher { tx }
    }

    /// Queues `entry` and waits for its result.
    pub(super) async fn submit(&self, entry: Entry) -> Result<(), TransportError> {
        let (reply, result) = oneshot::channel();
        self.tx
            .send(Command::Entry(entry, reply))
            .map_err(|_| TransportError::Closed)?;
        result.await.unwrap_or(Err(TransportError::Closed))
    }

    /// Sends what is pending and waits until every request sent so far has finished.
    pub(super) async fn flush(&self) -> Result<(), TransportError> {
        let (done, finished) = oneshot::channel();
        self.tx
            .send(Command::Flush(done))
            .map_err(|_| TransportError::Closed)?;
        finished.await.map_err(|_| TransportError::Closed)
    }
}

async fn collect(
    sender: Sender,
    flush_interval: Duration,
    mut rx: mpsc::UnboundedReceiver<Command>,
) {
    let mut pending: Vec<(Entry, Reply)> = Vec::with_capacity(MAX_BATCH);
    let mut deadline: Option<Instant> = None;
    let mut in_flight = JoinSet::new();
    loop {
        tokio::select! {
            command = rx.recv() => match command {
                Some(Command::Entry(entry, reply)) => {
                    if pending.is_empty() {
                        deadline = Some(Instant::now() + flush_interval);
                    }
                    pending.push((entry, reply));
                    if pending.len() == MAX_BATCH {
                        dispatch(&sender, &mut pending, &mut in_flight);
                        deadline = None;
                    }
                }
                Some(Command::Flush(done)) => {
                    dispatch(&sender, &mut pending, &mut in_flight);
                    deadline = None;
                    while in_flight.join_next().await.is_some() {}
                    let _ = done.send(());
                }
                None => {
                    dispatch(&sender, &mut pending, &mut in_flight);
                    while in_flight.join_next().await.is_some() {}
                    return;
                }
            },
            () = sleep_until(deadline), if deadline.is_some() => {
                dispatch(&sender, &mut pending, &mut in_flight);
                deadline = None;
            }
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline).await;
    }
}

fn dispatch(sender: &Sender, pending: &mut Vec<(Entry, Reply)>, in_flight: &mut JoinSet<()>) {
    if pending.is_empty() {
        return;
    }
    let batch = std::mem::replace(pending, Vec::with_capacity(MAX_BATCH));
    in_flight.spawn(send_batch(sender.clone(), batch));
}

/// One distinct receipt of a batch and every caller that submitted it.
struct Slot {
    entry: Entry,
    replies: Vec<Reply>,
}

impl Slot {
    /// Answers every caller of this receipt. A caller may have stopped waiting; the request
    /// was made all the same.
    fn answer(self, result: Result<(), TransportError>) {
        match result {
            Ok(()) => {
                for reply in self.replies {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(err) => answer_all(self.replies, err),
        }
    }
}

fn answer_all(replies: Vec<Reply>, err: TransportError) {
    let n = replies.len();
    for (reply, err) in replies.into_iter().zip(fan_out(err, n)) {
        let _ = reply.send(Err(err));
    }
}

/// Merges entries with the same receipt handle: SQS servers may reject a batch that names one
/// handle twice (moto answers `BatchEntryIdsNotDistinct`). For a visibility change the
/// timeout submitted last wins.
fn slots(batch: Vec<(Entry, Reply)>) -> Vec<Slot> {
    let mut slots: Vec<Slot> = Vec::with_capacity(batch.len());
    for (entry, reply) in batch {
        match slots.iter_mut().find(|s| s.entry.receipt == entry.receipt) {
            Some(slot) => {
                slot.entry.visibility = entry.visibility;
                slot.replies.push(reply);
            }
            None => slots.push(Slot {
                entry,
                replies: vec![reply],
            }),
        }
    }
    slots
}

/// Sends one batch, retries what may succeed later, and answers every caller.
async fn send_batch(sender: Sender, batch: Vec<(Entry, Reply)>) {
    let operation = sender.kind.operation();
    let mut todo = slots(batch);
    let mut entry_attempt = 0;
    let mut backoff = crate::backoff::exponential(ENTRY_BACKOFF_FIRST, ENTRY_BACKOFF_MAX);
    while !todo.is_empty() {
        let request: Vec<&Entry> = todo.iter().map(|slot| &slot.entry).collect();
        let mut failures = match send_with_timeout(&sender, &request).await {
            Ok(failures) => failures,
            Err(err) => {
                answer_all(
                    todo.into_iter().flat_map(|slot| slot.replies).collect(),
                    err,
                );
                return;
            }
        };
        let mut retry = Vec::new();
        for (position, slot) in todo.into_iter().enumerate() {
            match failures.remove(&position) {
                None => slot.answer(Ok(())),
                Some(failure) if failure.is_retryable() && entry_attempt < ENTRY_RETRIES => {
                    retry.push(slot);
                }
                Some(failure) => {
                    tracing::debug!(
                        operation,
                        code = %failure.code,
                        sender_fault = failure.sender_fault,
                        "batch entry failed"
                    );
                    slot.answer(Err(failure.into_error(operation)));
                }
            }
        }
        todo = retry;
        if !todo.is_empty() {
            entry_attempt += 1;
            tokio::time::sleep(backoff.next().unwrap_or(ENTRY_BACKOFF_MAX)).await;
        }
    }
}

/// Sends `entries` as one request (the SDK retries it), bounded in time.
///
/// Returns the failed entries by their position in `entries`.
async fn send_with_timeout(
    sender: &Sender,
    entries: &[&Entry],
) -> Result<HashMap<usize, EntryFailure>, TransportError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, send_once(sender, entries)).await {
        Ok(result) => result,
        Err(_) => Err(TransportError::Service {
            operation: sender.kind.operation(),
            retryable: true,
            source: format!("no answer within {REQUEST_TIMEOUT:?}").into(),
        }),
    }
}

/// One batch request. Entry ids are the entries' positions: unique within the request even
/// when one message was delivered twice or one receipt was submitted twice.
async fn send_once(
    sender: &Sender,
    entries: &[&Entry],
) -> Result<HashMap<usize, EntryFailure>, TransportError> {
    let operation = sender.kind.operation();
    let (successful, failed) = match sender.kind {
        Kind::Delete => {
            let request = entries.iter().enumerate().map(|(i, entry)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(entry.receipt.as_str())
                    .build()
                    .expect("id and receipt handle are set")
            });
            let output = sender
                .client
                .delete_message_batch()
                .queue_url(&sender.queue_url)
                .set_entries(Some(request.collect()))
                .send()
                .await
                .map_err(|err| classify(operation, &sender.target, &err))?;
            let successful: Vec<String> = output.successful.into_iter().map(|s| s.id).collect();
            (successful, output.failed)
        }
        Kind::ChangeVisibility => {
            let request = entries.iter().enumerate().map(|(i, entry)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(entry.receipt.as_str())
                    .visibility_timeout(entry.visibility)
                    .build()
                    .expect("id and receipt handle are set")
            });
            let output = sender
                .client
                .change_message_visibility_batch()
                .queue_url(&sender.queue_url)
                .set_entries(Some(request.collect()))
                .send()
                .await
                .map_err(|err| classify(operation, &sender.target, &err))?;
            let successful: Vec<String> = output.successful.into_iter().map(|s| s.id).collect();
            (successful, output.failed)
        }
    };
    let mut failures = HashMap::new();
    for failure in failed {
        if let Ok(i) = failure.id.parse::<usize>() {
            failures.insert(
                i,
                EntryFailure {
                    code: failure.code,
                    message: failure.message,
                    sender_fault: failure.sender_fault,
                },
            );
        }
    }
    // An entry the response leaves out of both lists did not demonstrably succeed.
    let succeeded: std::collections::HashSet<usize> =
        successful.iter().filter_map(|id| id.parse().ok()).collect();
    for i in 0..entries.len() {
        if !succeeded.contains(&i) && !failures.contains_key(&i) {
            failures.insert(
                i,
                EntryFailure {
                    code: "MissingFromResponse".into(),
                    message: Some(format!("entry {i} is in neither Successful nor Failed")),
                    sender_fault: false,
                },
            );
        }
    }
    Ok(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(receipt: &str, visibility: i32) -> (Entry, Reply) {
        let entry = Entry {
            receipt: Receipt::new(receipt),
            visibility,
        };
        (entry, oneshot::channel().0)
    }

    #[test]
    fn one_receipt_submitted_twice_is_sent_once() {
        let slots = slots(vec![entry("a", 5), entry("b", 5), entry("a", 9)]);
        assert_eq!(slots.len(), 2);
        assert_eq!(slots[0].entry.receipt.as_str(), "a");
        assert_eq!(slots[0].entry.visibility, 9, "the later timeout wins");
        assert_eq!(slots[0].replies.len(), 2);
        assert_eq!(slots[1].replies.len(), 1);
    }
}
