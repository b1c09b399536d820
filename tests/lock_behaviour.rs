//! One behavioural suite for every idempotency lock: the in-memory lock and the Redis Redlock
//! (three servers with fencing through the Lua path, one server through plain `SET NX`) must
//! behave alike.

mod support;

use std::sync::Arc;
use std::time::Duration;

use iniesta::lock::redlock::Redlock;
use iniesta::lock::{Acquisition, IdempotencyLock, Lease, MemoryLock};
use support::lock::{acquire_one, acquired, is_busy};
use support::redis::{RedisServer, redlock_config, urls};

/// A lock under test, with whatever must stay alive while it is used.
struct Subject {
    lock: Arc<dyn IdempotencyLock>,
    fencing: bool,
    servers: Vec<RedisServer>,
}

async fn memory(ttl: Duration) -> Subject {
    Subject {
        lock: Arc::new(MemoryLock::with_ttl(ttl)),
        fencing: true,
        servers: Vec::new(),
    }
}

async fn redlock(ttl: Duration, servers: usize, fencing: bool) -> Subject {
    let servers = RedisServer::start_many(servers);
    let config = redlock_config(&urls(&servers))
        .with_ttl(ttl)
        .with_fencing(fencing);
    let lock = Redlock::connect(&config).await.expect("connect");
    Subject {
        lock: Arc::new(lock),
        fencing,
        servers,
    }
}

/// The holder's remaining ttl a busy answer reports.
fn expires_in(result: &Result<Acquisition, iniesta::LockError>) -> Duration {
    match result {
        Ok(Acquisition::Busy {
            expires_in: Some(left),
        }) => *left,
        other => panic!("expected Busy with a remaining ttl, got {other:?}"),
    }
}

const TTL: Duration = Duration::from_secs(10);
const SHORT_TTL: Duration = Duration::from_millis(300);

async fn a_held_key_is_busy(s: Subject) {
    let lease = acquired(&acquire_one(&*s.lock, "k").await);
    assert_eq!(lease.key(), "k");
    assert!(lease.validity() <= s.lock.ttl());
    assert!(is_busy(&acquire_one(&*s.lock, "k").await));
}

async fn a_released_key_is_acquired_again(s: Subject) {
    let lease = acquired(&acquire_one(&*s.lock, "k").await);
    s.lock.release(&lease).await.expect("release");
    acquired(&acquire_one(&*s.lock, "k").await);
}

async fn a_wrong_token_neither_releases_nor_extends(s: Subject) {
    let lease = acquired(&acquire_one(&*s.lock, "k").await);
    let mut forged = Lease::new(
        "k".to_owned(),
        "not-the-token".to_owned(),
        tokio::time::Instant::now(),
        s.lock.ttl(),
    );
    let _ = s.lock.release(&forged).await;
    assert!(
        is_busy(&acquire_one(&*s.lock, "k").await),
        "a forged token released the lock"
    );
    assert!(
        !s.lock.extend(&mut forged).await.expect("extend"),
        "a forged token extended the lock"
    );
    // The owner still can.
    let mut lease = lease;
    assert!(s.lock.extend(&mut lease).await.expect("extend"));
    s.lock.release(&lease).await.expect("release");
    acquired(&acquire_one(&*s.lock, "k").await);
}

async fn a_lock_expires_after_its_ttl(s: Subject) {
    let mut old = acquired(&acquire_one(&*s.lock, "k").await);
    tokio::time::sleep(s.lock.ttl() + Duration::from_millis(100)).await;
    let new = acquired(&acquire_one(&*s.lock, "k").await);
    // The expired holder lost it for good: it can neither extend nor release the new lease.
    assert!(!s.lock.extend(&mut old).await.expect("extend"));
    let _ = s.lock.release(&old).await;
    assert!(is_busy(&acquire_one(&*s.lock, "k").await));
    s.lock.release(&new).await.expect("release");
}

async fn extension_keeps_a_lock_past_its_ttl(s: Subject) {
    let ttl = s.lock.ttl();
    let mut lease = acquired(&acquire_one(&*s.lock, "k").await);
    let first = lease.acquired_at();
    for _ in 0..4 {
        tokio::time::sleep(ttl / 2).await;
        assert!(
            s.lock.extend(&mut lease).await.expect("extend"),
            "extension failed"
        );
        assert!(is_busy(&acquire_one(&*s.lock, "k").await));
    }
    assert!(lease.acquired_at() > first, "the lease was not renewed");
    assert!(first.elapsed() > ttl * 3 / 2);
    s.lock.release(&lease).await.expect("release");
}

async fn a_busy_key_tells_when_its_holder_expires(s: Subject) {
    let ttl = s.lock.ttl();
    let mut lease = acquired(&acquire_one(&*s.lock, "k").await);
    let first = expires_in(&acquire_one(&*s.lock, "k").await);
    assert!(
        first <= ttl && first > ttl - Duration::from_secs(1),
        "{first:?} of {ttl:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = expires_in(&acquire_one(&*s.lock, "k").await);
    assert!(
        later + Duration::from_millis(250) <= first,
        "the remaining ttl did not shrink: {first:?} then {later:?}"
    );
    // An extension pushes it back out.
    assert!(s.lock.extend(&mut lease).await.expect("extend"));
    let extended = expires_in(&acquire_one(&*s.lock, "k").await);
    assert!(extended > later, "{later:?} then {extended:?}");
    s.lock.release(&lease).await.expect("release");
}

async fn a_busy_key_is_free_once_its_remaining_ttl_passes(s: Subject) {
    let _crashed = acquired(&acquire_one(&*s.lock, "k").await);
    tokio::time::sleep(s.lock.ttl() / 3).await;
    let left = expires_in(&acquire_one(&*s.lock, "k").await);
    assert!(left < s.lock.ttl(), "{left:?}");
    // The holder never releases (it crashed): after `expires_in` the key is free.
    tokio::time::sleep(left + Duration::from_millis(50)).await;
    let lease = acquired(&acquire_one(&*s.lock, "k").await);
    s.lock.release(&lease).await.expect("release");
}

async fn a_processed_marker_reports_already_processed(s: Subject) {
    s.lock
        .mark_processed("done", Duration::from_secs(60))
        .await
        .expect("mark");
    assert!(matches!(
        acquire_one(&*s.lock, "done").await,
        Ok(Acquisition::AlreadyProcessed)
    ));

    // The usual order: lock, handle, mark, (delete), release; a redelivery then finds the marker.
    let lease = acquired(&acquire_one(&*s.lock, "m").await);
    s.lock
        .mark_processed("m", Duration::from_secs(60))
        .await
        .expect("mark");
    s.lock.release(&lease).await.expect("release");
    assert!(matches!(
        acquire_one(&*s.lock, "m").await,
        Ok(Acquisition::AlreadyProcessed)
    ));

    // A marker expires with its ttl.
    s.lock
        .mark_processed("brief", Duration::from_millis(100))
        .await
        .expect("mark");
    tokio::time::sleep(Duration::from_millis(200)).await;
    acquired(&acquire_one(&*s.lock, "brief").await);
}

async fn a_batch_answers_each_key_in_order(s: Subject) {
    let held = acquired(&acquire_one(&*s.lock, "b1").await);
    s.lock
        .mark_processed("b3", Duration::from_secs(60))
        .await
        .expect("mark");
    let keys = ["b0", "b1", "b2", "b3", "b4"];
    let results = s.lock.acquire(&keys).await;
    assert_eq!(results.len(), keys.len());
    assert_eq!(acquired(&results[0]).key(), "b0");
    assert!(is_busy(&results[1]), "{:?}", results[1]);
    assert_eq!(acquired(&results[2]).key(), "b2");
    assert!(
        matches!(results[3], Ok(Acquisition::AlreadyProcessed)),
        "{:?}",
        results[3]
    );
    assert_eq!(acquired(&results[4]).key(), "b4");
    assert!(s.lock.acquire(&[]).await.is_empty());
    s.lock.release(&held).await.expect("release");
}

async fn fencing_tokens_increase(s: Subject) {
    if !s.fencing {
        let lease = acquired(&acquire_one(&*s.lock, "f").await);
        assert_eq!(lease.fencing_token(), None, "fencing is off");
        return;
    }
    let mut last = 0;
    for round in 0..3 {
        let lease = acquired(&acquire_one(&*s.lock, "f").await);
        let token = lease.fencing_token().expect("a fencing token");
        assert!(token > last, "round {round}: token {token} after {last}");
        last = token;
        if round == 1 {
            // Expiry instead of release: the next holder's token still grows.
            tokio::time::sleep(s.lock.ttl() + Duration::from_millis(100)).await;
        } else {
            s.lock.release(&lease).await.expect("release");
        }
    }
    // A busy acquisition does not consume tokens of the holder's key in a way that reorders.
    let other = acquired(&acquire_one(&*s.lock, "g").await);
    assert!(other.fencing_token().is_some());
}

async fn concurrent_acquirers_get_the_key_once(s: Subject) {
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let lock = Arc::clone(&s.lock);
        attempts.spawn(async move { acquire_one(&*lock, "race").await });
    }
    let results = attempts.join_all().await;
    let winners = results
        .iter()
        .filter(|r| matches!(r, Ok(Acquisition::Acquired(_))))
        .count();
    // Exactly one with a single arbiter; a split vote among servers may leave none, never two.
    assert!(winners <= 1, "{results:?}");
    assert!(winners == 1 || s.servers.len() > 1, "{results:?}");
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
}

/// Runs every test of the suite against the lock `make(ttl).await` builds.
macro_rules! behaviour {
    ($name:ident, |$ttl:ident| $make:expr) => {
        mod $name {
            use super::*;

            async fn subject(ttl: Duration) -> Subject {
                let $ttl = ttl;
                $make
            }

            #[tokio::test]
            async fn a_held_key_is_busy() {
                super::a_held_key_is_busy(subject(TTL).await).await;
            }

            #[tokio::test]
            async fn a_released_key_is_acquired_again() {
                super::a_released_key_is_acquired_again(subject(TTL).await).await;
            }

            #[tokio::test]
            async fn a_wrong_token_neither_releases_nor_extends() {
                super::a_wrong_token_neither_releases_nor_extends(subject(TTL).await).await;
            }

            #[tokio::test]
            async fn a_lock_expires_after_its_ttl() {
                super::a_lock_expires_after_its_ttl(subject(SHORT_TTL).await).await;
            }

            #[tokio::test]
            async fn extension_keeps_a_lock_past_its_ttl() {
                super::extension_keeps_a_lock_past_its_ttl(subject(SHORT_TTL).await).await;
            }

            #[tokio::test]
            async fn a_busy_key_tells_when_its_holder_expires() {
                super::a_busy_key_tells_when_its_holder_expires(subject(TTL).await).await;
            }

            #[tokio::test]
            async fn a_busy_key_is_free_once_its_remaining_ttl_passes() {
                super::a_busy_key_is_free_once_its_remaining_ttl_passes(subject(SHORT_TTL).await)
                    .await;
            }

            #[tokio::test]
            async fn a_processed_marker_reports_already_processed() {
                super::a_processed_marker_reports_already_processed(subject(TTL).await).await;
            }

            #[tokio::test]
            async fn a_batch_answers_each_key_in_order() {
                super::a_batch_answers_each_key_in_order(subject(TTL).await).await;
            }

            #[tokio::test]
            async fn fencing_tokens_increase() {
                super::fencing_tokens_increase(subject(SHORT_TTL).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_acquirers_get_the_key_once() {
                super::concurrent_acquirers_get_the_key_once(subject(TTL).await).await;
            }
        }
    };
}

behaviour!(memory_lock, |ttl| memory(ttl).await);
behaviour!(redlock_three_servers_fenced, |ttl| redlock(ttl, 3, true)
    .await);
behaviour!(redlock_one_server, |ttl| redlock(ttl, 1, false).await);
