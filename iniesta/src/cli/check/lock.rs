//! The Redlock's servers: built in when the lock is on, and an odd number of distinct hosts,
//! so a majority means something.

use super::Finding;
use crate::config::Config;

const NAME: &str = "lock servers";

pub(super) fn check(config: &Config, findings: &mut Vec<Finding>) {
    findings.push(verdict(config));
}

fn verdict(config: &Config) -> Finding {
    if !config.lock.enabled {
        return Finding::skip(NAME, "the lock is off (INIESTA_LOCK_ENABLED=false)");
    }
    // The app would refuse to start: that is a failure, not a lock to skip.
    if let Err(refused) = config.lock.refuse_unbuilt() {
        return Finding::fail(
            NAME,
            refused.to_string(),
            "build the service with iniesta's `redis` feature, or set INIESTA_LOCK_ENABLED=false",
        );
    }
    #[cfg(feature = "redis")]
    return servers(&config.lock.redlock.urls);
    // Not reached: without the Redlock, a lock that is on is refused above.
    #[cfg(not(feature = "redis"))]
    Finding::skip(NAME, "built without the `redis` feature")
}

/// The verdict on the servers at `urls`.
#[cfg(feature = "redis")]
fn servers(urls: &[String]) -> Finding {
    let hosts: Vec<String> = urls.iter().map(|url| host_of(url)).collect();
    let mut distinct = hosts.clone();
    distinct.sort();
    distinct.dedup();
    if distinct.len() < hosts.len() {
        return Finding::fail(
            NAME,
            format!(
                "{} servers on {} host(s) ({}): one host going down takes several votes",
                hosts.len(),
                distinct.len(),
                distinct.join(", ")
            ),
            "give each Redis server of INIESTA_REDIS_URLS a host of its own",
        );
    }
    if hosts.len().is_multiple_of(2) {
        return Finding::fail(
            NAME,
            format!(
                "{} servers: an even number gains no failure tolerance over one fewer and can split evenly",
                hosts.len()
            ),
            "use an odd number of servers in INIESTA_REDIS_URLS (1, 3 or 5)",
        );
    }
    Finding::pass(NAME, format!("{} server(s) on distinct hosts", hosts.len()))
}

/// The host of a Redis URL (`redis://[user:pass@]host[:port][/db]`), lowercased.
#[cfg(feature = "redis")]
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host_port.rsplit_once(':').map_or(host_port, |(h, _)| h),
    };
    host.to_ascii_lowercase()
}

#[cfg(all(test, feature = "redis"))]
mod tests {
    use super::*;
    use crate::cli::check::Verdict;

    fn verdict(urls: &[&str]) -> Verdict {
        servers(&urls.iter().map(|u| (*u).to_owned()).collect::<Vec<_>>()).verdict
    }

    #[test]
    fn odd_numbers_of_distinct_hosts_pass() {
        assert!(matches!(verdict(&["redis://a:6379"]), Verdict::Pass(_)));
        assert!(matches!(
            verdict(&["redis://a", "redis://:pw@b:1/0", "rediss://[::1]:7"]),
            Verdict::Pass(_)
        ));
        assert!(matches!(
            verdict(&["redis://a", "redis://b"]),
            Verdict::Fail { .. }
        ));
        assert!(matches!(
            verdict(&["redis://a:1", "redis://A:2", "redis://c"]),
            Verdict::Fail { .. }
        ));
    }
}

#[cfg(all(test, not(feature = "redis")))]
mod tests_without_redis {
    use super::*;
    use crate::cli::check::Verdict;

    #[test]
    fn a_lock_that_is_on_fails_in_a_build_without_the_redlock() {
        let mut config = Config::default();
        let mut findings = Vec::new();
        check(&config, &mut findings);
        assert!(
            matches!(&findings[0].verdict, Verdict::Fail { wrong, .. } if wrong.contains("`redis` feature")),
            "{}",
            findings[0]
        );
        config.lock.enabled = false;
        findings.clear();
        check(&config, &mut findings);
        assert!(matches!(findings[0].verdict, Verdict::Skip(_)));
    }
}
