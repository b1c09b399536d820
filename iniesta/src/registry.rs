//! Handlers registered at link time by `#[handler]`, collected through `inventory`.

use crate::__private::PayloadFn;
use crate::handler::BoxedHandler;

/// One `#[handler]` as the macro submits it. Built only by the macros' expansion.
#[doc(hidden)]
#[derive(Debug)]
pub struct Registration {
    /// The event keys and patterns (empty for the fallback).
    pub keys: &'static [&'static str],
    /// Whether this is the bare `#[handler]`.
    pub fallback: bool,
    /// The function or `Type::method` as written.
    pub name: &'static str,
    /// `module_path!()` at the declaration.
    pub module: &'static str,
    /// `file!()` at the declaration.
    pub file: &'static str,
    /// `line!()` at the declaration.
    pub line: u32,
    /// `concurrency = N`: deliveries of this handler running at once, at most.
    pub concurrency: Option<usize>,
    /// Builds the type-erased handler.
    pub make: fn() -> BoxedHandler,
    /// The payload schema of its first `Json<T>` argument where `T: JsonSchema` (for the
    /// AsyncAPI document), its named parts added to the generator.
    pub payload: PayloadFn,
}

inventory::collect!(Registration);

/// Every registration linked into the binary, sorted by file and line: inventory's own order is
/// unspecified, and a stable order keeps error messages and logs reproducible.
pub(crate) fn registrations() -> Vec<&'static Registration> {
    let mut all: Vec<_> = inventory::iter::<Registration>.into_iter().collect();
    all.sort_by_key(|r| (r.file, r.line, r.name));
    all
}
