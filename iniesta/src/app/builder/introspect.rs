//! What an app would run, without running it: its handlers and the filter policy they need
//! (for `iniesta::cli`'s `handlers` and `filter-policy`, and deployment checks).

use super::AppBuilder;
#[cfg(feature = "cli")]
use crate::config::ConsumerConfig;
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
        let mut list: Vec<HandlerInfo> = self
            .route_entries()
            .into_iter()
            .map(|entry| {
                let mut keys = entry.keys;
                keys.sort();
                let location = match entry.location.line {
                    0 => entry.location.file.clone(),
                    line => format!("{}:{line}", entry.location.file),
                };
                HandlerInfo {
                    location,
                    name: entry.location.name,
                    keys,
                    fallback: entry.fallback,
                }
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
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
