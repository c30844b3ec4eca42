//! Relocation: shards on nodes that take no new ones — draining nodes
//! (`drain = true` in the cluster file: decommissioning) and nodes that
//! left the ring (removed from the file: declared dead) — are rebuilt on
//! ring members and the records pointed at them. Without it, removing a
//! node would silently take one level of redundancy from every object
//! with a shard on it.
//!
//! A pass reads the ring and the draining nodes afresh, walks every
//! record, and for each chunk with shards on a leaving node rebuilds
//! those shards (decoding the chunk from where its shards are, so a dead
//! node's shards come from the survivors and a draining node's own shard
//! is read directly) onto the nodes [`moves_of`] picks, then commits the
//! record again by compare-and-set, like a repair ([`super::repair`]):
//! same ETag, data and chunks, new version id, shards written within
//! [`FRESH_FOR`] of a read that showed the chunk referenced. The old
//! copies stay on the leaving node, which is discarded once removed.
//!
//! **Proof of empty.** The state machine counts, on each draining node,
//! the commits of records or parts that name it
//! ([`DrainingNode::referenced`]). A pass reads those counts (linearizably)
//! before its walk and again after it; a node whose count did not change
//! and that no record or open part named in the walk is proven empty. A
//! record committed before the first read is found by the walk (each
//! record is read after it); one committed later — a write that began
//! before draining, a copy of a record read before a move — changes the
//! count. No clocks are compared.
//!
//! Parts of open multipart uploads are not moved (a part has no version
//! to compare-and-set on, so a move could undo a client re-uploading the
//! part); they are counted, and move with the object once completed. An
//! upload left open keeps its node from being proven empty: complete or
//! abort it.
//!
//! Known leak: shards rebuilt for a record whose compare-and-set then
//! fails (it was replaced or deleted meanwhile), or for a copy deleted
//! after the record sharing its chunk, sit on a node no garbage record
//! names (garbage is deleted by the layout of the record that freed it).
//! Deleting them on failure is unsafe: another gateway, or the copy's own
//! relocation, may have committed the same destination. Space only.
//!
//! Destinations are chosen from the chunk's owner id, not its key, so two
//! records sharing a chunk (a copy) move its shards to the same node.
//! Moved chunks are stamped with the current ring epoch, so
//! [`super::rebalance`] (which moves chunks onto nodes that joined) leaves
//! them until the ring changes again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use predastore_core::meta::{
    ChunkLayout, DrainingNode, MetaError, ObjectRecord, Precondition, Query, Reply,
};
use predastore_core::meta_client::new_request_id;
use predastore_core::ring::Ring;

use super::repair::{FRESH_FOR, plan_of};
use super::walk::RecordWalk;
use super::{Inner, record, ring_of};
use crate::backend::DrainReport;

/// How soon a pass is tried again while shards are left to move.
pub const RETRY_EVERY: Duration = Duration::from_secs(10);
/// How often a pass runs while nodes are leaving but nothing is left to
/// move, so `GET /admin/v1/drain` proves them empty without a request.
pub const PROVE_EVERY: Duration = Duration::from_secs(60);

/// Whether `d` is proven empty by `last` (see the module docs): the pass
/// proved it, and no commit has named it since.
pub fn is_empty(d: &DrainingNode, last: Option<&DrainReport>) -> bool {
    last.is_some_and(|r| r.proven_empty.get(&d.id) == Some(&[d.since_ms, d.referenced]))
}

/// Which shards of chunk `l` must move and where: shard `i` whose node is
/// not in `ring` (the placement ring: draining nodes are not in it) goes
/// to the first node of the chunk's preference list — placed by owner id
/// and chunk, so every record sharing the chunk agrees — that holds no
/// other shard of the chunk. Shards with no free member stay (fewer
/// members than shards).
pub fn moves_of(ring: &Ring, l: &ChunkLayout) -> Vec<(u8, u64)> {
    let member = |n: u64| ring.members().iter().any(|m| m.id == n);
    let leaving: Vec<usize> = (0..l.nodes.len()).filter(|&i| !member(l.nodes[i])).collect();
    if leaving.is_empty() {
        return Vec::new();
    }
    let owner = format!("{:032x}", l.object);
    let Ok(prefs) = ring.place(&owner, "", u64::from(l.chunk), ring.members().len()) else {
        return Vec::new();
    };
    let mut taken: BTreeSet<u64> = l.nodes.iter().copied().filter(|&n| member(n)).collect();
    let mut out = Vec::new();
    for i in leaving {
        if let Some(&to) = prefs.iter().find(|n| !taken.contains(n)) {
            taken.insert(to);
            out.push((i as u8, to));
        }
    }
    out
}

/// Shards of `chunks` on nodes outside `ring`, by node.
fn leaving_shards(ring: &Ring, chunks: &[ChunkLayout], into: &mut BTreeMap<u64, u64>) {
    for l in chunks {
        for n in &l.nodes {
            if !ring.members().iter().any(|m| m.id == *n) {
                *into.entry(*n).or_insert(0) += 1;
            }
        }
    }
}

/// Runs a pass when one is wanted (at start, when the ring changed), again
/// every [`RETRY_EVERY`] while shards are left to move and every
/// [`PROVE_EVERY`] while nodes are leaving (until the task is aborted).
pub async fn run(inner: Arc<Inner>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !inner.ready.load(Ordering::Relaxed) {
            continue;
        }
        let retry = inner.last_relocate.lock().expect("relocate report lock").as_ref().is_some_and(
            |(r, at)| {
                // Open parts move only when their upload completes.
                let work_left = !r.complete || r.left > 0;
                // Leaving nodes remain (maybe already proven empty, maybe
                // named by a commit since): keep the proof current.
                (work_left && at.elapsed() >= RETRY_EVERY)
                    || (!r.referenced.is_empty() && at.elapsed() >= PROVE_EVERY)
            },
        );
        if !inner.relocate_wanted.swap(false, Ordering::AcqRel) && !retry {
            continue;
        }
        if let Err(e) = pass(&inner).await {
            tracing::warn!(error = %e, "relocation pass failed; retrying");
            inner.relocate_wanted.store(true, Ordering::Release);
        }
    }
}

/// The committed ring and draining nodes, read from the leader.
pub(super) async fn placement(inner: &Inner) -> Result<(Ring, Vec<DrainingNode>), MetaError> {
    let draining = match inner.meta.read(Query::Draining).await? {
        Reply::Draining(d) => d,
        other => return Err(MetaError::Internal(format!("unexpected reply: {other:?}"))),
    };
    let ring = match inner.meta.read(Query::Ring).await? {
        Reply::Ring(Some(r)) => r,
        Reply::Ring(None) => return Err(MetaError::Unavailable("no ring committed yet".into())),
        other => return Err(MetaError::Internal(format!("unexpected reply: {other:?}"))),
    };
    let ring = ring_of(&ring, &draining).map_err(MetaError::Internal)?;
    Ok((ring, draining))
}

/// One pass over every record and open upload part.
pub async fn pass(inner: &Inner) -> Result<DrainReport, MetaError> {
    let _one_at_a_time = inner.relocate_lock.lock().await;
    inner.relocate_running.store(true, Ordering::Release);
    let r = pass_inner(inner).await;
    inner.relocate_running.store(false, Ordering::Release);
    let report = r?;
    *inner.last_relocate.lock().expect("relocate report lock") =
        Some((report.clone(), Instant::now()));
    Ok(report)
}

async fn pass_inner(inner: &Inner) -> Result<DrainReport, MetaError> {
    let started_ms = record::millis(crate::backend::rules::now_millis());
    let (ring, draining) = placement(inner).await?;
    let mut report = DrainReport { epoch: ring.epoch(), started_ms, ..DrainReport::default() };
    for d in &draining {
        report.referenced.insert(d.id, 0);
    }
    let mut unreadable = 0;
    let mut walk = RecordWalk::start(inner).await?;
    // An unreadable record may name anything: no node can be proven empty
    // then, but the others' shards still move.
    while let Some(o) = walk.next_found("its shards are not relocated", &mut unreadable).await? {
        report.objects += 1;
        let rec = o.record;
        let rec = object(inner, &ring, &o.bucket, &o.key, rec, o.read_at, &mut report).await?;
        leaving_shards(&ring, &rec.chunks, &mut report.referenced);
    }
    parts(inner, &ring, &mut report).await?;
    report.objects += unreadable;
    report.complete = unreadable == 0;
    // Counts unchanged since the walk began: nothing committed meanwhile
    // named the node.
    let (_, after) = placement(inner).await?;
    if report.complete {
        for d in &after {
            let before = draining.iter().find(|b| b.id == d.id);
            if before == Some(d) && report.referenced.get(&d.id) == Some(&0) {
                report.proven_empty.insert(d.id, [d.since_ms, d.referenced]);
            }
        }
    }
    report.finished_ms = record::millis(crate::backend::rules::now_millis());
    Ok(report)
}

/// Counts shards of open uploads' parts on leaving nodes.
async fn parts(inner: &Inner, ring: &Ring, report: &mut DrainReport) -> Result<(), MetaError> {
    let Reply::Buckets(buckets) = inner.meta.read(Query::ListBuckets).await? else {
        return Err(MetaError::Invalid("unexpected reply to ListBuckets".into()));
    };
    for b in buckets {
        let mut after = None;
        loop {
            let q = Query::UploadsPage {
                bucket: b.name.clone(),
                prefix: String::new(),
                after: after.clone(),
                limit: 1000,
            };
            let uploads = match inner.meta.read(q).await {
                Ok(Reply::Uploads(u)) => u,
                Ok(_) => return Err(MetaError::Invalid("unexpected reply to UploadsPage".into())),
                Err(MetaError::NoSuchBucket(_)) => break,
                Err(e) => return Err(e),
            };
            for u in &uploads {
                let q = Query::ListParts { bucket: b.name.clone(), upload_id: u.upload_id.clone() };
                let parts = match inner.meta.read(q).await {
                    Ok(Reply::Parts(_, p)) => p,
                    Ok(_) => {
                        return Err(MetaError::Invalid("unexpected reply to ListParts".into()));
                    }
                    Err(MetaError::NoSuchUpload { .. } | MetaError::NoSuchBucket(_)) => continue,
                    Err(e) => return Err(e),
                };
                let mut here = BTreeMap::new();
                for p in &parts {
                    leaving_shards(ring, &p.chunks, &mut here);
                }
                for (node, n) in here {
                    report.upload_parts += n;
                    *report.referenced.entry(node).or_insert(0) += n;
                }
            }
            match uploads.last() {
                Some(u) if uploads.len() == 1000 => {
                    after = Some((u.key.clone(), u.upload_id.clone()))
                }
                _ => break,
            }
        }
    }
    Ok(())
}

/// Moves what it can of one object's shards off leaving nodes; returns
/// the record as it stands afterwards (for counting what is left).
async fn object(
    inner: &Inner,
    ring: &Ring,
    bucket: &str,
    key: &str,
    mut rec: ObjectRecord,
    mut read_at: Instant,
    report: &mut DrainReport,
) -> Result<ObjectRecord, MetaError> {
    // Chunks tried once are not tried again in this pass.
    let mut tried: BTreeSet<(u128, u32)> = BTreeSet::new();
    loop {
        let mut next = rec.clone();
        let mut moved = 0u64;
        let mut fresh = true;
        for (at, l) in rec.chunks.iter().enumerate() {
            let moves = moves_of(ring, l);
            if moves.is_empty() || tried.contains(&(l.object, l.chunk)) {
                continue;
            }
            if read_at.elapsed() > FRESH_FOR {
                fresh = false;
                break;
            }
            tried.insert((l.object, l.chunk));
            match inner.data.rebuild_onto(l, &moves).await {
                Ok(stored) => {
                    for (i, to) in moves.iter().filter(|(i, _)| stored.contains(i)) {
                        next.chunks[at].nodes[usize::from(*i)] = *to;
                        // Placed deliberately under this ring: rebalance
                        // leaves it until the ring changes again.
                        next.chunks[at].ring_epoch = ring.epoch();
                        moved += 1;
                    }
                }
                Err(e) => tracing::warn!(bucket, key, chunk = l.chunk, error = %e,
                    "a chunk to relocate could not be read"),
            }
        }
        if moved > 0 {
            // Missing entries naming a moved shard's old node are void:
            // the shard now exists where the layout says.
            let missing: Vec<String> = record::missing_of(&rec)
                .into_iter()
                .filter(|m| !plan_of(&next.chunks, std::slice::from_ref(m)).is_empty())
                .collect();
            let version = rec.version_id;
            let mut next = record::with_missing(next, missing)
                .map_err(|e| MetaError::Internal(e.to_string()))?;
            next.version_id = new_request_id();
            match inner
                .meta
                .put_object(bucket, key, next.clone(), Precondition::VersionIs(version))
                .await
            {
                Ok(_) => {
                    tracing::info!(bucket, key, shards = moved, "relocated shards");
                    crate::metrics::global().relocated_shards.inc_by(moved);
                    report.moved += moved;
                    inner.note_missing(bucket, key, &next).await;
                    rec = next;
                }
                // Replaced or deleted meanwhile: the new record is not ours.
                Err(MetaError::PreconditionFailed { .. } | MetaError::NoSuchKey { .. }) => {
                    report.left += moved;
                    return Ok(match inner.meta.get_object(bucket, key).await {
                        Ok(r) => r,
                        Err(_) => rec,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        if fresh {
            let not_moved: u64 = rec.chunks.iter().map(|l| moves_of(ring, l).len() as u64).sum();
            report.left += not_moved;
            return Ok(rec);
        }
        // Out of time: read the record again before writing more shards.
        read_at = Instant::now();
        rec = match inner.meta.get_object(bucket, key).await {
            Ok(r) => r,
            Err(MetaError::NoSuchKey { .. }) => return Ok(rec),
            Err(e) => return Err(e),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use predastore_core::ring::Member;

    fn ring(ids: &[u64]) -> Ring {
        Ring::new(4, ids.iter().map(|&id| Member { id, zone: None }), 64).unwrap()
    }

    fn layout(object: u128, chunk: u32, nodes: &[u64]) -> ChunkLayout {
        ChunkLayout {
            object,
            chunk,
            len: 10,
            data_shards: 2,
            parity_shards: 1,
            shard_len: 5,
            nodes: nodes.to_vec(),
            ring_epoch: 1,
            content_crc: None,
        }
    }

    #[test]
    fn shards_leave_only_nodes_outside_the_ring_for_free_members() {
        let r = ring(&[1, 2, 3, 5]);
        assert!(moves_of(&r, &layout(7, 0, &[1, 2, 3])).is_empty());
        let r = ring(&[1, 3, 5]);
        for owner in 0..200u128 {
            let m = moves_of(&r, &layout(owner, 1, &[1, 4, 3]));
            // Shard 1 leaves node 4 for the one member not holding a shard.
            assert_eq!(m, [(1, 5)], "owner {owner}");
        }
        // Two leaving shards go to distinct members; one with no free
        // member stays.
        let r = ring(&[1, 2, 3, 4]);
        let m = moves_of(&r, &layout(9, 0, &[1, 7, 8]));
        assert_eq!(m.len(), 2);
        assert_ne!(m[0].1, m[1].1);
        assert!(m.iter().all(|(_, n)| [2, 3, 4].contains(n)));
        assert_eq!(moves_of(&ring(&[1, 2, 3]), &layout(9, 0, &[1, 2, 3, 8])).len(), 0);
    }

    #[test]
    fn destinations_follow_the_chunk_not_the_record() {
        let r = ring(&[1, 2, 3, 4, 5, 6]);
        let a = moves_of(&r, &layout(42, 3, &[1, 2, 9]));
        let b = moves_of(&r, &layout(42, 3, &[1, 2, 9]));
        assert_eq!(a, b);
        // And they spread: not every chunk's shard goes to one node.
        let dests: BTreeSet<u64> = (0..100u128)
            .flat_map(|o| moves_of(&r, &layout(o, 0, &[1, 2, 9])))
            .map(|m| m.1)
            .collect();
        assert!(dests.len() >= 3, "{dests:?}");
    }

    #[test]
    fn a_node_is_empty_only_while_nothing_named_it_since_the_proof() {
        let d = DrainingNode { id: 4, since_ms: 1_000, referenced: 7, referenced_ms: 9_000 };
        let proof = |since, referenced| DrainReport {
            proven_empty: BTreeMap::from([(4, [since, referenced])]),
            ..DrainReport::default()
        };
        assert!(!is_empty(&d, None));
        assert!(!is_empty(&d, Some(&DrainReport::default())));
        assert!(is_empty(&d, Some(&proof(1_000, 7))));
        assert!(!is_empty(&d, Some(&proof(1_000, 6))), "a commit named it after the proof");
        assert!(!is_empty(&d, Some(&proof(500, 7))), "proved for an earlier drain");
    }
}
