//! The consumer the fault soak (`tests/fault_soak.rs`) runs three of: four handlers that fail
//! some first attempts on purpose and record each effect in a Redis the test reads.
//!
//! Transport and lock come from the `INIESTA_*` variables (`App::from_env`); the effects go to
//! `SOAK_EFFECTS_URL` (a Redis URL; never the lock's servers). Every 200 ms it prints a
//! `soak metrics key=value ...` line of its counters to stdout, and on SIGTERM, SIGINT or when
//! stdin closes (the test that started it died) it shuts down gracefully and prints a last
//! `soak final ...` line.
//!
//! Redis keys it writes: `soak:effects` (one `n handler message_id idempotency_key pid
//! delivery_count` entry per successful handling), `soak:failures` (`n message_id` of each
//! injected failure) and `soak:running:{pid}` (the `n` of the handlers running now).

use std::time::Duration;

use iniesta::{App, BoxError, Json, Message, MetricsSnapshot, State, handler};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::Deserialize;

/// Every soak message's body: its number, 0..N.
#[derive(Deserialize)]
struct Soak {
    n: u64,
}

#[handler("SoakCreated.order")]
async fn created(
    Json(soak): Json<Soak>,
    msg: Message,
    State(effects): State<Effects>,
) -> Result<(), BoxError> {
    effects.apply("created", soak.n, &msg).await
}

#[handler("SoakPaid.order")]
async fn paid(
    Json(soak): Json<Soak>,
    msg: Message,
    State(effects): State<Effects>,
) -> Result<(), BoxError> {
    effects.apply("paid", soak.n, &msg).await
}

#[handler("SoakShipped.order")]
async fn shipped(
    Json(soak): Json<Soak>,
    msg: Message,
    State(effects): State<Effects>,
) -> Result<(), BoxError> {
    effects.apply("shipped", soak.n, &msg).await
}

#[handler("SoakRefunded.order")]
async fn refunded(
    Json(soak): Json<Soak>,
    msg: Message,
    State(effects): State<Effects>,
) -> Result<(), BoxError> {
    effects.apply("refunded", soak.n, &msg).await
}

/// Where handlers record what they did: a Redis of the test's own.
#[derive(Clone)]
struct Effects {
    redis: ConnectionManager,
    running: String,
}

impl Effects {
    async fn connect(url: &str) -> Result<Effects, BoxError> {
        let redis = redis::Client::open(url)?.get_connection_manager().await?;
        let running = format!("soak:running:{}", std::process::id());
        Ok(Effects { redis, running })
    }

    /// A handler's work: 100-400 ms (long enough that a kill finds handlers running), then one
    /// effect entry, written atomically with leaving the running set. A first delivery fails
    /// instead for about one message in four, chosen by a hash of its id, so the failures are
    /// spread at random and each message fails once at most.
    async fn apply(&self, handler: &str, n: u64, msg: &Message) -> Result<(), BoxError> {
        let mut redis = self.redis.clone();
        let hash = fnv1a(msg.id().as_bytes());
        let () = redis.sadd(&self.running, n).await?;
        tokio::time::sleep(Duration::from_millis(100 + hash % 300)).await;
        if msg.delivery_count() == 1 && (hash >> 32).is_multiple_of(4) {
            let () = redis::pipe()
                .atomic()
                .srem(&self.running, n)
                .rpush("soak:failures", format!("{n} {}", msg.id()))
                .query_async(&mut redis)
                .await?;
            return Err(format!("injected failure of message {n} on its first delivery").into());
        }
        let effect = format!(
            "{n} {handler} {} {} {} {}",
            msg.id(),
            msg.idempotency_key(),
            std::process::id(),
            msg.delivery_count()
        );
        let () = redis::pipe()
            .atomic()
            .rpush("soak:effects", effect)
            .srem(&self.running, n)
            .query_async(&mut redis)
            .await?;
        Ok(())
    }
}

/// 64-bit FNV-1a: a stable hash (std's `RandomState` differs per process).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The counters the soak reports, as `key=value` pairs.
fn metrics_line(prefix: &str, m: &MetricsSnapshot) -> String {
    let since = m
        .since_last_receive
        .map_or_else(|| "none".to_owned(), |d| d.as_millis().to_string());
    format!(
        "{prefix} received={} handled={} failed={} busy={} already_processed={} \
         lock_unavailable={} lock_lost={} returned={} deleted={} in_flight={} \
         since_last_receive_ms={since}",
        m.received,
        m.handled,
        m.failed,
        m.busy,
        m.already_processed,
        m.lock_unavailable,
        m.lock_lost,
        m.returned,
        m.deleted,
        m.in_flight,
    )
}

/// Completes on SIGTERM, SIGINT, or when stdin closes.
async fn stop_requested() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // A plain thread, not tokio's stdin: a blocking read would hold the runtime open at exit.
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = closed_tx.send(());
    });
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
        _ = closed_rx => {}
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = std::env::var("SOAK_EFFECTS_URL").map_err(|_| "SOAK_EFFECTS_URL is not set")?;
    let effects = Effects::connect(&url).await?;
    let running = App::from_env().await?.state(effects).build()?.spawn();

    let stop = stop_requested();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            result = &mut stop => {
                result?;
                break;
            }
            _ = tick.tick() => {
                println!("{}", metrics_line("soak metrics", &running.metrics()));
                if running.is_finished() {
                    break;
                }
            }
        }
    }
    // Shut down, then read the counters once the grace period's handlers have settled.
    running.shutdown_token().cancel();
    while !running.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = running.metrics();
    running.wait().await?;
    println!("{}", metrics_line("soak final", &last));
    Ok(())
}
