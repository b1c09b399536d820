//! Messages a handler emits through [`Context::send`](crate::Context::send): held until the
//! handler succeeded, then sent before the incoming message is settled.

use std::sync::{Mutex, PoisonError};

use super::{Destination, InvalidMessage, Producer, ids, validate};
use crate::{BoxError, Message, OutgoingMessage};

/// Why [`Context::send`](crate::Context::send) (or `publish`, `publish_default`) refused a
/// message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The message breaks the broker's rules.
    #[error(transparent)]
    Invalid(#[from] InvalidMessage),
    /// The handler's run is over (its messages were taken for sending, or dropped): a send
    /// from work that outlived the handler.
    #[error("the handler has finished: messages can only be sent while it runs")]
    Finished,
    /// [`Context::publish_default`](crate::Context::publish_default) without a default topic.
    #[error(
        "no default topic to publish to: set INIESTA_SNS_PRODUCER_GLOBAL_TOPIC_ARN (or call with_default_topic on the producer), or name the topic with Context::publish"
    )]
    NoDefaultTopic,
}

/// The follow-up messages of one delivery, in the order the handler emitted them.
#[derive(Debug, Default)]
pub(crate) struct Emitted {
    state: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    messages: Vec<(Destination, OutgoingMessage)>,
    /// Taken once: later sends are refused, not silently dropped.
    closed: bool,
}

impl Emitted {
    /// Gives `message` what ids it lacks (derived from `incoming` and its place, so a run
    /// again emits the same ids) and the current trace context, checks it, and holds it.
    pub(crate) fn hold(
        &self,
        incoming: &Message,
        handler: &str,
        to: Destination,
        mut message: OutgoingMessage,
    ) -> Result<(), EmitError> {
        let mut held = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if held.closed {
            return Err(EmitError::Finished);
        }
        if message.attribute_text(ids::MESSAGE_ID_ATTRIBUTE).is_none() {
            let id = ids::emitted_id(incoming, handler, held.messages.len());
            message.set_attribute(ids::MESSAGE_ID_ATTRIBUTE, id);
        }
        ids::caused_by(&mut message, incoming);
        // Added now, not at send time, so the attribute count checked is the one sent.
        crate::trace::inject_if_absent(&mut message);
        validate::check(&message, ids::OURS)?;
        held.messages.push((to, message));
        Ok(())
    }

    /// Takes what is held and refuses any later send.
    pub(crate) fn take(&self) -> Vec<(Destination, OutgoingMessage)> {
        let mut held = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        held.closed = true;
        std::mem::take(&mut held.messages)
    }
}

/// Sends `held` through `producer`: one batch per destination, destinations in the order
/// first emitted to. The error says how many messages of which destination failed, and the
/// first failure; the rest were sent (their ids let receivers drop them when the handler
/// runs again). It is [`Permanent`](crate::Permanent) when trying again cannot help (no
/// producer, a message the queue refuses, a queue that does not exist), so the delivery is
/// not retried in a loop.
pub(crate) async fn send(
    held: Vec<(Destination, OutgoingMessage)>,
    producer: Option<&dyn Producer>,
) -> Result<(), BoxError> {
    let Some(producer) = producer else {
        return Err(crate::permanent(format!(
            "the handler sent {} message(s) but the app has no producer: set one with AppBuilder::producer (App::from_env sets up SQS's)",
            held.len()
        )));
    };
    let mut batches: Vec<(Destination, Vec<OutgoingMessage>)> = Vec::new();
    for (to, message) in held {
        match batches.iter_mut().find(|(d, _)| *d == to) {
            Some((_, batch)) => batch.push(message),
            None => batches.push((to, vec![message])),
        }
    }
    let mut failures = Vec::new();
    let mut retryable = true;
    for (to, batch) in batches {
        let count = batch.len();
        let publisher = match producer.publisher(&to).await {
            Ok(publisher) => publisher,
            Err(error) => {
                retryable &= error.is_retryable();
                failures.push(format!("{count} to {to}: {error}"));
                continue;
            }
        };
        let results = publisher.publish_batch(batch).await;
        let errors: Vec<_> = results.into_iter().filter_map(Result::err).collect();
        if let Some(first) = errors.first() {
            retryable &= errors.iter().all(crate::TransportError::is_retryable);
            failures.push(format!("{} of {count} to {to}: {first}", errors.len()));
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    let error = format!(
        "sending the handler's follow-up messages failed: {}",
        failures.join("; ")
    );
    Err(if retryable {
        error.into()
    } else {
        crate::permanent(error)
    })
}
