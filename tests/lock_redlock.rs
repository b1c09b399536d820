//! The Redis Redlock's own guarantees: quorum with servers down or hung, pipelining, timing,
//! fencing across majorities, startup warnings. Each test starts its own servers.

mod support;

use std::time::Duration;

use iniesta::LockError;
use iniesta::lock::redlock::Redlock;
use iniesta::lock::{Acquisition, IdempotencyLock};
use support::lock::{acquire_one, acquired, eventually_acquired};
use support::logs::Logs;
use support::redis::{LatencyProxy, RedisServer, redlock_config, urls};
use tokio::time::Instant;

fn is_no_quorum(result: &Result<impl std::fmt::Debug, LockError>, answered: usize) -> bool {
    matches!(result, Err(LockError::NoQuorum { answered: a, total: 3, needed: 2 }) if *a == answered)
}

#[test]
fn redlock_is_send_sync_and_cheap_to_clone() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    check::<Redlock>();
}

#[tokio::test]
async fn one_of_three_servers_killed_still_locks() {
    let mut servers = RedisServer::start_many(3);
    let lock = Redlock::connect(&redlock_config(&urls(&servers)))
        .await
        .unwrap();
    servers[0].kill();

    let results = lock.acquire(&["a", "b"]).await;
    let mut lease = acquired(&results[0]);
    acquired(&results[1]);
    assert!(matches!(
        acquire_one(&lock, "a").await,
        Ok(Acquisition::Busy { .. })
    ));
    assert!(lock.extend(&mut lease).await.unwrap());
    lock.mark_processed("a", Duration::from_secs(60))
        .await
        .unwrap();
    lock.release(&lease).await.unwrap();
    assert!(matches!(
        acquire_one(&lock, "a").await,
        Ok(Acquisition::AlreadyProcessed)
    ));
}

#[tokio::test]
async fn two_of_three_down_is_no_quorum_until_they_return() {
    let mut servers = RedisServer::start_many(3);
    let lock = Redlock::connect(&redlock_config(&urls(&servers)))
        .await
        .unwrap();
    let mut held = acquired(&acquire_one(&lock, "held").await);
    servers[0].kill();
    servers[1].kill();

    let result = acquire_one(&lock, "a").await;
    assert!(is_no_quorum(&result, 1), "{result:?}");
    let marked = lock.mark_processed("a", Duration::from_secs(60)).await;
    assert!(is_no_quorum(&marked, 1), "{marked:?}");
    let extended = lock.extend(&mut held).await;
    assert!(is_no_quorum(&extended, 1), "{extended:?}");
    assert!(lock.release(&held).await.is_err());

    servers[0].restart();
    servers[1].restart();
    eventually_acquired(&lock, "b", Duration::from_secs(3)).await;
    // The marking that reached one server only still counts: the handler did succeed.
    assert!(matches!(
        acquire_one(&lock, "a").await,
        Ok(Acquisition::AlreadyProcessed)
    ));
}

#[tokio::test]
async fn retries_wait_for_a_quorum_to_return() {
    let mut servers = RedisServer::start_many(3);
    let mut config = redlock_config(&urls(&servers));
    config.retry_count = 5;
    config.retry_delay = Duration::from_millis(200);
    let lock = Redlock::connect(&config).await.unwrap();
    servers[0].kill();
    servers[1].kill();
    let mut down = servers.split_off(0);
    let restarter = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(300));
        down[0].restart();
        down[1].restart();
        down
    });
    // One call: the retries (jittered 200-400 ms apart) outlast the outage.
    let result = acquire_one(&lock, "a").await;
    acquired(&result);
    drop(restarter.await.unwrap());
}

#[tokio::test]
async fn a_busy_key_is_not_retried() {
    let servers = RedisServer::start_many(3);
    let mut config = redlock_config(&urls(&servers));
    config.retry_count = 3;
    config.retry_delay = Duration::from_secs(1);
    let lock = Redlock::connect(&config).await.unwrap();
    acquired(&acquire_one(&lock, "a").await);
    let start = Instant::now();
    assert!(matches!(
        acquire_one(&lock, "a").await,
        Ok(Acquisition::Busy { .. })
    ));
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_hung_server_does_not_hold_calls() {
    let servers = RedisServer::start_many(3);
    let mut config = redlock_config(&urls(&servers));
    config.call_timeout = Duration::from_millis(400);
    let lock = Redlock::connect(&config).await.unwrap();
    servers[2].pause();

    // The first call waits for the frozen server once, until its call times out...
    let start = Instant::now();
    acquired(&acquire_one(&lock, "first").await);
    let first = start.elapsed();
    assert!(
        first < config.call_timeout + Duration::from_millis(200),
        "{first:?}"
    );

    // ...then the two live servers decide; nobody waits for the frozen one.
    let start = Instant::now();
    let mut lease = acquired(&acquire_one(&lock, "a").await);
    assert!(lock.extend(&mut lease).await.unwrap());
    lock.mark_processed("a", Duration::from_secs(60))
        .await
        .unwrap();
    lock.release(&lease).await.unwrap();
    let four = start.elapsed();
    assert!(
        four < Duration::from_millis(100),
        "four calls took {four:?} with one server frozen"
    );

    // Two frozen: no quorum, after one call timeout, not forever.
    servers[1].pause();
    let start = Instant::now();
    let result = acquire_one(&lock, "b").await;
    assert!(is_no_quorum(&result, 1), "{result:?}");
    let elapsed = start.elapsed();
    assert!(
        elapsed >= config.call_timeout && elapsed < config.call_timeout * 2,
        "{elapsed:?}"
    );

    servers[1].resume();
    servers[2].resume();
    eventually_acquired(&lock, "b", Duration::from_secs(3)).await;
}

#[tokio::test]
async fn a_hung_single_server_times_out_every_call() {
    let servers = RedisServer::start_many(1);
    let mut config = redlock_config(&urls(&servers));
    config.call_timeout = Duration::from_millis(300);
    let lock = Redlock::connect(&config).await.unwrap();
    let mut lease = acquired(&acquire_one(&lock, "a").await);
    servers[0].pause();

    let start = Instant::now();
    assert!(acquire_one(&lock, "b").await.is_err());
    assert!(lock.extend(&mut lease).await.is_err());
    assert!(
        lock.mark_processed("a", Duration::from_secs(1))
            .await
            .is_err()
    );
    assert!(lock.release(&lease).await.is_err());
    let elapsed = start.elapsed();
    assert!(
        elapsed < config.call_timeout * 4 + Duration::from_millis(400),
        "{elapsed:?}"
    );

    servers[0].resume();
    eventually_acquired(&lock, "b", Duration::from_secs(3)).await;
}

/// With 50 ms each way, a round trip costs about 100 ms: ten keys in one pipeline stay near
/// 100 ms; ten round trips would take a second.
#[tokio::test]
async fn a_batch_is_one_round_trip_per_server() {
    const DELAY: Duration = Duration::from_millis(50);
    for fencing in [false, true] {
        let servers = RedisServer::start_many(3);
        let mut proxies = Vec::new();
        for server in &servers {
            proxies.push(LatencyProxy::start(server.port(), DELAY).await);
        }
        let mut config = redlock_config(&proxies.iter().map(LatencyProxy::url).collect::<Vec<_>>());
        config.call_timeout = Duration::from_secs(2);
        config.fencing = fencing;
        let lock = Redlock::connect(&config).await.unwrap();
        // Connections are open after connect; the first scripted call may load its script.
        acquired(&acquire_one(&lock, "warm-up").await);

        // The proxy really delays each round trip: three calls, three round trips.
        let start = Instant::now();
        for key in ["s1", "s2", "s3"] {
            acquired(&acquire_one(&lock, key).await);
        }
        assert!(start.elapsed() >= DELAY * 2 * 3, "{:?}", start.elapsed());

        let keys: Vec<String> = (0..10).map(|i| format!("batch-{i}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        // The fencing script, or a plain `SET NX PX` without fencing.
        let command = if fencing { "evalsha" } else { "set" };
        let before: Vec<(u64, u64)> = servers
            .iter()
            .map(|s| (s.calls(command), s.calls("exists")))
            .collect();
        let start = Instant::now();
        let results = lock.acquire(&keys).await;
        let elapsed = start.elapsed();
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Ok(Acquisition::Acquired(_))))
        );
        assert!(
            elapsed < DELAY * 2 * 2,
            "fencing {fencing}: ten keys took {elapsed:?}, more than one round trip"
        );
        // And each server did run all ten.
        for (server, (locks, markers)) in servers.iter().zip(before) {
            assert_eq!(server.calls(command) - locks, 10, "fencing {fencing}");
            assert_eq!(server.calls("exists") - markers, 10, "fencing {fencing}");
        }
    }
}

#[tokio::test]
async fn a_grant_slower_than_the_ttl_is_refused() {
    let servers = RedisServer::start_many(1);
    let proxy = LatencyProxy::start(servers[0].port(), Duration::from_millis(60)).await;
    let mut config = redlock_config(&[proxy.url()]);
    config.ttl = Some(Duration::from_millis(100));
    config.call_timeout = Duration::from_secs(1);
    let lock = Redlock::connect(&config).await.unwrap();
    let result = acquire_one(&lock, "slow").await;
    assert!(
        matches!(result, Err(LockError::TooSlow { ttl, .. }) if Some(ttl) == config.ttl),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_marker_on_any_server_means_processed_and_leaves_no_lock_behind() {
    let servers = RedisServer::start_many(3);
    let config = redlock_config(&urls(&servers));
    let lock = Redlock::connect(&config).await.unwrap();
    // As if a marking had reached only one server (two were down then).
    let done = format!("{}m", config.done_prefix);
    servers[2].cli(&["SET", &done, "1"]);

    assert!(matches!(
        acquire_one(&lock, "m").await,
        Ok(Acquisition::AlreadyProcessed)
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lock_key = format!("{}m", config.key_prefix);
    for server in &servers {
        assert!(
            !server.exists(&lock_key),
            "the lock taken with the marker was not released"
        );
    }
}

#[tokio::test]
async fn partial_grants_are_released() {
    let servers = RedisServer::start_many(3);
    let config = redlock_config(&urls(&servers));
    let lock = Redlock::connect(&config).await.unwrap();
    // Another owner holds "p" on two servers: we can only get the third.
    let lock_key = format!("{}p", config.key_prefix);
    servers[0].cli(&["SET", &lock_key, "someone-else", "PX", "60000"]);
    servers[1].cli(&["SET", &lock_key, "someone-else", "PX", "60000"]);

    // Free when a majority can grant it: ours (released) and the first holder's to expire.
    let result = acquire_one(&lock, "p").await;
    assert!(
        matches!(result, Ok(Acquisition::Busy { expires_in: Some(d) })
            if d > Duration::from_secs(59) && d <= Duration::from_secs(60)),
        "{result:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !servers[2].exists(&lock_key),
        "our minority grant was not released"
    );
    assert_eq!(servers[0].cli(&["GET", &lock_key]), "someone-else");
}

#[tokio::test]
async fn fencing_tokens_grow_across_different_majorities() {
    let mut servers = RedisServer::start_many(3);
    let mut config = redlock_config(&urls(&servers));
    config.fencing = true;
    let lock = Redlock::connect(&config).await.unwrap();
    let fence_key = format!("{}fence:k", config.key_prefix);
    // Server 0 remembers an older, larger counter than the others.
    servers[0].cli(&["SET", &fence_key, "10"]);

    let lease = acquired(&acquire_one(&lock, "k").await);
    assert_eq!(lease.fencing_token(), Some(11));
    // The lagging counters were raised before the token was handed out.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for server in &servers {
        assert_eq!(server.cli(&["GET", &fence_key]), "11");
    }
    lock.release(&lease).await.unwrap();

    // A majority without server 0.
    servers[0].kill();
    let lease = acquired(&acquire_one(&lock, "k").await);
    assert_eq!(lease.fencing_token(), Some(12));
    lock.release(&lease).await.unwrap();

    // Server 0 comes back empty (counter 0) and server 1 goes: {0, 2} still count past 12.
    servers[0].restart();
    servers[1].kill();
    // (A failed attempt may have counted on server 2: tokens grow, not necessarily by one.)
    let lease = eventually_acquired(&lock, "k", Duration::from_secs(3)).await;
    assert!(lease.fencing_token() > Some(12), "{lease:?}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let token = lease.fencing_token().unwrap().to_string();
    assert_eq!(servers[0].cli(&["GET", &fence_key]), token);
    assert_eq!(servers[2].cli(&["GET", &fence_key]), token);
}

#[tokio::test]
async fn scripts_are_loaded_again_after_a_flush() {
    let servers = RedisServer::start_many(1);
    let mut config = redlock_config(&urls(&servers));
    config.fencing = true;
    let lock = Redlock::connect(&config).await.unwrap();
    let mut lease = acquired(&acquire_one(&lock, "a").await);
    assert_eq!(servers[0].cli(&["SCRIPT", "FLUSH"]), "OK");
    assert!(lock.extend(&mut lease).await.unwrap());
    assert_eq!(servers[0].cli(&["SCRIPT", "FLUSH"]), "OK");
    lock.release(&lease).await.unwrap();
    assert_eq!(servers[0].cli(&["SCRIPT", "FLUSH"]), "OK");
    acquired(&acquire_one(&lock, "a").await);
}

#[tokio::test]
async fn probe_succeeds_while_a_majority_answers() {
    let mut servers = RedisServer::start_many(3);
    let config = redlock_config(&urls(&servers));
    let lock = Redlock::connect(&config).await.unwrap();
    lock.probe().await.expect("three of three answer");
    servers[0].kill();
    lock.probe().await.expect("two of three answer");

    servers[1].kill();
    let result = lock.probe().await;
    // Two failures decide: the third's answer may not be counted.
    assert!(
        matches!(result, Err(LockError::NoQuorum { total: 3, needed: 2, answered }) if answered <= 1),
        "{result:?}"
    );

    // A hung server fails the probe within the call timeout.
    servers[0].restart();
    // The health check reconnects within 500 ms.
    tokio::time::sleep(Duration::from_secs(1)).await;
    servers[2].pause();
    let start = Instant::now();
    let result = lock.probe().await;
    let elapsed = start.elapsed();
    servers[2].resume();
    assert!(is_no_quorum(&result, 1), "{result:?}");
    assert!(
        elapsed < config.call_timeout + Duration::from_millis(200),
        "{elapsed:?}"
    );

    servers[1].restart();
    lock.probe().await.expect("a majority is back");
    // A probe locks nothing.
    for server in &servers {
        assert_eq!(server.cli(&["DBSIZE"]), "0");
    }
}

#[tokio::test]
async fn probe_follows_a_single_server_down_and_back() {
    let mut servers = RedisServer::start_many(1);
    let lock = Redlock::connect(&redlock_config(&urls(&servers)))
        .await
        .unwrap();
    lock.probe().await.expect("up");
    servers[0].kill();
    assert!(
        matches!(
            lock.probe().await,
            Err(LockError::NoQuorum {
                answered: 0,
                total: 1,
                needed: 1
            })
        ),
        "a dead server answered"
    );
    servers[0].restart();
    lock.probe().await.expect("back");
    acquired(&acquire_one(&lock, "k").await);
}

#[tokio::test]
async fn startup_with_a_majority_down_starts_and_recovers() {
    let mut servers = RedisServer::start_many(3);
    let config = redlock_config(&urls(&servers));
    servers[0].kill();
    servers[1].kill();
    let lock = Redlock::connect(&config)
        .await
        .expect("a down server does not stop startup");
    assert!(is_no_quorum(&acquire_one(&lock, "a").await, 1));
    servers[0].restart();
    servers[1].restart();
    eventually_acquired(&lock, "a", Duration::from_secs(3)).await;
}

#[tokio::test]
async fn startup_warns_when_servers_are_not_independent() {
    let servers = RedisServer::start_many(2);
    let (logs, _guard) = Logs::capture();

    // iniesta's old default: three databases of one server.
    let one = servers[0].url();
    let config = redlock_config(&[format!("{one}/0"), format!("{one}/1"), format!("{one}/2")]);
    Redlock::connect(&config).await.unwrap();
    assert!(logs.text().contains("not independent"), "{}", logs.text());

    // Two addresses, one server behind them (here a proxy): Redis's run_id gives it away.
    let proxy = LatencyProxy::start(servers[1].port(), Duration::ZERO).await;
    let logs_before = logs.text().len();
    Redlock::connect(&redlock_config(&[
        servers[1].url(),
        proxy.url(),
        servers[0].url(),
    ]))
    .await
    .unwrap();
    let text = logs.text()[logs_before..].to_owned();
    assert!(text.contains("different addresses reach one"), "{text}");

    // Two servers: independent but even.
    let logs_before = logs.text().len();
    Redlock::connect(&redlock_config(&urls(&servers)))
        .await
        .unwrap();
    let text = logs.text()[logs_before..].to_owned();
    assert!(text.contains("even number"), "{text}");
    assert!(!text.contains("not independent"), "{text}");
}

#[tokio::test]
async fn logs_never_show_passwords() {
    let (logs, _guard) = Logs::capture();
    let mut config = redlock_config(&["redis://:hunter2@127.0.0.1:1".to_owned()]);
    config.call_timeout = Duration::from_millis(100);
    let lock = Redlock::connect(&config).await.unwrap();
    let _ = acquire_one(&lock, "a").await;
    let text = logs.text();
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!format!("{lock:?}").contains("hunter2"));
}

#[tokio::test]
async fn a_tls_url_speaks_tls_and_fails_cleanly_against_a_plain_server() {
    // The server speaks plain RESP, so the TLS handshake fails: a clean error, not a panic
    // (rustls has its crypto provider) and not a hang.
    let server = RedisServer::start();
    let url = urls(std::slice::from_ref(&server))[0].replacen("redis://", "rediss://", 1);
    let lock = Redlock::connect(&redlock_config(&[url])).await.unwrap();
    let started = Instant::now();
    let result = acquire_one(&lock, "tls").await;
    assert!(
        matches!(
            result,
            Err(LockError::NoQuorum {
                answered: 0,
                total: 1,
                needed: 1
            })
        ),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}
