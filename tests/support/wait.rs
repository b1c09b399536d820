//! Waiting for a condition with a deadline, in tokio's time (real or paused).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Checks `condition` every 20 ms until it holds.
///
/// # Panics
///
/// After `within`, naming `what`.
pub async fn until<F, Fut>(what: &str, within: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
