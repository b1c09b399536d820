//! Acquiring a batch: one pipeline per server, votes counted per key, partial grants released,
//! fencing tokens settled, retries when no quorum answered.

use std::time::Duration;

use backon::{BackoffBuilder, ConstantBuilder};
use futures_util::StreamExt;
use redis::Value;
use tokio::time::Instant;

use super::quorum::{self, Count, Outcome};
use super::{Commands, FENCE_TTL, Redlock, as_u64, finish_in_background, millis, scripts};
use crate::LockError;
use crate::lock::Acquisition;

impl Redlock {
    /// Acquires `keys`, trying again the keys that failed for want of a quorum.
    pub(super) async fn acquire_keys(
        &self,
        keys: Vec<String>,
    ) -> Vec<Result<Acquisition, LockError>> {
        let inner = &*self.inner;
        let mut results: Vec<Option<Result<Acquisition, LockError>>> =
            keys.iter().map(|_| None).collect();
        let mut todo: Vec<usize> = (0..keys.len()).collect();
        // Jittered, so consumers that failed together do not come back together: each delay
        // is `retry_delay` plus up to as much again.
        let mut delays = ConstantBuilder::default()
            .with_delay(inner.retry_delay)
            .with_max_times(inner.retry_count as usize)
            .with_jitter()
            .build()
            .peekable();
        for attempt in 0.. {
            let batch: Vec<&str> = todo.iter().map(|&i| keys[i].as_str()).collect();
            let outcomes = self.try_acquire(&batch).await;
            let last = delays.peek().is_none();
            let mut again = Vec::new();
            for (index, outcome) in todo.into_iter().zip(outcomes) {
                let transient = matches!(
                    outcome,
                    Err(LockError::NoQuorum { .. } | LockError::TooSlow { .. })
                );
                if transient && !last {
                    tracing::debug!(key = %keys[index], attempt, "no lock quorum: trying again");
                    again.push(index);
                }
                results[index] = Some(outcome);
            }
            todo = again;
            match delays.next() {
                Some(delay) if !todo.is_empty() => tokio::time::sleep(delay).await,
                _ => break,
            }
        }
        let total = inner.instances.len();
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or(Err(LockError::NoQuorum {
                    answered: 0,
                    total,
                    needed: inner.quorum,
                }))
            })
            .collect()
    }

    /// One attempt: one pipeline per server, then (with fencing, rarely) a second round to
    /// settle fencing tokens.
    async fn try_acquire(&self, keys: &[&str]) -> Vec<Result<Acquisition, LockError>> {
        let inner = &*self.inner;
        let total = inner.instances.len();
        let start = Instant::now();
        let tokens: Vec<String> = keys.iter().map(|_| new_token()).collect();
        let ttl_ms = millis(inner.ttl);
        // Without fencing, plain `SET NX PX` then `PTTL`: a pipeline runs its commands in
        // order with nothing between them from this connection, and Redis runs them far faster
        // than a script (a refused key's `PTTL` is the holder's; a granted one's is ours and is
        // ignored). Fencing needs the counter raised atomically with the grant: a script.
        let script: Option<&'static redis::Script> =
            inner.fencing.then_some(&*scripts::ACQUIRE_FENCED);
        let mut commands = Commands::default();
        for (key, token) in keys.iter().zip(&tokens) {
            let lock_key = inner.lock_key(key);
            if let Some(script) = script {
                commands
                    .cmd("EVALSHA")
                    .arg(script.get_hash())
                    .arg(2)
                    .arg(&lock_key)
                    .arg(inner.fence_key(key))
                    .arg(token)
                    .arg(ttl_ms)
                    .arg(millis(FENCE_TTL));
            } else {
                commands
                    .cmd("SET")
                    .arg(&lock_key)
                    .arg(token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms);
                commands.cmd("PTTL").arg(&lock_key);
            }
            // Read whether or not the policy writes markers: one found was written after a
            // handler succeeded, so the message was handled (a read in the same round trip).
            commands.cmd("EXISTS").arg(inner.done_key(key));
        }

        let mut votes = vec![KeyVotes::new(total); keys.len()];
        let mut silent = 0;
        let mut replied = vec![false; total];
        let mut replies = self.send_all(commands, script);
        while let Some((index, reply)) = replies.next().await {
            replied[index] = true;
            match reply
                .ok()
                .and_then(|values| read_acquire(&values, keys.len(), inner.fencing))
            {
                Some(answers) => {
                    for (key_votes, answer) in votes.iter_mut().zip(answers) {
                        key_votes.add(answer);
                    }
                }
                None => {
                    silent += 1;
                    votes.iter_mut().for_each(|v| v.count.failed());
                }
            }
            let all_processed = votes.iter().all(|v| v.marker);
            if all_processed
                || (votes.iter().all(KeyVotes::decided) && !self.waiting_on_live(&replied))
            {
                break;
            }
        }
        finish_in_background(replies);
        // A server that failed or did not answer yet may still have granted the lock.
        let uncertain = silent > 0 || replied.contains(&false);

        // `None`: held, with a fencing token still to settle.
        let mut outcomes: Vec<Option<Result<Acquisition, LockError>>> =
            Vec::with_capacity(keys.len());
        let mut unsettled = Vec::new();
        let mut to_release = Vec::new();
        for (index, key_votes) in votes.iter().enumerate() {
            let outcome =
                if key_votes.marker {
                    Some(Ok(Acquisition::AlreadyProcessed))
                } else {
                    let count = &key_votes.count;
                    match count.outcome().unwrap_or(count.final_outcome()) {
                        Outcome::Yes if !inner.fencing => Some(Ok(Acquisition::Acquired(
                            inner.lease(keys[index], &tokens[index], start),
                        ))),
                        Outcome::Yes => match quorum::fence(&key_votes.fences, total) {
                            Some((fence, true)) => Some(Ok(Acquisition::Acquired(
                                inner
                                    .lease(keys[index], &tokens[index], start)
                                    .with_fencing_token(fence),
                            ))),
                            Some((fence, false)) => {
                                unsettled.push((index, fence));
                                None
                            }
                            // Unreachable: a granting server always returns its counter.
                            None => Some(Err(self.no_quorum(count))),
                        },
                        Outcome::No => Some(Ok(Acquisition::Busy {
                            expires_in: quorum::free_after(&key_votes.free_after, total),
                        })),
                        Outcome::NoQuorum => Some(Err(self.no_quorum(count))),
                    }
                };
            let held = matches!(outcome, None | Some(Ok(Acquisition::Acquired(_))));
            if !held && (key_votes.count.yes_count() > 0 || uncertain) {
                to_release.push(index);
            }
            outcomes.push(outcome);
        }

        if !unsettled.is_empty() {
            for (index, result) in self.settle_fences(keys, &unsettled).await {
                outcomes[index] = Some(match result {
                    Ok(fence) => Ok(Acquisition::Acquired(
                        inner
                            .lease(keys[index], &tokens[index], start)
                            .with_fencing_token(fence),
                    )),
                    Err(e) => {
                        to_release.push(index);
                        Err(e)
                    }
                });
            }
        }
        let mut outcomes: Vec<Result<Acquisition, LockError>> = outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Err(LockError::NoQuorum {
                        answered: 0,
                        total,
                        needed: inner.quorum,
                    })
                })
            })
            .collect();

        let elapsed = start.elapsed();
        if elapsed + inner.drift >= inner.ttl {
            for (index, outcome) in outcomes.iter_mut().enumerate() {
                if matches!(outcome, Ok(Acquisition::Acquired(_))) {
                    tracing::warn!(key = %keys[index], ?elapsed, ttl = ?inner.ttl, "lock granted after its validity ran out");
                    *outcome = Err(LockError::TooSlow {
                        elapsed,
                        ttl: inner.ttl,
                    });
                    to_release.push(index);
                }
            }
        }

        if !to_release.is_empty() {
            let mut commands = Commands::default();
            for &index in &to_release {
                inner.push_compensating_release(&mut commands, keys[index], &tokens[index]);
            }
            finish_in_background(self.send_all(commands, None));
        }
        outcomes
    }

    /// Raises lagging fencing counters to each key's token on every server; a token is kept
    /// once a majority holds a counter at least that large.
    async fn settle_fences(
        &self,
        keys: &[&str],
        unsettled: &[(usize, u64)],
    ) -> Vec<(usize, Result<u64, LockError>)> {
        let inner = &*self.inner;
        let total = inner.instances.len();
        let mut commands = Commands::default();
        for &(index, fence) in unsettled {
            commands
                .cmd("EVALSHA")
                .arg(scripts::RAISE_FENCE.get_hash())
                .arg(1)
                .arg(inner.fence_key(keys[index]))
                .arg(fence)
                .arg(millis(FENCE_TTL));
        }
        let mut counts = vec![Count::new(total); unsettled.len()];
        let mut replied = vec![false; total];
        let mut replies = self.send_all(commands, Some(&scripts::RAISE_FENCE));
        while let Some((index, reply)) = replies.next().await {
            replied[index] = true;
            match reply {
                Ok(values) if values.len() == unsettled.len() => {
                    for ((count, value), (_, fence)) in
                        counts.iter_mut().zip(&values).zip(unsettled)
                    {
                        match as_u64(value) {
                            Some(counter) if counter >= *fence => count.yes(),
                            Some(_) => count.no(),
                            None => count.failed(),
                        }
                    }
                }
                _ => counts.iter_mut().for_each(Count::failed),
            }
            if counts.iter().all(|c| c.outcome().is_some()) && !self.waiting_on_live(&replied) {
                break;
            }
        }
        finish_in_background(replies);
        counts
            .iter()
            .zip(unsettled)
            .map(|(count, &(index, fence))| {
                let outcome = count.outcome().unwrap_or(count.final_outcome());
                let result = match outcome {
                    Outcome::Yes => Ok(fence),
                    Outcome::No | Outcome::NoQuorum => Err(self.no_quorum(count)),
                };
                (index, result)
            })
            .collect()
    }
}

/// Reads one server's answer to an acquire pipeline: one [`Answer`] per key, or `None` when
/// the reply does not have the expected shape.
fn read_acquire(values: &[Value], keys: usize, fenced: bool) -> Option<Vec<Answer>> {
    // Per key: the fenced script's `{grant, pttl}` or `SET`'s answer and `PTTL`; then `EXISTS`.
    let per_key = if fenced { 2 } else { 3 };
    if values.len() != keys * per_key {
        return None;
    }
    values
        .chunks(per_key)
        .map(|chunk| {
            let (grant, pttl) = if fenced {
                let Value::Array(grant) = &chunk[0] else {
                    return None;
                };
                let [Value::Int(grant), Value::Int(pttl)] = grant.as_slice() else {
                    return None;
                };
                (*grant, *pttl)
            } else {
                let granted = match &chunk[0] {
                    Value::Okay => 1,
                    Value::Nil => 0,
                    _ => return None,
                };
                let Value::Int(pttl) = &chunk[1] else {
                    return None;
                };
                (granted, *pttl)
            };
            let marker = &chunk[per_key - 1];
            let granted = grant > 0;
            let holder_ttl = match pttl {
                _ if granted => None,
                // No expiry: someone set the key by hand; it may never be free.
                -1 => None,
                // Gone meanwhile (-2), or expiring now.
                ms => Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
            };
            Some(Answer {
                granted,
                marker: as_u64(marker)? > 0,
                fence: granted.then(|| u64::try_from(grant).ok()).flatten(),
                holder_ttl,
            })
        })
        .collect()
}

/// One server's answer about one key.
#[derive(Debug, Clone, Copy)]
struct Answer {
    granted: bool,
    marker: bool,
    /// The fencing counter where granted (1 without fencing, unused then).
    fence: Option<u64>,
    /// Where refused: the holder's remaining ttl (`None`: no expiry).
    holder_ttl: Option<Duration>,
}

/// All servers' answers about one key.
#[derive(Debug, Clone)]
struct KeyVotes {
    count: Count,
    marker: bool,
    fences: Vec<u64>,
    /// Per server that answered: how soon it could grant the key (`None`: not foreseeably).
    free_after: Vec<Option<Duration>>,
}

impl KeyVotes {
    fn new(total: usize) -> Self {
        KeyVotes {
            count: Count::new(total),
            marker: false,
            fences: Vec::new(),
            free_after: Vec::new(),
        }
    }

    fn add(&mut self, answer: Answer) {
        if answer.granted {
            self.count.yes();
            self.fences.extend(answer.fence);
            // Ours now, released at once if the key is not held on a majority.
            self.free_after.push(Some(Duration::ZERO));
        } else {
            self.count.no();
            self.free_after.push(answer.holder_ttl);
        }
        self.marker |= answer.marker;
    }

    fn decided(&self) -> bool {
        self.marker || self.count.outcome().is_some()
    }
}

/// 128 random bits in hex, from the thread's cryptographically secure generator.
fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_128_bit_hex_and_differ() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
