//! Counting answers: when a majority decides, and what it decided.
//!
//! Pure logic, so the edge cases (a server down, a split vote, an even number of servers) are
//! unit-tested without Redis.

/// The majority of `total` servers.
pub(super) fn quorum(total: usize) -> usize {
    total / 2 + 1
}

/// What a majority of servers said to one question about one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// A majority said yes.
    Yes,
    /// Enough servers answered, and too few of them said yes.
    No,
    /// Too many servers failed to reach a majority either way.
    NoQuorum,
}

/// Answers to one question (one key of one pipeline) from each server.
#[derive(Debug, Clone, Copy)]
pub(super) struct Count {
    total: usize,
    yes: usize,
    no: usize,
    failed: usize,
}

impl Count {
    pub(super) fn new(total: usize) -> Self {
        Count {
            total,
            yes: 0,
            no: 0,
            failed: 0,
        }
    }

    pub(super) fn yes(&mut self) {
        self.yes += 1;
    }

    pub(super) fn no(&mut self) {
        self.no += 1;
    }

    pub(super) fn failed(&mut self) {
        self.failed += 1;
    }

    /// Servers that answered (yes or no).
    pub(super) fn answered(&self) -> usize {
        self.yes + self.no
    }

    pub(super) fn yes_count(&self) -> usize {
        self.yes
    }

    fn pending(&self) -> usize {
        self.total - self.yes - self.no - self.failed
    }

    /// The outcome as soon as the servers still pending cannot change it; `None` until then.
    pub(super) fn outcome(&self) -> Option<Outcome> {
        let needed = quorum(self.total);
        if self.yes >= needed {
            Some(Outcome::Yes)
        } else if self.yes + self.pending() >= needed {
            None
        } else if self.answered() >= needed {
            Some(Outcome::No)
        } else if self.answered() + self.pending() >= needed {
            // A yes is out of reach, but whether it is "no" or "no quorum" still depends on
            // whether enough servers answer at all.
            None
        } else {
            Some(Outcome::NoQuorum)
        }
    }

    /// The outcome once every server answered or failed.
    pub(super) fn final_outcome(&self) -> Outcome {
        let needed = quorum(self.total);
        if self.yes >= needed {
            Outcome::Yes
        } else if self.answered() >= needed {
            Outcome::No
        } else {
            Outcome::NoQuorum
        }
    }
}

/// The fencing token of a key locked on a majority, from the counters of the servers that
/// granted it: the largest. It is *settled* when a majority of servers already hold a counter
/// at least that large; otherwise the lagging counters must be raised first (see the module
/// docs of `redlock` for why).
pub(super) fn fence(counters: &[u64], total: usize) -> Option<(u64, bool)> {
    let token = counters.iter().copied().max()?;
    let at_token = counters.iter().filter(|c| **c == token).count();
    Some((token, at_token >= quorum(total)))
}

/// How soon a key refused by a majority could be granted by one: the time after which a
/// majority of `total` servers may be free, from the servers that answered.
///
/// `free_after` holds one entry per server that answered: zero where the key was granted to
/// us (released at once when short of a majority), the holder's remaining ttl where refused,
/// `None` where it has no expiry. Servers that failed count as never free: a delivery made
/// visible before they are back would only meet the lock again.
///
/// The answer is the majority-th smallest time. The smallest remaining ttl would be too
/// early (the key is still held on a majority then), the largest later than needed (a
/// majority is free before the slowest server is).
pub(super) fn free_after(
    free_after: &[Option<std::time::Duration>],
    total: usize,
) -> Option<std::time::Duration> {
    let mut known: Vec<_> = free_after.iter().flatten().copied().collect();
    known.sort_unstable();
    known.get(quorum(total) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(total: usize, yes: usize, no: usize, failed: usize) -> Count {
        let mut c = Count::new(total);
        (0..yes).for_each(|_| c.yes());
        (0..no).for_each(|_| c.no());
        (0..failed).for_each(|_| c.failed());
        c
    }

    #[test]
    fn majorities() {
        assert_eq!(quorum(1), 1);
        assert_eq!(quorum(2), 2);
        assert_eq!(quorum(3), 2);
        assert_eq!(quorum(4), 3);
        assert_eq!(quorum(5), 3);
    }

    #[test]
    fn two_of_three_yes_decide_without_the_third() {
        assert_eq!(count(3, 2, 0, 0).outcome(), Some(Outcome::Yes));
        assert_eq!(count(3, 1, 0, 0).outcome(), None);
        assert_eq!(count(3, 1, 0, 1).outcome(), None);
    }

    #[test]
    fn two_of_three_no_decide_busy() {
        assert_eq!(count(3, 0, 2, 0).outcome(), Some(Outcome::No));
        assert_eq!(count(3, 1, 1, 1).outcome(), Some(Outcome::No));
    }

    #[test]
    fn two_of_three_down_is_no_quorum() {
        assert_eq!(count(3, 0, 0, 2).outcome(), Some(Outcome::NoQuorum));
        assert_eq!(count(3, 1, 0, 2).outcome(), Some(Outcome::NoQuorum));
        assert_eq!(count(3, 0, 1, 2).final_outcome(), Outcome::NoQuorum);
    }

    #[test]
    fn a_refusal_with_one_server_pending_waits_for_it() {
        // no + failed: the pending server decides between "busy" and "no quorum".
        assert_eq!(count(3, 0, 1, 1).outcome(), None);
        assert_eq!(count(3, 0, 1, 0).outcome(), None);
    }

    #[test]
    fn two_servers_need_both() {
        assert_eq!(count(2, 1, 0, 1).outcome(), Some(Outcome::NoQuorum));
        assert_eq!(count(2, 1, 1, 0).outcome(), Some(Outcome::No));
        assert_eq!(count(2, 2, 0, 0).outcome(), Some(Outcome::Yes));
    }

    #[test]
    fn one_server() {
        assert_eq!(count(1, 1, 0, 0).outcome(), Some(Outcome::Yes));
        assert_eq!(count(1, 0, 1, 0).outcome(), Some(Outcome::No));
        assert_eq!(count(1, 0, 0, 1).outcome(), Some(Outcome::NoQuorum));
    }

    #[test]
    fn outcome_agrees_with_final_outcome_once_all_answered() {
        for total in 1..=5 {
            for yes in 0..=total {
                for no in 0..=total - yes {
                    let c = count(total, yes, no, total - yes - no);
                    assert_eq!(c.outcome(), Some(c.final_outcome()), "{c:?}");
                }
            }
        }
    }

    #[test]
    fn a_key_is_free_once_a_majority_of_servers_can_grant_it() {
        let s = std::time::Duration::from_secs;
        // One server: its holder's ttl.
        assert_eq!(free_after(&[Some(s(4))], 1), Some(s(4)));
        // Granted on one (released), held on two: free when the first holder's lock expires.
        assert_eq!(
            free_after(&[Some(s(0)), Some(s(5)), Some(s(8))], 3),
            Some(s(5))
        );
        // Held everywhere: the second-smallest ttl.
        assert_eq!(
            free_after(&[Some(s(9)), Some(s(2)), Some(s(6))], 3),
            Some(s(6))
        );
        // A server down and one without expiry: a majority is not foreseeably free.
        assert_eq!(free_after(&[Some(s(3)), None], 3), None);
        // Five servers: the third.
        let five = [Some(s(1)), Some(s(7)), Some(s(3)), Some(s(5)), None];
        assert_eq!(free_after(&five, 5), Some(s(5)));
        assert_eq!(free_after(&[], 3), None);
    }

    #[test]
    fn fence_is_the_largest_and_settled_on_a_majority() {
        assert_eq!(fence(&[4, 4], 3), Some((4, true)));
        assert_eq!(fence(&[4, 7], 3), Some((7, false)));
        assert_eq!(fence(&[7, 4, 7], 3), Some((7, true)));
        assert_eq!(fence(&[1], 1), Some((1, true)));
        assert_eq!(fence(&[], 3), None);
    }
}
