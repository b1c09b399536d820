//! Batch sends for any broker with batch requests that answer per entry (SQS
//! `SendMessageBatch`, SNS `PublishBatch`): each message checked and converted, the split into
//! requests, trying again the entries the broker failed on its side, one result per message.
//! A broker brings only its request and the conversion of its answer.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use super::InvalidMessage;
use crate::transport::Published;
use crate::{OutgoingMessage, TransportError};

/// Tries of an entry the broker failed on its side before its error is returned. The
/// request itself is retried by the SDK; entries are not.
const ENTRY_TRIES: u32 = 3;
/// First pause before entries are tried again; it doubles, with jitter.
const ENTRY_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How a destination takes batches: its request's name and limits, and whether it keeps
/// each group's order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batching {
    /// The request's name in errors (`SendMessageBatch`).
    pub(crate) operation: &'static str,
    /// Most entries in one request.
    pub(crate) max_entries: usize,
    /// Most bytes in one request, as [`Prepared::size`] counts them.
    pub(crate) max_bytes: usize,
    /// Whether the destination keeps each message group's order (a FIFO queue or topic).
    pub(crate) fifo: bool,
}

/// One message checked and in the broker's request shape.
pub(crate) struct Prepared<T> {
    /// What the broker counts against the request's size limit.
    pub(crate) size: usize,
    /// The entry without its id: `send` is handed the id to give it.
    pub(crate) entry: T,
}

/// What the broker answered for one request.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    sent: Vec<Sent>,
    failed: Vec<Failed>,
}

#[derive(Debug)]
struct Sent {
    id: String,
    message_id: String,
}

#[derive(Debug)]
struct Failed {
    id: String,
    /// Whether the sender was at fault: trying again cannot help.
    sender_fault: bool,
    /// The broker's code and message.
    reason: String,
}

impl Answer {
    /// The entry `id` went through as the broker's message `message_id`.
    pub(crate) fn sent(&mut self, id: &str, message_id: &str) {
        self.sent.push(Sent {
            id: id.to_owned(),
            message_id: message_id.to_owned(),
        });
    }

    /// The entry `id` failed, with the broker's error `code` and `message`.
    pub(crate) fn failed(
        &mut self,
        id: &str,
        sender_fault: bool,
        code: &str,
        message: Option<&str>,
    ) {
        self.failed.push(Failed {
            id: id.to_owned(),
            sender_fault,
            reason: format!("{code}: {}", message.unwrap_or("no message")),
        });
    }
}

/// Sends `messages`: each goes through `prepare` (an [`InvalidMessage`] is its result, and
/// nothing is sent for it), then requests within `batching`'s limits go through `send`, in
/// order, one after the other. `send` gets each entry with its id within the request and
/// answers per entry; entries the broker failed on its side, or did not answer, are tried
/// again. One result per message, in order.
///
/// On a FIFO destination, once a message of a group has failed (invalid, refused, or out of
/// tries), the group's later messages are not sent: they fail too, retryable, so that sending
/// the failed ones again, in order, keeps the group's order. (A later entry of the group in
/// the same request as the failure may have gone through already; nothing can undo that.)
pub(crate) async fn send_all<T, P, F, Fut>(
    messages: Vec<OutgoingMessage>,
    mut prepare: P,
    batching: Batching,
    mut send: F,
) -> Vec<Result<Published, TransportError>>
where
    T: Clone,
    P: FnMut(OutgoingMessage) -> Result<Prepared<T>, InvalidMessage>,
    F: FnMut(Vec<(String, T)>) -> Fut,
    Fut: Future<Output = Result<Answer, TransportError>>,
{
    let mut outcomes = Outcomes::new(messages.len(), batching.operation);
    let mut ready = Vec::with_capacity(messages.len());
    for (index, message) in messages.into_iter().enumerate() {
        let group = if batching.fifo {
            message.group_id.clone()
        } else {
            None
        };
        let at = Place { index, group };
        match prepare(message) {
            Ok(prepared) => ready.push(Ready { at, prepared }),
            Err(invalid) => outcomes.fail(&at, invalid.into()),
        }
    }
    for request in requests(ready, batching.max_entries, batching.max_bytes) {
        let request: Vec<_> = request
            .into_iter()
            .filter(|ready| !outcomes.hold_back(&ready.at))
            .collect();
        if !request.is_empty() {
            send_request(request, &mut outcomes, &mut send).await;
        }
    }
    outcomes.into_results()
}

/// A message's place in the caller's list, and its FIFO group (`None` when the destination
/// keeps no order).
struct Place {
    index: usize,
    group: Option<String>,
}

impl Place {
    /// The entry's id within a request: its place in the caller's list.
    fn id(&self) -> String {
        self.index.to_string()
    }
}

/// A prepared message and its place. Not `Debug`: the entry holds the body.
struct Ready<T> {
    at: Place,
    prepared: Prepared<T>,
}

/// The results so far, and the FIFO groups that had a failure.
struct Outcomes {
    operation: &'static str,
    results: Vec<Option<Result<Published, TransportError>>>,
    /// Each group with a failed message, and the first such message's index.
    failed_groups: HashMap<String, usize>,
}

impl Outcomes {
    fn new(messages: usize, operation: &'static str) -> Outcomes {
        Outcomes {
            operation,
            results: (0..messages).map(|_| None).collect(),
            failed_groups: HashMap::new(),
        }
    }

    fn succeed(&mut self, at: &Place, message_id: String) {
        self.results[at.index] = Some(Ok(Published { message_id }));
    }

    fn fail(&mut self, at: &Place, error: TransportError) {
        self.results[at.index] = Some(Err(error));
        if let Some(group) = &at.group {
            let first = self.failed_groups.entry(group.clone()).or_insert(at.index);
            *first = (*first).min(at.index);
        }
    }

    /// Whether `at` must not be sent because an earlier message of its group failed; if so,
    /// that is its result.
    fn hold_back(&mut self, at: &Place) -> bool {
        let Some(first) = at
            .group
            .as_ref()
            .and_then(|group| self.failed_groups.get(group))
            .copied()
            .filter(|first| *first < at.index)
        else {
            return false;
        };
        let error = TransportError::Service {
            operation: self.operation,
            retryable: true,
            source: format!(
                "not sent (or not confirmed): message {first} of its group failed, and a FIFO group keeps its order"
            )
            .into(),
        };
        self.fail(at, error);
        true
    }

    fn into_results(self) -> Vec<Result<Published, TransportError>> {
        self.results
            .into_iter()
            .map(|result| result.expect("every message answered"))
            .collect()
    }
}

/// Splits checked messages into requests of at most `max_entries` entries and `max_bytes`
/// in all, keeping their order.
fn requests<T>(ready: Vec<Ready<T>>, max_entries: usize, max_bytes: usize) -> Vec<Vec<Ready<T>>> {
    let mut requests: Vec<Vec<Ready<T>>> = Vec::new();
    let mut size = 0;
    for entry in ready {
        let full = requests
            .last()
            .is_none_or(|last| last.len() == max_entries || size + entry.prepared.size > max_bytes);
        if full {
            requests.push(Vec::new());
            size = 0;
        }
        size += entry.prepared.size;
        requests.last_mut().expect("pushed above").push(entry);
    }
    requests
}

/// Sends one request's entries through `send`, trying again those the broker failed on its
/// side or did not answer, and records their outcomes.
async fn send_request<T, F, Fut>(mut pending: Vec<Ready<T>>, outcomes: &mut Outcomes, send: &mut F)
where
    T: Clone,
    F: FnMut(Vec<(String, T)>) -> Fut,
    Fut: Future<Output = Result<Answer, TransportError>>,
{
    let operation = outcomes.operation;
    let mut pauses = crate::backoff::exponential(ENTRY_RETRY_PAUSE, ENTRY_RETRY_PAUSE * 8);
    for attempt in 1..=ENTRY_TRIES {
        let entries = pending
            .iter()
            .map(|r| (r.at.id(), r.prepared.entry.clone()))
            .collect();
        let answer = match send(entries).await {
            Ok(answer) => answer,
            Err(error) => {
                // The SDK retried the request already.
                let errors = crate::transport::sqs::fan_out(error, pending.len());
                for (ready, error) in pending.iter().zip(errors) {
                    outcomes.fail(&ready.at, error);
                }
                return;
            }
        };
        for Sent { id, message_id } in answer.sent {
            // Only ids of this request count: anything else is ignored, not trusted.
            if let Some(at) = pending.iter().position(|r| r.at.id() == id) {
                let ready = pending.swap_remove(at);
                outcomes.succeed(&ready.at, message_id);
            }
        }
        let mut again = Vec::new();
        for Failed {
            id,
            sender_fault,
            reason,
        } in answer.failed
        {
            let Some(at) = pending.iter().position(|r| r.at.id() == id) else {
                continue;
            };
            let ready = pending.swap_remove(at);
            if sender_fault || attempt == ENTRY_TRIES {
                let error = TransportError::Service {
                    operation,
                    retryable: !sender_fault,
                    source: format!("entry {} failed: {reason}", ready.at.index).into(),
                };
                outcomes.fail(&ready.at, error);
            } else {
                again.push(ready);
            }
        }
        // Entries answered in neither list: not sent.
        again.append(&mut pending);
        again.sort_by_key(|r| r.at.index);
        again.retain(|ready| !outcomes.hold_back(&ready.at));
        if again.is_empty() {
            return;
        }
        pending = again;
        if attempt < ENTRY_TRIES {
            tokio::time::sleep(pauses.next().unwrap_or(ENTRY_RETRY_PAUSE)).await;
        }
    }
    for ready in pending {
        let error = TransportError::Service {
            operation,
            retryable: true,
            source: "the broker answered neither success nor failure for this entry".into(),
        };
        outcomes.fail(&ready.at, error);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    const STANDARD: Batching = Batching {
        operation: "Test",
        max_entries: 10,
        max_bytes: 1000,
        fifo: false,
    };

    const FIFO: Batching = Batching {
        fifo: true,
        ..STANDARD
    };

    fn ready(index: usize, size: usize) -> Ready<()> {
        Ready {
            at: Place { index, group: None },
            prepared: Prepared { size, entry: () },
        }
    }

    #[test]
    fn requests_hold_the_entry_and_byte_limits_in_order() {
        let split: Vec<Vec<usize>> = requests((0..25).map(|i| ready(i, 10)).collect(), 10, 1000)
            .iter()
            .map(|r| r.iter().map(|e| e.at.index).collect())
            .collect();
        assert_eq!(split.len(), 3);
        assert_eq!(split[0], (0..10).collect::<Vec<_>>());
        assert_eq!(split[2], (20..25).collect::<Vec<_>>());
        let big = requests(vec![ready(0, 600), ready(1, 600), ready(2, 300)], 10, 1024);
        let sizes: Vec<usize> = big.iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, 2]);
    }

    /// A message whose body is its name; an empty body is invalid.
    fn message(body: &str, group: &str) -> OutgoingMessage {
        OutgoingMessage::new("E")
            .body(body.to_owned())
            .group_id(group)
    }

    /// Runs [`send_all`] on `messages` (entries are their bodies) against answers given per
    /// request; returns the results and the entries each request sent.
    async fn run(
        messages: Vec<OutgoingMessage>,
        batching: Batching,
        answers: Vec<Answer>,
    ) -> (Vec<Result<Published, TransportError>>, Vec<Vec<String>>) {
        let answers = Mutex::new(answers.into_iter());
        let asked = Mutex::new(Vec::new());
        let prepare = |message: OutgoingMessage| {
            let body = String::from_utf8_lossy(message.body_bytes()).into_owned();
            if body.is_empty() {
                return Err(InvalidMessage::EmptyBody);
            }
            Ok(Prepared {
                size: 1,
                entry: body,
            })
        };
        let results = send_all(
            messages,
            prepare,
            batching,
            |entries: Vec<(String, String)>| {
                asked
                    .lock()
                    .unwrap()
                    .push(entries.into_iter().map(|(_, body)| body).collect());
                let answer = answers.lock().unwrap().next().unwrap_or_default();
                async move { Ok(answer) }
            },
        )
        .await;
        (results, asked.into_inner().unwrap())
    }

    fn sent(ids: &[usize]) -> Answer {
        let mut answer = Answer::default();
        for id in ids {
            answer.sent(&id.to_string(), &format!("m-{id}"));
        }
        answer
    }

    fn message_ids(results: &[Result<Published, TransportError>]) -> Vec<Option<&str>> {
        results
            .iter()
            .map(|r| r.as_ref().ok().map(|p| p.message_id.as_str()))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn every_message_gets_its_result_in_order_an_invalid_one_is_not_sent() {
        let mut messages: Vec<_> = (0..12).map(|i| message(&format!("b{i}"), "g")).collect();
        messages[3] = message("", "g");
        let all_but_3: Vec<usize> = (0..11).filter(|i| *i != 3).collect();
        let (results, asked) = run(messages, STANDARD, vec![sent(&all_but_3), sent(&[11])]).await;
        assert_eq!(asked.len(), 2);
        assert_eq!(asked[0].len(), 10, "ten valid entries in the first request");
        assert!(!asked[0].contains(&"b3".to_owned()));
        assert!(matches!(
            results[3],
            Err(TransportError::InvalidMessage(InvalidMessage::EmptyBody))
        ));
        assert_eq!(message_ids(&results)[11], Some("m-11"));
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 11);
    }

    #[tokio::test(start_paused = true)]
    async fn broker_side_failures_are_tried_again_sender_faults_are_not() {
        let mut first = sent(&[0]);
        first.failed("1", false, "InternalError", Some("busy"));
        first.failed("2", true, "InvalidParameterValue", Some("no"));
        // Not an entry of this request: ignored.
        first.failed("9", false, "?", None);
        let mut second = sent(&[1]);
        second.sent("7", "bogus");
        let messages = ["a", "b", "c"].map(|b| message(b, "g")).to_vec();
        let (results, asked) = run(messages, STANDARD, vec![first, second]).await;
        assert_eq!(asked, [vec!["a", "b", "c"], vec!["b"]]);
        assert_eq!(message_ids(&results)[..2], [Some("m-0"), Some("m-1")]);
        let error = results[2].as_ref().unwrap_err();
        assert!(!error.is_retryable(), "{error}");
        assert!(
            error.to_string().contains("InvalidParameterValue: no"),
            "{error}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unanswered_and_always_failing_entries_end_with_a_retryable_error() {
        let failing = || {
            let mut answer = Answer::default();
            answer.failed("0", false, "InternalError", None);
            answer
        };
        // Entry 1 is never answered at all.
        let messages = vec![message("a", "g"), message("b", "h")];
        let (results, asked) = run(messages, STANDARD, vec![failing(), failing(), failing()]).await;
        assert_eq!(asked.len(), 3, "three tries: {asked:?}");
        assert!(
            results
                .iter()
                .all(|r| r.as_ref().is_err_and(TransportError::is_retryable))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_request_fails_every_entry_once() {
        let mut calls = 0;
        let prepare = |_: OutgoingMessage| Ok(Prepared { size: 1, entry: () });
        let messages = vec![message("a", "g"), message("b", "g")];
        let results = send_all(messages, prepare, STANDARD, |_| {
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
        assert!(results.iter().all(Result::is_err));
    }

    /// Entry 1 (group g) is refused; 0 and 2 (group h) go through, 3 (g) is not answered.
    fn g_refused_then_unanswered() -> Vec<Answer> {
        let mut first = sent(&[0, 2]);
        first.failed("1", true, "InvalidParameterValue", None);
        vec![first, sent(&[4, 5])]
    }

    fn four_in_two_groups_then_two() -> Vec<OutgoingMessage> {
        let mut messages: Vec<_> = ["h0", "g1", "h2", "g3"]
            .map(|b| message(b, &b[..1]))
            .to_vec();
        messages.extend([message("g4", "g"), message("h5", "h")]);
        messages
    }

    #[tokio::test(start_paused = true)]
    async fn on_fifo_a_failed_message_holds_back_the_rest_of_its_group() {
        let batching = Batching {
            max_entries: 4,
            ..FIFO
        };
        let (results, asked) = run(
            four_in_two_groups_then_two(),
            batching,
            g_refused_then_unanswered(),
        )
        .await;
        // 3 is not tried again and 4 not sent: they would land before 1 sent again.
        assert_eq!(asked, [vec!["h0", "g1", "h2", "g3"], vec!["h5"]]);
        assert_eq!(
            message_ids(&results),
            [Some("m-0"), None, Some("m-2"), None, None, Some("m-5")]
        );
        for held in [3, 4] {
            let error = results[held].as_ref().unwrap_err();
            assert!(error.is_retryable(), "{error}");
            assert!(
                error.to_string().contains("message 1 of its group failed"),
                "{error}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn on_fifo_an_invalid_message_holds_back_the_rest_of_its_group() {
        let messages = vec![
            message("a", "g"),
            message("", "g"),
            message("c", "g"),
            message("d", "h"),
        ];
        let (results, asked) = run(messages, FIFO, vec![sent(&[0, 3])]).await;
        assert_eq!(asked, [vec!["a", "d"]]);
        assert_eq!(
            message_ids(&results),
            [Some("m-0"), None, None, Some("m-3")]
        );
        assert!(results[2].as_ref().is_err_and(TransportError::is_retryable));
    }

    /// `g0 h1 | g2 h3` in requests of two, on FIFO.
    fn two_groups_in_two_requests() -> (Vec<OutgoingMessage>, Batching) {
        let messages = ["g0", "h1", "g2", "h3"]
            .map(|b| message(b, &b[..1]))
            .to_vec();
        let batching = Batching {
            max_entries: 2,
            ..FIFO
        };
        (messages, batching)
    }

    #[tokio::test(start_paused = true)]
    async fn on_fifo_a_message_sent_on_a_later_try_holds_nothing_back() {
        let (messages, batching) = two_groups_in_two_requests();
        let mut first = sent(&[1]);
        first.failed("0", false, "InternalError", None);
        let (results, asked) =
            run(messages, batching, vec![first, sent(&[0]), sent(&[2, 3])]).await;
        assert_eq!(asked, [vec!["g0", "h1"], vec!["g0"], vec!["g2", "h3"]]);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn on_fifo_a_message_failing_every_try_holds_back_its_group() {
        let (messages, batching) = two_groups_in_two_requests();
        let failing = |also_sent: &[usize]| {
            let mut answer = sent(also_sent);
            answer.failed("0", false, "InternalError", None);
            answer
        };
        let answers = vec![failing(&[1]), failing(&[]), failing(&[]), sent(&[3])];
        let (results, asked) = run(messages, batching, answers).await;
        assert_eq!(
            asked,
            [vec!["g0", "h1"], vec!["g0"], vec!["g0"], vec!["h3"]]
        );
        assert_eq!(
            message_ids(&results),
            [None, Some("m-1"), None, Some("m-3")]
        );
        let held = results[2].as_ref().unwrap_err();
        assert!(held.is_retryable(), "{held}");
        assert!(
            held.to_string().contains("message 0 of its group failed"),
            "{held}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn on_fifo_a_failed_request_holds_back_its_groups_only() {
        let messages = ["g0", "g1", "g2", "h3"]
            .map(|b| message(b, &b[..1]))
            .to_vec();
        let batching = Batching {
            max_entries: 2,
            ..FIFO
        };
        let prepare = |message: OutgoingMessage| {
            Ok(Prepared {
                size: 1,
                entry: String::from_utf8_lossy(message.body_bytes()).into_owned(),
            })
        };
        let mut asked: Vec<Vec<String>> = Vec::new();
        let results = send_all(
            messages,
            prepare,
            batching,
            |entries: Vec<(String, String)>| {
                let first_request = asked.is_empty();
                let mut answer = Answer::default();
                for (id, _) in &entries {
                    answer.sent(id, &format!("m-{id}"));
                }
                asked.push(entries.into_iter().map(|(_, body)| body).collect());
                async move {
                    if first_request {
                        Err(TransportError::Service {
                            operation: "Test",
                            retryable: true,
                            source: "connection refused".into(),
                        })
                    } else {
                        Ok(answer)
                    }
                }
            },
        )
        .await;
        assert_eq!(asked, [vec!["g0", "g1"], vec!["h3"]]);
        assert_eq!(message_ids(&results), [None, None, None, Some("m-3")]);
        assert!(
            results[2]
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("message 0 of its group failed")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_fifo_a_failure_holds_nothing_back() {
        let batching = Batching {
            max_entries: 4,
            ..STANDARD
        };
        let mut answers = g_refused_then_unanswered();
        answers.insert(1, sent(&[3]));
        let (results, asked) = run(four_in_two_groups_then_two(), batching, answers).await;
        assert_eq!(
            asked,
            [vec!["h0", "g1", "h2", "g3"], vec!["g3"], vec!["g4", "h5"]]
        );
        assert_eq!(
            message_ids(&results),
            [
                Some("m-0"),
                None,
                Some("m-2"),
                Some("m-3"),
                Some("m-4"),
                Some("m-5")
            ]
        );
    }
}
