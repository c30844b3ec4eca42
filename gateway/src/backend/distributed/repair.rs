//! Repair: objects written while a node was down name the shards they
//! could not store (`missing` in their gateway attributes). Once that node
//! answers again, a pass rebuilds those shards from the others, stores
//! them where the layout placed them, and commits the record again with a
//! shorter `missing` list (same ETag and data). Without it, such an
//! object would be lost to one more failure than its code allows.
//!
//! Safety:
//! - The record is replaced by compare-and-set on its version, and gets a
//!   new version id: a PUT, DELETE, tag change or another gateway's repair
//!   in between wins, and a writer that read the record before this repair
//!   fails its own compare-and-set rather than undoing it.
//! - No shard is written more than [`FRESH_FOR`] after a read (or commit)
//!   that showed its chunk referenced. A chunk freed after that is deleted
//!   only after the collector's grace, with all its shard indexes, so the
//!   repaired shard goes with it: nothing leaks, and no intent is needed
//!   (an intent would let a copy reference a chunk already freed).
//! - The record keeps its ETag, Last-Modified and chunks, so readers see
//!   no change.
//! - Every gateway runs passes; two repairing the same object write the
//!   same bytes (encoding is deterministic) and only one commit wins.
//!
//! Work comes from the degraded index ([`super::degraded`]): every write
//! that left shards missing, and every object scrub found below full
//! redundancy and could not rebuild, is on it. A pass takes each entry:
//! shards the record names missing are rebuilt here; shards lost after
//! the write are rebuilt by a deep scrub of the object. The first pass
//! after start, the daily one ([`FORCED_EVERY`]) and `POST
//! /admin/v1/repair` also walk every record, for objects written before
//! the index or whose writer died before indexing them. Passes run when
//! they can achieve something: at start-up, after a node this gateway saw
//! down is back, and on request.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use predastore_core::meta::Precondition;
use predastore_core::meta::{ChunkLayout, MetaError, ObjectRecord};
use predastore_core::meta_client::new_request_id;
use predastore_core::shard::ShardId;

use super::Inner;
use super::record;
use super::scrub;
use super::walk::RecordWalk;
use crate::backend::RepairReport;

/// Parses one `missing` entry (`<shard id>@<node>`).
pub fn parse_missing(entry: &str) -> Option<(ShardId, u64)> {
    let (shard, node) = entry.split_once('@')?;
    Some((shard.parse().ok()?, node.parse().ok()?))
}

/// The missing shard indexes of each chunk of `chunks`, by chunk position.
/// Entries naming no chunk of the record (or another node than the layout
/// placed the shard on) are dropped: nothing could repair them.
pub fn plan_of(chunks: &[ChunkLayout], missing: &[String]) -> BTreeMap<usize, Vec<u8>> {
    let mut out: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    for (shard, node) in missing.iter().filter_map(|m| parse_missing(m)) {
        let at = chunks.iter().position(|l| l.object == shard.object && l.chunk == shard.chunk);
        if let Some(at) = at
            && chunks[at].nodes.get(usize::from(shard.index)) == Some(&node)
        {
            out.entry(at).or_default().push(shard.index);
        }
    }
    out
}

/// Every this many checks a pass runs even if none was asked for: shards
/// can be missed for reasons other than a node being down (a full disk).
/// A day at the default interval: each pass reads every record, and
/// every gateway runs its own.
pub const FORCED_EVERY: u32 = 24 * 60;

/// Runs a pass whenever one is wanted, checking every `every` (until the
/// task is aborted). `every` of zero turns the background pass off.
pub async fn run(inner: Arc<Inner>, every: Duration) {
    if every.is_zero() {
        return;
    }
    let mut checks = 0u32;
    loop {
        tokio::time::sleep(every).await;
        if !inner.ready.load(Ordering::Relaxed) {
            continue;
        }
        checks = checks.wrapping_add(1);
        let forced = checks.is_multiple_of(FORCED_EVERY) || checks == 1;
        if !inner.repair_wanted.swap(false, Ordering::AcqRel) && !forced {
            continue;
        }
        // The first and the daily pass walk every record (objects written
        // before the index, or whose writer died before indexing them);
        // the others work from the index alone.
        match pass_over(&inner, forced).await {
            Ok(r) => {
                if r.degraded > 0 {
                    tracing::info!(?r, "repair pass");
                }
                if r.left > 0 {
                    // Something is still down: look again once it is back.
                    tracing::info!(left = r.left, "objects still below full redundancy");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "repair pass failed; retrying later");
                inner.repair_wanted.store(true, Ordering::Release);
            }
        }
    }
}

/// One pass over every object of every bucket, then the degraded index.
pub async fn pass(inner: &Inner) -> Result<RepairReport, MetaError> {
    pass_over(inner, true).await
}

/// One pass: with `walk_all`, over every record (repairing what their
/// `missing` lists name); then over the degraded index (objects written
/// below full redundancy, or found so by scrub).
async fn pass_over(inner: &Inner, walk_all: bool) -> Result<RepairReport, MetaError> {
    let _one_at_a_time = inner.repair_lock.lock().await;
    let mut report = RepairReport::default();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    if walk_all {
        walk_records(inner, &mut report, &mut seen).await?;
    }
    for d in inner.degraded().await? {
        if seen.contains(&(d.bucket.clone(), d.key.clone())) {
            continue;
        }
        let read_at = Instant::now();
        let rec = match inner.meta.get_object(&d.bucket, &d.key).await {
            Ok(r) => r,
            Err(MetaError::NoSuchKey { .. } | MetaError::NoSuchBucket(_)) => continue,
            Err(e @ (MetaError::NotLeader { .. } | MetaError::NoQuorum(_))) => return Err(e),
            Err(e) => {
                tracing::warn!(bucket = %d.bucket, key = %d.key, error = %e,
                    "object record unreadable; not repaired");
                report.left += 1;
                continue;
            }
        };
        // Replaced since: its entry went with the old version.
        if rec.version_id != d.version_id {
            continue;
        }
        report.objects += 1;
        report.degraded += 1;
        if !record::missing_of(&rec).is_empty() {
            tally(&mut report, &d.bucket, &d.key, object(inner, &d.bucket, &d.key, rec).await);
            continue;
        }
        // Lost after the write (scrub found it): a deep scrub of the
        // object rebuilds what it can and updates the index.
        match scrub::object(inner, &d.bucket, &d.key, rec, read_at).await {
            Ok(r) => {
                if r.rebuilt > 0 {
                    report.repaired += 1;
                    report.shards += r.rebuilt;
                }
                if r.below_full > 0 {
                    report.left += 1;
                }
            }
            Err(e) => {
                tracing::warn!(bucket = %d.bucket, key = %d.key, error = %e,
                    "repairing an object failed");
                report.left += 1;
            }
        }
    }
    report.finished_ms = record::millis(crate::backend::rules::now_millis());
    *inner.last_repair.lock().expect("repair report lock") = Some(report);
    Ok(report)
}

/// Adds one object's repair outcome to `report`.
fn tally(report: &mut RepairReport, bucket: &str, key: &str, r: Result<u64, String>) {
    match r {
        Ok(0) => report.left += 1,
        Ok(n) => {
            report.repaired += 1;
            report.shards += n;
        }
        Err(e) => {
            tracing::warn!(bucket, key, error = %e, "repairing an object failed");
            report.left += 1;
        }
    }
}

/// Repairs every object whose record names missing shards; notes each in
/// `seen`.
async fn walk_records(
    inner: &Inner,
    report: &mut RepairReport,
    seen: &mut BTreeSet<(String, String)>,
) -> Result<(), MetaError> {
    let mut unreadable = 0;
    let mut walk = RecordWalk::start(inner).await?;
    while let Some(o) = walk.next_found("not repaired", &mut unreadable).await? {
        report.objects += 1;
        let rec = o.record;
        if record::missing_of(&rec).is_empty() {
            continue;
        }
        report.degraded += 1;
        seen.insert((o.bucket.clone(), o.key.clone()));
        tally(report, &o.bucket, &o.key, object(inner, &o.bucket, &o.key, rec).await);
    }
    report.objects += unreadable;
    report.left += unreadable;
    Ok(())
}

/// A record read longer ago than this is read (or committed) again before
/// more shards are written. Freed chunks are deleted only after the
/// collector's grace (15 min), and that delete covers every shard index of
/// the chunk, so a shard written within this time of a read that showed
/// its chunk referenced is either still referenced or deleted with it:
/// a repair never leaks a shard, and needs no intent.
pub(super) const FRESH_FOR: Duration = Duration::from_secs(60);

/// Repairs what it can of one object; the number of shards stored and
/// committed (0: nothing changed).
async fn object(
    inner: &Inner,
    bucket: &str,
    key: &str,
    mut rec: ObjectRecord,
) -> Result<u64, String> {
    // Chunks tried once are not tried again in this pass.
    let mut tried: BTreeSet<(u128, u32)> = BTreeSet::new();
    let mut total = 0u64;
    loop {
        let read_at = Instant::now();
        let missing = record::missing_of(&rec);
        // Only chunks with a missing shard on a node that answers now.
        let health = inner.data.health();
        let plan: Vec<(usize, Vec<u8>)> = plan_of(&rec.chunks, &missing)
            .into_iter()
            .filter(|(at, indexes)| {
                let l = &rec.chunks[*at];
                !tried.contains(&(l.object, l.chunk))
                    && indexes.iter().any(|&i| !health.is_down(l.nodes[usize::from(i)]))
            })
            .collect();
        // Entries no chunk of the record matches can never be repaired;
        // they are dropped with the next commit.
        let junk = missing.iter().any(|m| plan_of(&rec.chunks, std::slice::from_ref(m)).is_empty());
        if plan.is_empty() && !junk {
            return Ok(total);
        }
        let mut stored: Vec<String> = Vec::new();
        let mut finished = true;
        for (at, indexes) in &plan {
            if !tried.is_empty() && read_at.elapsed() > FRESH_FOR {
                finished = false;
                break;
            }
            let l = &rec.chunks[*at];
            tried.insert((l.object, l.chunk));
            match inner.data.repair_chunk(l, indexes).await {
                Ok(done) => stored.extend(done.into_iter().map(|i| {
                    let shard = ShardId { object: l.object, chunk: l.chunk, index: i };
                    format!("{shard}@{}", l.nodes[usize::from(i)])
                })),
                Err(e) => tracing::warn!(bucket, key, chunk = l.chunk, error = %e,
                    "a chunk to repair could not be read"),
            }
        }
        let left: Vec<String> = missing
            .iter()
            .filter(|m| !plan_of(&rec.chunks, std::slice::from_ref(*m)).is_empty())
            .filter(|m| !stored.contains(m))
            .cloned()
            .collect();
        if left.len() == missing.len() {
            if finished {
                return Ok(total);
            }
            rec = match inner.meta.get_object(bucket, key).await {
                Ok(r) => r,
                Err(MetaError::NoSuchKey { .. }) => return Ok(total),
                Err(e) => return Err(e.to_string()),
            };
            continue;
        }
        // Same ETag, Last-Modified and chunks; a new version id, so a
        // writer that read the old record (tags, another repair) fails its
        // compare-and-set instead of undoing this one, and this one fails
        // if anything changed the record since it was read.
        let version = rec.version_id;
        let mut next = record::with_missing(rec, left).map_err(|e| e.to_string())?;
        next.version_id = new_request_id();
        match inner
            .meta
            .put_object(bucket, key, next.clone(), Precondition::VersionIs(version))
            .await
        {
            Ok(_) => {
                tracing::info!(bucket, key, shards = stored.len(), "repaired");
                crate::metrics::global().repaired_shards.inc_by(stored.len() as u64);
                total += stored.len() as u64;
                // The new version replaced the old one's index entry.
                inner.note_missing(bucket, key, &next).await;
                if finished {
                    return Ok(total);
                }
                rec = next;
            }
            // Replaced or deleted meanwhile: the new record is not ours to
            // touch, and the shards written are covered (see FRESH_FOR).
            Err(MetaError::PreconditionFailed { .. } | MetaError::NoSuchKey { .. }) => {
                return Ok(total);
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(object: u128, chunk: u32) -> ChunkLayout {
        ChunkLayout {
            object,
            chunk,
            len: 10,
            data_shards: 2,
            parity_shards: 1,
            shard_len: 5,
            nodes: vec![4, 5, 6],
            ring_epoch: 1,
            content_crc: None,
        }
    }

    fn entry(object: u128, chunk: u32, index: u8, node: u64) -> String {
        format!("{}@{node}", ShardId { object, chunk, index })
    }

    #[test]
    fn repaired_shards_are_written_well_within_the_collectors_grace() {
        // The no-leak argument of FRESH_FOR needs this margin.
        assert!(FRESH_FOR * 4 < super::super::collector::Schedule::default().grace);
    }

    #[test]
    fn missing_entries_map_to_chunk_positions() {
        // A stitched multipart record: two owners.
        let chunks = [layout(7, 0), layout(7, 1), layout(9, 0)];
        let missing = [
            entry(7, 1, 2, 6),
            entry(9, 0, 0, 4),
            entry(9, 0, 1, 5),
            entry(8, 0, 0, 4), // no such chunk in the record
            entry(7, 0, 0, 5), // not the node the layout placed it on
            "garbage".into(),
        ];
        let p = plan_of(&chunks, &missing);
        assert_eq!(p, BTreeMap::from([(1, vec![2]), (2, vec![0, 1])]));
        assert_eq!(
            parse_missing(&entry(1, 2, 3, 4)),
            Some((ShardId { object: 1, chunk: 2, index: 3 }, 4))
        );
        assert_eq!(parse_missing("x@1"), None);
    }
}
