//! The expansions: the user's item as written, then one registration per handler. Everything
//! here generates code; the input was checked by `check`.
//!
//! A free fn expands to
//!
//! ```text
//! async fn user_updated(msg: Message) { .. }
//! #[doc(hidden)]
//! fn __iniesta_register_user_updated() {
//!     use ::iniesta::__private as __iniesta_private;
//!     fn __iniesta_make() -> BoxedHandler { __iniesta_private::free_1::<Message, (), _, _>(user_updated) }
//!     fn __iniesta_payload(generator: &mut SchemaGenerator) -> Option<PayloadSchema> { /* probes */ }
//!     __iniesta_private::inventory::submit! { Registration { keys: &["UserUpdated.user"], .., make: __iniesta_make, payload: __iniesta_payload } }
//! }
//! ```
//!
//! where `free_1` and its kin in `__private` carry every requirement of a handler as a separate
//! bound on a type the macro names with the user's span: an argument that is not an extractor
//! fails once, at its type; a wrong return type once, at the return type; a future that is not
//! `Send` once, at the fn's name. The `use` names `::iniesta`, or the `crate = ..` path, once.
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
//! const _: () = { /* the same registration, through `method_1::<Billing, Message, (), _, _>` */ };
//! ```

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::punctuated::Punctuated;
use syn::visit_mut::VisitMut;
use syn::{Ident, PathSegment, Token, Type};

use crate::check::{self, Checked, FreeFn, Handler, ImplBlock, Instance};

/// `#[handler]`: an `async fn` and its registration.
pub(crate) fn handler(args: TokenStream, item: TokenStream) -> TokenStream {
    match check::handler(args, item) {
        Checked::Valid(free) => free_fn(&free),
        Checked::AsWritten(item) => item,
        Checked::Invalid(item, error) => with_error(item, &error),
    }
}

/// `#[handlers]`: an impl block and a registration for each of its `#[handler]` methods.
pub(crate) fn handlers(args: TokenStream, item: TokenStream) -> TokenStream {
    match check::handlers(args, item) {
        Checked::Valid(block) => impl_block(&block),
        Checked::AsWritten(item) => item,
        Checked::Invalid(item, error) => with_error(item, &error),
    }
}

/// The item as written, then the errors: the item keeps existing for the IDE and for the rest
/// of the crate.
fn with_error(mut item: TokenStream, error: &syn::Error) -> TokenStream {
    item.extend(error.to_compile_error());
    item
}

fn free_fn(FreeFn { function, handler }: &FreeFn) -> TokenStream {
    let shim = format_ident!("__iniesta_register_{}", handler.ident.unraw());
    let cfgs = &handler.cfgs;
    let registration = registration(handler);
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

fn impl_block(ImplBlock { block, handlers }: &ImplBlock) -> TokenStream {
    let registrations = handlers.iter().map(|handler| {
        let cfgs = &handler.cfgs;
        let registration = registration(handler);
        quote! {
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

/// The make fn and the `submit!`.
fn registration(handler: &Handler) -> TokenStream {
    let krate = &handler.krate;
    let keys = &handler.keys;
    let fallback = keys.is_empty();
    let name = match &handler.self_ty {
        Some(self_ty) => format!("{}::{}", type_name(self_ty), handler.ident.unraw()),
        None => handler.ident.unraw().to_string(),
    };
    let span = handler.ident.span();
    // Spanned at the fn so `line!()` reports the handler, not the attribute.
    let line = quote_spanned!(span=> ::core::line!());
    let boxed = boxed(handler);
    let payload = payload(handler);
    let concurrency = match handler.concurrency {
        Some(limit) => {
            let limit = proc_macro2::Literal::usize_unsuffixed(limit);
            quote!(::core::option::Option::Some(#limit))
        }
        None => quote!(::core::option::Option::None),
    };
    // The crate path is resolved once, so a wrong `crate = ..` is one error.
    quote! {
        use #krate::__private as __iniesta_private;

        fn __iniesta_make() -> __iniesta_private::BoxedHandler {
            #boxed
        }

        #payload

        __iniesta_private::inventory::submit! {
            __iniesta_private::Registration {
                keys: &[#(#keys),*],
                fallback: #fallback,
                name: #name,
                module: ::core::module_path!(),
                file: ::core::file!(),
                line: #line,
                concurrency: #concurrency,
                make: __iniesta_make,
                payload: __iniesta_payload,
            }
        }
    }
}

/// The call boxing the handler: `free_N::<A1, .., R, _, _>(user_updated)`, or for a method
/// `method_N::<Billing, A1, .., R, _, _>(|__this: Instance<Billing>, ..| ..)`, each type spanned
/// where the user wrote it so a failed bound points there.
fn boxed(handler: &Handler) -> TokenStream {
    let span = handler.ident.span();
    let replace = |ty: &Type| match &handler.self_ty {
        Some(self_ty) => replace_self(ty, self_ty),
        None => ty.clone(),
    };
    let inputs: Vec<Type> = handler.inputs.iter().map(replace).collect();
    let output = match &handler.output {
        Some(ty) => replace(ty).into_token_stream(),
        None => quote_spanned!(span=> ()),
    };
    let path = match &handler.self_ty {
        Some(self_ty) => {
            let ident = &handler.ident;
            quote_spanned!(span=> <#self_ty>::#ident)
        }
        None => handler.ident.to_token_stream(),
    };
    let (Some(instance), Some(self_ty)) = (handler.instance, &handler.self_ty) else {
        let boxing = format_ident!("free_{}", inputs.len(), span = span);
        return quote_spanned! {span=>
            __iniesta_private::#boxing::<#(#inputs,)* #output, _, _>(#path)
        };
    };

    // `S` is spanned at `self`: an instance that cannot be shared fails there.
    let instance_ty = respan(self_ty.to_token_stream(), instance.span());
    let args: Vec<Ident> = (0..inputs.len())
        .map(|i| format_ident!("__arg{}", i))
        .collect();
    let params = quote_spanned! {span=>
        __this: __iniesta_private::Instance<#self_ty> #(, #args: #inputs)*
    };
    let closure = match instance {
        Instance::Ref(_) => quote_spanned! {span=>
            |#params| async move { #path(&*__this.0 #(, #args)*).await }
        },
        Instance::Arc(_) => quote_spanned! {span=>
            |#params| #path(__this.0 #(, #args)*)
        },
    };
    let boxing = format_ident!("method_{}", inputs.len(), span = span);
    quote_spanned! {span=>
        __iniesta_private::#boxing::<#instance_ty, #(#inputs,)* #output, _, _>(#closure)
    }
}

/// The fn giving the payload schema for the AsyncAPI document: the first argument that is a
/// `Json<T>` with `T: JsonSchema`, probed through `__private::Probe` (see there why a probe).
/// The types keep the user's spans: a mistake in one (an unknown type) is then the same
/// diagnostic at the same place as the boxing call's, which rustc reports once; the probe
/// itself has no bounds to fail.
fn payload(handler: &Handler) -> TokenStream {
    let inputs: Vec<Type> = handler
        .inputs
        .iter()
        .map(|ty| match &handler.self_ty {
            Some(self_ty) => replace_self(ty, self_ty),
            None => ty.clone(),
        })
        .collect();
    quote! {
        fn __iniesta_payload(
            generator: &mut __iniesta_private::SchemaGenerator,
        ) -> ::core::option::Option<__iniesta_private::PayloadSchema> {
            // A handler of `Json<T>` arguments only never names `NoPayload`, one of none never
            // names either, nor uses `generator`.
            #[allow(unused_imports)]
            use __iniesta_private::{JsonPayload as _, NoPayload as _};
            let _ = &generator;
            #(
                if let ::core::option::Option::Some(schema) =
                    (&__iniesta_private::Probe::<#inputs>::new()).payload_schema(generator)
                {
                    return ::core::option::Option::Some(schema);
                }
            )*
            ::core::option::Option::None
        }
    }
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

/// The type with `Self` replaced by the impl's type: the registration sits after the impl block.
fn replace_self(ty: &Type, self_ty: &Type) -> Type {
    let mut ty = ty.clone();
    ReplaceSelf(self_ty).visit_type_mut(&mut ty);
    ty
}

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
        let ty = replace_self(
            &syn::parse_quote!(Result<Json<Self>, Self::Error>),
            &self_ty,
        );
        assert_eq!(
            ty.to_token_stream().to_string(),
            quote!(Result<Json<Billing>, <Billing>::Error>).to_string()
        );
    }

    #[test]
    fn boxes_through_the_helper_of_the_arity() {
        let expanded = handler(
            quote!("A.x"),
            quote!(
                async fn f(msg: Message, ctx: Context) -> Result<(), E> {}
            ),
        )
        .to_string();
        let boxing =
            "__iniesta_private :: free_2 :: < Message , Context , Result < () , E > , _ , _ > (f)";
        assert!(expanded.contains(boxing), "{expanded}");
    }

    #[test]
    fn probes_each_argument_for_a_payload_schema() {
        let expanded = handler(
            quote!("A.x"),
            quote!(
                async fn f(msg: Message, Json(body): Json<Body>) {}
            ),
        )
        .to_string();
        for probe in [
            "Probe :: < Message > :: new ()",
            "Probe :: < Json < Body > > :: new ()",
        ] {
            assert!(expanded.contains(probe), "{expanded}");
        }
        assert!(
            expanded.contains("payload : __iniesta_payload"),
            "{expanded}"
        );
    }

    #[test]
    fn names_only_the_given_crate_path() {
        let free = handler(
            quote!("A.x", crate = renamed),
            quote!(
                async fn f() {}
            ),
        );
        let methods = handlers(
            quote!(crate = "my::renamed"),
            quote! {
                impl Billing {
                    #[my::renamed::handler("A.x")]
                    async fn a(&self, msg: Message) {}
                    #[handler]
                    async fn b(self: Arc<Self>) {}
                }
            },
        );
        fn names_iniesta(tokens: TokenStream) -> bool {
            tokens.into_iter().any(|token| match token {
                TokenTree::Ident(ident) => ident == "iniesta",
                TokenTree::Group(group) => names_iniesta(group.stream()),
                _ => false,
            })
        }
        for expanded in [free, methods] {
            assert!(!names_iniesta(expanded.clone()), "{expanded}");
            let expanded = expanded.to_string();
            assert!(!expanded.contains("compile_error"), "{expanded}");
            assert!(
                expanded.contains("renamed :: __private as __iniesta_private"),
                "{expanded}"
            );
        }
    }

    #[test]
    fn keeps_the_item_beside_the_errors() {
        let expanded = handler(
            quote!(nope),
            quote!(
                fn f() {}
            ),
        )
        .to_string();
        assert!(expanded.starts_with("fn f () { }"), "{expanded}");
        assert_eq!(expanded.matches("compile_error").count(), 2, "{expanded}");
    }
}
