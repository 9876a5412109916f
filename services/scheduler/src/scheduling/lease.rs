//! A dispatched request's hold on one of a worker's slots.
//!
//! Each worker has a `SlotCounter` (requests it holds now). A `Lease` is
//! taken under the core's lock when a request is placed on a worker, and
//! gives its slot back when it is dropped, whatever path the request's
//! runner leaves by (finished, refused, failed over, panicked): a slot can
//! neither leak nor be returned twice through a lease. The counter still
//! refuses to go below zero with an error (`ReleaseError`), logged, never a
//! silent `saturating_sub` that would hide a bookkeeping bug and let the
//! worker be handed more requests than it has room for.
//!
//! Releasing needs no lock (one atomic decrement), so a lease may be dropped
//! anywhere, the core's lock held or not. Routing reads the counters under
//! the lock; a release racing with it only makes the count it read high,
//! never low, so a worker is never overfilled by it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reservoir_proto::v1::worker_service_client::WorkerServiceClient;
use reservoir_runtime::InternalChannel;
use tokio::sync::Notify;

pub type Client = WorkerServiceClient<InternalChannel>;

/// A slot was given back that no request held.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    #[error("worker {worker}: a slot was given back that no request held")]
    NotHeld { worker: String },
}

/// How many requests one worker holds now.
#[derive(Debug, Default)]
pub struct SlotCounter {
    in_flight: AtomicUsize,
}

impl SlotCounter {
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    fn take(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// Gives one slot back; an error (and no change) when none is held.
    fn give_back(&self, worker: &str) -> Result<(), ReleaseError> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .map(|_| ())
            .map_err(|_| ReleaseError::NotHeld { worker: worker.to_owned() })
    }
}

/// One slot of one worker, held by one request until dropped.
#[derive(Debug)]
pub struct Lease {
    index: usize,
    worker_id: String,
    client: Client,
    slot: Arc<SlotCounter>,
    /// Woken on release: the dispatcher may place a queued request now.
    wake: Arc<Notify>,
}

impl Lease {
    /// Takes a slot of worker `index` (the caller checked it has room).
    pub(super) fn take(
        index: usize,
        worker_id: &str,
        client: &Client,
        slot: &Arc<SlotCounter>,
        wake: &Arc<Notify>,
    ) -> Lease {
        slot.take();
        Lease { index, worker_id: worker_id.to_owned(), client: client.clone(), slot: slot.clone(), wake: wake.clone() }
    }

    /// The worker's index in the scheduler's table.
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Err(e) = self.slot.give_back(&self.worker_id) {
            tracing::error!(error = %e, "worker slot accounting is off");
        }
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        let channel = reservoir_runtime::grpc::client_channel("http://127.0.0.1:9", std::time::Duration::from_secs(1))
            .expect("a lazy channel");
        WorkerServiceClient::new(reservoir_runtime::InternalToken::default().attach(channel))
    }

    #[tokio::test]
    async fn a_lease_gives_its_slot_back_once_when_dropped() {
        let (slot, wake) = (Arc::new(SlotCounter::default()), Arc::new(Notify::new()));
        let client = client();
        let first = Lease::take(0, "w0", &client, &slot, &wake);
        let second = Lease::take(0, "w0", &client, &slot, &wake);
        assert_eq!(slot.in_flight(), 2);
        drop(first);
        assert_eq!(slot.in_flight(), 1);
        // The dispatcher was woken by the release.
        tokio::time::timeout(std::time::Duration::from_secs(1), wake.notified()).await.expect("woken");
        drop(second);
        assert_eq!(slot.in_flight(), 0);
    }

    #[test]
    fn giving_back_a_slot_nobody_holds_is_an_error_not_a_wrap() {
        let slot = SlotCounter::default();
        assert_eq!(slot.give_back("w0"), Err(ReleaseError::NotHeld { worker: "w0".into() }));
        assert_eq!(slot.in_flight(), 0, "unchanged");
        slot.take();
        assert_eq!(slot.give_back("w0"), Ok(()));
        assert!(slot.give_back("w0").is_err(), "a second release of the same slot is refused");
    }
}
