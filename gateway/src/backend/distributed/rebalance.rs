//! Rebalance: chunks follow the cluster's shape. Two things make a chunk
//! due to be written again ([`due`], pure):
//!
//! - **Nodes were added.** A chunk placed under an older ring epoch whose
//!   nodes are not the ones the current ring places it on (by bucket, key
//!   and the chunk's position in the record, as a writer places it) is
//!   copied to its new owners, so new nodes take their share of what is
//!   stored, not only of new writes.
//! - **Its class's code changed.** A chunk whose RS(k, m) is not its
//!   storage class's current code (a `StorageClass` edited from RS(2,1) to
//!   RS(3,2) after the cluster grew to five nodes) is encoded again in the
//!   new code, so old objects get the redundancy the class now promises.
//!
//! Either way the chunk is read (checked against its content CRC), encoded
//! and written whole — every shard stored, or the chunk is left for a later
//! pass, so moving data never lowers its redundancy — as a chunk of a
//! **new owner id** under a write intent, and
//! the record is committed again by compare-and-set (same ETag, data and
//! metadata, new version id) naming the new chunks. The old chunks lose
//! their reference in the same Raft command, become garbage, and the
//! collector deletes their shards after its grace period, so a GET that
//! read the old record still finds them. Old copies are thus removed only
//! after the new ones are durable and committed, through the reference
//! counts that already make copies (records sharing chunks) safe; a record
//! changed meanwhile makes the commit fail and the new shards are
//! deleted. Reads work throughout.
//!
//! Cost: a moved chunk is written whole (all `k + m` shards), even when
//! only some of its shards' placement changed — the price of a new owner
//! id, which is what makes deleting the old copy safe. Going from 3 to 5
//! nodes with RS(2,1) rewrites about four chunks in five. Chunks are
//! written one at a time, paced to `rebalance_bytes_per_sec`.
//!
//! Not rebalanced: chunks with shards on draining or removed nodes (that
//! is [`super::relocate`]'s work), parts of open multipart uploads (they
//! move once completed), and a class's changed chunk size (chunks keep
//! their length). Every gateway runs its own passes; with several, the
//! compare-and-set lets one win each record and the others' copies are
//! deleted at once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use predastore_core::config::Erasure;
use predastore_core::meta::{ChunkLayout, MetaError, ObjectRecord, Precondition};
use predastore_core::meta_client::new_request_id;
use predastore_core::ring::Ring;

use super::repair::plan_of;
use super::scrub::Pacer;
use super::walk::RecordWalk;
use super::{Inner, record, relocate};
use crate::backend::{BackendError, RebalanceReport, rules};

/// How soon a pass is tried again while chunks are left.
pub const RETRY_EVERY: Duration = Duration::from_secs(30);
/// Chunks written again per commit: a record of many chunks is committed
/// in steps, so a long object's progress survives a gateway restart and a
/// record changed meanwhile wastes at most this many.
const CHUNKS_PER_COMMIT: usize = 16;

/// Why a chunk is written again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Its code is not its class's current one.
    Recode,
    /// It sits elsewhere than the current ring places it.
    Move,
}

/// Whether chunk `l`, at position `at` of `bucket`/`key` whose class is
/// now `class`, is written again, why, and onto which nodes (in shard
/// order). `None` when it is where and how it should be, when the ring
/// has too few members for the code, or when relocation owns it (shards
/// on nodes outside `ring`).
pub fn due(
    ring: &Ring,
    class: &Erasure,
    bucket: &str,
    key: &str,
    at: usize,
    l: &ChunkLayout,
) -> Option<(Reason, Vec<u64>)> {
    if l.len == 0 {
        return None;
    }
    let recode = (l.data_shards, l.parity_shards) != (class.data_shards, class.parity_shards);
    if !recode && !relocate::moves_of(ring, l).is_empty() {
        return None;
    }
    if !recode && l.ring_epoch >= ring.epoch() {
        return None;
    }
    let width = usize::from(class.data_shards) + usize::from(class.parity_shards);
    let target = ring.place(bucket, key, at as u64, width).ok()?;
    if recode {
        return Some((Reason::Recode, target));
    }
    let now: BTreeSet<u64> = l.nodes.iter().copied().collect();
    let want: BTreeSet<u64> = target.iter().copied().collect();
    (now != want).then_some((Reason::Move, target))
}

/// Runs a pass when one is wanted (at start, when the ring or a class
/// changed) and again every [`RETRY_EVERY`] while chunks are left (until
/// the task is aborted).
pub async fn run(inner: Arc<Inner>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !inner.ready.load(Ordering::Relaxed) {
            continue;
        }
        let retry = inner
            .last_rebalance
            .lock()
            .expect("rebalance report lock")
            .as_ref()
            .is_some_and(|(r, at)| (r.left > 0 || !r.complete) && at.elapsed() >= RETRY_EVERY);
        if !inner.rebalance_wanted.swap(false, Ordering::AcqRel) && !retry {
            continue;
        }
        if let Err(e) = pass(&inner).await {
            tracing::warn!(error = %e, "rebalance pass failed; retrying");
            inner.rebalance_wanted.store(true, Ordering::Release);
        }
    }
}

/// One pass over every record.
pub async fn pass(inner: &Arc<Inner>) -> Result<RebalanceReport, MetaError> {
    let _one_at_a_time = inner.rebalance_lock.lock().await;
    inner.rebalance_running.store(true, Ordering::Release);
    let r = pass_inner(inner).await;
    inner.rebalance_running.store(false, Ordering::Release);
    let report = r?;
    if report.moved + report.recoded > 0 || report.left > 0 {
        tracing::info!(?report, "rebalance pass done");
    }
    *inner.last_rebalance.lock().expect("rebalance report lock") =
        Some((report.clone(), Instant::now()));
    Ok(report)
}

async fn pass_inner(inner: &Arc<Inner>) -> Result<RebalanceReport, MetaError> {
    let started_ms = record::millis(rules::now_millis());
    // The placement ring (draining members left out), read afresh.
    let (ring, _) = relocate::placement(inner).await?;
    let mut report = RebalanceReport { epoch: ring.epoch(), started_ms, ..Default::default() };
    let mut pacer = Pacer::new(inner.rebalance_rate);
    let mut unreadable = 0;
    let mut walk = RecordWalk::start(inner).await?;
    while let Some(o) = walk.next_found("it is not rebalanced", &mut unreadable).await? {
        report.objects += 1;
        report.chunks += o.record.chunks.len() as u64;
        object(inner, &ring, &o.bucket, &o.key, o.record, &mut pacer, &mut report).await?;
    }
    report.complete = unreadable == 0;
    report.finished_ms = record::millis(rules::now_millis());
    Ok(report)
}

/// Writes again what is due of one object's chunks, committing every
/// [`CHUNKS_PER_COMMIT`] chunks.
async fn object(
    inner: &Arc<Inner>,
    ring: &Ring,
    bucket: &str,
    key: &str,
    mut rec: ObjectRecord,
    pacer: &mut Pacer,
    report: &mut RebalanceReport,
) -> Result<(), MetaError> {
    let Ok((_, class)) = inner.class(Some(&rec.storage_class)) else {
        // A class this gateway does not know: nothing to compare with.
        return Ok(());
    };
    let due_of = |rec: &ObjectRecord| -> Vec<(usize, Reason, Vec<u64>)> {
        rec.chunks
            .iter()
            .enumerate()
            .filter_map(|(at, l)| due(ring, &class, bucket, key, at, l).map(|(r, t)| (at, r, t)))
            .collect()
    };
    let mut todo = due_of(&rec);
    while !todo.is_empty() {
        let batch: Vec<_> = todo.drain(..todo.len().min(CHUNKS_PER_COMMIT)).collect();
        let owner = inner.record_intent(bucket, key).await?.owner;
        let mut next = rec.clone();
        let mut written: Vec<ChunkLayout> = Vec::new();
        let (mut moved, mut recoded, mut bytes) = (0, 0, 0);
        for (at, reason, nodes) in &batch {
            let l = &rec.chunks[*at];
            pacer.take(l.len).await;
            let chunk = written.len() as u32;
            match inner
                .data
                .rewrite_chunk(l, owner, chunk, &class, nodes.clone(), ring.epoch())
                .await
            {
                Ok(layout) => {
                    next.chunks[*at] = layout.clone();
                    written.push(layout);
                    bytes += l.len;
                    match reason {
                        Reason::Move => moved += 1,
                        Reason::Recode => recoded += 1,
                    }
                }
                Err(e) => {
                    report.left += 1;
                    tracing::warn!(bucket, key, chunk = l.chunk, error = %e,
                        "a chunk to rebalance could not be written again");
                }
            }
        }
        if written.is_empty() {
            inner.abandon(owner, &written).await;
            continue;
        }
        // Missing entries of replaced chunks go with them (their copies
        // are whole).
        let kept: Vec<String> = record::missing_of(&rec)
            .into_iter()
            .filter(|m| !plan_of(&next.chunks, std::slice::from_ref(m)).is_empty())
            .collect();
        let version = rec.version_id;
        let mut next =
            record::with_missing(next, kept).map_err(|e| MetaError::Internal(e.to_string()))?;
        next.version_id = new_request_id();
        match inner
            .commit(bucket, key, next.clone(), Precondition::VersionIs(version), Some(owner))
            .await
        {
            Ok(()) => {
                let m = crate::metrics::global();
                m.rebalanced_chunks.inc_by(moved + recoded);
                report.moved += moved;
                report.recoded += recoded;
                report.bytes += bytes;
                rec = next;
            }
            // Replaced or deleted meanwhile (its new shards are already
            // deleted): the new record is not ours to change.
            Err(BackendError::PreconditionFailed | BackendError::NoSuchKey { .. }) => {
                report.left += (written.len() + todo.len()) as u64;
                return Ok(());
            }
            Err(e) => {
                report.left += (written.len() + todo.len()) as u64;
                tracing::warn!(bucket, key, error = %e, "committing a rebalanced record failed");
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use predastore_core::ring::Member;

    fn ring(epoch: u64, ids: &[u64]) -> Ring {
        Ring::new(epoch, ids.iter().map(|&id| Member { id, zone: None }), 64).unwrap()
    }

    fn layout(k: u8, m: u8, nodes: Vec<u64>, epoch: u64) -> ChunkLayout {
        ChunkLayout {
            object: 1,
            chunk: 0,
            len: 10,
            data_shards: k,
            parity_shards: m,
            shard_len: 10u64.div_ceil(u64::from(k)),
            nodes,
            ring_epoch: epoch,
            content_crc: None,
        }
    }

    #[test]
    fn a_chunk_moves_only_when_the_ring_grew_and_places_it_elsewhere() {
        let rs21 = Erasure::new(2, 1);
        let (small, big) = (ring(3, &[1, 2, 3]), ring(5, &[1, 2, 3, 4, 5]));
        let (mut moved, mut kept) = (0, 0);
        for k in 0..200 {
            let key = format!("k{k}");
            let placed = small.place("b", &key, 0, 3).unwrap();
            // Where the writer put it, under the ring it wrote under.
            assert_eq!(due(&small, &rs21, "b", &key, 0, &layout(2, 1, placed.clone(), 3)), None);
            match due(&big, &rs21, "b", &key, 0, &layout(2, 1, placed.clone(), 3)) {
                Some((Reason::Move, to)) => {
                    assert_eq!(to, big.place("b", &key, 0, 3).unwrap());
                    moved += 1;
                }
                None => {
                    let want: BTreeSet<u64> =
                        big.place("b", &key, 0, 3).unwrap().into_iter().collect();
                    assert_eq!(want, placed.iter().copied().collect::<BTreeSet<u64>>());
                    kept += 1;
                }
                other => panic!("{other:?}"),
            }
            // Written under the current epoch already: never moved again.
            assert_eq!(due(&big, &rs21, "b", &key, 0, &layout(2, 1, placed, 5)), None);
        }
        assert!(moved > 100 && kept > 10, "moved {moved}, kept {kept}");
    }

    #[test]
    fn a_chunk_in_an_old_code_is_recoded_onto_enough_nodes() {
        let big = ring(5, &[1, 2, 3, 4, 5]);
        let rs32 = Erasure::new(3, 2);
        let (reason, to) = due(&big, &rs32, "b", "k", 2, &layout(2, 1, vec![1, 2, 3], 5)).unwrap();
        assert_eq!(reason, Reason::Recode);
        assert_eq!(to, big.place("b", "k", 2, 5).unwrap());
        // Too few members for the new code: nothing to do yet.
        assert_eq!(
            due(&ring(6, &[1, 2, 3]), &rs32, "b", "k", 0, &layout(2, 1, vec![1, 2, 3], 1)),
            None
        );
        // An empty chunk has no shards to write.
        let mut empty = layout(2, 1, vec![1, 2, 3], 1);
        empty.len = 0;
        assert_eq!(due(&big, &rs32, "b", "k", 0, &empty), None);
    }

    #[test]
    fn shards_on_leaving_nodes_are_left_to_relocation_unless_recoded() {
        let r = ring(7, &[1, 2, 3, 4]);
        let rs21 = Erasure::new(2, 1);
        assert_eq!(due(&r, &rs21, "b", "k", 0, &layout(2, 1, vec![1, 2, 9], 1)), None);
        let rs22 = Erasure::new(2, 2);
        let (reason, to) = due(&r, &rs22, "b", "k", 0, &layout(2, 1, vec![1, 2, 9], 1)).unwrap();
        assert_eq!(reason, Reason::Recode);
        assert!(!to.contains(&9));
    }
}
