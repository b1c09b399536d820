//! What the attributes check: the signature while expanding, and the types through assertions
//! the compiler evaluates, each spanned at the token at fault.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::{Error, FnArg, ItemImpl, ReturnType, Signature, Type};

use crate::expand::Target;
use crate::parse::SelfArg;

/// The most arguments a handler takes: `iniesta::Handler` is implemented up to this arity.
const MAX_ARGS: usize = 8;

/// Every error found, reported together.
#[derive(Debug, Default)]
pub(crate) struct Errors(Option<Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Where a handler fn sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// A `#[handler]` fn outside any `#[handlers]` impl block.
    Free,
    /// A `#[handler]` method inside a `#[handlers]` impl block.
    Method,
}

/// The signature errors the type system would report badly or not at all.
pub(crate) fn signature(sig: &Signature, place: Place, errors: &mut Errors) {
    if let Some(token) = &sig.constness {
        errors.push(Error::new_spanned(
            token,
            "handlers cannot be `const fn`: remove `const`",
        ));
    }
    if sig.asyncness.is_none() {
        errors.push(Error::new_spanned(
            sig.fn_token,
            "`#[handler]` needs an `async fn`: add `async` before `fn`",
        ));
    }
    if let Some(token) = &sig.unsafety {
        errors.push(Error::new_spanned(
            token,
            "handlers cannot be `unsafe fn`: remove `unsafe` and use an `unsafe` block inside",
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(Error::new_spanned(
            abi,
            "handlers cannot have an ABI: remove `extern`",
        ));
    }
    const GENERIC: &str =
        "handlers cannot be generic: remove the generic parameters and name concrete types";
    if !sig.generics.params.is_empty() {
        errors.push(Error::new_spanned(&sig.generics, GENERIC));
    } else if let Some(where_clause) = &sig.generics.where_clause {
        errors.push(Error::new_spanned(where_clause, GENERIC));
    }
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(receiver) if place == Place::Free => errors.push(Error::new_spanned(
                receiver,
                "`#[handler]` on a method needs `#[handlers]` on its impl block",
            )),
            FnArg::Receiver(_) => {
                if let Err(error) = SelfArg::of(sig) {
                    errors.push(error);
                }
            }
            FnArg::Typed(arg) if mentions_impl(&arg.ty) => errors.push(Error::new_spanned(
                &arg.ty,
                "handlers cannot take `impl Trait` arguments: name a concrete type",
            )),
            FnArg::Typed(_) => {}
        }
    }
    if let Some(extra) = sig.inputs.iter().nth(MAX_ARGS) {
        errors.push(Error::new_spanned(
            extra,
            format!(
                "handlers take at most {MAX_ARGS} arguments: group some into your own `FromMessage` extractor"
            ),
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(Error::new_spanned(
            variadic,
            "handlers cannot be variadic: remove `...`",
        ));
    }
    if let ReturnType::Type(_, ty) = &sig.output
        && mentions_impl(ty)
    {
        errors.push(Error::new_spanned(
            ty,
            "handlers cannot return `impl Trait`: return `()` or `Result<(), E>`",
        ));
    }
}

/// The impl block errors: `#[handlers]` registers methods of one concrete type.
pub(crate) fn impl_block(item: &ItemImpl, errors: &mut Errors) {
    const GENERIC: &str = "`#[handlers]` cannot go on a generic impl block: write the impl for a concrete type, like `impl Billing`";
    if !item.generics.params.is_empty() {
        errors.push(Error::new_spanned(&item.generics, GENERIC));
    } else if let Some(where_clause) = &item.generics.where_clause {
        errors.push(Error::new_spanned(where_clause, GENERIC));
    }
    if let Some((_, path, _)) = &item.trait_ {
        errors.push(Error::new_spanned(
            path,
            "`#[handlers]` goes on an inherent impl block, like `impl Billing`: move the handler methods out of this trait impl",
        ));
    }
}

/// Whether a type spells `impl Trait` anywhere, which the assertions cannot name.
fn mentions_impl(ty: &Type) -> bool {
    fn walk(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|token| match token {
            TokenTree::Ident(ident) => ident == "impl",
            TokenTree::Group(group) => walk(group.stream()),
            _ => false,
        })
    }
    walk(ty.to_token_stream())
}

/// Assertions evaluated by the compiler, so a type error names the token at fault rather than
/// the generic "not an iniesta handler" (the technique of axum-macros' `debug_handler`):
/// every argument type is an extractor, the return type is a handler result, the instance of a
/// method can be shared across threads, and the handler's future is `Send`.
pub(crate) fn assertions(target: &Target<'_>) -> TokenStream {
    let extractors = target.inputs.iter().map(|ty| {
        quote_spanned! {first_span(ty)=>
            ::iniesta::__private::assert_extractor::<#ty>();
        }
    });
    let result = target.output.iter().map(|ty| {
        quote_spanned! {first_span(ty)=>
            ::iniesta::__private::assert_handler_result::<#ty>();
        }
    });
    let instance = match (target.self_arg, target.self_ty) {
        (SelfArg::Ref(span) | SelfArg::Arc(span), Some(self_ty)) => {
            let self_ty = respan(self_ty.to_token_stream(), span);
            quote_spanned! {span=>
                __iniesta_assert_instance::<#self_ty>();
            }
        }
        _ => TokenStream::new(),
    };

    // The future is built from never-evaluated arguments in a never-called fn: only its type
    // matters.
    let span = target.ident.span();
    let handler = &target.path;
    let receiver = (!matches!(target.self_arg, SelfArg::None))
        .then(|| quote_spanned!(span=> ::core::panic!()));
    let args = receiver.into_iter().chain(
        target
            .inputs
            .iter()
            .map(|_| quote_spanned!(span=> ::core::panic!())),
    );
    let send = quote_spanned! {span=>
        #[allow(dead_code, unreachable_code, clippy::diverging_sub_expression, clippy::panic)]
        fn __iniesta_check_send() {
            let __handler = #handler;
            ::iniesta::__private::assert_send_future(__handler(#(#args),*));
        }
    };

    quote! {
        #[allow(dead_code)]
        fn __iniesta_check_types() {
            fn __iniesta_assert_instance<
                T: ?::core::marker::Sized + ::core::marker::Send + ::core::marker::Sync + 'static,
            >() {}

            #(#extractors)*
            #(#result)*
            #instance
        }
        #send
    }
}

/// The span of a type's first token: where a check on the whole type starts.
fn first_span(ty: &Type) -> Span {
    ty.to_token_stream()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |token| token.span())
}

/// The tokens with every span replaced, so an error about them points elsewhere.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut respanned = Group::new(group.delimiter(), respan(group.stream(), span));
                respanned.set_span(span);
                token = TokenTree::Group(respanned);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(sig: &Signature, place: Place) -> Vec<String> {
        let mut errors = Errors::default();
        signature(sig, place, &mut errors);
        match errors.finish() {
            Ok(()) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn accepts_handlers() {
        assert!(errors(&syn::parse_quote!(async fn f()), Place::Free).is_empty());
        assert!(
            errors(
                &syn::parse_quote!(async fn f(msg: Message, Json(v): Json<V>) -> Result<(), E>),
                Place::Free
            )
            .is_empty()
        );
        assert!(
            errors(
                &syn::parse_quote!(async fn f(&self, msg: Message)),
                Place::Method
            )
            .is_empty()
        );
    }

    #[test]
    fn reports_every_error_at_once() {
        let found = errors(
            &syn::parse_quote!(unsafe fn f<T>(&self, x: impl Into<T>) -> impl Sized),
            Place::Free,
        );
        assert_eq!(found.len(), 6, "{found:#?}");
        assert!(found[0].starts_with("`#[handler]` needs an `async fn`"));
        assert!(found[1].starts_with("handlers cannot be `unsafe fn`"));
        assert!(found[2].starts_with("handlers cannot be generic"));
        assert!(found[3].starts_with("`#[handler]` on a method needs `#[handlers]`"));
        assert!(found[4].starts_with("handlers cannot take `impl Trait`"));
        assert!(found[5].starts_with("handlers cannot return `impl Trait`"));
    }

    #[test]
    fn rejects_where_clauses_and_bad_receivers() {
        let found = errors(
            &syn::parse_quote!(async fn f(&mut self) where Self: Sized),
            Place::Method,
        );
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[0].starts_with("handlers cannot be generic"));
        assert!(found[1].starts_with("handler methods cannot take `&mut self`"));
    }

    #[test]
    fn limits_the_arity() {
        let ok: Signature =
            syn::parse_quote!(async fn f(&self, a: A, b: B, c: C, d: D, e: E, f: F, g: G));
        assert!(errors(&ok, Place::Method).is_empty());
        let too_many: Signature =
            syn::parse_quote!(async fn f(&self, a: A, b: B, c: C, d: D, e: E, f: F, g: G, h: H));
        let found = errors(&too_many, Place::Method);
        assert_eq!(
            found,
            ["handlers take at most 8 arguments: group some into your own `FromMessage` extractor"]
        );
    }

    #[test]
    fn rejects_generic_and_trait_impls() {
        let mut errors = Errors::default();
        impl_block(
            &syn::parse_quote!(
                impl<T> Billing<T> {}
            ),
            &mut errors,
        );
        impl_block(&syn::parse_quote!(impl Handler for Billing {}), &mut errors);
        let found: Vec<_> = errors
            .finish()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert!(found[0].starts_with("`#[handlers]` cannot go on a generic impl block"));
        assert!(found[1].starts_with("`#[handlers]` goes on an inherent impl block"));
    }
}
