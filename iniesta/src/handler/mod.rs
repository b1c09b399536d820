//! The `Handler` trait: async functions and closures whose arguments are extractors.

mod extract;

use std::fmt;
use std::future::{Future, ready};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

pub use extract::{FromMessage, Instance, Json, State};

use crate::{BoxError, Context, Message, States};

/// A boxed future that is `Send`, as the runtime spawns it.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a handler returns: `()` or `Result<(), E>` for any `E: Into<BoxError>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a valid handler return type",
    label = "handlers return `()` or `Result<(), E>`",
    note = "return `()` or `Result<(), E>` where `E: Into<iniesta::BoxError>` (for example `anyhow::Error` or `Box<dyn Error + Send + Sync>`)"
)]
pub trait IntoHandlerResult {
    /// Converts to the runtime's result.
    ///
    /// # Errors
    ///
    /// The handler's error, boxed.
    fn into_handler_result(self) -> Result<(), BoxError>;
}

impl IntoHandlerResult for () {
    fn into_handler_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Into<BoxError>> IntoHandlerResult for Result<(), E> {
    fn into_handler_result(self) -> Result<(), BoxError> {
        self.map_err(Into::into)
    }
}

/// An async function (or closure) that handles messages.
///
/// Implemented for every `Fn(A, B, ..) -> impl Future` of up to eight arguments that are all
/// [`FromMessage`] extractors, whose future is `Send` and whose output is `()` or
/// `Result<(), E: Into<BoxError>>`. `T` is the tuple of argument types; you never name it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an iniesta handler",
    note = "a handler is an async fn or closure whose arguments implement `FromMessage`, whose future is `Send`, and that returns `()` or `Result<(), E: Into<BoxError>>`"
)]
pub trait Handler<T>: Clone + Send + Sync + Sized + 'static {
    /// Extracts the arguments and runs the handler.
    fn call(
        &self,
        msg: Message,
        ctx: Context,
        states: &States,
    ) -> BoxFuture<'static, Result<(), BoxError>>;

    /// Checked once at startup: the name of a state type an argument needs and is missing.
    ///
    /// # Errors
    ///
    /// The type name of the missing state.
    fn check(states: &States) -> Result<(), &'static str>;

    /// Whether an argument is the delivery's database transaction (feature `postgres`).
    #[doc(hidden)]
    fn uses_transaction() -> bool;
}

macro_rules! impl_handler {
    ($($arg:ident),*) => {
        impl<F, Fut, R, $($arg,)*> Handler<($($arg,)*)> for F
        where
            F: Fn($($arg),*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future<Output = R> + Send + 'static,
            R: IntoHandlerResult,
            $($arg: FromMessage,)*
        {
            #[allow(non_snake_case, unused_variables)]
            fn call(&self, msg: Message, ctx: Context, states: &States) -> BoxFuture<'static, Result<(), BoxError>> {
                $(
                    let $arg = match $arg::from_message(&msg, &ctx, states) {
                        Ok(value) => value,
                        Err(error) => return Box::pin(ready(Err(error))),
                    };
                )*
                let future = self($($arg),*);
                Box::pin(async move { future.await.into_handler_result() })
            }

            fn check(states: &States) -> Result<(), &'static str> {
                let _ = states;
                $($arg::check(states)?;)*
                Ok(())
            }

            fn uses_transaction() -> bool {
                false $(|| $arg::uses_transaction())*
            }
        }
    };
}

impl_handler!();
impl_handler!(A1);
impl_handler!(A1, A2);
impl_handler!(A1, A2, A3);
impl_handler!(A1, A2, A3, A4);
impl_handler!(A1, A2, A3, A4, A5);
impl_handler!(A1, A2, A3, A4, A5, A6);
impl_handler!(A1, A2, A3, A4, A5, A6, A7);
impl_handler!(A1, A2, A3, A4, A5, A6, A7, A8);

/// A handler with its argument types erased, as the router stores it.
#[derive(Clone)]
pub struct BoxedHandler(Arc<dyn ErasedHandler>);

trait ErasedHandler: Send + Sync {
    fn call(
        &self,
        msg: Message,
        ctx: Context,
        states: &States,
    ) -> BoxFuture<'static, Result<(), BoxError>>;
    fn check(&self, states: &States) -> Result<(), &'static str>;
    fn uses_transaction(&self) -> bool;
}

struct Erased<H, T> {
    handler: H,
    // `fn() -> T` keeps `Erased` Send + Sync whatever the argument types are.
    _args: PhantomData<fn() -> T>,
}

impl<H: Handler<T>, T: 'static> ErasedHandler for Erased<H, T> {
    fn call(
        &self,
        msg: Message,
        ctx: Context,
        states: &States,
    ) -> BoxFuture<'static, Result<(), BoxError>> {
        self.handler.call(msg, ctx, states)
    }

    fn check(&self, states: &States) -> Result<(), &'static str> {
        H::check(states)
    }

    fn uses_transaction(&self) -> bool {
        H::uses_transaction()
    }
}

impl BoxedHandler {
    /// Erases a handler's argument types.
    pub fn new<H: Handler<T>, T: 'static>(handler: H) -> Self {
        BoxedHandler(Arc::new(Erased {
            handler,
            _args: PhantomData,
        }))
    }

    pub(crate) fn call(
        &self,
        msg: Message,
        ctx: Context,
        states: &States,
    ) -> BoxFuture<'static, Result<(), BoxError>> {
        self.0.call(msg, ctx, states)
    }

    pub(crate) fn check(&self, states: &States) -> Result<(), &'static str> {
        self.0.check(states)
    }

    /// Whether the handler takes the delivery's database transaction.
    pub(crate) fn uses_transaction(&self) -> bool {
        self.0.uses_transaction()
    }
}

impl fmt::Debug for BoxedHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoxedHandler")
    }
}
