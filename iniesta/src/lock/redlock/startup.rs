//! Startup checks: servers that are not independent, an even count, a slow call timeout,
//! servers down. Warnings only: none of them stops the consumer from starting.

use std::collections::HashMap;

use super::{Redlock, RedlockConfig};

impl Redlock {
    /// Startup warnings: servers that are not independent, an even count, a slow call timeout,
    /// servers down.
    pub(super) async fn check_topology(&self, config: &RedlockConfig) {
        let inner = &*self.inner;
        let total = inner.instances.len();
        for (address, count) in shared(inner.instances.iter().map(|i| &i.endpoint().address)) {
            let databases: Vec<i64> = inner
                .instances
                .iter()
                .filter(|i| i.endpoint().address == *address)
                .map(|i| i.endpoint().db)
                .collect();
            tracing::warn!(
                server = %address,
                urls = count,
                ?databases,
                "lock servers are not independent: several URLs name one Redis server (different \
                 databases of one server give no fault tolerance); use independent servers"
            );
        }
        if total == 1 {
            tracing::info!(
                server = %inner.instances[0].name(),
                "one lock server: no lock (and no handling) while it is down; three or five \
                 independent servers tolerate failures"
            );
        } else if total.is_multiple_of(2) {
            tracing::warn!(
                servers = total,
                quorum = inner.quorum,
                tolerated_failures = total - inner.quorum,
                "an even number of lock servers tolerates no more failures than one server fewer; \
                 use an odd number"
            );
        }
        if config.call_timeout * 2 >= inner.ttl.saturating_sub(inner.drift) {
            tracing::warn!(
                call_timeout = ?config.call_timeout,
                ttl = ?inner.ttl,
                "the Redis call timeout is long next to the lock ttl: slow servers can make \
                 acquired leases expire before use"
            );
        }
        let probes =
            futures_util::future::join_all(inner.instances.iter().map(|i| i.probe())).await;
        let reachable = probes.iter().filter(|p| p.is_ok()).count();
        // Different addresses can still reach one server (aliases, proxies): Redis names itself.
        let run_ids = probes.iter().filter_map(|p| p.as_ref().ok()?.as_ref());
        for (run_id, _) in shared(run_ids) {
            let same: Vec<&str> = inner
                .instances
                .iter()
                .zip(&probes)
                .filter(|(_, p)| matches!(p, Ok(Some(id)) if id == run_id))
                .map(|(i, _)| i.endpoint().address.as_str())
                .collect();
            if same.iter().any(|a| *a != same[0]) {
                tracing::warn!(
                    run_id = %run_id,
                    servers = ?same,
                    "lock servers are not independent: different addresses reach one Redis \
                     server (same run_id); use independent servers"
                );
            }
        }
        if reachable < inner.quorum {
            tracing::warn!(
                reachable,
                servers = total,
                quorum = inner.quorum,
                "too few lock servers answer at startup: starting anyway; no message is handled \
                 until a majority answers"
            );
        } else {
            tracing::info!(
                servers = total,
                reachable,
                quorum = inner.quorum,
                ttl = ?inner.ttl,
                fencing = inner.fencing,
                "redlock ready"
            );
        }
    }
}

/// Values that occur more than once, with their counts, sorted.
fn shared<'a, T>(values: impl Iterator<Item = &'a T>) -> Vec<(&'a T, usize)>
where
    T: std::hash::Hash + Eq + Ord + 'a,
{
    let mut counts: HashMap<&T, usize> = HashMap::new();
    for value in values {
        *counts.entry(value).or_default() += 1;
    }
    let mut shared: Vec<_> = counts.into_iter().filter(|(_, n)| *n > 1).collect();
    shared.sort();
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_finds_repeated_servers() {
        let addresses = ["h:1", "h:2", "h:1", "h:3", "h:1", "h:2"].map(String::from);
        let found = shared(addresses.iter());
        assert_eq!(found, vec![(&addresses[0], 3), (&addresses[1], 2)]);
        assert!(shared(["a", "b"].iter()).is_empty());
    }
}
