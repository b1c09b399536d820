//! A delivery's claim on the consumer's capacity: its handler slot (a semaphore permit, freed
//! when the handler returns) and its place in the in-flight count (freed when it is settled).
//! Both are given back by dropping, so no path can forget them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::OwnedSemaphorePermit;

/// Deliveries received and not yet settled. Pollers stop receiving above a bound, so slow
/// acks push back instead of piling up.
///
/// On a cache line of its own: every worker thread bumps it for every message.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct InFlight(AtomicU64);

impl InFlight {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One delivery's claim; see the module docs.
#[derive(Debug)]
pub(super) struct Slot {
    handler: Option<OwnedSemaphorePermit>,
    in_flight: Arc<InFlight>,
}

impl Slot {
    /// Claims `count` places in the in-flight count, one per received delivery; split them
    /// with [`take`](Self::take).
    pub(super) fn claim(in_flight: &Arc<InFlight>, count: usize) -> Claims {
        in_flight.0.fetch_add(count as u64, Ordering::Relaxed);
        Claims {
            remaining: count,
            in_flight: Arc::clone(in_flight),
        }
    }

    /// Frees the handler slot: the handler returned, and settling (batched I/O) must not hold
    /// back the pollers.
    pub(super) fn free_handler(&mut self) {
        self.handler = None;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_flight.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// In-flight places claimed for a received batch, handed out one per delivery.
#[derive(Debug)]
pub(super) struct Claims {
    remaining: usize,
    in_flight: Arc<InFlight>,
}

impl Claims {
    /// The next delivery's slot, with one handler permit split off `permits` when there is
    /// more than one left (the last delivery keeps what remains).
    pub(super) fn take(&mut self, permits: &mut Option<OwnedSemaphorePermit>) -> Slot {
        debug_assert!(self.remaining > 0, "more slots taken than claimed");
        self.remaining -= 1;
        let handler = if self.remaining == 0 {
            permits.take()
        } else {
            match permits.as_mut() {
                Some(p) if p.num_permits() > 1 => p.split(1),
                _ => None,
            }
        };
        Slot {
            handler,
            in_flight: Arc::clone(&self.in_flight),
        }
    }
}

impl Drop for Claims {
    // Places claimed and never handed out (a batch cut short) are given back here.
    fn drop(&mut self) {
        self.in_flight
            .0
            .fetch_sub(self.remaining as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::Semaphore;

    use super::*;

    #[test]
    fn slots_free_the_in_flight_count_and_the_permits_on_drop() {
        let in_flight = Arc::new(InFlight::default());
        let semaphore = Arc::new(Semaphore::new(3));
        let mut permits = Some(Arc::clone(&semaphore).try_acquire_many_owned(3).unwrap());
        let mut claims = Slot::claim(&in_flight, 3);
        let mut a = claims.take(&mut permits);
        let b = claims.take(&mut permits);
        assert_eq!(in_flight.get(), 3);
        a.free_handler();
        assert_eq!(semaphore.available_permits(), 1, "a's handler slot is free");
        assert_eq!(in_flight.get(), 3, "a is still settling");
        drop(a);
        drop(b);
        assert_eq!(in_flight.get(), 1);
        drop(claims);
        assert_eq!(in_flight.get(), 0, "unused claims go back");
        drop(permits);
        assert_eq!(semaphore.available_permits(), 3);
    }
}
