//! Sending a claimed batch: in rounds, so that the messages of one aggregate go out one after
//! the other, and a failed message holds back the rest of its aggregate.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::future::join_all;

use super::row::OutboxRow;
use crate::producer::{Destination, Producer};
use crate::transport::Publisher;
use crate::{OutgoingMessage, TransportError};

/// What became of a claimed batch.
#[derive(Debug, Default)]
pub(super) struct Sent {
    /// Rows the broker took, by `seq`.
    pub(super) delivered: Vec<i64>,
    /// Rows that failed, with why (never the body).
    pub(super) failed: Vec<SendFailure>,
    /// Rows not tried because an earlier message of their aggregate failed: left as they
    /// are, claimed again once that one went through.
    pub(super) held: usize,
}

/// One row whose send failed.
#[derive(Debug)]
pub(super) struct SendFailure {
    pub(super) seq: i64,
    pub(super) message_id: String,
    /// Failed sends before this one.
    pub(super) attempts: i32,
    pub(super) destination: String,
    pub(super) error: String,
    /// Whether trying again may succeed: not for a malformed row, a message the destination
    /// refuses, or a destination that does not exist (until someone fixes them).
    pub(super) retryable: bool,
}

/// Why a message was not sent.
#[derive(Debug, Clone)]
struct Cause {
    error: String,
    retryable: bool,
}

impl From<&TransportError> for Cause {
    fn from(error: &TransportError) -> Self {
        Cause {
            error: error.to_string(),
            retryable: error.is_retryable(),
        }
    }
}

/// A message ready to send, with what marking its row takes.
struct Ready {
    row: OutboxRow,
    message: OutgoingMessage,
}

/// Sends `rows` (in `seq` order) through `producer`.
///
/// Round `k` sends the `k`-th row of every aggregate whose earlier rows all went through, and
/// every row without an aggregate in round 0; each round sends one batch per destination,
/// the destinations at once. So within the batch the `k`-th message of an aggregate leaves
/// only after the broker took the `(k-1)`-th.
pub(super) async fn send(producer: &dyn Producer, rows: Vec<OutboxRow>) -> Sent {
    let mut sent = Sent::default();
    let mut stopped: HashSet<String> = HashSet::new();
    let mut publishers: HashMap<Destination, Arc<dyn Publisher>> = HashMap::new();
    for round in rounds(rows) {
        let mut by_destination: Vec<(Destination, Vec<Ready>)> = Vec::new();
        for row in round {
            if row
                .aggregate_id
                .as_ref()
                .is_some_and(|a| stopped.contains(a))
            {
                sent.held += 1;
                continue;
            }
            match row.message() {
                Ok((to, message)) => {
                    let ready = Ready { row, message };
                    match by_destination.iter_mut().find(|(d, _)| *d == to) {
                        Some((_, batch)) => batch.push(ready),
                        None => by_destination.push((to, vec![ready])),
                    }
                }
                Err(error) => {
                    let cause = Cause {
                        error,
                        retryable: false,
                    };
                    fail(&mut sent, &mut stopped, row, cause);
                }
            }
        }
        let mut sends = Vec::with_capacity(by_destination.len());
        for (to, batch) in by_destination {
            let publisher = match publishers.get(&to) {
                Some(publisher) => Ok(Arc::clone(publisher)),
                None => producer.publisher(&to).await.inspect(|publisher| {
                    publishers.insert(to.clone(), Arc::clone(publisher));
                }),
            };
            sends.push(publish(publisher.map_err(|e| Cause::from(&e)), batch));
        }
        for (rows, results) in join_all(sends).await {
            let mut results = results.into_iter();
            for row in rows {
                let result = results.next().unwrap_or_else(|| {
                    Err(Cause {
                        error: "the publisher gave no result for it".to_owned(),
                        retryable: true,
                    })
                });
                match result {
                    Ok(()) => sent.delivered.push(row.seq),
                    Err(cause) => fail(&mut sent, &mut stopped, row, cause),
                }
            }
        }
    }
    sent
}

/// Sends `batch` through `publisher` (or fails it with the look-up's error); one result per
/// row, in order.
async fn publish(
    publisher: Result<Arc<dyn Publisher>, Cause>,
    batch: Vec<Ready>,
) -> (Vec<OutboxRow>, Vec<Result<(), Cause>>) {
    let (rows, messages): (Vec<OutboxRow>, Vec<OutgoingMessage>) =
        batch.into_iter().map(|r| (r.row, r.message)).unzip();
    let results = match publisher {
        Ok(publisher) => publisher
            .publish_batch(messages)
            .await
            .into_iter()
            .map(|result| result.map(drop).map_err(|e| Cause::from(&e)))
            .collect(),
        Err(error) => vec![Err(error); rows.len()],
    };
    (rows, results)
}

/// Records `row` as failed and stops its aggregate for the rest of the batch.
fn fail(sent: &mut Sent, stopped: &mut HashSet<String>, row: OutboxRow, cause: Cause) {
    if let Some(aggregate) = row.aggregate_id {
        stopped.insert(aggregate);
    }
    sent.failed.push(SendFailure {
        seq: row.seq,
        message_id: row.message_id,
        attempts: row.attempts,
        destination: row.destination,
        error: cause.error,
        retryable: cause.retryable,
    });
}

/// `rows` (in `seq` order) split into rounds: round `k` holds the `k`-th row of each
/// aggregate, and round 0 also every row without one; each round in `seq` order.
fn rounds(rows: Vec<OutboxRow>) -> Vec<Vec<OutboxRow>> {
    let mut rounds: Vec<Vec<OutboxRow>> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for row in rows {
        let round = match &row.aggregate_id {
            None => 0,
            Some(aggregate) => {
                let count = seen.entry(aggregate.clone()).or_default();
                *count += 1;
                *count - 1
            }
        };
        if rounds.len() <= round {
            rounds.resize_with(round + 1, Vec::new);
        }
        rounds[round].push(row);
    }
    rounds
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::TransportError;
    use crate::handler::BoxFuture;
    use crate::postgres::relay::row::tests::row;
    use crate::producer::{MESSAGE_ID_ATTRIBUTE, MemoryProducer};
    use crate::transport::Published;

    const TOPIC: &str = "arn:aws:sns:us-east-1:000000000000:orders";

    fn topic_row(seq: i64, aggregate: Option<&str>) -> OutboxRow {
        let mut stored = row(seq, aggregate, TOPIC);
        stored.destination_kind = "topic".into();
        stored
    }

    /// A [`MemoryProducer`] whose publishers fail the messages named, and remember each
    /// batch they were given (by message id).
    #[derive(Default)]
    struct Failing {
        memory: MemoryProducer,
        fail: Vec<String>,
        batches: Arc<Mutex<Vec<Vec<String>>>>,
    }

    struct FailingPublisher {
        inner: Arc<dyn Publisher>,
        fail: Vec<String>,
        batches: Arc<Mutex<Vec<Vec<String>>>>,
    }

    fn id(message: &OutgoingMessage) -> String {
        message
            .attribute_text(MESSAGE_ID_ATTRIBUTE)
            .unwrap()
            .to_owned()
    }

    impl Producer for Failing {
        fn publisher(
            &self,
            destination: &Destination,
        ) -> BoxFuture<'_, Result<Arc<dyn Publisher>, TransportError>> {
            let destination = destination.clone();
            Box::pin(async move {
                let inner = self.memory.publisher(&destination).await?;
                Ok(Arc::new(FailingPublisher {
                    inner,
                    fail: self.fail.clone(),
                    batches: Arc::clone(&self.batches),
                }) as Arc<dyn Publisher>)
            })
        }
    }

    impl Publisher for FailingPublisher {
        fn publish(
            &self,
            message: OutgoingMessage,
        ) -> BoxFuture<'_, Result<Published, TransportError>> {
            if self.fail.contains(&id(&message)) {
                return Box::pin(std::future::ready(Err(TransportError::Service {
                    operation: "Publish",
                    retryable: true,
                    source: "throttled".into(),
                })));
            }
            self.inner.publish(message)
        }

        fn publish_batch(
            &self,
            messages: Vec<OutgoingMessage>,
        ) -> BoxFuture<'_, Vec<Result<Published, TransportError>>> {
            self.batches
                .lock()
                .unwrap()
                .push(messages.iter().map(id).collect());
            Box::pin(async move {
                let mut results = Vec::new();
                for message in messages {
                    results.push(self.publish(message).await);
                }
                results
            })
        }
    }

    fn published(producer: &Failing) -> Vec<String> {
        producer.memory.published(TOPIC).iter().map(id).collect()
    }

    #[tokio::test]
    async fn an_aggregate_goes_out_one_message_per_round() {
        let producer = Failing::default();
        let rows = vec![
            topic_row(1, Some("a")),
            topic_row(2, Some("a")),
            topic_row(3, None),
            topic_row(4, Some("b")),
            topic_row(5, Some("a")),
            topic_row(6, None),
        ];
        let sent = send(&producer, rows).await;
        assert_eq!(sent.delivered, [1, 3, 4, 6, 2, 5]);
        assert!(sent.failed.is_empty());
        let batches = producer.batches.lock().unwrap().clone();
        assert_eq!(
            batches,
            [vec!["m-1", "m-3", "m-4", "m-6"], vec!["m-2"], vec!["m-5"]]
        );
    }

    #[tokio::test]
    async fn a_failed_message_holds_back_the_rest_of_its_aggregate_only() {
        let producer = Failing {
            fail: vec!["m-2".into()],
            ..Failing::default()
        };
        let rows = vec![
            topic_row(1, Some("a")),
            topic_row(2, Some("a")),
            topic_row(3, Some("b")),
            topic_row(4, Some("a")),
            topic_row(5, Some("b")),
            topic_row(6, None),
        ];
        let sent = send(&producer, rows).await;
        assert_eq!(sent.delivered, [1, 3, 6, 5]);
        assert_eq!(sent.held, 1, "m-4 waits for m-2");
        let [failed] = &sent.failed[..] else {
            panic!("one failure: {:?}", sent.failed)
        };
        assert_eq!((failed.seq, failed.message_id.as_str()), (2, "m-2"));
        assert!(failed.error.contains("throttled"), "{}", failed.error);
        assert!(failed.retryable);
        assert_eq!(published(&producer), ["m-1", "m-3", "m-6", "m-5"]);
    }

    #[tokio::test]
    async fn a_row_that_cannot_be_rebuilt_fails_and_holds_its_aggregate() {
        let producer = Failing::default();
        let mut broken = topic_row(1, Some("a"));
        broken.attributes = "[]".into();
        let sent = send(&producer, vec![broken, topic_row(2, Some("a"))]).await;
        assert!(sent.delivered.is_empty());
        assert_eq!(sent.held, 1);
        assert_eq!(sent.failed[0].error, "attributes are not a JSON object");
        assert!(!sent.failed[0].retryable, "a malformed row stays malformed");
    }

    #[tokio::test]
    async fn an_unknown_destination_fails_its_rows_with_the_lookup_error() {
        let producer = Failing::default();
        let sent = send(&producer, vec![row(1, None, "nowhere")]).await;
        assert!(!sent.failed[0].retryable);
        assert!(
            sent.failed[0].error.contains("nowhere"),
            "{}",
            sent.failed[0].error
        );
    }
}
