//! Event key to handler: exact keys, prefix patterns (`UserUpdated.*`), the fallback.

mod per_handler;
mod trie;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::__private::PayloadFn;
use crate::error::{Location, RegistryError};
use crate::handler::{BoxFuture, BoxedHandler};
use crate::middleware::Chain;
use crate::registry::Registration;
use crate::{BoxError, Context, Message, States};
pub(crate) use per_handler::PerHandler;
use trie::PrefixTrie;

/// A handler the router can pick, with where it was declared.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) handler: BoxedHandler,
    pub(crate) location: Location,
    /// Shared with every `Context` of this handler, so naming it costs no allocation.
    pub(crate) name: Arc<str>,
    /// The route's middleware around its handler, built once by `AppBuilder::build`; `None`
    /// when it has none, and the handler is called directly.
    pub(crate) chain: Option<Chain>,
    /// The handler's own concurrency limit, when it has one.
    pub(crate) limit: Option<Arc<Semaphore>>,
    /// The size `limit` was made with, for the startup log (its permits come and go).
    pub(crate) limit_size: Option<NonZeroUsize>,
    /// The handler takes the delivery's database transaction: it runs with the inbox.
    #[cfg_attr(
        not(feature = "postgres"),
        allow(
            dead_code,
            reason = "only a `postgres` build has a transaction to take"
        )
    )]
    pub(crate) transactional: bool,
}

impl Route {
    /// Gives the handler its own concurrency limit of `size` deliveries at once.
    pub(crate) fn set_limit(&mut self, size: NonZeroUsize) {
        self.limit = Some(Arc::new(Semaphore::new(size.get())));
        self.limit_size = Some(size);
    }

    /// Runs the handler, through its middleware if it has any.
    pub(crate) fn call(
        &self,
        msg: Message,
        ctx: Context,
        states: &States,
    ) -> BoxFuture<'static, Result<(), BoxError>> {
        match &self.chain {
            Some(chain) => chain.run(msg, ctx),
            None => self.handler.call(msg, ctx, states),
        }
    }
}

/// One handler declaration, from `#[handler]` or from the builder.
#[derive(Debug, Clone)]
pub(crate) struct RouteEntry {
    pub(crate) keys: Vec<String>,
    pub(crate) fallback: bool,
    pub(crate) handler: BoxedHandler,
    pub(crate) location: Location,
    /// Deliveries of this handler running at once, at most (`#[handler(.., concurrency = N)]`).
    pub(crate) concurrency: Option<NonZeroUsize>,
    /// The payload schema, for the AsyncAPI document: known for `#[handler]`s only.
    pub(crate) payload: Option<PayloadFn>,
}

impl RouteEntry {
    pub(crate) fn from_registration(registration: &Registration) -> Self {
        let name = if registration.module.is_empty() {
            registration.name.to_owned()
        } else {
            format!("{}::{}", registration.module, registration.name)
        };
        RouteEntry {
            keys: registration.keys.iter().map(|k| (*k).to_owned()).collect(),
            fallback: registration.fallback,
            handler: (registration.make)(),
            location: Location {
                name,
                file: registration.file.to_owned(),
                line: registration.line,
            },
            concurrency: registration.concurrency.and_then(NonZeroUsize::new),
            payload: Some(registration.payload),
        }
    }
}

/// Routes event keys: an exact key first (O(1)), then the longest matching prefix pattern
/// (O(key length), however many patterns), then the fallback.
#[derive(Debug, Default)]
pub(crate) struct Router {
    routes: Vec<Route>,
    exact: HashMap<Box<str>, usize>,
    /// Prefix patterns without their `*`.
    prefixes: PrefixTrie<usize>,
    fallback: Option<usize>,
}

/// An event key or pattern as routing reads it.
pub(crate) enum Key<'a> {
    Exact(&'a str),
    /// `Order.*`, without its `*`.
    Prefix(&'a str),
}

/// The one rule of what a key or pattern may be, for routing and for filter policies.
pub(crate) fn parse_key(key: &str) -> Result<Key<'_>, &'static str> {
    if key.trim().is_empty() {
        return Err("event keys cannot be empty");
    }
    match key.find('*') {
        None => Ok(Key::Exact(key)),
        Some(at) if at + 1 == key.len() && at > 0 => Ok(Key::Prefix(&key[..at])),
        Some(_) if key == "*" => Err("use a bare `#[handler]` (the fallback) to catch every key"),
        Some(_) => Err("`*` may only end a pattern, as in `UserUpdated.*`"),
    }
}

impl Router {
    pub(crate) fn build(entries: Vec<RouteEntry>) -> Result<Router, RegistryError> {
        let mut router = Router::default();
        let mut exact_owner: HashMap<String, usize> = HashMap::new();
        let mut prefix_owner: HashMap<String, usize> = HashMap::new();
        for entry in entries {
            let index = router.routes.len();
            if entry.fallback {
                if let Some(first) = router.fallback {
                    return Err(RegistryError::DuplicateFallback {
                        first: Box::new(router.routes[first].location.clone()),
                        second: Box::new(entry.location),
                    });
                }
                router.fallback = Some(index);
            }
            for key in &entry.keys {
                let parsed = parse_key(key).map_err(|reason| RegistryError::InvalidKey {
                    key: key.clone(),
                    handler: Box::new(entry.location.clone()),
                    reason,
                })?;
                let (owners, table_key) = match parsed {
                    Key::Exact(k) => (&mut exact_owner, k),
                    Key::Prefix(p) => (&mut prefix_owner, p),
                };
                if let Some(&first) = owners.get(table_key)
                    && first != index
                {
                    return Err(RegistryError::DuplicateKey {
                        key: key.clone(),
                        first: Box::new(router.routes[first].location.clone()),
                        second: Box::new(entry.location),
                    });
                }
                owners.insert(table_key.to_owned(), index);
            }
            let mut route = Route {
                name: Arc::from(entry.location.name.as_str()),
                transactional: entry.handler.uses_transaction(),
                handler: entry.handler,
                location: entry.location,
                chain: None,
                limit: None,
                limit_size: None,
            };
            if let Some(size) = entry.concurrency {
                route.set_limit(size);
            }
            router.routes.push(route);
        }
        router.exact = exact_owner
            .into_iter()
            .map(|(k, i)| (k.into_boxed_str(), i))
            .collect();
        for (prefix, index) in prefix_owner {
            router.prefixes.insert(&prefix, index);
        }
        Ok(router)
    }

    /// The handler for `event`: exact, else longest prefix, else the fallback.
    pub(crate) fn route(&self, event: Option<&str>) -> Option<&Route> {
        let index = event
            .and_then(|key| {
                self.exact
                    .get(key)
                    .or_else(|| self.prefixes.longest_match(key))
                    .copied()
            })
            .or(self.fallback)?;
        Some(&self.routes[index])
    }

    pub(crate) fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The keys and patterns routed, sorted, for the startup log.
    pub(crate) fn describe(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .exact
            .iter()
            .map(|(k, i)| format!("{k} -> {}", self.routes[*i].location.name))
            .chain(
                self.prefixes
                    .entries()
                    .into_iter()
                    .map(|(p, i)| format!("{p}* -> {}", self.routes[*i].location.name)),
            )
            .collect();
        keys.sort();
        if let Some(i) = self.fallback {
            keys.push(format!("(fallback) -> {}", self.routes[i].location.name));
        }
        keys
    }

    /// The handlers with a concurrency limit of their own (`handler=limit`), sorted, for the
    /// startup log.
    pub(crate) fn describe_limits(&self) -> Vec<String> {
        let mut limits: Vec<String> = self
            .routes
            .iter()
            .filter_map(|r| Some(format!("{}={}", r.location.name, r.limit_size?)))
            .collect();
        limits.sort();
        limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, keys: &[&str], fallback: bool) -> RouteEntry {
        RouteEntry {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            fallback,
            handler: BoxedHandler::new(|_: Message| async {}),
            location: Location {
                name: name.into(),
                file: "test.rs".into(),
                line: 1,
            },
            concurrency: None,
            payload: None,
        }
    }

    fn routed(router: &Router, event: Option<&str>) -> Option<String> {
        router.route(event).map(|r| r.location.name.clone())
    }

    #[test]
    fn exact_beats_pattern_and_longest_prefix_wins() {
        let router = Router::build(vec![
            entry("any_user", &["UserUpdated.*"], false),
            entry("exact", &["UserUpdated.user"], false),
            entry("profile", &["UserUpdated.user.profile.*"], false),
            entry("all", &["User*"], false),
        ])
        .unwrap();
        assert_eq!(routed(&router, Some("UserUpdated.user")).unwrap(), "exact");
        assert_eq!(
            routed(&router, Some("UserUpdated.other")).unwrap(),
            "any_user"
        );
        assert_eq!(
            routed(&router, Some("UserUpdated.user.profile.x")).unwrap(),
            "profile"
        );
        assert_eq!(routed(&router, Some("UserDeleted.user")).unwrap(), "all");
        assert_eq!(routed(&router, Some("Order.created")), None);
    }

    #[test]
    fn a_key_equal_to_a_pattern_prefix_is_exact_then_prefix() {
        let router = Router::build(vec![
            entry("pattern", &["Café.*"], false),
            entry("exact", &["Café."], false),
            entry("fallback", &[], true),
        ])
        .unwrap();
        assert_eq!(routed(&router, Some("Café.")).unwrap(), "exact");
        assert_eq!(routed(&router, Some("Café.crème")).unwrap(), "pattern");
        assert_eq!(routed(&router, Some("Cafè.noir")).unwrap(), "fallback");
        assert_eq!(
            router.describe(),
            [
                "Café. -> exact",
                "Café.* -> pattern",
                "(fallback) -> fallback"
            ]
            .map(str::to_owned)
        );
    }

    #[test]
    fn unknown_and_missing_keys_go_to_the_fallback() {
        let router = Router::build(vec![
            entry("exact", &["A", "B"], false),
            entry("fallback", &[], true),
        ])
        .unwrap();
        assert_eq!(routed(&router, Some("B")).unwrap(), "exact");
        assert_eq!(routed(&router, Some("C")).unwrap(), "fallback");
        assert_eq!(routed(&router, None).unwrap(), "fallback");
    }

    #[test]
    fn duplicate_keys_name_both_handlers() {
        let err = Router::build(vec![
            entry("one", &["A"], false),
            entry("two", &["A"], false),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("one (test.rs:1)") && err.contains("two (test.rs:1)"),
            "{err}"
        );
        let err = Router::build(vec![
            entry("one", &["A.*"], false),
            entry("two", &["A.*"], false),
        ])
        .unwrap_err();
        assert!(matches!(err, RegistryError::DuplicateKey { .. }));
    }

    #[test]
    fn two_fallbacks_are_rejected() {
        let err = Router::build(vec![entry("f1", &[], true), entry("f2", &[], true)]).unwrap_err();
        assert!(matches!(err, RegistryError::DuplicateFallback { .. }));
        assert!(err.to_string().contains("f1") && err.to_string().contains("f2"));
    }

    #[test]
    fn malformed_keys_are_rejected() {
        for key in ["", " ", "*", "A*B", "*.user"] {
            let err = Router::build(vec![entry("h", &[key], false)]).unwrap_err();
            assert!(matches!(err, RegistryError::InvalidKey { .. }), "{key:?}");
        }
    }
}
