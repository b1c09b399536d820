//! Failures among the last deliveries, counted without a lock by every delivery.

use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};

/// Failures among the last `len` counted deliveries: a ring of flags written without a lock.
/// Writers racing for one slot may land in either order; the count follows the flags.
#[derive(Debug)]
pub(super) struct Window {
    slots: Box<[AtomicBool]>,
    next: Padded<AtomicUsize>,
    /// The flags set; signed because a racing decrement may land before its increment.
    failures: AtomicIsize,
}

/// On a cache line of its own: `next` is written by every delivery, and would otherwise
/// slow down the reads of its neighbours (the state every delivery looks at).
#[derive(Debug, Default)]
#[repr(align(64))]
struct Padded<T>(T);

impl Window {
    pub(super) fn new(len: u32) -> Self {
        Window {
            slots: (0..len.max(1)).map(|_| AtomicBool::new(false)).collect(),
            next: Padded::default(),
            failures: AtomicIsize::new(0),
        }
    }

    /// Records one delivery; returns the failures now in the window.
    pub(super) fn push(&self, failed: bool) -> u32 {
        let at = self.next.0.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let slot = &self.slots[at];
        // A success replacing a success (the healthy steady state) writes nothing but `next`.
        if slot.load(Ordering::Relaxed) != failed && slot.swap(failed, Ordering::Relaxed) != failed
        {
            let delta = if failed { 1 } else { -1 };
            return clamp(self.failures.fetch_add(delta, Ordering::Relaxed) + delta);
        }
        clamp(self.failures.load(Ordering::Relaxed))
    }

    /// Counted deliveries in the window: its length once it filled up.
    pub(super) fn recorded(&self) -> u32 {
        self.next.0.load(Ordering::Relaxed).min(self.slots.len()) as u32
    }

    /// Forgets every delivery, so the failures that opened the circuit do not open it again.
    pub(super) fn clear(&self) {
        for slot in &self.slots {
            if slot.swap(false, Ordering::Relaxed) {
                self.failures.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.next.0.store(0, Ordering::Relaxed);
    }
}

fn clamp(count: isize) -> u32 {
    count.clamp(0, u32::MAX as isize) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_counts_failures_among_the_last_deliveries() {
        let window = Window::new(4);
        assert_eq!(window.push(true), 1);
        assert_eq!(window.push(true), 2);
        assert_eq!(window.push(false), 2);
        assert_eq!(window.recorded(), 3);
        assert_eq!(window.push(true), 3);
        assert_eq!(window.recorded(), 4);
        // The fifth delivery replaces the first (a failure) with a success.
        assert_eq!(window.push(false), 2);
        assert_eq!(window.push(false), 1);
        assert_eq!(window.push(false), 1);
        assert_eq!(window.push(false), 0);
        assert_eq!(window.push(true), 1);
        window.clear();
        assert_eq!(window.recorded(), 0);
        assert_eq!(window.push(false), 0);
    }

    #[test]
    fn the_window_stays_exact_under_concurrent_writers() {
        let window = Window::new(16);
        std::thread::scope(|s| {
            for t in 0..4 {
                let window = &window;
                s.spawn(move || {
                    for i in 0..10_000 {
                        window.push((i + t) % 3 == 0);
                    }
                });
            }
        });
        let set = window
            .slots
            .iter()
            .filter(|s| s.load(Ordering::Relaxed))
            .count();
        assert_eq!(window.failures.load(Ordering::Relaxed), set as isize);
        assert_eq!(window.recorded(), 16);
    }
}
