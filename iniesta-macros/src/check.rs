//! What the attributes accept: the parsed input checked, each error spanned at the token at
//! fault, and turned into the handlers `expand` registers. The types are checked later, by the
//! compiler, through the bounds of the `__private` fn each registration calls.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::{
    Attribute, Error, FnArg, Ident, Item, ItemFn, ItemImpl, LitStr, Path, ReturnType, Signature,
    Type,
};

use crate::parse::{self, Errors, HandlerArgs, HandlersArgs, HandlersBlock, SelfArg};

/// The most arguments a handler takes, `self` included: `iniesta::Handler` is implemented up to
/// this arity.
const MAX_ARGS: usize = 8;

const ONE_HANDLER: &str =
    "only one `#[handler]` per function: list every key in it, like `#[handler(\"A.x\", \"B.x\")]`";

/// The outcome of checking an attribute's input.
pub(crate) enum Checked<T> {
    /// Valid: what to expand.
    Valid(T),
    /// Nothing to do: emit the item as written.
    AsWritten(TokenStream),
    /// The item as written, to keep it for the IDE and the rest of the crate, and every error.
    Invalid(TokenStream, Error),
}

impl<T> Checked<T> {
    fn invalid(item: impl ToTokens, errors: Errors) -> Self {
        match errors.finish() {
            Err(error) => Checked::Invalid(item.into_token_stream(), error),
            Ok(()) => Checked::AsWritten(item.into_token_stream()),
        }
    }
}

/// A valid `#[handler]` fn.
pub(crate) struct FreeFn {
    /// The fn as written, without its `#[handler]` attribute.
    pub(crate) function: ItemFn,
    pub(crate) handler: Handler,
}

/// A valid `#[handlers]` impl block.
pub(crate) struct ImplBlock {
    /// The block, each `#[handler(..)]` replaced by a marker that hands the method back.
    pub(crate) block: ItemImpl,
    /// Its handler methods, in order.
    pub(crate) handlers: Vec<Handler>,
}

/// One handler to register.
pub(crate) struct Handler {
    /// The fn's name: the span of registration-level errors.
    pub(crate) ident: Ident,
    /// Checked event keys; empty for the fallback.
    pub(crate) keys: Vec<LitStr>,
    /// `concurrency = N`, checked: at least 1.
    pub(crate) concurrency: Option<usize>,
    /// The path of the `iniesta` crate: `::iniesta` unless `crate = ..` says otherwise.
    pub(crate) krate: Path,
    /// The impl's type, for methods and associated fns.
    pub(crate) self_ty: Option<Type>,
    /// How a method takes its instance; `None` for fns without `self`.
    pub(crate) instance: Option<Instance>,
    /// The argument types after `self`, as written.
    pub(crate) inputs: Vec<Type>,
    /// The return type as written; `None` for `()`.
    pub(crate) output: Option<Type>,
    /// The `#[cfg]` attributes the registration copies.
    pub(crate) cfgs: Vec<Attribute>,
}

/// How a handler method takes the instance registered as app state, and the span of its `self`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Instance {
    /// `&self`.
    Ref(Span),
    /// `self: Arc<Self>`.
    Arc(Span),
}

impl Instance {
    pub(crate) fn span(self) -> Span {
        match self {
            Instance::Ref(span) | Instance::Arc(span) => span,
        }
    }
}

/// `#[handler]`: an `async fn`, or a method `#[handlers]` has already taken care of.
pub(crate) fn handler(args: TokenStream, item: TokenStream) -> Checked<FreeFn> {
    if parse::is_in_handlers_marker(&args) {
        return Checked::AsWritten(item);
    }
    let mut errors = Errors::default();
    let args = errors.take(syn::parse2::<HandlerArgs>(args));
    let item: Item = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(error) => {
            errors.push(error);
            return Checked::invalid(item, errors);
        }
    };
    let Item::Fn(mut function) = item else {
        errors.push(not_a_fn(&item));
        return Checked::invalid(item, errors);
    };
    let Some(args) = args else {
        signature(&function.sig, Place::Free, &mut errors);
        return Checked::invalid(function, errors);
    };
    let keys = keys(args.keys, &mut errors);
    let concurrency = concurrency(args.concurrency, &mut errors);
    for attr in parse::take_handler_attrs(&mut function.attrs, args.krate.as_ref()) {
        errors.push(Error::new_spanned(attr, ONE_HANDLER));
    }
    signature(&function.sig, Place::Free, &mut errors);
    if !errors.is_empty() {
        return Checked::invalid(function, errors);
    }
    let handler = Handler {
        ident: function.sig.ident.clone(),
        keys,
        concurrency,
        krate: krate_or_default(args.krate),
        self_ty: None,
        instance: None,
        inputs: typed_inputs(&function.sig),
        output: output(&function.sig),
        cfgs: parse::cfg_attrs(&function.attrs).cloned().collect(),
    };
    Checked::Valid(FreeFn { function, handler })
}

/// `#[handlers]`: an inherent impl block of a concrete type with `#[handler]` methods.
pub(crate) fn handlers(args: TokenStream, item: TokenStream) -> Checked<ImplBlock> {
    let mut errors = Errors::default();
    let args = errors.take(syn::parse2::<HandlersArgs>(args));
    let item: Item = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(error) => {
            errors.push(error);
            return Checked::invalid(item, errors);
        }
    };
    let Item::Impl(block) = item else {
        errors.push(Error::new_spanned(
            item_head(&item),
            "`#[handlers]` goes on an impl block whose handler methods have `#[handler(..)]`",
        ));
        return Checked::invalid(item, errors);
    };
    impl_block(&block, &mut errors);
    let block_krate = args.and_then(|args| args.krate);
    let read = HandlersBlock::read(block, block_krate.as_ref());
    for attr in read.misplaced {
        errors.push(Error::new_spanned(
            attr,
            "`#[handler]` goes on an `async fn`",
        ));
    }
    let self_ty = &read.block.self_ty;
    let impl_cfgs: Vec<_> = parse::cfg_attrs(&read.block.attrs).cloned().collect();
    let mut handlers = Vec::new();
    for method in read.methods {
        let Some((first, more)) = method.handler_attrs.split_first() else {
            continue;
        };
        for attr in more {
            errors.push(Error::new_spanned(attr, ONE_HANDLER));
        }
        let Some(args) = errors.take(parse::handler_args(first)) else {
            signature(&method.sig, Place::Method, &mut errors);
            continue;
        };
        let keys = keys(args.keys, &mut errors);
        let concurrency = concurrency(args.concurrency, &mut errors);
        signature(&method.sig, Place::Method, &mut errors);
        let instance = match SelfArg::of(&method.sig) {
            Ok(SelfArg::Ref(span)) => Some(Instance::Ref(span)),
            Ok(SelfArg::Arc(span)) => Some(Instance::Arc(span)),
            // A bad receiver was reported by `signature`.
            Ok(SelfArg::None) | Err(_) => None,
        };
        handlers.push(Handler {
            ident: method.sig.ident.clone(),
            keys,
            concurrency,
            krate: krate_or_default(args.krate.or_else(|| block_krate.clone())),
            self_ty: Some((**self_ty).clone()),
            instance,
            inputs: typed_inputs(&method.sig),
            output: output(&method.sig),
            cfgs: impl_cfgs.iter().chain(&method.cfgs).cloned().collect(),
        });
    }
    if handlers.is_empty() && errors.is_empty() {
        let impl_token = &read.block.impl_token;
        errors.push(Error::new_spanned(
            quote!(#impl_token #self_ty),
            "`#[handlers]` found no `#[handler]` method: mark the handler methods with `#[handler(\"Event.key\")]`, or remove `#[handlers]`",
        ));
    }
    if !errors.is_empty() {
        return Checked::invalid(read.block, errors);
    }
    Checked::Valid(ImplBlock {
        block: read.block,
        handlers,
    })
}

fn krate_or_default(krate: Option<Path>) -> Path {
    krate.unwrap_or_else(|| syn::parse_quote!(::iniesta))
}

fn not_a_fn(item: &Item) -> Error {
    let message = if let Item::Impl(_) = item {
        "`#[handler]` goes on an `async fn`: for the methods of an impl block, put `#[handlers]` on the block and `#[handler(..)]` on each method"
    } else {
        "`#[handler]` goes on an `async fn`"
    };
    Error::new_spanned(item_head(item), message)
}

/// The keyword and name of an item, where "this is not an `async fn`" errors point.
fn item_head(item: &syn::Item) -> TokenStream {
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

/// The keys, each checked against the router's rules and the others, so a bad key fails the
/// build at the literal rather than the app at startup.
fn keys(keys: Vec<LitStr>, errors: &mut Errors) -> Vec<LitStr> {
    let mut checked: Vec<LitStr> = Vec::with_capacity(keys.len());
    for key in keys {
        let value = key.value();
        if let Err(reason) = key_rule(&value) {
            errors.push(Error::new(key.span(), reason));
        } else if checked.iter().any(|seen| seen.value() == value) {
            errors.push(Error::new(
                key.span(),
                format!("duplicate event key `{value}`: remove this one"),
            ));
        }
        checked.push(key);
    }
    checked
}

/// `concurrency = N`: a plain integer literal of at least 1.
fn concurrency(value: Option<syn::Expr>, errors: &mut Errors) -> Option<usize> {
    let value = value?;
    let lit = match &value {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(lit),
            ..
        }) if matches!(lit.suffix(), "" | "usize") => lit,
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(lit),
            ..
        }) => {
            errors.push(Error::new(
                lit.span(),
                format!(
                    "`concurrency` takes a `usize`: remove the `{}` suffix",
                    lit.suffix()
                ),
            ));
            return None;
        }
        // A literal passed through a `macro_rules!` fragment arrives in an invisible group.
        syn::Expr::Group(group) => return concurrency(Some((*group.expr).clone()), errors),
        _ => {
            errors.push(Error::new_spanned(
                value,
                "expected the most deliveries to run at once as an integer literal, like `concurrency = 4`",
            ));
            return None;
        }
    };
    match lit.base10_parse::<usize>() {
        Ok(0) => {
            errors.push(Error::new(
                lit.span(),
                "`concurrency` must be at least 1: remove it for no limit",
            ));
            None
        }
        Ok(limit) => Some(limit),
        Err(error) => {
            errors.push(Error::new(
                lit.span(),
                format!("{error}: `concurrency` takes a `usize`"),
            ));
            None
        }
    }
}

/// The key rules of the runtime's router: an exact key, or a prefix pattern ending in `*`.
fn key_rule(key: &str) -> Result<(), &'static str> {
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

/// Where a handler fn sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A `#[handler]` fn outside any `#[handlers]` impl block.
    Free,
    /// A `#[handler]` method inside a `#[handlers]` impl block.
    Method,
}

/// The signature errors the type system would report badly or not at all.
fn signature(sig: &Signature, place: Place, errors: &mut Errors) {
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
fn impl_block(item: &ItemImpl, errors: &mut Errors) {
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

/// Whether a type spells `impl Trait` anywhere, which the registration cannot name.
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

fn typed_inputs(sig: &Signature) -> Vec<Type> {
    sig.inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(arg) => Some((*arg.ty).clone()),
            FnArg::Receiver(_) => None,
        })
        .collect()
}

fn output(sig: &Signature) -> Option<Type> {
    match &sig.output {
        ReturnType::Type(_, ty) => Some((**ty).clone()),
        ReturnType::Default => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(sig: &Signature, place: Place) -> Vec<String> {
        let mut errors = Errors::default();
        signature(sig, place, &mut errors);
        messages(errors)
    }

    fn messages(errors: Errors) -> Vec<String> {
        match errors.finish() {
            Ok(()) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn key_errors(keys: &[&str]) -> Vec<String> {
        let mut errors = Errors::default();
        let literals = keys
            .iter()
            .map(|key| LitStr::new(key, Span::call_site()))
            .collect();
        super::keys(literals, &mut errors);
        messages(errors)
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
        let found = messages(errors);
        assert!(found[0].starts_with("`#[handlers]` cannot go on a generic impl block"));
        assert!(found[1].starts_with("`#[handlers]` goes on an inherent impl block"));
    }

    #[test]
    fn rejects_empty_and_duplicate_keys_together() {
        assert_eq!(
            key_errors(&["", "A.x", "A.x"]),
            [
                "event key cannot be empty: write the key, like `\"UserUpdated.user\"`, or use a bare `#[handler]` for the fallback",
                "duplicate event key `A.x`: remove this one"
            ]
        );
    }

    #[test]
    fn checks_patterns_like_the_router() {
        assert!(key_errors(&["UserUpdated.*", "User*", "A.x"]).is_empty());
        assert!(key_errors(&["  "])[0].starts_with("event key cannot be empty"));
        assert!(key_errors(&["*"])[0].starts_with("`\"*\"` alone would match every key"));
        for key in ["*.user", "User*.user", "User**"] {
            assert!(
                key_errors(&[key])[0].starts_with("`*` may only end a prefix pattern"),
                "{key}"
            );
        }
    }

    #[test]
    fn takes_the_crate_path_from_the_method_or_the_block() {
        let Checked::Valid(block) = handlers(
            quote!(crate = renamed),
            quote! {
                impl Billing {
                    #[renamed::handler("A.x")]
                    async fn a(&self) {}
                    #[handler("B.x", crate = other)]
                    async fn b() {}
                }
            },
        ) else {
            panic!("expected a valid block");
        };
        let krates: Vec<_> = block
            .handlers
            .iter()
            .map(|handler| handler.krate.to_token_stream().to_string())
            .collect();
        assert_eq!(krates, ["renamed", "other"]);
        assert!(matches!(block.handlers[0].instance, Some(Instance::Ref(_))));
    }
}
