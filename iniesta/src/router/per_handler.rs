//! Settings the app builder gives handlers, app-wide or by name: middleware and concurrency
//! limits, applied to the routes once when the app is built.

use std::num::NonZeroUsize;

use super::{Route, Router};
use crate::error::{ConfigError, RegistryError};
use crate::middleware::{Chain, Middleware};
use crate::{Result, States};

/// What the builder collected, in the order it was given.
#[derive(Debug, Default)]
pub(crate) struct PerHandler {
    /// Around every handler, outermost first.
    pub(crate) app_middleware: Vec<Middleware>,
    /// Around the named handler, inside the app-wide middleware, outermost first.
    pub(crate) middleware: Vec<(String, Middleware)>,
    /// The named handler's concurrency limit; a later one for the same handler wins.
    pub(crate) concurrency: Vec<(String, usize)>,
}

impl Router {
    /// Applies the builder's per-handler settings and builds each route's middleware chain.
    ///
    /// # Errors
    ///
    /// A name that matches no handler, or several; a concurrency limit of 0.
    pub(crate) fn apply(&mut self, settings: PerHandler, states: &States) -> Result<()> {
        let mut layers: Vec<Vec<Middleware>> =
            vec![settings.app_middleware.clone(); self.routes.len()];
        for (name, middleware) in settings.middleware {
            let index = self.find(&name, "handler_middleware")?;
            layers[index].push(middleware);
        }
        for (name, limit) in settings.concurrency {
            let index = self.find(&name, "handler_concurrency")?;
            let limit = NonZeroUsize::new(limit).ok_or_else(|| ConfigError::Invalid {
                name: format!("handler_concurrency(\"{name}\", ..)"),
                expected: "a limit of at least 1 (leave it unset for no limit)".into(),
                got: "0".into(),
            })?;
            self.routes[index].set_limit(limit);
        }
        for (route, layers) in self.routes.iter_mut().zip(layers) {
            route.chain = Chain::new(layers, route.handler.clone(), states);
        }
        Ok(())
    }

    /// The route a setting names: the handler's full name (`Context::handler_name`), or the
    /// end of its path after a `::` (`user_updated`, `handlers::user_updated`) when that
    /// names one handler only.
    fn find(&self, name: &str, setting: &'static str) -> Result<usize, RegistryError> {
        if let Some(index) = self.routes.iter().position(|r| r.location.name == name) {
            return Ok(index);
        }
        let suffix = format!("::{name}");
        let matches: Vec<usize> = (0..self.routes.len())
            .filter(|&i| self.routes[i].location.name.ends_with(&suffix))
            .collect();
        match matches.as_slice() {
            [index] => Ok(*index),
            [] => Err(RegistryError::HandlerName {
                setting,
                name: name.to_owned(),
                problem: format!(
                    "no handler has that name; the handlers are: {}",
                    names(self.routes.iter())
                ),
            }),
            several => Err(RegistryError::HandlerName {
                setting,
                name: name.to_owned(),
                problem: format!(
                    "it names several handlers ({}): give more of the path",
                    names(several.iter().map(|&i| &self.routes[i]))
                ),
            }),
        }
    }
}

/// The handlers' names, sorted, for an error message.
fn names<'a>(routes: impl Iterator<Item = &'a Route>) -> String {
    let mut names: Vec<&str> = routes.map(|r| r.location.name.as_str()).collect();
    names.sort_unstable();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Location;
    use crate::handler::BoxedHandler;
    use crate::router::RouteEntry;
    use crate::{Error, Message, middleware};

    fn router(names: &[&str]) -> Router {
        let entries = names
            .iter()
            .enumerate()
            .map(|(i, name)| RouteEntry {
                keys: vec![format!("K{i}")],
                fallback: false,
                handler: BoxedHandler::new(|_: Message| async {}),
                location: Location {
                    name: (*name).into(),
                    file: "test.rs".into(),
                    line: 1,
                },
                concurrency: None,
                payload: None,
            })
            .collect();
        Router::build(entries).unwrap()
    }

    fn find(router: &Router, name: &str) -> Result<String, String> {
        router
            .find(name, "handler_middleware")
            .map(|i| router.routes[i].location.name.clone())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn names_match_whole_or_by_the_end_of_the_path() {
        let router = router(&["app::users::updated", "app::orders::updated", "app::paid"]);
        assert_eq!(find(&router, "app::paid").unwrap(), "app::paid");
        assert_eq!(find(&router, "paid").unwrap(), "app::paid");
        assert_eq!(
            find(&router, "users::updated").unwrap(),
            "app::users::updated"
        );
        // Only whole path segments match.
        assert!(
            find(&router, "aid")
                .unwrap_err()
                .contains("no handler has that name")
        );
        let several = find(&router, "updated").unwrap_err();
        assert!(
            several.contains("app::orders::updated, app::users::updated"),
            "{several}"
        );
        let none = find(&router, "missing").unwrap_err();
        assert!(
            none.starts_with("`handler_middleware` names handler `missing`"),
            "{none}"
        );
        assert!(none.contains("app::orders::updated, app::paid, app::users::updated"));
    }

    #[test]
    fn chains_only_routes_with_middleware() {
        let mut router = router(&["a", "b"]);
        let settings = PerHandler {
            middleware: vec![("b".into(), middleware::before(|_, _| {}))],
            concurrency: vec![("a".into(), 3)],
            ..PerHandler::default()
        };
        router.apply(settings, &States::default()).unwrap();
        assert!(router.routes[0].chain.is_none(), "no middleware: no chain");
        assert!(router.routes[1].chain.is_some());
        let limit = router.routes[0].limit.as_ref().unwrap();
        assert_eq!(limit.available_permits(), 3);
        assert!(router.routes[1].limit.is_none());
    }

    #[test]
    fn a_zero_limit_is_refused() {
        let mut router = router(&["a"]);
        let settings = PerHandler {
            concurrency: vec![("a".into(), 0)],
            ..PerHandler::default()
        };
        let error = router.apply(settings, &States::default()).unwrap_err();
        assert!(matches!(error, Error::Config(_)), "{error}");
    }
}
