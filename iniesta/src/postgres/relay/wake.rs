//! What wakes the relay: `LISTEN` on the outbox's channel, whose trigger notifies when a
//! transaction that wrote rows commits. Polling stays on beside it, so a lost connection only
//! makes the relay slower until it is back.

use std::sync::Arc;
use std::time::Duration;

use backon::ExponentialBackoff;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// First pause before listening again after the connection failed.
const RELISTEN_FIRST: Duration = Duration::from_secs(1);
/// Longest pause before listening again.
const RELISTEN_MAX: Duration = Duration::from_secs(60);

/// Listens on `channel` with a connection of `pool` until `stop`, waking `wake` on every
/// notification; reconnects with backoff when the connection fails.
pub(super) async fn listen(
    pool: PgPool,
    channel: String,
    wake: Arc<Notify>,
    poll_interval: Duration,
    stop: CancellationToken,
) {
    let mut failures: Option<ExponentialBackoff> = None;
    loop {
        let error = tokio::select! {
            () = stop.cancelled() => return,
            error = listen_until_error(&pool, &channel, &wake, &mut failures) => error,
        };
        let pause = failures
            .get_or_insert_with(|| crate::backoff::exponential(RELISTEN_FIRST, RELISTEN_MAX))
            .next()
            .unwrap_or(RELISTEN_MAX);
        tracing::warn!(
            %error,
            channel,
            retry_in = ?pause,
            ?poll_interval,
            "outbox relay: not listening for new rows; polling until it listens again"
        );
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Listens until the connection fails for good (sqlx reconnects on its own once); returns
/// why. Clears `failures` once listening.
async fn listen_until_error(
    pool: &PgPool,
    channel: &str,
    wake: &Notify,
    failures: &mut Option<ExponentialBackoff>,
) -> sqlx::Error {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(listener) => listener,
        Err(error) => return error,
    };
    if let Err(error) = listener.listen(channel).await {
        return error;
    }
    *failures = None;
    tracing::debug!(channel, "outbox relay listening");
    // Rows committed while nobody listened sent no notification anyone heard.
    wake.notify_one();
    loop {
        match listener.try_recv().await {
            Ok(Some(_)) => wake.notify_one(),
            // The connection dropped and sqlx opened another: notifications in between are
            // lost, so look now.
            Ok(None) => wake.notify_one(),
            Err(error) => return error,
        }
    }
}
