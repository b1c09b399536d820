//! Implementation detail of `iniesta`: use the attributes through `iniesta::handler` and
//! `iniesta::handlers`, documented there.

mod check;
mod expand;
mod parse;

use proc_macro::TokenStream;

/// Registers an `async fn` as the handler of event keys; bare, as the fallback.
///
/// See `iniesta::handler`.
#[proc_macro_attribute]
pub fn handler(args: TokenStream, item: TokenStream) -> TokenStream {
    debug("handler", expand::handler(args.into(), item.into())).into()
}

/// Registers the `#[handler]` methods of an impl block.
///
/// See `iniesta::handlers`.
#[proc_macro_attribute]
pub fn handlers(args: TokenStream, item: TokenStream) -> TokenStream {
    debug("handlers", expand::handlers(args.into(), item.into())).into()
}

/// Prints the expansion to stderr when `INIESTA_MACROS_DEBUG` is set.
fn debug(name: &str, expanded: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    if std::env::var_os("INIESTA_MACROS_DEBUG").is_some() {
        eprintln!("#[{name}] expands to:\n{expanded}\n");
    }
    expanded
}
