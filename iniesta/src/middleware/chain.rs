//! A route's middleware and handler, put together once when the app is built.

use std::sync::Arc;

use super::{Middleware, Next};
use crate::handler::{BoxFuture, BoxedHandler};
use crate::{BoxError, Context, Message, States};

/// The middleware of one route, outermost first, then its handler. Cheap to clone: each
/// [`Next`] holds one.
#[derive(Debug, Clone)]
pub(crate) struct Chain(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    layers: Box<[Middleware]>,
    handler: BoxedHandler,
    // A copy made once at build time: a `Next` must reach the state after the delivery that
    // started the chain lent it, so it cannot borrow the pipeline's.
    states: States,
}

impl Chain {
    /// The chain of `layers` (outermost first) around `handler`; `None` without layers, so a
    /// route without middleware calls its handler directly.
    pub(crate) fn new(
        layers: Vec<Middleware>,
        handler: BoxedHandler,
        states: &States,
    ) -> Option<Chain> {
        if layers.is_empty() {
            return None;
        }
        Some(Chain(Arc::new(Inner {
            layers: layers.into_boxed_slice(),
            handler,
            states: states.clone(),
        })))
    }

    /// Runs the whole chain.
    pub(crate) fn run(
        &self,
        msg: Message,
        ctx: Context,
    ) -> BoxFuture<'static, Result<(), BoxError>> {
        self.run_from(0, msg, ctx)
    }

    /// Runs the chain from layer `index` on: that layer, or past the last one the handler.
    pub(super) fn run_from(
        &self,
        index: usize,
        msg: Message,
        ctx: Context,
    ) -> BoxFuture<'static, Result<(), BoxError>> {
        match self.0.layers.get(index) {
            Some(layer) => {
                let next = Next {
                    chain: self.clone(),
                    index: index + 1,
                };
                layer.call(msg, ctx, next)
            }
            None => self.0.handler.call(msg, ctx, &self.0.states),
        }
    }

    /// Layers not yet run from `index` on, for `Debug`.
    pub(super) fn remaining(&self, index: usize) -> usize {
        self.0.layers.len().saturating_sub(index)
    }
}
