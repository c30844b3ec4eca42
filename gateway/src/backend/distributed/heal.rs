//! Heal on read: a GET that had to read around a missing or corrupt shard
//! (it still answered with the right bytes, from parity) queues its object,
//! and a background task scrubs that object at once: its lost shards are
//! rebuilt without waiting for the next scrub pass. Each GET watches its
//! own reads through an [`Observer`] of its own.
//!
//! The queue is bounded and lossy: when it is full a read's report is
//! dropped (the next scrub pass finds the shard), so a storm of degraded
//! reads costs no memory. An object is healed at most once per
//! [`QUIET_FOR`] however often it is read.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use predastore_core::chunks::Observer;
use predastore_core::meta::MetaError;
use predastore_core::shard::ShardId;
use tokio::sync::mpsc;

use super::Inner;
use super::scrub;

/// Objects waiting to be healed, at most.
pub const QUEUE: usize = 1024;

/// An object healed is not healed again for this long.
pub const QUIET_FOR: Duration = Duration::from_secs(60);

/// An object a read found below full redundancy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub bucket: String,
    pub key: String,
    /// The version the read served: a newer one has chunks of its own.
    pub version: u128,
}

/// The data-path observer of one GET: the process metrics, plus a flag
/// set when a shard turned out lost.
pub struct ReadWatch {
    metrics: crate::metrics::DataPathMetrics,
    lost: AtomicBool,
}

impl ReadWatch {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { metrics: crate::metrics::DataPathMetrics, lost: AtomicBool::new(false) })
    }

    /// Whether a shard was found missing or corrupt.
    pub fn saw_loss(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

impl Observer for ReadWatch {
    fn shard_op(&self, node: u64, op: &'static str, seconds: f64, ok: bool) {
        self.metrics.shard_op(node, op, seconds, ok);
    }
    fn degraded_read(&self) {
        self.metrics.degraded_read();
    }
    fn reconstructed(&self) {
        self.metrics.reconstructed();
    }
    fn corrupt_shard(&self, node: u64, shard: ShardId, reason: &str) {
        self.metrics.corrupt_shard(node, shard, reason);
    }
    fn lost_shard(&self, _node: u64, _shard: ShardId) {
        self.lost.store(true, Ordering::Relaxed);
    }
}

/// Queues `wanted` once its read is over (when the guard drops, so a read
/// that stopped half-way counts too).
pub struct QueueOnDrop {
    pub watch: Arc<ReadWatch>,
    pub wanted: Option<Wanted>,
    pub queue: mpsc::Sender<Wanted>,
}

impl Drop for QueueOnDrop {
    fn drop(&mut self) {
        if self.watch.saw_loss()
            && let Some(w) = self.wanted.take()
        {
            // Full: dropped; the next scrub pass finds the shard.
            let _ = self.queue.try_send(w);
        }
    }
}

/// Heals queued objects until the queue closes.
pub async fn run(inner: Arc<Inner>, mut queue: mpsc::Receiver<Wanted>) {
    let mut healed_at: HashMap<(String, String), Instant> = HashMap::new();
    while let Some(w) = queue.recv().await {
        healed_at.retain(|_, at| at.elapsed() < QUIET_FOR);
        let id = (w.bucket.clone(), w.key.clone());
        if healed_at.contains_key(&id) {
            continue;
        }
        healed_at.insert(id, Instant::now());
        match heal(&inner, &w).await {
            Ok(Some(r)) => {
                crate::metrics::global().healed_on_read.inc();
                tracing::info!(bucket = %w.bucket, key = %w.key, rebuilt = r.rebuilt,
                    left = r.left, "healed on read");
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(bucket = %w.bucket, key = %w.key, error = %e,
                "healing on read failed; the next scrub pass will"),
        }
    }
}

/// Scrubs (deep) the object of `w` if it is still the version read.
async fn heal(inner: &Inner, w: &Wanted) -> Result<Option<crate::backend::ScrubReport>, MetaError> {
    let read_at = Instant::now();
    let rec = match inner.meta.get_object(&w.bucket, &w.key).await {
        Ok(r) => r,
        Err(MetaError::NoSuchKey { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    if rec.version_id != w.version {
        return Ok(None);
    }
    scrub::object(inner, &w.bucket, &w.key, rec, read_at).await.map(Some)
}
