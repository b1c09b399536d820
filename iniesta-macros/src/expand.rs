//! The expansions: the user's item as written, then one registration per handler.
//!
//! A free fn expands to
//!
//! ```text
//! async fn user_updated(msg: Message) { .. }
//! #[doc(hidden)]
//! fn __iniesta_register_user_updated() {
//!     fn __iniesta_check_types() { assert_extractor::<Message>(); }
//!     fn __iniesta_check_send() { let h = user_updated; assert_send_future(h(panic!())); }
//!     fn __iniesta_make() -> BoxedHandler { BoxedHandler::new(user_updated) }
//!     inventory::submit! { Registration { keys: &["UserUpdated.user"], .., make: __iniesta_make } }
//! }
//! ```
//!
//! The registration sits in a never-called fn rather than a `const _` so that `#[handler]` on an
//! associated fn of an impl without `#[handlers]` fails with one error, "cannot find value
//! `user_updated` in this scope" at the fn's name (every reference is spanned there and is a
//! value path, so rustc reports it once), instead of also "`const` items in this context need a
//! name". No item can tell the two contexts apart to say more. `submit!` works in any body: its
//! statics are items, linked whether or not the fn runs.
//!
//! A `#[handlers]` impl block expands to the block, each `#[handler(..)]` replaced by a marker
//! that makes the inner attribute hand the method back unchanged, then per handler method
//!
//! ```text
//! const _: () = { /* the same registration, naming `<Billing>::invoice_sent` */ };
//! ```

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::punctuated::Punctuated;
use syn::visit_mut::VisitMut;
use syn::{
    Attribute, Error, FnArg, Ident, ImplItem, Item, ItemImpl, MacroDelimiter, Meta, MetaList,
    PathSegment, ReturnType, Signature, Token, Type,
};

use crate::check::{self, Errors, Place};
use crate::parse::{self, HandlerArgs, SelfArg};

/// `#[handler]`: an `async fn` and its registration.
pub(crate) fn handler(args: TokenStream, item: TokenStream) -> TokenStream {
    if parse::is_in_handlers_marker(&args) {
        // `#[handlers]` on the impl block has checked and registered this method.
        return item;
    }
    let mut errors = Errors::default();
    let args = syn::parse2::<HandlerArgs>(args)
        .map_err(|error| errors.push(error))
        .ok();
    let item: Item = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(error) => {
            errors.push(error);
            return with_errors(item, errors);
        }
    };
    let Item::Fn(mut function) = item else {
        errors.push(not_a_fn(&item));
        return with_errors(item, errors);
    };
    function.attrs.retain(|attr| {
        let more = parse::is_handler_attr(attr);
        if more {
            errors.push(Error::new_spanned(attr, ONE_HANDLER));
        }
        !more
    });
    check::signature(&function.sig, Place::Free, &mut errors);
    let Some(args) = args.filter(|_| errors.is_empty()) else {
        return with_errors(function, errors);
    };

    let shim = format_ident!("__iniesta_register_{}", function.sig.ident.unraw());
    let cfgs = parse::cfg_attrs(&function.attrs);
    let registration = Target::free(&function.sig, &args).registration();
    quote! {
        #function

        #(#cfgs)*
        #[doc(hidden)]
        #[allow(dead_code, non_snake_case)]
        fn #shim() {
            #registration
        }
    }
}

/// `#[handlers]`: an impl block and a registration for each of its `#[handler]` methods.
pub(crate) fn handlers(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    if !args.is_empty() {
        errors.push(Error::new_spanned(
            args,
            "`#[handlers]` takes no arguments: put the event keys on each method's `#[handler(..)]`",
        ));
    }
    let item: Item = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(error) => {
            errors.push(error);
            return with_errors(item, errors);
        }
    };
    let Item::Impl(mut block) = item else {
        errors.push(Error::new_spanned(
            parse::item_head(&item),
            "`#[handlers]` goes on an impl block whose handler methods have `#[handler(..)]`",
        ));
        return with_errors(item, errors);
    };
    check::impl_block(&block, &mut errors);
    let methods = take_handler_methods(&mut block, &mut errors);
    if methods.is_empty() && errors.is_empty() {
        let impl_token = &block.impl_token;
        let self_ty = &block.self_ty;
        errors.push(Error::new_spanned(
            quote!(#impl_token #self_ty),
            "`#[handlers]` found no `#[handler]` method: mark the handler methods with `#[handler(\"Event.key\")]`, or remove `#[handlers]`",
        ));
    }
    if !errors.is_empty() {
        return with_errors(block, errors);
    }

    let impl_cfgs: Vec<_> = parse::cfg_attrs(&block.attrs).collect();
    let registrations = methods.iter().map(|method| {
        let registration =
            Target::method(&method.sig, &method.args, &block.self_ty, method.self_arg)
                .registration();
        let cfgs = &method.cfgs;
        quote! {
            #(#impl_cfgs)*
            #(#cfgs)*
            const _: () = {
                #registration
            };
        }
    });
    quote! {
        #block
        #(#registrations)*
    }
}

const ONE_HANDLER: &str =
    "only one `#[handler]` per function: list every key in it, like `#[handler(\"A.x\", \"B.x\")]`";

/// A `#[handler]` method found by `#[handlers]`.
struct Method {
    sig: Signature,
    args: HandlerArgs,
    self_arg: SelfArg,
    cfgs: Vec<Attribute>,
}

/// Checks the `#[handler]` methods of the block and replaces their attributes with the marker.
fn take_handler_methods(block: &mut ItemImpl, errors: &mut Errors) -> Vec<Method> {
    let mut methods = Vec::new();
    for item in &mut block.items {
        let ImplItem::Fn(method) = item else {
            for attr in mark_handler_attrs(impl_item_attrs(item)) {
                errors.push(Error::new_spanned(
                    attr,
                    "`#[handler]` goes on an `async fn`",
                ));
            }
            continue;
        };
        let found = mark_handler_attrs(&mut method.attrs);
        let Some((first, more)) = found.split_first() else {
            continue;
        };
        for attr in more {
            errors.push(Error::new_spanned(attr, ONE_HANDLER));
        }
        check::signature(&method.sig, Place::Method, errors);
        match parse::handler_args(first) {
            Ok(args) => methods.push(Method {
                sig: method.sig.clone(),
                args,
                // A bad receiver was reported by `check::signature`.
                self_arg: SelfArg::of(&method.sig).unwrap_or(SelfArg::None),
                cfgs: parse::cfg_attrs(&method.attrs).cloned().collect(),
            }),
            Err(error) => errors.push(error),
        }
    }
    methods
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
fn mark_handler_attrs(attrs: &mut [Attribute]) -> Vec<Attribute> {
    let mut found = Vec::new();
    for attr in attrs.iter_mut().filter(|attr| parse::is_handler_attr(attr)) {
        let marker = Meta::List(MetaList {
            path: attr.path().clone(),
            delimiter: MacroDelimiter::Paren(Default::default()),
            tokens: format_ident!("{}", parse::IN_HANDLERS).into_token_stream(),
        });
        found.push(attr.clone());
        attr.meta = marker;
    }
    found
}

fn not_a_fn(item: &Item) -> Error {
    let message = if let Item::Impl(_) = item {
        "`#[handler]` goes on an `async fn`: for the methods of an impl block, put `#[handlers]` on the block and `#[handler(..)]` on each method"
    } else {
        "`#[handler]` goes on an `async fn`"
    };
    Error::new_spanned(parse::item_head(item), message)
}

/// The item as written, then the errors: the item keeps existing for the IDE and for the rest
/// of the crate.
fn with_errors(item: impl ToTokens, errors: Errors) -> TokenStream {
    let errors = errors
        .finish()
        .err()
        .map(|error| error.into_compile_error());
    quote!(#item #errors)
}

/// One handler to register, free fn or method, its types usable outside the impl block.
pub(crate) struct Target<'a> {
    /// The fn's name: the span for registration-level errors.
    pub(crate) ident: &'a Ident,
    pub(crate) args: &'a HandlerArgs,
    /// `user_updated` or `Billing::invoice_sent`.
    pub(crate) name: String,
    /// The expression naming the fn.
    pub(crate) path: TokenStream,
    pub(crate) self_arg: SelfArg,
    pub(crate) self_ty: Option<&'a Type>,
    /// The argument types after the receiver, `Self` replaced.
    pub(crate) inputs: Vec<Type>,
    /// The return type as written, `Self` replaced; `None` for `()`.
    pub(crate) output: Option<Type>,
}

impl<'a> Target<'a> {
    fn free(sig: &'a Signature, args: &'a HandlerArgs) -> Self {
        Target {
            ident: &sig.ident,
            args,
            name: sig.ident.unraw().to_string(),
            path: sig.ident.to_token_stream(),
            self_arg: SelfArg::None,
            self_ty: None,
            inputs: typed_inputs(sig).cloned().collect(),
            output: output(sig).cloned(),
        }
    }

    fn method(
        sig: &'a Signature,
        args: &'a HandlerArgs,
        self_ty: &'a Type,
        self_arg: SelfArg,
    ) -> Self {
        let mut replace = ReplaceSelf(self_ty);
        let mut replaced = |ty: &Type| {
            let mut ty = ty.clone();
            replace.visit_type_mut(&mut ty);
            ty
        };
        let ident = &sig.ident;
        Target {
            ident,
            args,
            name: format!("{}::{}", type_name(self_ty), ident.unraw()),
            path: quote!(<#self_ty>::#ident),
            self_arg,
            self_ty: Some(self_ty),
            inputs: typed_inputs(sig).map(&mut replaced).collect(),
            output: output(sig).map(replaced),
        }
    }

    /// The make fn, the `submit!` and the assertions.
    fn registration(&self) -> TokenStream {
        let keys = &self.args.keys;
        let fallback = self.args.is_fallback();
        let name = &self.name;
        let span = self.ident.span();
        // Spanned at the fn so `line!()` reports the handler, not the attribute.
        let line = quote_spanned!(span=> ::core::line!());
        let handler = self.handler();
        let new = quote_spanned!(span=> ::iniesta::__private::BoxedHandler::new(#handler));
        let assertions = check::assertions(self);
        // The assertions come first: their targeted errors then precede the generic "is not an
        // iniesta handler" that `BoxedHandler::new` reports for the same mistake.
        quote! {
            #assertions

            fn __iniesta_make() -> ::iniesta::__private::BoxedHandler {
                #new
            }

            ::iniesta::__private::inventory::submit! {
                ::iniesta::__private::Registration {
                    keys: &[#(#keys),*],
                    fallback: #fallback,
                    name: #name,
                    module: ::core::module_path!(),
                    file: ::core::file!(),
                    line: #line,
                    make: __iniesta_make,
                }
            }
        }
    }

    /// What `BoxedHandler::new` takes: the fn itself, or for a method a closure that takes the
    /// instance from app state through `Instance<T>`.
    fn handler(&self) -> TokenStream {
        let path = &self.path;
        let (Some(self_ty), SelfArg::Ref(_) | SelfArg::Arc(_)) = (self.self_ty, self.self_arg)
        else {
            return path.clone();
        };
        let args: Vec<Ident> = (0..self.inputs.len())
            .map(|i| format_ident!("__arg{}", i))
            .collect();
        let types = &self.inputs;
        let span = self.ident.span();
        let params = quote_spanned! {span=>
            __this: ::iniesta::__private::Instance<#self_ty> #(, #args: #types)*
        };
        if let SelfArg::Ref(_) = self.self_arg {
            quote_spanned! {span=>
                |#params| async move { #path(&*__this.0 #(, #args)*).await }
            }
        } else {
            quote_spanned! {span=>
                |#params| #path(__this.0 #(, #args)*)
            }
        }
    }
}

fn typed_inputs(sig: &Signature) -> impl Iterator<Item = &Type> {
    sig.inputs.iter().filter_map(|arg| match arg {
        FnArg::Typed(arg) => Some(&*arg.ty),
        FnArg::Receiver(_) => None,
    })
}

fn output(sig: &Signature) -> Option<&Type> {
    match &sig.output {
        ReturnType::Type(_, ty) => Some(ty),
        ReturnType::Default => None,
    }
}

/// The type as a user reads it: `crate::billing::Billing`, not `crate :: billing :: Billing`.
fn type_name(ty: &Type) -> String {
    let mut name = ty.to_token_stream().to_string();
    for (from, to) in [
        (" :: ", "::"),
        (":: ", "::"),
        (" <", "<"),
        ("< ", "<"),
        (" >", ">"),
    ] {
        name = name.replace(from, to);
    }
    name.replace(" ,", ",")
}

/// Replaces `Self` by the impl's type: the registration sits after the impl block.
struct ReplaceSelf<'a>(&'a Type);

impl VisitMut for ReplaceSelf<'_> {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::Path(path) = ty {
            let segments = &path.path.segments;
            let starts_with_self = path.qself.is_none()
                && path.path.leading_colon.is_none()
                && segments.first().is_some_and(|s| s.ident == "Self");
            if starts_with_self && segments.len() == 1 {
                *ty = self.0.clone();
                return;
            }
            if starts_with_self {
                // `Self::Assoc` becomes `<Billing>::Assoc`.
                let self_ty = self.0;
                let rest: Punctuated<PathSegment, Token![::]> =
                    segments.iter().skip(1).cloned().collect();
                *ty = syn::parse_quote!(<#self_ty>::#rest);
            }
        }
        syn::visit_mut::visit_type_mut(self, ty);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_types_as_written() {
        let name = |ty: Type| type_name(&ty);
        assert_eq!(name(syn::parse_quote!(Billing)), "Billing");
        assert_eq!(
            name(syn::parse_quote!(crate::billing::Billing)),
            "crate::billing::Billing"
        );
        assert_eq!(
            name(syn::parse_quote!(Wrapper<u32, String>)),
            "Wrapper<u32, String>"
        );
    }

    #[test]
    fn replaces_self() {
        let self_ty: Type = syn::parse_quote!(Billing);
        let mut ty: Type = syn::parse_quote!(Result<Json<Self>, Self::Error>);
        ReplaceSelf(&self_ty).visit_type_mut(&mut ty);
        assert_eq!(
            ty.to_token_stream().to_string(),
            quote!(Result<Json<Billing>, <Billing>::Error>).to_string()
        );
    }
}
