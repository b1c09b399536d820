//! Messages a handler emits through [`Context::send`](crate::Context::send): held until the
//! handler succeeded, then sent before the incoming message is settled.

use std::sync::{Mutex, PoisonError};

use super::{Destination, InvalidMessage, Producer, ids, validate};
use crate::{Message, OutgoingMessage};

/// The follow-up messages of one delivery, in the order the handler emitted them.
#[derive(Debug, Default)]
pub(crate) struct Emitted {
    held: Mutex<Vec<(Destination, OutgoingMessage)>>,
}

impl Emitted {
    /// Gives `message` its ids (derived from `incoming` and its place, so a run again emits
    /// the same ids), checks it, and holds it for `to`.
    pub(crate) fn hold(
        &self,
        incoming: &Message,
        to: Destination,
        mut message: OutgoingMessage,
    ) -> Result<(), InvalidMessage> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if message.attribute_text(ids::MESSAGE_ID_ATTRIBUTE).is_none() {
            let id = ids::emitted_id(incoming, held.len());
            message.set_attribute(ids::MESSAGE_ID_ATTRIBUTE, id);
        }
        if message
            .attribute_text(ids::CAUSATION_ID_ATTRIBUTE)
            .is_none()
        {
            ids::caused_by(&mut message, incoming);
        }
        validate::check(&message, ids::OURS)?;
        held.push((to, message));
        Ok(())
    }

    /// Takes what is held, leaving nothing.
    pub(crate) fn take(&self) -> Vec<(Destination, OutgoingMessage)> {
        std::mem::take(&mut *self.held.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Sends `held` through `producer`: one batch per destination, destinations in the order
/// first emitted to. An error says how many messages of which destination failed, and the
/// first failure; the rest were sent (their ids let receivers drop them when the handler
/// runs again).
pub(crate) async fn send(
    held: Vec<(Destination, OutgoingMessage)>,
    producer: Option<&dyn Producer>,
) -> Result<(), String> {
    let Some(producer) = producer else {
        return Err(format!(
            "the handler emitted {} message(s) but the app has no producer: set one with AppBuilder::producer (App::from_env sets up SQS's)",
            held.len()
        ));
    };
    let mut batches: Vec<(Destination, Vec<OutgoingMessage>)> = Vec::new();
    for (to, message) in held {
        match batches.iter_mut().find(|(d, _)| *d == to) {
            Some((_, batch)) => batch.push(message),
            None => batches.push((to, vec![message])),
        }
    }
    let mut failures = Vec::new();
    for (to, batch) in batches {
        let count = batch.len();
        let publisher = match producer.publisher(&to).await {
            Ok(publisher) => publisher,
            Err(error) => {
                failures.push(format!("{count} to {to}: {error}"));
                continue;
            }
        };
        let results = publisher.publish_batch(batch).await;
        let errors: Vec<_> = results.into_iter().filter_map(Result::err).collect();
        if let Some(first) = errors.first() {
            failures.push(format!("{} of {count} to {to}: {first}", errors.len()));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "sending the handler's follow-up messages failed: {}",
            failures.join("; ")
        ))
    }
}
