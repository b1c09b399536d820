//! The attributes' arguments and the items they sit on, read into our own types. Only the
//! syntax is checked here; what the types mean is `check`'s job.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{
    Attribute, Error, Expr, ExprLit, FnArg, Ident, ImplItem, ItemImpl, Lit, LitStr, MacroDelimiter,
    Meta, MetaList, Path, Signature, Token, Type,
};

/// What `#[handlers]` turns each method's `#[handler(..)]` into: the attribute still expands
/// (so the user's `use iniesta::handler` counts as used) but only hands the method back.
const IN_HANDLERS: &str = "__iniesta_in_handlers";

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

    /// The value, or `None` with its error kept.
    pub(crate) fn take<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|error| self.push(error)).ok()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// One argument of `#[handler(..)]` or `#[handlers(..)]`, one of:
///
/// ```text
/// "UserUpdated.user"        an event key, or a prefix pattern like "UserUpdated.*"
/// crate = ::my_iniesta      the path of a renamed `iniesta` dependency
/// crate = "my_iniesta"      the same, as a string
/// concurrency = 4           at most 4 deliveries of the handler at once
/// ```
enum Arg {
    Key(LitStr),
    Crate(Span, Path),
    /// `concurrency = <expr>`: the keyword and the value, checked by `check`.
    Concurrency(Ident, Expr),
    /// Anything else, for `check`-like errors naming the argument.
    Other(Expr),
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(Token![crate]) && input.peek2(Token![=]) {
            let keyword: Token![crate] = input.parse()?;
            input.parse::<Token![=]>()?;
            let expected = |error: Error| Error::new(error.span(), EXPECTED_CRATE_PATH);
            let path = if input.peek(LitStr) {
                let lit: LitStr = input.parse()?;
                lit.parse_with(Path::parse_mod_style)
                    .map_err(|_| Error::new(lit.span(), EXPECTED_CRATE_PATH))?
            } else {
                Path::parse_mod_style(input).map_err(expected)?
            };
            return Ok(Arg::Crate(keyword.span, path));
        }
        Ok(key_or_other(input.parse()?))
    }
}

const EXPECTED_CRATE_PATH: &str = "expected the path of the `iniesta` crate, like `crate = ::my_iniesta` or `crate = \"my_iniesta\"`";

/// A plain string literal is a key, `concurrency = ..` a limit; anything else is kept for the
/// error.
fn key_or_other(arg: Expr) -> Arg {
    match arg {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) if lit.suffix().is_empty() => Arg::Key(lit),
        Expr::Assign(assign) => match &*assign.left {
            Expr::Path(path) if path.path.is_ident("concurrency") => {
                let keyword = path.path.segments[0].ident.clone();
                Arg::Concurrency(keyword, *assign.right)
            }
            _ => Arg::Other(Expr::Assign(assign)),
        },
        // A literal passed through a `macro_rules!` fragment arrives in an invisible group.
        Expr::Group(group) => key_or_other(*group.expr),
        other => Arg::Other(other),
    }
}

/// The name of an argument that looks like `name` or `name = value`, for "unknown argument".
fn argument_name(expr: &Expr) -> Option<&dyn ToTokens> {
    match expr {
        Expr::Path(path) if path.path.get_ident().is_some() => Some(path),
        Expr::Assign(assign) => Some(&*assign.left),
        _ => None,
    }
}

/// Records a `crate = ..` argument, rejecting a second one.
fn set_crate(krate: &mut Option<Path>, span: Span, path: Path, errors: &mut Errors) {
    if krate.is_some() {
        errors.push(Error::new(
            span,
            "duplicate `crate` argument: remove this one",
        ));
    } else {
        *krate = Some(path);
    }
}

/// The arguments of `#[handler]`, in any order:
///
/// ```text
/// #[handler]                                     the fallback: no keys
/// #[handler("UserUpdated.user")]                 one event key
/// #[handler("OrderCreated.order", "Order.*",)]   several keys or prefix patterns
/// #[handler("UserUpdated.user", crate = path)]   with `iniesta` renamed
/// #[handler("Report.built", concurrency = 2)]     at most 2 deliveries at once
/// ```
#[derive(Default)]
pub(crate) struct HandlerArgs {
    /// The keys as written, in order; empty for the fallback.
    pub(crate) keys: Vec<LitStr>,
    /// The `crate = ..` path, if given.
    pub(crate) krate: Option<Path>,
    /// The value of `concurrency = ..` as written, if given.
    pub(crate) concurrency: Option<Expr>,
}

impl Parse for HandlerArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut errors = Errors::default();
        let mut args = HandlerArgs::default();
        for arg in Punctuated::<Arg, Token![,]>::parse_terminated(input)? {
            match arg {
                Arg::Key(key) => args.keys.push(key),
                Arg::Crate(span, path) => set_crate(&mut args.krate, span, path, &mut errors),
                Arg::Concurrency(keyword, value) => {
                    if args.concurrency.is_some() {
                        errors.push(Error::new_spanned(
                            keyword,
                            "duplicate `concurrency` argument: remove this one",
                        ));
                    } else {
                        args.concurrency = Some(value);
                    }
                }
                Arg::Other(other) => errors.push(match argument_name(&other) {
                    Some(name) => Error::new_spanned(
                        name,
                        format!(
                            "unknown argument `{}`: `#[handler]` takes event keys as string literals, like `#[handler(\"UserUpdated.user\")]`, or nothing for the fallback, `concurrency = N` to limit it to N deliveries at once, and `crate = path` for a renamed `iniesta`",
                            name.to_token_stream()
                        ),
                    ),
                    None => Error::new_spanned(
                        other,
                        "expected an event key as a string literal, like `#[handler(\"UserUpdated.user\")]`",
                    ),
                }),
            }
        }
        errors.finish()?;
        Ok(args)
    }
}

/// The arguments of `#[handlers]`: nothing, or `crate = path`.
#[derive(Default)]
pub(crate) struct HandlersArgs {
    /// The `crate = ..` path, if given.
    pub(crate) krate: Option<Path>,
}

impl Parse for HandlersArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut errors = Errors::default();
        let mut args = HandlersArgs::default();
        for arg in Punctuated::<Arg, Token![,]>::parse_terminated(input)? {
            match arg {
                Arg::Crate(span, path) => set_crate(&mut args.krate, span, path, &mut errors),
                Arg::Key(key) => errors.push(Error::new_spanned(
                    key,
                    "`#[handlers]` takes no event keys: put them on each method's `#[handler(..)]`",
                )),
                Arg::Concurrency(keyword, _) => errors.push(Error::new_spanned(
                    keyword,
                    "`#[handlers]` takes no `concurrency`: put it on each method's `#[handler(..)]`",
                )),
                Arg::Other(other) => {
                    let name = argument_name(&other).unwrap_or(&other);
                    errors.push(Error::new_spanned(
                        name,
                        format!(
                            "unknown argument `{}`: `#[handlers]` takes only `crate = path`, for a renamed `iniesta`; put the event keys on each method's `#[handler(..)]`",
                            name.to_token_stream()
                        ),
                    ));
                }
            }
        }
        errors.finish()?;
        Ok(args)
    }
}

/// The arguments of a `#[handler(..)]` found on a method by `#[handlers]`.
pub(crate) fn handler_args(attr: &Attribute) -> syn::Result<HandlerArgs> {
    match &attr.meta {
        Meta::Path(_) => Ok(HandlerArgs::default()),
        Meta::List(list) => list.parse_args(),
        Meta::NameValue(name_value) => Err(Error::new_spanned(
            name_value,
            "write the event keys in parentheses, like `#[handler(\"UserUpdated.user\")]`",
        )),
    }
}

/// Whether an attribute is `#[handler]`, or `#[handler(..)]` under the path of `iniesta`
/// (`#[iniesta::handler]`, or `#[my_iniesta::handler]` when `krate` ends in `my_iniesta`).
pub(crate) fn is_handler_attr(attr: &Attribute, krate: Option<&Path>) -> bool {
    let path = attr.path();
    let mut names = segment_names(path);
    if names.pop().as_deref() != Some("handler") {
        return false;
    }
    match names.as_slice() {
        [] => path.leading_colon.is_none(),
        [krate] if krate == "iniesta" => true,
        // `#[facade::handler]` with `crate = crate::facade`: the paths may be spelled
        // from different places, so their last segments decide.
        [.., last] => krate.is_some_and(|krate| segment_names(krate).last() == Some(last)),
    }
}

/// `::my::iniesta` as `["my", "iniesta"]`.
fn segment_names(path: &Path) -> Vec<String> {
    path.segments.iter().map(|s| s.ident.to_string()).collect()
}

/// Whether `#[handler]`'s arguments are the marker `#[handlers]` leaves on its methods.
pub(crate) fn is_in_handlers_marker(args: &TokenStream) -> bool {
    let mut tokens = args.clone().into_iter();
    matches!(
        (tokens.next(), tokens.next()),
        (Some(TokenTree::Ident(ident)), None) if ident == IN_HANDLERS
    )
}

/// Removes the `#[handler]` attributes from a fn's attributes, returning them.
pub(crate) fn take_handler_attrs(
    attrs: &mut Vec<Attribute>,
    krate: Option<&Path>,
) -> Vec<Attribute> {
    let (found, kept) = std::mem::take(attrs)
        .into_iter()
        .partition(|attr| is_handler_attr(attr, krate));
    *attrs = kept;
    found
}

/// A `#[handlers]` impl block: the block to emit, each `#[handler(..)]` replaced by the marker,
/// and what the replaced attributes sat on.
pub(crate) struct HandlersBlock {
    pub(crate) block: ItemImpl,
    /// The methods with at least one `#[handler]`, in order.
    pub(crate) methods: Vec<MarkedMethod>,
    /// `#[handler]` attributes on associated items that are not fns.
    pub(crate) misplaced: Vec<Attribute>,
}

/// A method of a `#[handlers]` block that had `#[handler]` attributes.
pub(crate) struct MarkedMethod {
    pub(crate) sig: Signature,
    /// Its `#[handler]` attributes as written, in order.
    pub(crate) handler_attrs: Vec<Attribute>,
    /// Its `#[cfg]` attributes.
    pub(crate) cfgs: Vec<Attribute>,
}

impl HandlersBlock {
    /// Reads the block, `krate` telling which `#[path::handler]` attributes are ours.
    pub(crate) fn read(mut block: ItemImpl, krate: Option<&Path>) -> Self {
        let mut methods = Vec::new();
        let mut misplaced = Vec::new();
        for item in &mut block.items {
            if let ImplItem::Fn(method) = item {
                let handler_attrs = mark_handler_attrs(&mut method.attrs, krate);
                if !handler_attrs.is_empty() {
                    methods.push(MarkedMethod {
                        sig: method.sig.clone(),
                        handler_attrs,
                        cfgs: cfg_attrs(&method.attrs).cloned().collect(),
                    });
                }
            } else {
                misplaced.extend(mark_handler_attrs(impl_item_attrs(item), krate));
            }
        }
        HandlersBlock {
            block,
            methods,
            misplaced,
        }
    }
}

fn impl_item_attrs(item: &mut ImplItem) -> &mut [Attribute] {
    match item {
        ImplItem::Const(item) => &mut item.attrs,
        ImplItem::Fn(item) => &mut item.attrs,
        ImplItem::Type(item) => &mut item.attrs,
        ImplItem::Macro(item) => &mut item.attrs,
        _ => &mut [],
    }
}

/// Replaces each `#[handler(..)]` by `#[handler(__iniesta_in_handlers)]`, returning the originals.
fn mark_handler_attrs(attrs: &mut [Attribute], krate: Option<&Path>) -> Vec<Attribute> {
    let mut found = Vec::new();
    for attr in attrs.iter_mut().filter(|attr| is_handler_attr(attr, krate)) {
        let marker = Meta::List(MetaList {
            path: attr.path().clone(),
            delimiter: MacroDelimiter::Paren(Default::default()),
            tokens: format_ident!("{}", IN_HANDLERS).into_token_stream(),
        });
        found.push(attr.clone());
        attr.meta = marker;
    }
    found
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

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(tokens: TokenStream) -> syn::Result<Vec<String>> {
        let args: HandlerArgs = syn::parse2(tokens)?;
        Ok(args.keys.iter().map(LitStr::value).collect())
    }

    fn error<T: Parse>(tokens: TokenStream) -> String {
        match syn::parse2::<T>(tokens) {
            Ok(_) => panic!("expected an error"),
            Err(error) => error
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(" | "),
        }
    }

    fn krate(args: Option<Path>) -> String {
        args.map(|path| path.to_token_stream().to_string())
            .unwrap_or_default()
    }

    #[test]
    fn bare_is_the_fallback() {
        let args: HandlerArgs = syn::parse2(TokenStream::new()).unwrap();
        assert!(args.keys.is_empty());
        assert!(args.krate.is_none());
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
    fn reads_the_crate_path_beside_the_keys() {
        let args: HandlerArgs = syn::parse2(quote::quote!("A.x", crate = renamed)).unwrap();
        assert_eq!(args.keys.len(), 1);
        assert_eq!(krate(args.krate), "renamed");
        let args: HandlerArgs = syn::parse2(quote::quote!(crate = ::my::iniesta, "A.x")).unwrap();
        assert_eq!(krate(args.krate), ":: my :: iniesta");
        let args: HandlerArgs = syn::parse2(quote::quote!(crate = "my_iniesta")).unwrap();
        assert!(args.keys.is_empty());
        assert_eq!(krate(args.krate), "my_iniesta");
        let args: HandlersArgs = syn::parse2(quote::quote!(crate = "::my::iniesta")).unwrap();
        assert_eq!(krate(args.krate), ":: my :: iniesta");
    }

    #[test]
    fn reads_the_concurrency_beside_the_keys() {
        let args: HandlerArgs = syn::parse2(quote::quote!("A.x", concurrency = 4)).unwrap();
        assert_eq!(args.keys.len(), 1);
        let value = args.concurrency.unwrap();
        assert_eq!(value.to_token_stream().to_string(), "4");
        let args: HandlerArgs = syn::parse2(quote::quote!(concurrency = "x")).unwrap();
        assert!(args.keys.is_empty(), "the value is checked later");
        assert_eq!(
            error::<HandlerArgs>(quote::quote!("A.x", concurrency = 1, concurrency = 2)),
            "duplicate `concurrency` argument: remove this one"
        );
        assert!(
            error::<HandlersArgs>(quote::quote!(concurrency = 2))
                .starts_with("`#[handlers]` takes no `concurrency`")
        );
    }

    #[test]
    fn rejects_bad_crate_paths() {
        assert_eq!(
            error::<HandlerArgs>(quote::quote!(crate = a, crate = b)),
            "duplicate `crate` argument: remove this one"
        );
        assert!(error::<HandlerArgs>(quote::quote!(crate = 42)).starts_with("expected the path"));
        assert!(
            error::<HandlersArgs>(quote::quote!(crate = "not a path"))
                .starts_with("expected the path")
        );
    }

    #[test]
    fn rejects_other_arguments() {
        assert!(
            error::<HandlerArgs>(quote::quote!(key = "A.x"))
                .starts_with("unknown argument `key`: `#[handler]` takes event keys")
        );
        assert!(error::<HandlerArgs>(quote::quote!(key = "A.x")).contains("`crate = path`"));
        assert!(
            error::<HandlerArgs>(quote::quote!(fallback))
                .starts_with("unknown argument `fallback`")
        );
        assert!(error::<HandlerArgs>(quote::quote!(42)).starts_with("expected an event key"));
        assert!(error::<HandlerArgs>(quote::quote!(b"A.x")).starts_with("expected an event key"));
        assert!(error::<HandlerArgs>(quote::quote!("A.x" "B.x")).starts_with("expected `,`"));
        assert!(
            error::<HandlersArgs>(quote::quote!(name = "x"))
                .starts_with("unknown argument `name`: `#[handlers]` takes only `crate = path`")
        );
        assert!(
            error::<HandlersArgs>(quote::quote!("A.x"))
                .starts_with("`#[handlers]` takes no event keys")
        );
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
        assert!(attrs.iter().all(|attr| is_handler_attr(attr, None)));

        let other: Attribute = syn::parse_quote!(#[other::handler]);
        assert!(!is_handler_attr(&other, None));
        let other: Attribute = syn::parse_quote!(#[handlers]);
        assert!(!is_handler_attr(&other, None));
        let other: Attribute = syn::parse_quote!(#[::handler]);
        assert!(!is_handler_attr(&other, None));
    }

    #[test]
    fn recognizes_handler_attributes_of_a_renamed_crate() {
        let renamed: Path = syn::parse_quote!(::my::iniesta);
        let attr: Attribute = syn::parse_quote!(#[my::iniesta::handler("A.x")]);
        assert!(is_handler_attr(&attr, Some(&renamed)));
        assert!(!is_handler_attr(&attr, None));
        let attr: Attribute = syn::parse_quote!(#[iniesta::handler]);
        assert!(is_handler_attr(&attr, Some(&renamed)));
        let attr: Attribute = syn::parse_quote!(#[iniesta::other::handler]);
        assert!(!is_handler_attr(&attr, Some(&renamed)));
        let facade: Path = syn::parse_quote!(crate::facade);
        let attr: Attribute = syn::parse_quote!(#[facade::handler]);
        assert!(is_handler_attr(&attr, Some(&facade)));
    }

    #[test]
    fn marks_handler_methods_of_a_block() {
        let block: ItemImpl = syn::parse_quote! {
            impl Billing {
                #[handler("A.x")]
                #[cfg(test)]
                async fn a(&self) {}
                #[handler]
                const X: u8 = 1;
                fn helper() {}
            }
        };
        let read = HandlersBlock::read(block, None);
        assert_eq!(read.methods.len(), 1);
        assert_eq!(read.methods[0].sig.ident, "a");
        assert_eq!(read.methods[0].handler_attrs.len(), 1);
        assert_eq!(read.methods[0].cfgs.len(), 1);
        assert_eq!(read.misplaced.len(), 1);
        let marked = read.block.to_token_stream().to_string();
        assert_eq!(marked.matches(IN_HANDLERS).count(), 2, "{marked}");
        assert!(!marked.contains("\"A.x\""), "{marked}");
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
