//! What an app would run, without running it: its handlers, the filter policy they need and
//! its AsyncAPI document (for `iniesta::cli`'s `handlers`, `filter-policy`, `check` and
//! `asyncapi`).

use super::AppBuilder;
use crate::__private::PayloadFn;
use crate::Result;
use crate::asyncapi::{Document, Received, SentMessage, ServiceInfo};
#[cfg(feature = "cli")]
use crate::config::ConsumerConfig;
use crate::router::Router;
use crate::subscription::{FilterPolicy, FilterPolicyError};

/// One handler as the app routes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerInfo {
    /// The handler's path (`module::function`, `Type::method`).
    pub name: String,
    /// Its event keys and patterns, sorted.
    pub keys: Vec<String>,
    /// Whether it is the fallback.
    pub fallback: bool,
    /// Where it is declared (`file:line`, or "registered at runtime").
    pub location: String,
}

impl AppBuilder {
    /// The handlers the app would route: the `#[handler]` registrations (unless
    /// [`registered_handlers(false)`](Self::registered_handlers)) and those added here, sorted
    /// by name.
    pub fn handler_list(&self) -> Vec<HandlerInfo> {
        self.described_handlers()
            .into_iter()
            .map(|(info, _)| info)
            .collect()
    }

    /// Each handler with its payload schema, sorted by name, keys sorted.
    fn described_handlers(&self) -> Vec<(HandlerInfo, Option<PayloadFn>)> {
        let mut list: Vec<_> = self
            .route_entries()
            .into_iter()
            .map(|entry| {
                let mut keys = entry.keys;
                keys.sort();
                let info = HandlerInfo {
                    location: entry.location.file_line(),
                    name: entry.location.name,
                    keys,
                    fallback: entry.fallback,
                };
                (info, entry.payload)
            })
            .collect();
        list.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        list
    }

    /// Declares a message the service sends, for its AsyncAPI document
    /// ([`asyncapi`](Self::asyncapi)); it changes nothing at runtime.
    pub fn sends(mut self, message: SentMessage) -> Self {
        self.sent.push(message);
        self
    }

    /// The AsyncAPI 3.0 document of the app: its handlers (the `#[handler]` registrations
    /// unless turned off, and those added at runtime) and its declared sent messages. See
    /// [`crate::asyncapi`] for what it holds.
    ///
    /// # Errors
    ///
    /// The handlers [`build`](Self::build) would refuse (an invalid or duplicate key, two
    /// fallbacks): a document of a service that cannot start would mislead.
    pub fn asyncapi(&self, service: &ServiceInfo) -> Result<serde_json::Value> {
        Router::build(self.route_entries())?;
        let received = self
            .described_handlers()
            .into_iter()
            .map(|(handler, payload)| Received { handler, payload })
            .collect();
        // A policy SNS cannot take (too many keys) is `check`'s to report; the document
        // leaves it out.
        let filter_policy = self.filter_policy().ok().flatten().map(|p| p.to_json());
        Ok(Document {
            service,
            event_attribute: &self.consumer.decode.event_attribute,
            received,
            sent: &self.sent,
            filter_policy,
        }
        .to_json())
    }

    /// The consumer's settings as configured so far (the environment's, then the builder
    /// calls), for checks that must see what the app would run with.
    #[cfg(feature = "cli")]
    pub(crate) fn consumer_config(&self) -> &ConsumerConfig {
        &self.consumer
    }

    /// The SNS filter policy the handlers need on the event-key attribute: `None` when one is
    /// the fallback (it wants every event: no filter).
    ///
    /// # Errors
    ///
    /// A key routing refuses, or more keys than SNS takes (see [`FilterPolicy::from_keys`]).
    pub fn filter_policy(&self) -> Result<Option<FilterPolicy>, FilterPolicyError> {
        let handlers = self.handler_list();
        if handlers.iter().any(|h| h.fallback) {
            return Ok(None);
        }
        let keys = handlers.iter().flat_map(|h| h.keys.iter());
        FilterPolicy::from_keys(self.consumer.decode.event_attribute.clone(), keys).map(Some)
    }
}
