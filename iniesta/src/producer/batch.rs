//! Batch sends for any broker with batch requests that answer per entry (SQS
//! `SendMessageBatch`, SNS `PublishBatch`): the split into requests, and trying again the
//! entries the broker failed on its side.

use std::future::Future;
use std::time::Duration;

use crate::TransportError;
use crate::transport::Published;

/// Tries of an entry the broker failed on its side before its error is returned. The
/// request itself is retried by the SDK; entries are not.
const ENTRY_TRIES: u32 = 3;
/// First pause before entries are tried again; it doubles, with jitter.
const ENTRY_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// One result per message of the caller's list, filled as the answers come.
pub(crate) type Results = Vec<Option<Result<Published, TransportError>>>;

/// A checked message in the broker's request shape, with its place in the caller's list.
#[derive(Debug, Clone)]
pub(crate) struct Ready<T> {
    pub(crate) index: usize,
    /// What the broker counts against the request's size limit.
    pub(crate) size: usize,
    pub(crate) entry: T,
}

impl<T> Ready<T> {
    /// The entry's id within a request: its place in the caller's list.
    pub(crate) fn id(&self) -> String {
        self.index.to_string()
    }
}

/// What the broker answered for one request.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    /// Entry id and the broker's message id.
    pub(crate) sent: Vec<(String, String)>,
    /// Entry id, whether the sender was at fault, and the broker's code and message.
    pub(crate) failed: Vec<(String, bool, String)>,
}

/// Splits checked messages into requests of at most `max_entries` entries and `max_bytes`
/// in all, keeping their order.
pub(crate) fn requests<T>(
    ready: Vec<Ready<T>>,
    max_entries: usize,
    max_bytes: usize,
) -> Vec<Vec<Ready<T>>> {
    let mut requests: Vec<Vec<Ready<T>>> = Vec::new();
    let mut size = 0;
    for entry in ready {
        let full = requests
            .last()
            .is_none_or(|last| last.len() == max_entries || size + entry.size > max_bytes);
        if full {
            requests.push(Vec::new());
            size = 0;
        }
        size += entry.size;
        requests.last_mut().expect("pushed above").push(entry);
    }
    requests
}

/// Sends one request's entries through `send` (entry ids are [`Ready::id`]), trying again
/// those the broker failed on its side or did not answer, and fills their `results`.
/// `operation` names the request in errors.
pub(crate) async fn send_request<T, F, Fut>(
    operation: &'static str,
    mut pending: Vec<Ready<T>>,
    results: &mut Results,
    mut send: F,
) where
    T: Clone,
    F: FnMut(Vec<(String, T)>) -> Fut,
    Fut: Future<Output = Result<Answer, TransportError>>,
{
    let mut pauses = crate::backoff::exponential(ENTRY_RETRY_PAUSE, ENTRY_RETRY_PAUSE * 8);
    for attempt in 1..=ENTRY_TRIES {
        let entries = pending.iter().map(|r| (r.id(), r.entry.clone())).collect();
        let answer = match send(entries).await {
            Ok(answer) => answer,
            Err(error) => {
                // The SDK retried the request already.
                let errors = crate::transport::sqs::fan_out(error, pending.len());
                for (ready, error) in pending.iter().zip(errors) {
                    results[ready.index] = Some(Err(error));
                }
                return;
            }
        };
        for (id, message_id) in answer.sent {
            // Only ids of this request count: anything else is ignored, not trusted.
            if let Some(at) = pending.iter().position(|r| r.id() == id) {
                let ready = pending.swap_remove(at);
                results[ready.index] = Some(Ok(Published { message_id }));
            }
        }
        let mut again = Vec::new();
        for (id, sender_fault, text) in answer.failed {
            let Some(at) = pending.iter().position(|r| r.id() == id) else {
                continue;
            };
            let ready = pending.swap_remove(at);
            if sender_fault || attempt == ENTRY_TRIES {
                results[ready.index] = Some(Err(TransportError::Service {
                    operation,
                    retryable: !sender_fault,
                    source: format!("entry {} failed: {text}", ready.index).into(),
                }));
            } else {
                again.push(ready);
            }
        }
        // Entries answered in neither list: not sent.
        again.append(&mut pending);
        if again.is_empty() {
            return;
        }
        again.sort_by_key(|r| r.index);
        pending = again;
        if attempt < ENTRY_TRIES {
            tokio::time::sleep(pauses.next().unwrap_or(ENTRY_RETRY_PAUSE)).await;
        }
    }
    for ready in pending {
        results[ready.index] = Some(Err(TransportError::Service {
            operation,
            retryable: true,
            source: "the broker answered neither success nor failure for this entry".into(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn ready(index: usize, size: usize) -> Ready<()> {
        Ready {
            index,
            size,
            entry: (),
        }
    }

    #[test]
    fn requests_hold_the_entry_and_byte_limits_in_order() {
        let split: Vec<Vec<usize>> = requests((0..25).map(|i| ready(i, 10)).collect(), 10, 1000)
            .iter()
            .map(|r| r.iter().map(|e| e.index).collect())
            .collect();
        assert_eq!(split.len(), 3);
        assert_eq!(split[0], (0..10).collect::<Vec<_>>());
        assert_eq!(split[2], (20..25).collect::<Vec<_>>());
        let big = requests(vec![ready(0, 600), ready(1, 600), ready(2, 300)], 10, 1024);
        let sizes: Vec<usize> = big.iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, 2]);
    }

    /// Runs `send_request` for `n` entries against answers given per attempt; returns the
    /// results and the entry ids each attempt sent.
    async fn run(
        n: usize,
        answers: Vec<Answer>,
    ) -> (Vec<Result<Published, TransportError>>, Vec<Vec<String>>) {
        let mut results: Results = (0..n).map(|_| None).collect();
        let answers = Mutex::new(answers.into_iter());
        let asked = Mutex::new(Vec::new());
        send_request(
            "Test",
            (0..n).map(|i| ready(i, 1)).collect(),
            &mut results,
            |entries: Vec<(String, ())>| {
                asked
                    .lock()
                    .unwrap()
                    .push(entries.into_iter().map(|(id, ())| id).collect());
                let answer = answers.lock().unwrap().next().unwrap_or_default();
                async move { Ok(answer) }
            },
        )
        .await;
        let results = results.into_iter().map(Option::unwrap).collect();
        (results, asked.into_inner().unwrap())
    }

    fn sent(id: &str) -> (String, String) {
        (id.to_owned(), format!("m-{id}"))
    }

    #[tokio::test(start_paused = true)]
    async fn broker_side_failures_are_tried_again_sender_faults_are_not() {
        let first = Answer {
            sent: vec![sent("0")],
            failed: vec![
                ("1".into(), false, "InternalError: busy".into()),
                ("2".into(), true, "InvalidParameterValue: no".into()),
                // Not an entry of this request: ignored.
                ("9".into(), false, "?".into()),
            ],
        };
        let second = Answer {
            sent: vec![sent("1"), ("7".into(), "bogus".into())],
            failed: vec![],
        };
        let (results, asked) = run(3, vec![first, second]).await;
        assert_eq!(asked, [vec!["0", "1", "2"], vec!["1"]]);
        assert_eq!(results[0].as_ref().unwrap().message_id, "m-0");
        assert_eq!(results[1].as_ref().unwrap().message_id, "m-1");
        let error = results[2].as_ref().unwrap_err();
        assert!(!error.is_retryable(), "{error}");
        assert!(
            error.to_string().contains("InvalidParameterValue"),
            "{error}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unanswered_and_always_failing_entries_end_with_a_retryable_error() {
        let failing = || Answer {
            sent: vec![],
            failed: vec![("0".into(), false, "InternalError".into())],
        };
        // Entry 1 is never answered at all.
        let (results, asked) = run(2, vec![failing(), failing(), failing()]).await;
        assert_eq!(asked.len(), 3, "three tries: {asked:?}");
        assert!(
            results
                .iter()
                .all(|r| r.as_ref().is_err_and(TransportError::is_retryable))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_request_fails_every_entry_once() {
        let mut results: Results = (0..2).map(|_| None).collect();
        let mut calls = 0;
        send_request("Test", vec![ready(0, 1), ready(1, 1)], &mut results, |_| {
            calls += 1;
            async {
                Err(TransportError::Service {
                    operation: "Test",
                    retryable: true,
                    source: "connection refused".into(),
                })
            }
        })
        .await;
        assert_eq!(calls, 1, "the SDK retries requests, not this loop");
        assert!(results.iter().all(|r| matches!(r, Some(Err(_)))));
    }
}
