//! Hooks: middleware that only watches, for code that runs before or after each handler.
//!
//! Each wraps a plain closure in a [`Middleware`]. They see what a middleware sees and cannot
//! change the outcome. A handler that panics, times out or is cancelled unwinds or is dropped
//! before [`after`] and [`on_error`] could run; use [`from_fn`] and your own guard for those.

use std::sync::Arc;

use super::{Middleware, Next, from_fn};
use crate::{BoxError, Context, Message};

/// Runs `hook` before the rest of the chain (and the handler).
///
/// # Examples
///
/// ```
/// let builder = iniesta::App::builder().middleware(iniesta::middleware::before(|msg, ctx| {
///     tracing::debug!(message_id = msg.id(), handler = ctx.handler_name(), "starting");
/// }));
/// # drop(builder);
/// ```
pub fn before<F>(hook: F) -> Middleware
where
    F: Fn(&Message, &Context) + Send + Sync + 'static,
{
    // Hands on the rest of the chain's future as it is: no second box around it.
    Middleware::from_boxed(move |msg: Message, ctx: Context, next: Next| {
        hook(&msg, &ctx);
        next.run(msg, ctx)
    })
}

/// Runs `hook` after the rest of the chain returned, with its result: `Ok` or the error.
///
/// # Examples
///
/// ```
/// let builder = iniesta::App::builder().middleware(iniesta::middleware::after(
///     |msg, _ctx, result| tracing::debug!(message_id = msg.id(), ok = result.is_ok(), "done"),
/// ));
/// # drop(builder);
/// ```
pub fn after<F>(hook: F) -> Middleware
where
    F: Fn(&Message, &Context, &Result<(), BoxError>) + Send + Sync + 'static,
{
    let hook = Arc::new(hook);
    from_fn(move |msg: Message, ctx: Context, next: Next| {
        let hook = Arc::clone(&hook);
        async move {
            let result = next.run(msg.clone(), ctx.clone()).await;
            hook(&msg, &ctx, &result);
            result
        }
    })
}

/// Runs `hook` when the rest of the chain returned an error, with the error.
///
/// # Examples
///
/// ```
/// let builder = iniesta::App::builder().middleware(iniesta::middleware::on_error(
///     |msg, ctx, error| {
///         if ctx.is_final_attempt() {
///             tracing::error!(message_id = msg.id(), %error, "last attempt failed");
///         }
///     },
/// ));
/// # drop(builder);
/// ```
pub fn on_error<F>(hook: F) -> Middleware
where
    F: Fn(&Message, &Context, &BoxError) + Send + Sync + 'static,
{
    after(move |msg, ctx, result| {
        if let Err(error) = result {
            hook(msg, ctx, error);
        }
    })
}
