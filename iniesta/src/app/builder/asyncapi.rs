//! The app's AsyncAPI document (see [`crate::asyncapi`]): the handlers it would route and the
//! messages it declares it sends.

use super::AppBuilder;
use crate::asyncapi::{Document, Received, SentMessage, Service};

impl AppBuilder {
    /// Declares a message the service sends, for its AsyncAPI document
    /// ([`asyncapi`](Self::asyncapi)); it changes nothing at runtime.
    pub fn sends(mut self, message: SentMessage) -> Self {
        self.sent.push(message);
        self
    }

    /// The AsyncAPI 3.0 document of the app: its handlers (the `#[handler]` registrations
    /// unless turned off, and those added at runtime) and its declared sent messages. See
    /// [`crate::asyncapi`] for what it holds.
    #[must_use]
    pub fn asyncapi(&self, service: &Service) -> serde_json::Value {
        let mut received: Vec<Received> = self
            .route_entries()
            .into_iter()
            .map(|entry| {
                let location = entry.location.file_line();
                let mut keys = entry.keys;
                keys.sort();
                Received {
                    handler: entry.location.name,
                    location,
                    keys,
                    fallback: entry.fallback,
                    payload: entry.payload,
                }
            })
            .collect();
        received.sort_by(|a, b| a.handler.cmp(&b.handler));
        // A policy that cannot be written (a key SNS refuses) is `check`'s to report.
        let filter_policy = match self.filter_policy() {
            Ok(Some(policy)) => Some(policy.to_json()),
            _ => None,
        };
        Document {
            service,
            event_attribute: &self.consumer.decode.event_attribute,
            received,
            sent: &self.sent,
            filter_policy,
        }
        .to_json()
    }
}
