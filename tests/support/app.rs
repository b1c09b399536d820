//! App builders for tests: handlers are added by hand, never picked up from `#[handler]`
//! registrations linked into the test binary.

use iniesta::{App, AppBuilder};

/// An app builder that ignores `#[handler]` registrations.
pub fn builder() -> AppBuilder {
    App::builder().registered_handlers(false)
}
