//! The Lua scripts: each compares a token or a counter before it writes, atomically.
//!
//! They are sent as `EVALSHA` inside pipelines; a server that lost its script cache (restarted,
//! `SCRIPT FLUSH`) answers `NOSCRIPT`, and [`Instance::call`](super::instance::Instance::call)
//! loads the script and sends the pipeline again. Nothing has run when `NOSCRIPT` comes back
//! (the other commands of such a pipeline are reads), so the retry repeats no write.

use std::sync::LazyLock;

use redis::Script;

/// Deletes the lock when it still holds our token.
///
/// `KEYS[1]` lock key; `ARGV[1]` token. Returns 1 when deleted, 0 when the lock was lost.
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_SOURCE));

/// The source of [`RELEASE`], sent by `EVAL` when a release compensates for a grant that may
/// land late: a call that timed out on a hung server runs when the server wakes, and the
/// release queued behind it must run too, script cache or not; nobody is left to retry a
/// `NOSCRIPT` then.
pub(super) const RELEASE_SOURCE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
";

/// Every script sent by `EVALSHA`: loaded into each server at startup and whenever it answers
/// again after failing, so `NOSCRIPT` is rare.
pub(super) fn all() -> [&'static Script; 4] {
    [&RELEASE, &EXTEND, &ACQUIRE_FENCED, &RAISE_FENCE]
}

/// Resets the lock's expiry when it still holds our token.
///
/// `KEYS[1]` lock key; `ARGV[1]` token, `ARGV[2]` ttl in ms. Returns 1 when extended, 0 when
/// the lock was lost.
pub(super) static EXTEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
    )
});

/// `SET NX PX` (with the holder's remaining ttl when the key is taken) and, only when that
/// took the lock, `INCR` of the key's fencing counter.
///
/// `KEYS[1]` lock key, `KEYS[2]` fencing counter; `ARGV[1]` token, `ARGV[2]` ttl in ms,
/// `ARGV[3]` counter ttl in ms. Returns `{counter, 0}` (counter at least 1) when locked,
/// `{0, pttl}` when not.
pub(super) static ACQUIRE_FENCED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    local fence = redis.call('INCR', KEYS[2])
    redis.call('PEXPIRE', KEYS[2], ARGV[3])
    return {fence, 0}
end
return {0, redis.call('PTTL', KEYS[1])}
",
    )
});

/// Raises a fencing counter to at least a floor; never lowers it.
///
/// `KEYS[1]` fencing counter; `ARGV[1]` floor, `ARGV[2]` counter ttl in ms. Returns the counter.
pub(super) static RAISE_FENCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if current < floor then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return floor
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return current
",
    )
});
