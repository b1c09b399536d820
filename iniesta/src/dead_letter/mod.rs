//! Dead letters: messages that cannot succeed, handed to a place a person can look at.
//!
//! Off by default: a message that keeps failing stays in its queue until the queue's own
//! redrive policy moves it. With a [`DeadLetterSink`] ([`AppBuilder::dead_letter`], or
//! `INIESTA_DEAD_LETTER_QUEUE_NAME` for the built-in SQS sink) the consumer sends there, with
//! its original body and attributes plus the `iniesta_dlq_*` attributes of [`DeadLetter`],
//! every message that
//!
//! - has no handler for its event key and there is no fallback (`no_handler`),
//! - arrives with a body that fails its MD5 check for the second receive or more, when the
//!   queue has no redrive policy of its own (`corrupt`; the first such receive is left for a
//!   redelivery, since corruption in transit passes and the queue's copy is intact; with a
//!   redrive policy every corrupt receive is left, so the policy moves the intact copy; the
//!   letter carries the body as received, which `iniesta_dlq_error` says),
//! - made its handler return a [`Permanent`] error (`permanent`),
//! - failed its `INIESTA_DEAD_LETTER_AFTER_RECEIVES`-th receive, or arrives with a higher
//!   receive count after crashes (`max_receives`);
//!
//! and only once the sink took it, deletes it from the queue. When the sink fails the message
//! stays where it is (left to its lease, then received again), and the failure is logged.
//!
//! [`SqsDeadLetterSink::redrive`] moves dead letters back to their source queue.
//!
//! [`AppBuilder::dead_letter`]: crate::AppBuilder::dead_letter
//!
//! # Examples
//!
//! ```
//! use iniesta::dead_letter::DeadLetterReason;
//! use iniesta::testing::TestClient;
//! use iniesta::transport::MemoryQueue;
//! use iniesta::{App, Message, OutgoingMessage, Outcome};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let dead_letters = MemoryQueue::builder().name("orders-dlq").build();
//! let client = TestClient::new(
//!     App::builder()
//!         .registered_handlers(false)
//!         .dead_letter(dead_letters.clone())
//!         .handler("Order.created", |_: Message| async {
//!             Err::<(), _>(iniesta::permanent("order has no items"))
//!         }),
//! )
//! .unwrap();
//!
//! let report = client.deliver(OutgoingMessage::new("Order.created").body("{}")).await;
//! assert_eq!(report.outcome, Outcome::DeadLettered);
//! assert!(report.acked && client.queue().is_empty());
//! assert_eq!(dead_letters.len(), 1);
//! # }
//! ```

pub(crate) mod letter;
mod permanent;
#[cfg(feature = "sqs")]
mod sqs;

use std::sync::Arc;

pub use letter::{
    ATTRIBUTE_PREFIX, DeadLetter, DeadLetterReason, ERROR_ATTRIBUTE, HANDLER_ATTRIBUTE,
    MAX_ERROR_LEN, PACKED_ATTRIBUTES_ATTRIBUTE, REASON_ATTRIBUTE, RECEIVE_COUNT_ATTRIBUTE,
    SOURCE_QUEUE_ATTRIBUTE, UnpackError, original_attributes,
};
pub use permanent::{Permanent, PermanentExt, permanent};
#[cfg(feature = "sqs")]
pub use sqs::SqsDeadLetterSink;

use crate::TransportError;
use crate::handler::BoxFuture;
use crate::transport::MemoryQueue;

/// Where messages that cannot succeed go.
///
/// [`send`](Self::send) resolves `Ok` only once the letter is stored: the pipeline deletes the
/// message from its queue right after. An `Err` leaves the message in its queue.
///
/// Built in: [`SqsDeadLetterSink`] (feature `sqs`) and [`MemoryQueue`] (tests, demos).
///
/// # Examples
///
/// A sink that writes to a log table (here: a vector):
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use iniesta::dead_letter::{DeadLetter, DeadLetterSink};
/// use iniesta::{BoxFuture, TransportError};
///
/// #[derive(Default)]
/// struct Table(Arc<Mutex<Vec<String>>>);
///
/// impl DeadLetterSink for Table {
///     fn send(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), TransportError>> {
///         let row = format!("{} {} {}", letter.message_id, letter.reason, letter.error);
///         self.0.lock().unwrap().push(row);
///         Box::pin(std::future::ready(Ok(())))
///     }
///
///     fn destination(&self) -> &str {
///         "the dead_letters table"
///     }
/// }
///
/// let app = iniesta::App::builder()
///     .transport(iniesta::transport::MemoryQueue::default())
///     .dead_letter(Table::default())
///     .build();
/// assert!(app.is_ok());
/// ```
#[diagnostic::on_unimplemented(
    note = "a dead-letter sink stores a `DeadLetter`: `SqsDeadLetterSink`, `MemoryQueue`, or your own type"
)]
pub trait DeadLetterSink: Send + Sync + 'static {
    /// Stores one dead letter.
    fn send(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), TransportError>>;

    /// Where letters go, for logs and for the check that it is not the consumed queue (a
    /// queue name where there is one).
    fn destination(&self) -> &str;
}

/// A shared sink is a sink.
impl<S: DeadLetterSink + ?Sized> DeadLetterSink for Arc<S> {
    fn send(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), TransportError>> {
        (**self).send(letter)
    }

    fn destination(&self) -> &str {
        (**self).destination()
    }
}

/// The simulator stores dead letters as SQS would: [`DeadLetter::to_outgoing`], sent.
impl DeadLetterSink for MemoryQueue {
    fn send(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), TransportError>> {
        MemoryQueue::send(self, letter.to_outgoing());
        Box::pin(std::future::ready(Ok(())))
    }

    fn destination(&self) -> &str {
        self.name()
    }
}

/// The consumer's dead-letter policy: the sink, and after how many failed receives a message
/// goes there.
#[derive(Clone)]
pub(crate) struct DeadLetters {
    pub(crate) sink: Arc<dyn DeadLetterSink>,
    pub(crate) after_receives: Option<u32>,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("destination", &self.sink.destination())
            .field("after_receives", &self.after_receives)
            .finish()
    }
}

#[cfg(test)]
mod tests;
