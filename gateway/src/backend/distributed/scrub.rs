//! Scrub: redundancy is checked, not assumed. A pass walks every object,
//! asks the nodes about every shard of every chunk, and rebuilds the ones
//! found lost (missing or corrupt, whatever lost them: a wiped disk, a
//! deleted file, bitrot) onto the node the layout names. Repair handles
//! the shards a write recorded as missing; scrub finds the rest.
//!
//! - **Light** pass: a `Stat` per shard. The node checks presence,
//!   header, block table and length; no data moves. It runs when a node
//!   this gateway saw down is back (it may have come back empty) and on
//!   `POST /admin/v1/scrub?deep=false`.
//! - **Deep** pass: every shard is read whole (the node checks each
//!   block's CRC-32C as it sends) and, when all `k + m` are intact, the
//!   stripe's parity is verified against its data. Runs every
//!   `scrub_interval_secs` (a week) and on `POST /admin/v1/scrub`.
//!
//! Both are paced to `scrub_bytes_per_sec` of shard bytes (a light check
//! counts [`LIGHT_COST`]), one chunk at a time.
//!
//! Safety is repair's (see [`super::repair`]): a rebuilt shard is written
//! only within [`FRESH_FOR`] of a read of the record that showed its chunk
//! referenced (the record is read again if the pass took longer), so a
//! chunk freed meanwhile is deleted with all its shards after the
//! collector's grace and nothing leaks. Scrub never commits a record: the
//! shards it rebuilds are ones the record says exist. Rebuilt bytes are
//! identical to the originals (encoding is deterministic), so two gateways
//! scrubbing at once, or scrub beside repair, write the same file.
//!
//! Not yet: a chunk whose parity disagrees with its data (every CRC good)
//! is reported, not rewritten, since parity alone cannot tell which shard
//! is wrong; a per-chunk content hash in the layout would (issue 11).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use predastore_core::chunks::{DataError, ShardHealth};
use predastore_core::meta::{MetaError, ObjectRecord};

use super::Inner;
use super::record;
use super::repair::{FRESH_FOR, plan_of};
use super::walk::RecordWalk;
use crate::backend::ScrubReport;

/// What a light check of one shard counts against the byte budget: the
/// node reads its header and block table, not its data.
pub const LIGHT_COST: u64 = 64 << 10;

/// How often the background task looks for work.
const CHECK_EVERY: Duration = Duration::from_secs(10);

/// How a pass checks and how fast it may go.
#[derive(Debug, Clone, Copy)]
pub struct ScrubOptions {
    /// Read every shard and verify parity (else `Stat` only).
    pub deep: bool,
    /// Shard bytes per second (0: no limit).
    pub bytes_per_sec: u64,
}

/// Runs a deep pass every `every` (zero: never) and a light pass whenever
/// one is wanted (a node this gateway saw down answers again), until the
/// task is aborted.
pub async fn run(inner: Arc<Inner>, every: Duration, bytes_per_sec: u64) {
    // A week from start: a gateway restarted more often than its interval
    // deep-scrubs only on request (issue 11: persist the last pass).
    let far = Duration::from_secs(100 * 365 * 24 * 3600);
    let next = |from: Instant| from.checked_add(every).unwrap_or_else(|| from + far);
    let mut deep_at = next(Instant::now());
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        if !inner.ready.load(Ordering::Relaxed) {
            continue;
        }
        let deep = !every.is_zero() && Instant::now() >= deep_at;
        let light = inner.scrub_wanted.swap(false, Ordering::AcqRel);
        if !deep && !light {
            continue;
        }
        match pass(&inner, ScrubOptions { deep, bytes_per_sec }).await {
            Ok(r) => {
                if deep {
                    deep_at = next(Instant::now());
                }
                if r.missing + r.corrupt + r.inconsistent + r.unreadable > 0 {
                    tracing::warn!(?r, "scrub pass found lost shards");
                } else {
                    tracing::info!(?r, "scrub pass");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "scrub pass failed; retrying later");
                if light {
                    inner.scrub_wanted.store(true, Ordering::Release);
                }
            }
        }
    }
}

/// Clears the running flag however a pass ends.
struct Running<'a>(&'a Inner);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.scrub_running.store(false, Ordering::Release);
    }
}

/// One pass over every object of every bucket (one pass at a time; a
/// second waits for the first).
pub async fn pass(inner: &Inner, opts: ScrubOptions) -> Result<ScrubReport, MetaError> {
    let _one_at_a_time = inner.scrub_lock.lock().await;
    inner.scrub_running.store(true, Ordering::Release);
    let _running = Running(inner);
    let now_ms = || record::millis(crate::backend::rules::now_millis());
    let mut report =
        ScrubReport { deep: opts.deep, started_ms: now_ms(), ..ScrubReport::default() };
    let mut pacer = Pacer::new(opts.bytes_per_sec);
    let m = crate::metrics::global();
    let indexed: std::collections::BTreeSet<(String, String)> =
        inner.degraded().await?.into_iter().map(|d| (d.bucket, d.key)).collect();
    let mut unreadable = 0;
    let mut walk = RecordWalk::start(inner).await?;
    while let Some(o) = walk.next_found("not scrubbed", &mut unreadable).await? {
        let rec = o.record;
        report.objects += 1;
        m.scrub_objects.inc();
        let on_index = indexed.contains(&(o.bucket.clone(), o.key.clone()));
        let scrubbed =
            ObjectScrub { inner, opts, bucket: &o.bucket, key: &o.key, indexed: on_index };
        if let Err(e) = scrubbed.run(rec, o.read_at, &mut pacer, &mut report).await {
            tracing::warn!(bucket = %o.bucket, key = %o.key, error = %e, "scrubbing an object failed");
            if matches!(
                e,
                MetaError::NotLeader { .. } | MetaError::NoQuorum(_) | MetaError::Unavailable(_)
            ) {
                return Err(e);
            }
        }
    }
    report.finished_ms = now_ms();
    m.scrub_last_pass.set((report.finished_ms / 1000) as i64);
    *inner.last_scrub.lock().expect("scrub report lock") = Some(report);
    Ok(report)
}

/// A deep scrub of one object whose record was read at `read_at` (heal
/// on read), paced like a pass.
pub async fn object(
    inner: &Inner,
    bucket: &str,
    key: &str,
    rec: ObjectRecord,
    read_at: Instant,
) -> Result<ScrubReport, MetaError> {
    let opts = ScrubOptions { deep: true, bytes_per_sec: inner.scrub_rate };
    let mut report = ScrubReport { deep: true, objects: 1, ..ScrubReport::default() };
    let mut pacer = Pacer::new(opts.bytes_per_sec);
    let scrub = ObjectScrub { inner, opts, bucket, key, indexed: true };
    scrub.run(rec, read_at, &mut pacer, &mut report).await?;
    Ok(report)
}

/// The scrub of one object.
struct ObjectScrub<'a> {
    inner: &'a Inner,
    opts: ScrubOptions,
    bucket: &'a str,
    key: &'a str,
    /// The object may be on the degraded index: found whole, it is taken
    /// off (a pass knows the index; a single-object scrub assumes so).
    indexed: bool,
}

impl ObjectScrub<'_> {
    /// Checks each chunk of `rec` (read at `read_at`), rebuilds lost
    /// shards, and adds what it found to `report`. Stops early, leaving
    /// the rest to the next pass, when the object was replaced or deleted.
    async fn run(
        &self,
        rec: ObjectRecord,
        mut read_at: Instant,
        pacer: &mut Pacer,
        report: &mut ScrubReport,
    ) -> Result<(), MetaError> {
        // Shards the record already names missing are repair's: they are
        // expected absent, and repair commits them out of the record.
        let known = plan_of(&rec.chunks, &record::missing_of(&rec));
        if !known.is_empty() {
            self.inner.repair_wanted.store(true, Ordering::Release);
        }
        let m = crate::metrics::global();
        let mut below_full = false;
        // What is known lost after this scrub (not merely unchecked), for
        // the degraded index: whether any shard is, the fewest further
        // losses a chunk survives, and whether a node could not be asked.
        let (mut known_bad, mut survives, mut unsure) = (false, u64::MAX, false);
        for (at, l) in rec.chunks.iter().enumerate() {
            let total = l.nodes.len() as u64;
            let per_shard = if self.opts.deep { l.shard_len } else { LIGHT_COST };
            pacer.take(total * per_shard).await;
            let check = match self.inner.data.check_chunk(l, self.opts.deep).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(bucket = self.bucket, key = self.key, chunk = l.chunk,
                        error = %e, "chunk layout unusable; not scrubbed");
                    report.left += total;
                    below_full = true;
                    continue;
                }
            };
            report.chunks += 1;
            report.shards += total;
            report.bytes += check.bytes_read;
            let expected_absent = known.get(&at).cloned().unwrap_or_default();
            let mut lost: Vec<u8> = Vec::new();
            let mut intact = 0u64;
            let mut unchecked = 0u64;
            let mut absent = 0u64;
            for (i, h) in check.shards.iter().enumerate() {
                let i = i as u8;
                match h {
                    ShardHealth::Intact => intact += 1,
                    ShardHealth::Missing if expected_absent.contains(&i) => absent += 1,
                    ShardHealth::Missing => {
                        report.missing += 1;
                        lost.push(i);
                    }
                    ShardHealth::Corrupt(_) => {
                        report.corrupt += 1;
                        lost.push(i);
                    }
                    ShardHealth::Unchecked(_) => unchecked += 1,
                }
            }
            m.scrub_bad_shards.inc_by(lost.len() as u64);
            if check.consistent == Some(false) {
                report.inconsistent += 1;
                m.scrub_inconsistent_chunks.inc();
                tracing::error!(
                    bucket = self.bucket,
                    key = self.key,
                    chunk = l.chunk,
                    "parity does not match data though every shard passed its checksums"
                );
            }
            if check.content == Some(false) {
                // Whatever else is found, nothing here can be rebuilt: no
                // set of shards gives the bytes that were written.
                report.unreadable += 1;
                tracing::error!(
                    bucket = self.bucket,
                    key = self.key,
                    chunk = l.chunk,
                    "no set of shards decodes to the chunk's content checksum: data lost"
                );
            }
            let mut rebuilt = 0u64;
            if !lost.is_empty() && check.content != Some(false) {
                // Paced before the freshness check, so no wait falls between
                // the read that showed the chunk referenced and the writes.
                pacer.take(u64::from(l.data_shards) * l.shard_len).await;
                if read_at.elapsed() > FRESH_FOR {
                    let again = Instant::now();
                    match self.inner.meta.get_object(self.bucket, self.key).await {
                        Ok(r) if r.version_id == rec.version_id => read_at = again,
                        // Replaced or deleted: its chunks may be freed;
                        // the next pass looks at what is there then.
                        Ok(_) | Err(MetaError::NoSuchKey { .. }) => return Ok(()),
                        Err(e) => return Err(e),
                    }
                }
                match self.inner.data.repair_chunk(l, &lost).await {
                    Ok(done) => {
                        rebuilt = done.len() as u64;
                        if rebuilt > 0 {
                            tracing::info!(bucket = self.bucket, key = self.key, chunk = l.chunk,
                                shards = ?done, "scrub rebuilt lost shards");
                        }
                    }
                    Err(e @ DataError::TooFewShards { .. }) => {
                        report.unreadable += 1;
                        tracing::error!(bucket = self.bucket, key = self.key, chunk = l.chunk,
                            error = %e, "chunk unreadable: data lost");
                    }
                    Err(e) => tracing::warn!(bucket = self.bucket, key = self.key,
                        chunk = l.chunk, error = %e, "rebuilding lost shards failed"),
                }
                report.rebuilt += rebuilt;
                m.scrub_rebuilt_shards.inc_by(rebuilt);
            }
            report.left += lost.len() as u64 - rebuilt + unchecked;
            // A stripe whose parity disagrees holds one wrong shard at least.
            let wrong = u64::from(check.consistent == Some(false));
            let whole = if check.content == Some(false) {
                0
            } else {
                (intact + rebuilt).saturating_sub(wrong)
            };
            below_full |= whole < total;
            let margin = whole.saturating_sub(u64::from(l.data_shards));
            report.survives = Some(report.survives.map_or(margin, |s| s.min(margin)));
            // Known bad: lost and not rebuilt, named missing by the record
            // and absent, or wrong under valid checksums; all of them when
            // no set of shards gives the written bytes.
            let bad = if check.content == Some(false) {
                total
            } else {
                (lost.len() as u64 - rebuilt) + absent + wrong
            };
            known_bad |= bad > 0;
            unsure |= unchecked > 0;
            survives =
                survives.min(total.saturating_sub(bad).saturating_sub(u64::from(l.data_shards)));
        }
        if below_full {
            report.below_full += 1;
        }
        if known_bad {
            let survives = u8::try_from(survives).unwrap_or(u8::MAX);
            self.inner.mark_degraded(self.bucket, self.key, rec.version_id, survives).await;
        } else if self.indexed && !unsure {
            self.inner.clear_degraded(self.bucket, self.key, rec.version_id).await;
        }
        Ok(())
    }
}

/// Spreads a pass's reads over time: once `spent` bytes are charged, the
/// pass may go on no sooner than `spent / rate` seconds after it started.
pub(super) struct Pacer {
    rate: u64,
    started: Instant,
    spent: u64,
}

impl Pacer {
    pub(super) fn new(rate: u64) -> Self {
        Self { rate, started: Instant::now(), spent: 0 }
    }

    /// Charges `bytes` and waits until they fit the rate.
    pub(super) async fn take(&mut self, bytes: u64) {
        self.spent = self.spent.saturating_add(bytes);
        let d = delay(self.rate, self.spent, self.started.elapsed());
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

/// How long to wait so that `spent` bytes after `elapsed` keep to `rate`
/// bytes per second (0: no limit).
fn delay(rate: u64, spent: u64, elapsed: Duration) -> Duration {
    if rate == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(spent as f64 / rate as f64).saturating_sub(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_keeps_to_its_rate() {
        let mib = 1u64 << 20;
        // 64 MiB at 32 MiB/s may end 2 s after the start.
        assert_eq!(
            delay(32 * mib, 64 * mib, Duration::from_millis(500)),
            Duration::from_millis(1500)
        );
        assert_eq!(delay(32 * mib, 64 * mib, Duration::from_secs(3)), Duration::ZERO);
        assert_eq!(delay(0, u64::MAX, Duration::ZERO), Duration::ZERO, "0: no limit");
    }
}
