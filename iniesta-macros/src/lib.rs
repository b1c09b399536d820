//! Implementation detail of `iniesta`: use the attributes through `iniesta::handler`.

use proc_macro::TokenStream;

/// See `iniesta::handler`.
#[proc_macro_attribute]
pub fn handler(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}

/// See `iniesta::handlers`.
#[proc_macro_attribute]
pub fn handlers(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
