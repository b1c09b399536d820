//! [`Permanent`]: a handler error that says retrying cannot help.

use std::error::Error as StdError;
use std::fmt;

use crate::BoxError;

/// A handler failure that retrying cannot fix (a malformed order, an unknown customer): the
/// message skips its retries.
///
/// Return it from a handler as any other error: `Err(Permanent::new(e).into())`, the shorthand
/// [`permanent(e)`](permanent), or `.permanent()?` on a `Result` ([`PermanentExt`]). The
/// pipeline finds it by downcasting the handler's [`BoxError`], also when it is the source of
/// another error (a middleware's or `anyhow`'s context around it).
///
/// What happens next:
///
/// - With a dead-letter sink ([`AppBuilder::dead_letter`](crate::AppBuilder::dead_letter),
///   `INIESTA_DEAD_LETTER_QUEUE_NAME`), the message goes there at once with reason
///   `permanent`, then is deleted from the queue.
/// - Without one, it is logged at ERROR (never the body, unless `log_bodies` is on) and, when
///   the queue has a redrive policy, given back at once with no retry backoff, so it spends its
///   receives quickly and the redrive policy moves it to the queue's dead-letter queue. A queue
///   without a redrive policy retries it like any failure (an immediate redelivery would loop
///   forever).
///
/// Its `Display` and `source` are the wrapped error's, so logs and the dead letter's
/// `iniesta_dlq_error` read the same as for the plain error.
///
/// # Examples
///
/// ```
/// use iniesta::{BoxError, Json, Permanent, PermanentExt};
///
/// #[derive(serde::Deserialize)]
/// struct Order { id: u64, quantity: u32 }
///
/// async fn order_created(msg: iniesta::Message) -> Result<(), BoxError> {
///     // A body that does not parse will not parse next time either.
///     let order: Order = msg.json().permanent()?;
///     if order.quantity == 0 {
///         return Err(iniesta::permanent(format!("order {} has no items", order.id)));
///     }
///     if order.id == 0 {
///         return Err(Permanent::new("order id 0").into());
///     }
///     Ok(())
/// }
/// # let _ = order_created;
/// ```
pub struct Permanent {
    error: BoxError,
}

impl Permanent {
    /// Marks `error` as permanent.
    pub fn new(error: impl Into<BoxError>) -> Self {
        Permanent {
            error: error.into(),
        }
    }

    /// The wrapped error.
    pub fn get_ref(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.error
    }

    /// The wrapped error, unmarked.
    pub fn into_inner(self) -> BoxError {
        self.error
    }

    /// Whether `error` or one of its sources is a [`Permanent`].
    ///
    /// # Examples
    ///
    /// ```
    /// use iniesta::{BoxError, Permanent};
    ///
    /// let plain: BoxError = "timeout".into();
    /// let marked: BoxError = Permanent::new("bad input").into();
    /// assert!(!Permanent::is_permanent(&*plain));
    /// assert!(Permanent::is_permanent(&*marked));
    /// ```
    pub fn is_permanent(error: &(dyn StdError + 'static)) -> bool {
        let mut current = Some(error);
        while let Some(error) = current {
            if error.is::<Permanent>() {
                return true;
            }
            current = error.source();
        }
        false
    }
}

/// Marks `error` as [`Permanent`], ready to return from a handler.
///
/// # Examples
///
/// ```
/// async fn handler(msg: iniesta::Message) -> Result<(), iniesta::BoxError> {
///     if msg.body().is_empty() {
///         return Err(iniesta::permanent("empty body"));
///     }
///     Ok(())
/// }
/// # let _ = handler;
/// ```
pub fn permanent(error: impl Into<BoxError>) -> BoxError {
    Box::new(Permanent::new(error))
}

/// `.permanent()` on a `Result`: its error becomes [`Permanent`].
///
/// # Examples
///
/// ```
/// use iniesta::PermanentExt;
///
/// async fn handler(msg: iniesta::Message) -> Result<(), iniesta::BoxError> {
///     let id: u64 = msg.body_str().unwrap_or_default().parse().permanent()?;
///     println!("{id}");
///     Ok(())
/// }
/// # let _ = handler;
/// ```
pub trait PermanentExt<T> {
    /// Marks the error, if any, as [`Permanent`].
    ///
    /// # Errors
    ///
    /// The original error, wrapped in [`Permanent`].
    fn permanent(self) -> Result<T, Permanent>;
}

impl<T, E: Into<BoxError>> PermanentExt<T> for Result<T, E> {
    fn permanent(self) -> Result<T, Permanent> {
        self.map_err(Permanent::new)
    }
}

impl fmt::Debug for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Permanent").field(&self.error).finish()
    }
}

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl StdError for Permanent {
    // The wrapped error's own source: `Display` already shows the wrapped error, so the chain
    // `outer: inner: root` does not repeat it.
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.error.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("could not save the order")]
    struct Context(#[source] Permanent);

    #[test]
    fn found_at_the_top_and_as_a_source() {
        let top: BoxError = Permanent::new("bad").into();
        assert!(Permanent::is_permanent(&*top));
        let nested: BoxError = Box::new(Context(Permanent::new("bad")));
        assert!(Permanent::is_permanent(&*nested));
        let plain: BoxError = "bad".into();
        assert!(!Permanent::is_permanent(&*plain));
    }

    #[test]
    fn reads_as_the_wrapped_error() {
        let io = std::io::Error::other("disk full");
        let marked = Permanent::new(crate::Error::Io(io));
        assert_eq!(marked.to_string(), "i/o error: disk full");
        assert_eq!(marked.source().unwrap().to_string(), "disk full");
        let parsed: Result<u8, _> = "x".parse::<u8>().permanent();
        assert!(
            parsed
                .unwrap_err()
                .get_ref()
                .is::<std::num::ParseIntError>()
        );
    }
}
