//! Waiting for a condition in tests, and short duration spelling.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often the waits below look at their condition again.
const POLL: Duration = Duration::from_millis(20);

/// `n` seconds.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Polls `condition` every 20 ms until it holds; panics after `within` naming `what`.
pub async fn wait_for<F, Fut>(what: &str, within: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// [`wait_for`] with a condition that needs no `.await`.
pub async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    wait_for(what, within, || std::future::ready(done())).await;
}
