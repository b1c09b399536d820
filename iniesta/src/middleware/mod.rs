//! Code that runs around handlers: middleware from async functions, and hooks built on it.
//!
//! A middleware is an async function that receives the [`Message`], the [`Context`] and
//! [`Next`], the rest of the chain. It may look at the message, call
//! [`next.run(msg, ctx)`](Next::run) to run the rest (later middleware, then the handler), and
//! return that result, observe it or replace it; or it may return without calling `next` at
//! all (a short-circuit: the handler does not run). What it returns decides the delivery as a
//! handler's result does: `Ok(())` deletes the message, an error leaves it for a retry. Errors
//! pass through as they are, so a middleware may return (or pass on) any `BoxError`, whatever
//! type the runtime later looks for in it.
//!
//! Make one with [`from_fn`]; [`before`], [`after`] and [`on_error`] are hooks built on it.
//! Add it for every handler with [`AppBuilder::middleware`](crate::AppBuilder::middleware), or
//! for one with [`AppBuilder::handler_middleware`](crate::AppBuilder::handler_middleware).
//! The first middleware added is the outermost; app-wide middleware runs outside per-handler
//! middleware:
//!
//! ```text
//! app 1 -> app 2 -> handler 1 -> handler 2 -> the handler -> handler 2 -> .. -> app 1
//! ```
//!
//! Each route's chain is built once, by [`AppBuilder::build`](crate::AppBuilder::build); a
//! handler without middleware is called directly, at no cost. With middleware, each layer
//! costs one boxed future per delivery.
//!
//! Middleware takes no extractors: parse what it needs from the message, and capture shared
//! values in the closure (`let db = db.clone(); from_fn(move |msg, ctx, next| ..)`).
//!
//! # Examples
//!
//! A tenant field on the span of everything the handler logs:
//!
//! ```
//! use iniesta::middleware::{self, Next};
//! use iniesta::{App, BoxError, Context, Message};
//! use tracing::Instrument as _;
//!
//! async fn tenant_span(msg: Message, ctx: Context, next: Next) -> Result<(), BoxError> {
//!     let tenant = msg
//!         .header("tenant")
//!         .and_then(|value| value.as_str())
//!         .unwrap_or("unknown")
//!         .to_owned();
//!     let span = tracing::info_span!("tenant", tenant = %tenant);
//!     next.run(msg, ctx).instrument(span).await
//! }
//!
//! let builder = App::builder().middleware(middleware::from_fn(tenant_span));
//! # drop(builder);
//! ```
//!
//! Rejecting messages older than ten minutes: acked without running the handler.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use iniesta::middleware::{self, Next};
//! use iniesta::{App, BoxError, Context, Message};
//!
//! const MAX_AGE: Duration = Duration::from_secs(600);
//!
//! async fn drop_stale(msg: Message, ctx: Context, next: Next) -> Result<(), BoxError> {
//!     let age = msg
//!         .sent_at()
//!         .and_then(|sent| SystemTime::now().duration_since(sent).ok());
//!     if age.is_some_and(|age| age > MAX_AGE) {
//!         tracing::warn!(message_id = msg.id(), ?age, "stale: deleted unhandled");
//!         return Ok(()); // short-circuit: the handler does not run, the message is deleted
//!     }
//!     next.run(msg, ctx).await
//! }
//!
//! let builder = App::builder().middleware(middleware::from_fn(drop_stale));
//! # drop(builder);
//! ```
//!
//! Hooks:
//!
//! ```
//! use iniesta::middleware;
//! use iniesta::App;
//!
//! let builder = App::builder()
//!     .middleware(middleware::before(|msg, ctx| {
//!         tracing::debug!(message_id = msg.id(), attempt = ctx.attempt(), "starting");
//!     }))
//!     .middleware(middleware::on_error(|msg, _ctx, error| {
//!         tracing::warn!(message_id = msg.id(), %error, "handler failed");
//!     }));
//! # drop(builder);
//! ```

mod chain;
mod hooks;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

pub(crate) use chain::Chain;
pub use hooks::{after, before, on_error};

use crate::handler::{BoxFuture, IntoHandlerResult};
use crate::{BoxError, Context, Message};

/// A middleware: code that runs around a handler. Made by [`from_fn`] or the hooks.
///
/// Cloning is cheap: clones share the function.
#[derive(Clone)]
pub struct Middleware {
    call: Arc<MiddlewareFn>,
    /// The function's type, for `Debug`.
    name: &'static str,
}

type MiddlewareFn =
    dyn Fn(Message, Context, Next) -> BoxFuture<'static, Result<(), BoxError>> + Send + Sync;

impl Middleware {
    /// A middleware from a function that boxes its own future (or passes on `next`'s).
    fn from_boxed<F>(f: F) -> Middleware
    where
        F: Fn(Message, Context, Next) -> BoxFuture<'static, Result<(), BoxError>>
            + Send
            + Sync
            + 'static,
    {
        Middleware {
            call: Arc::new(f),
            name: std::any::type_name::<F>(),
        }
    }

    pub(crate) fn call(
        &self,
        msg: Message,
        ctx: Context,
        next: Next,
    ) -> BoxFuture<'static, Result<(), BoxError>> {
        (self.call)(msg, ctx, next)
    }
}

impl fmt::Debug for Middleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Middleware").field(&self.name).finish()
    }
}

/// Makes a middleware from an async function (or closure) of the message, its context and
/// [`Next`].
///
/// The function returns what a handler returns: `()` or `Result<(), E>` with
/// `E: Into<BoxError>`. See the [module docs](self) for the order middleware runs in.
///
/// # Examples
///
/// ```
/// use iniesta::middleware::{self, Next};
/// use iniesta::{App, BoxError, Context, Message};
///
/// async fn timed(msg: Message, ctx: Context, next: Next) -> Result<(), BoxError> {
///     let started = std::time::Instant::now();
///     let result = next.run(msg, ctx).await;
///     tracing::info!(elapsed = ?started.elapsed(), ok = result.is_ok(), "handled");
///     result
/// }
///
/// let builder = App::builder()
///     .middleware(middleware::from_fn(timed))
///     // A closure works too; the types are inferred.
///     .middleware(middleware::from_fn(|msg, ctx, next: Next| async move {
///         next.run(msg, ctx).await
///     }));
/// # drop(builder);
/// ```
pub fn from_fn<F, Fut, R>(f: F) -> Middleware
where
    F: Fn(Message, Context, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoHandlerResult,
{
    Middleware {
        call: Arc::new(move |msg, ctx, next| {
            let future = f(msg, ctx, next);
            Box::pin(async move { future.await.into_handler_result() })
        }),
        name: std::any::type_name::<F>(),
    }
}

/// The rest of a middleware chain: the later middleware, then the handler.
///
/// Given to each middleware. [`run`](Next::run) takes it by value, so the rest of the chain
/// runs at most once per middleware call.
pub struct Next {
    chain: Chain,
    /// The index of the next middleware; past the last, the handler.
    index: usize,
}

impl Next {
    /// Runs the rest of the chain on `msg` and `ctx` (usually the ones the middleware got;
    /// a middleware may pass others), and returns its result: the handler's, or what a later
    /// middleware made of it.
    ///
    /// The handler's arguments are extracted here, so an extractor's error is returned here
    /// as well.
    pub fn run(self, msg: Message, ctx: Context) -> BoxFuture<'static, Result<(), BoxError>> {
        self.chain.run_from(self.index, msg, ctx)
    }
}

impl fmt::Debug for Next {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next")
            .field("remaining", &self.chain.remaining(self.index))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn middleware_and_next_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Middleware>();
        send_sync::<Next>();
    }

    #[test]
    fn debug_names_the_function() {
        async fn audit(msg: Message, ctx: Context, next: Next) -> Result<(), BoxError> {
            next.run(msg, ctx).await
        }
        let debug = format!("{:?}", from_fn(audit));
        assert!(
            debug.starts_with("Middleware(\"") && debug.contains("audit"),
            "{debug}"
        );
    }
}
