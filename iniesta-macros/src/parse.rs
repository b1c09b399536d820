//! The attributes' arguments and the items they sit on, parsed into our own types.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Attribute, Error, Expr, ExprLit, FnArg, Lit, LitStr, Meta, Signature, Token, Type};

use crate::check::Errors;

/// What `#[handlers]` turns each method's `#[handler(..)]` into: the attribute still expands
/// (so the user's `use iniesta::handler` counts as used) but only hands the method back.
pub(crate) const IN_HANDLERS: &str = "__iniesta_in_handlers";

/// The arguments of `#[handler]`, one of:
///
/// ```text
/// #[handler]                                     the fallback: no keys
/// #[handler("UserUpdated.user")]                 one event key
/// #[handler("OrderCreated.order", "Order.*",)]   several keys or prefix patterns
/// ```
///
/// Keys are passed to the runtime as written; only empty and repeated keys are rejected here.
pub(crate) struct HandlerArgs {
    /// The keys, in order; empty for the fallback.
    pub(crate) keys: Vec<LitStr>,
}

impl HandlerArgs {
    /// Whether this is the bare `#[handler]`.
    pub(crate) fn is_fallback(&self) -> bool {
        self.keys.is_empty()
    }
}

impl Parse for HandlerArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let args = Punctuated::<Expr, Token![,]>::parse_terminated(input)?;
        let mut errors = Errors::default();
        let mut keys: Vec<LitStr> = Vec::new();
        for arg in args {
            let key = match key_literal(arg) {
                Ok(key) => key,
                Err(error) => {
                    errors.push(error);
                    continue;
                }
            };
            let value = key.value();
            if let Err(reason) = check_key(&value) {
                errors.push(Error::new(key.span(), reason));
            } else if keys.iter().any(|seen| seen.value() == value) {
                errors.push(Error::new(
                    key.span(),
                    format!("duplicate event key `{value}`: remove this one"),
                ));
            }
            keys.push(key);
        }
        errors.finish()?;
        Ok(HandlerArgs { keys })
    }
}

/// The key rules of the runtime's router, checked here so a bad key fails the build at the
/// literal rather than the app at startup: an exact key, or a prefix pattern ending in `*`.
fn check_key(key: &str) -> Result<(), &'static str> {
    if key.trim().is_empty() {
        return Err(
            "event key cannot be empty: write the key, like `\"UserUpdated.user\"`, or use a bare `#[handler]` for the fallback",
        );
    }
    match key.find('*') {
        None => Ok(()),
        Some(at) if at + 1 == key.len() && at > 0 => Ok(()),
        Some(_) if key == "*" => {
            Err("`\"*\"` alone would match every key: use a bare `#[handler]` for the fallback")
        }
        Some(_) => Err("`*` may only end a prefix pattern, as in `\"UserUpdated.*\"`"),
    }
}

/// An argument that must be a plain string literal.
fn key_literal(arg: Expr) -> syn::Result<LitStr> {
    match arg {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) if lit.suffix().is_empty() => Ok(lit),
        // A literal passed through a `macro_rules!` fragment arrives in an invisible group.
        Expr::Group(group) => key_literal(*group.expr),
        Expr::Path(path) if path.path.get_ident().is_some() => Err(unknown_argument(&path)),
        Expr::Assign(assign) => Err(unknown_argument(&assign.left)),
        other => Err(Error::new_spanned(
            other,
            "expected an event key as a string literal, like `#[handler(\"UserUpdated.user\")]`",
        )),
    }
}

fn unknown_argument(name: &dyn ToTokens) -> Error {
    Error::new_spanned(
        name,
        format!(
            "unknown argument `{}`: `#[handler]` takes event keys as string literals, like `#[handler(\"UserUpdated.user\")]`, or nothing for the fallback",
            name.to_token_stream()
        ),
    )
}

/// The arguments of a `#[handler(..)]` found on a method by `#[handlers]`.
pub(crate) fn handler_args(attr: &Attribute) -> syn::Result<HandlerArgs> {
    match &attr.meta {
        Meta::Path(_) => Ok(HandlerArgs { keys: Vec::new() }),
        Meta::List(list) => list.parse_args(),
        Meta::NameValue(name_value) => Err(Error::new_spanned(
            name_value,
            "write the event keys in parentheses, like `#[handler(\"UserUpdated.user\")]`",
        )),
    }
}

/// Whether an attribute is `#[handler]`, `#[handler(..)]` or `#[iniesta::handler(..)]`.
pub(crate) fn is_handler_attr(attr: &Attribute) -> bool {
    let path = attr.path();
    let segments: Vec<_> = path.segments.iter().map(|s| &s.ident).collect();
    match segments.as_slice() {
        [name] => path.leading_colon.is_none() && *name == "handler",
        [krate, name] => *krate == "iniesta" && *name == "handler",
        _ => false,
    }
}

/// Whether `#[handler]`'s arguments are the marker `#[handlers]` leaves on its methods.
pub(crate) fn is_in_handlers_marker(args: &TokenStream) -> bool {
    let mut tokens = args.clone().into_iter();
    matches!(
        (tokens.next(), tokens.next()),
        (Some(TokenTree::Ident(ident)), None) if ident == IN_HANDLERS
    )
}

/// How a handler takes the instance it runs on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SelfArg {
    /// A free fn or an associated fn: no instance.
    None,
    /// `&self` or `self: &Self`: a borrow of the instance registered as app state.
    Ref(Span),
    /// `self: Arc<Self>`: the registered instance's `Arc`.
    Arc(Span),
}

impl SelfArg {
    /// Reads the receiver of a method in `#[handlers]`.
    pub(crate) fn of(sig: &Signature) -> syn::Result<Self> {
        let Some(FnArg::Receiver(receiver)) = sig.inputs.first() else {
            return Ok(SelfArg::None);
        };
        let span = receiver.self_token.span;
        if receiver.colon_token.is_none() {
            return match (&receiver.reference, &receiver.mutability) {
                (Some(_), None) => Ok(SelfArg::Ref(span)),
                (Some(_), Some(_)) => Err(mut_self(receiver)),
                (None, _) => Err(self_by_value(receiver)),
            };
        }
        match &*receiver.ty {
            Type::Reference(reference) if is_self(&reference.elem) => {
                if reference.mutability.is_some() {
                    Err(mut_self(receiver))
                } else {
                    Ok(SelfArg::Ref(span))
                }
            }
            ty if is_self(ty) => Err(self_by_value(receiver)),
            ty if is_arc_self(ty) => Ok(SelfArg::Arc(span)),
            ty => Err(Error::new_spanned(
                ty,
                "unsupported `self` type: handler methods take `&self` or `self: Arc<Self>`",
            )),
        }
    }
}

fn mut_self(receiver: &syn::Receiver) -> Error {
    Error::new_spanned(
        receiver,
        "handler methods cannot take `&mut self`: deliveries share the instance concurrently; take `&self` and keep mutable state behind a `Mutex` or an atomic",
    )
}

fn self_by_value(receiver: &syn::Receiver) -> Error {
    Error::new_spanned(
        receiver,
        "handler methods cannot take `self` by value: deliveries share the instance; take `&self` or `self: Arc<Self>`",
    )
}

fn is_self(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.qself.is_none() && path.path.is_ident("Self"))
}

/// `Arc<Self>`, however the `Arc` path is spelled.
fn is_arc_self(ty: &Type) -> bool {
    let Type::Path(path) = ty else { return false };
    let Some(last) = path.path.segments.last() else {
        return false;
    };
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return false;
    };
    last.ident == "Arc"
        && path.qself.is_none()
        && args.args.len() == 1
        && matches!(args.args.first(), Some(syn::GenericArgument::Type(inner)) if is_self(inner))
}

/// The `#[cfg(..)]` attributes of an item, copied onto its registration so both come and go
/// together.
pub(crate) fn cfg_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|attr| attr.path().is_ident("cfg"))
}

/// The keyword and name of an item, where "this is not an `async fn`" errors point.
pub(crate) fn item_head(item: &syn::Item) -> TokenStream {
    use syn::Item;

    fn head(keyword: &dyn ToTokens, name: &dyn ToTokens) -> TokenStream {
        let mut tokens = keyword.to_token_stream();
        name.to_tokens(&mut tokens);
        tokens
    }

    match item {
        Item::Struct(item) => head(&item.struct_token, &item.ident),
        Item::Enum(item) => head(&item.enum_token, &item.ident),
        Item::Union(item) => head(&item.union_token, &item.ident),
        Item::Trait(item) => head(&item.trait_token, &item.ident),
        Item::Impl(item) => head(&item.impl_token, &item.self_ty),
        Item::Const(item) => head(&item.const_token, &item.ident),
        Item::Static(item) => head(&item.static_token, &item.ident),
        Item::Type(item) => head(&item.type_token, &item.ident),
        Item::Mod(item) => head(&item.mod_token, &item.ident),
        Item::Fn(item) => head(&item.sig.fn_token, &item.sig.ident),
        Item::Use(item) => item.use_token.to_token_stream(),
        Item::Macro(item) => item.mac.path.to_token_stream(),
        other => other.to_token_stream(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(tokens: TokenStream) -> syn::Result<Vec<String>> {
        let args: HandlerArgs = syn::parse2(tokens)?;
        Ok(args.keys.iter().map(LitStr::value).collect())
    }

    fn error(tokens: TokenStream) -> String {
        match syn::parse2::<HandlerArgs>(tokens) {
            Ok(args) => panic!("expected an error, got {} keys", args.keys.len()),
            Err(error) => error
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(" | "),
        }
    }

    #[test]
    fn bare_is_the_fallback() {
        let args: HandlerArgs = syn::parse2(TokenStream::new()).unwrap();
        assert!(args.is_fallback());
    }

    #[test]
    fn keys_in_order() {
        assert_eq!(
            keys(quote::quote!("UserUpdated.user")).unwrap(),
            ["UserUpdated.user"]
        );
        assert_eq!(keys(quote::quote!("A.x", r"B.*",)).unwrap(), ["A.x", "B.*"]);
    }

    #[test]
    fn rejects_empty_and_duplicate_keys_together() {
        assert_eq!(
            error(quote::quote!("", "A.x", "A.x")),
            "event key cannot be empty: write the key, like `\"UserUpdated.user\"`, or use a bare `#[handler]` for the fallback \
             | duplicate event key `A.x`: remove this one"
        );
    }

    #[test]
    fn checks_patterns_like_the_router() {
        assert_eq!(
            keys(quote::quote!("UserUpdated.*", "User*")).unwrap(),
            ["UserUpdated.*", "User*"]
        );
        assert!(error(quote::quote!("  ")).starts_with("event key cannot be empty"));
        assert!(error(quote::quote!("*")).starts_with("`\"*\"` alone would match every key"));
        for key in ["*.user", "User*.user", "User**"] {
            assert!(
                error(quote::quote!(#key)).starts_with("`*` may only end a prefix pattern"),
                "{key}"
            );
        }
    }

    #[test]
    fn rejects_other_arguments() {
        assert!(error(quote::quote!(key = "A.x")).starts_with("unknown argument `key`"));
        assert!(error(quote::quote!(fallback)).starts_with("unknown argument `fallback`"));
        assert!(error(quote::quote!(42)).starts_with("expected an event key"));
        assert!(error(quote::quote!(b"A.x")).starts_with("expected an event key"));
        assert!(error(quote::quote!("A.x" "B.x")).starts_with("expected `,`"));
    }

    #[test]
    fn recognizes_handler_attributes() {
        let attrs: Vec<Attribute> = [
            quote::quote!(#[handler]),
            quote::quote!(#[handler("A.x")]),
            quote::quote!(#[iniesta::handler("A.x")]),
            quote::quote!(#[::iniesta::handler]),
        ]
        .into_iter()
        .flat_map(|tokens| syn::parse::Parser::parse2(Attribute::parse_outer, tokens).unwrap())
        .collect();
        assert!(attrs.iter().all(is_handler_attr));

        let other: Attribute = syn::parse_quote!(#[other::handler]);
        assert!(!is_handler_attr(&other));
        let other: Attribute = syn::parse_quote!(#[handlers]);
        assert!(!is_handler_attr(&other));
    }

    #[test]
    fn reads_receivers() {
        let of = |sig: Signature| SelfArg::of(&sig).map_err(|e| e.to_string());
        assert!(matches!(
            of(syn::parse_quote!(fn f(msg: Message))),
            Ok(SelfArg::None)
        ));
        assert!(matches!(
            of(syn::parse_quote!(fn f(&self))),
            Ok(SelfArg::Ref(_))
        ));
        assert!(matches!(
            of(syn::parse_quote!(fn f(self: &Self))),
            Ok(SelfArg::Ref(_))
        ));
        assert!(matches!(
            of(syn::parse_quote!(fn f(self: std::sync::Arc<Self>))),
            Ok(SelfArg::Arc(_))
        ));
        for sig in [
            syn::parse_quote!(fn f(&mut self)),
            syn::parse_quote!(fn f(self: &mut Self)),
        ] {
            assert!(of(sig).unwrap_err().contains("`&mut self`"));
        }
        for sig in [
            syn::parse_quote!(fn f(self)),
            syn::parse_quote!(fn f(mut self)),
            syn::parse_quote!(fn f(self: Self)),
        ] {
            assert!(of(sig).unwrap_err().contains("`self` by value"));
        }
        assert!(
            of(syn::parse_quote!(fn f(self: Box<Self>)))
                .unwrap_err()
                .starts_with("unsupported `self` type")
        );
    }

    #[test]
    fn recognizes_the_marker() {
        assert!(is_in_handlers_marker(&quote::quote!(__iniesta_in_handlers)));
        assert!(!is_in_handlers_marker(&quote::quote!("A.x")));
        assert!(!is_in_handlers_marker(&TokenStream::new()));
    }
}
