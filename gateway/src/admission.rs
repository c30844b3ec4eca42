//! Admission control: one budget of bytes that all requests in flight
//! share for the object data they hold in memory (a body being chunked
//! and encoded, chunks read ahead for a GET). Each request is bounded on
//! its own (`chunks_in_flight`); this bounds their sum, so many clients
//! at once cannot exhaust memory. A request that does not fit waits a
//! little (backpressure), then gets 503 SlowDown, which SDKs retry.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Budget accounting unit: permits are KiB so a `u32` covers 4 TiB.
const UNIT: u64 = 1 << 10;

/// The smallest charge: headers, XML and buffers every request holds.
pub const MIN_CHARGE: u64 = 64 << 10;

/// The shared budget.
#[derive(Debug, Clone)]
pub struct Budget {
    permits: Arc<Semaphore>,
    total: u32,
    wait: Duration,
}

/// The budget has no room for a request within the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted;

/// Bytes of the budget held by one request; returned when dropped (so a
/// GET's ticket travels with its response body to the last byte).
#[derive(Debug, Default)]
pub struct Ticket {
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        crate::metrics::global().budget_used.dec_by(self.bytes() as i64);
    }
}

impl Ticket {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.permit.as_ref().map_or(0, |p| p.num_permits() as u64 * UNIT)
    }
}

/// Units charged for `bytes`: at least [`MIN_CHARGE`], at most the
/// whole budget (a request larger than the budget runs alone rather than
/// never).
fn units(bytes: u64, total: u32) -> u32 {
    let n = bytes.max(MIN_CHARGE).div_ceil(UNIT);
    n.min(u64::from(total)) as u32
}

impl Budget {
    /// A budget of `bytes`; requests wait up to `wait` for room.
    pub fn new(bytes: u64, wait: Duration) -> Self {
        let total = (bytes / UNIT).clamp(1, u64::from(u32::MAX >> 3)) as u32;
        Self { permits: Arc::new(Semaphore::new(total as usize)), total, wait }
    }

    /// Charges `bytes`, waiting for room up to the configured wait.
    pub async fn take(&self, bytes: u64) -> Result<Ticket, Exhausted> {
        let mut t = Ticket::default();
        self.resize(&mut t, bytes).await?;
        Ok(t)
    }

    /// Makes `ticket` hold the charge for `bytes`: returns the excess at
    /// once, or waits for the difference (keeping what it holds if the
    /// wait runs out).
    pub async fn resize(&self, ticket: &mut Ticket, bytes: u64) -> Result<(), Exhausted> {
        let want = units(bytes, self.total);
        let have = ticket.permit.as_ref().map_or(0, |p| p.num_permits() as u32);
        if want < have {
            if let Some(p) = ticket.permit.as_mut() {
                drop(p.split((have - want) as usize));
            }
            crate::metrics::global().budget_used.dec_by(i64::from(have - want) * UNIT as i64);
            return Ok(());
        }
        if want == have {
            return Ok(());
        }
        let more = Arc::clone(&self.permits).acquire_many_owned(want - have);
        let more = match tokio::time::timeout(self.wait, more).await {
            Ok(Ok(p)) => p,
            // The semaphore is never closed; a timeout is the only refusal.
            _ => {
                crate::metrics::global().slow_down.inc();
                return Err(Exhausted);
            }
        };
        crate::metrics::global().budget_used.inc_by(i64::from(want - have) * UNIT as i64);
        match ticket.permit.as_mut() {
            Some(p) => p.merge(more),
            None => ticket.permit = Some(more),
        }
        Ok(())
    }

    /// Bytes currently charged to requests.
    pub fn used(&self) -> u64 {
        u64::from(self.total).saturating_sub(self.permits.available_permits() as u64) * UNIT
    }
}

/// What one streaming request of a backend holds in memory at worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestMemory {
    /// A write or read in full flow (all chunks in flight, with parity).
    pub window: u64,
    /// Opening a read, before its size is known (a first chunk).
    pub open: u64,
}

impl RequestMemory {
    /// Charge for writing a body of `declared` bytes (unknown: a window).
    pub fn write(&self, declared: Option<u64>) -> u64 {
        declared.map_or(self.window, |n| n.min(self.window))
    }

    /// Charge for opening a read of `requested` bytes if the range says.
    pub fn open(&self, requested: Option<u64>) -> u64 {
        requested.map_or(self.open, |n| n.min(self.open))
    }

    /// Charge for streaming `len` bytes of an opened read.
    pub fn read(&self, len: u64) -> u64 {
        len.min(self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn charges_are_bounded_by_the_window_and_the_budget() {
        let m = RequestMemory { window: 60 * MIB, open: 12 * MIB };
        assert_eq!(m.write(Some(4096)), 4096);
        assert_eq!(m.write(Some(5 << 40)), 60 * MIB);
        assert_eq!(m.write(None), 60 * MIB);
        assert_eq!(m.open(None), 12 * MIB);
        assert_eq!(m.open(Some(10)), 10);
        assert_eq!(m.read(100 * MIB), 60 * MIB);
        assert_eq!(units(1, 1000), (MIN_CHARGE / UNIT) as u32, "small requests pay the minimum");
        assert_eq!(units(10 * MIB, 1000), 1000, "never more than the whole budget");
    }

    #[tokio::test]
    async fn a_full_budget_refuses_after_the_wait_and_frees_on_drop() {
        let b = Budget::new(MIB, Duration::from_millis(50));
        let big = b.take(MIB).await.unwrap();
        assert_eq!(b.used(), MIB);
        assert_eq!(b.take(MIN_CHARGE).await.unwrap_err(), Exhausted);
        drop(big);
        assert_eq!(b.used(), 0);
        let small = b.take(1).await.unwrap();
        assert_eq!(small.bytes(), MIN_CHARGE);
    }

    #[tokio::test]
    async fn a_waiting_request_gets_in_when_room_frees() {
        let b = Budget::new(MIB, Duration::from_secs(5));
        let big = b.take(MIB).await.unwrap();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.take(MIB / 2).await.map(|t| t.bytes()) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "no room yet");
        drop(big);
        assert_eq!(waiter.await.unwrap(), Ok(MIB / 2));
    }

    #[tokio::test]
    async fn resizing_shrinks_at_once_and_grows_by_the_difference() {
        let b = Budget::new(4 * MIB, Duration::from_millis(50));
        let mut t = b.take(3 * MIB).await.unwrap();
        b.resize(&mut t, MIB).await.unwrap();
        assert_eq!((t.bytes(), b.used()), (MIB, MIB));
        b.resize(&mut t, 4 * MIB).await.unwrap();
        assert_eq!(b.used(), 4 * MIB);
        assert_eq!(b.take(MIB).await.map(|t| t.bytes()), Err(Exhausted));
        let mut small = Ticket::default();
        b.resize(&mut t, 3 * MIB).await.unwrap();
        b.resize(&mut small, MIB).await.unwrap();
        assert_eq!(b.resize(&mut small, 2 * MIB).await, Err(Exhausted));
        assert_eq!(small.bytes(), MIB, "a refused growth keeps what it had");
    }
}
