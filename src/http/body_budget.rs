//! The global bound on request bodies held in memory (`limits.max_buffered_body_bytes`): every
//! body takes its bytes from one shared budget as they arrive (and, for a compressed body, as
//! they are decoded), and gives them back when its request is answered.
//!
//! Why: each body is bounded on its own (`limits.max_body_bytes`, `max_decoded_body_bytes`),
//! but the number of bodies being received is not (thousands of connections per worker). Slow
//! or stalled uploads could add up to gigabytes; with the budget spent, new bytes are refused
//! (503 with `Retry-After`) instead. Bytes are taken as they come, not up front by
//! `Content-Length`, so a client that only announces a large body takes nothing, and the count
//! follows the memory actually touched.
//!
//! Lock-free: an atomic counter, and a `BodyReservation` per body that gives its bytes back on
//! drop, so every path (an answer, an error, a client gone, a cancelled handler) releases them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::telemetry;

/// The shared budget; cheap to clone.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    used: AtomicUsize,
}

/// The budget is spent: the body cannot grow now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted;

impl BodyBudget {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                capacity,
                used: AtomicUsize::new(0),
            }),
        }
    }

    /// An empty reservation for one body.
    pub fn reserve(&self) -> BodyReservation {
        BodyReservation {
            budget: self.inner.clone(),
            held: 0,
        }
    }

    /// Bytes held by all bodies now.
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Acquire)
    }

    /// Copies the bytes held into the metrics registry (on the metrics tick and each scrape;
    /// not per request, which would cost the hot path an update per chunk).
    pub fn publish_metrics(&self) {
        metrics::gauge!(telemetry::BODY_BUFFERED_BYTES).set(self.used() as f64);
    }
}

/// The bytes one body holds in the budget; given back when dropped.
#[derive(Debug)]
pub struct BodyReservation {
    budget: Arc<Inner>,
    held: usize,
}

impl BodyReservation {
    /// Takes `bytes` more, all or nothing.
    pub fn grow(&mut self, bytes: usize) -> Result<(), Exhausted> {
        let capacity = self.budget.capacity;
        self.budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= capacity)
            })
            .map_err(|_| Exhausted)?;
        self.held += bytes;
        Ok(())
    }

    /// Bytes this body holds.
    pub fn held(&self) -> usize {
        self.held
    }
}

impl Drop for BodyReservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.held, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_taken_up_to_the_capacity_and_given_back_on_drop() {
        let budget = BodyBudget::new(100);
        let mut a = budget.reserve();
        let mut b = budget.reserve();
        assert_eq!(a.grow(60), Ok(()));
        assert_eq!(b.grow(41), Err(Exhausted), "all or nothing");
        assert_eq!(b.grow(40), Ok(()));
        assert_eq!((budget.used(), a.held(), b.held()), (100, 60, 40));
        assert_eq!(b.grow(1), Err(Exhausted));
        drop(a);
        assert_eq!(budget.used(), 40);
        assert_eq!(b.grow(60), Ok(()));
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_huge_request_cannot_wrap_the_counter() {
        let budget = BodyBudget::new(usize::MAX);
        let mut a = budget.reserve();
        assert_eq!(a.grow(usize::MAX), Ok(()));
        assert_eq!(budget.reserve().grow(1), Err(Exhausted));
    }
}
