//! The index of objects below full redundancy (Raft keys `h/`, see the
//! node's state machine): what a write that left shards missing, a scrub
//! that could not rebuild everything, or a repair that left some shards
//! puts on it, so repair works from it and `GET /admin/v1/repair` says how
//! many objects are below full redundancy right now without reading every
//! record. Replacing or deleting an object drops its entry in the state
//! machine itself; a version whose shards are all back is taken off by the
//! pass that rebuilt them.
//!
//! Marking is best effort after the record is committed: a gateway that
//! dies in between leaves the object off the index, and the daily full
//! repair walk (and every scrub pass) still finds it.

use predastore_core::meta::{
    ChunkLayout, Command, DegradedRecord, MetaError, ObjectRecord, Query, Reply,
};

use super::Inner;
use super::record;
use super::repair::plan_of;
use crate::backend::Redundancy;

/// Entries read per metadata request.
const PAGE: u32 = 1000;

/// Further shard losses the weakest chunk of `chunks` survives when the
/// shards `missing` names are gone (`<shard id>@<node>` entries).
pub fn survives_of(chunks: &[ChunkLayout], missing: &[String]) -> u8 {
    let plan = plan_of(chunks, missing);
    chunks
        .iter()
        .enumerate()
        .map(|(at, l)| {
            let lost = plan.get(&at).map_or(0, |v| v.len());
            l.parity_shards.saturating_sub(u8::try_from(lost).unwrap_or(u8::MAX))
        })
        .min()
        .unwrap_or(0)
}

/// A copy of `rec` to index once committed, if it names missing shards
/// (the record itself moves into the commit).
pub fn copy_if_degraded(rec: &ObjectRecord) -> Option<ObjectRecord> {
    (!record::missing_of(rec).is_empty()).then(|| rec.clone())
}

impl Redundancy {
    /// Sums up index entries.
    pub fn of(entries: &[DegradedRecord]) -> Self {
        Self {
            below_full: entries.len() as u64,
            survives: entries.iter().map(|d| d.survives).min(),
        }
    }
}

impl Inner {
    /// Puts `rec` (just committed under `bucket`/`key`) on the index if its
    /// record names missing shards.
    pub(super) async fn note_missing(&self, bucket: &str, key: &str, rec: &ObjectRecord) {
        let missing = record::missing_of(rec);
        if missing.is_empty() {
            return;
        }
        let survives = survives_of(&rec.chunks, &missing);
        self.mark_degraded(bucket, key, rec.version_id, survives).await;
    }

    /// Puts version `version_id` of `bucket`/`key` on the index.
    pub(super) async fn mark_degraded(
        &self,
        bucket: &str,
        key: &str,
        version_id: u128,
        survives: u8,
    ) {
        let d = DegradedRecord {
            bucket: bucket.into(),
            key: key.into(),
            version_id,
            survives,
            since_ms: record::millis(crate::backend::rules::now_millis()),
        };
        if let Err(e) = self.meta.write(Command::MarkDegraded(d)).await {
            tracing::warn!(bucket, key, error = %e,
                "could not index an object below full redundancy; the next full pass finds it");
        }
    }

    /// Takes version `version_id` of `bucket`/`key` off the index.
    pub(super) async fn clear_degraded(&self, bucket: &str, key: &str, version_id: u128) {
        let cmd = Command::ClearDegraded { bucket: bucket.into(), key: key.into(), version_id };
        if let Err(e) = self.meta.write(cmd).await {
            tracing::warn!(bucket, key, error = %e, "could not take an object off the degraded index");
        }
    }

    /// Every entry of the index, in (bucket, key) order.
    pub(super) async fn degraded(&self) -> Result<Vec<DegradedRecord>, MetaError> {
        let mut out: Vec<DegradedRecord> = Vec::new();
        loop {
            let after = out.last().map(|d| (d.bucket.clone(), d.key.clone()));
            match self.meta.read(Query::DegradedPage { after, limit: PAGE }).await? {
                Reply::Degraded(page) if page.is_empty() => return Ok(out),
                Reply::Degraded(page) => {
                    let full = page.len() < PAGE as usize;
                    out.extend(page);
                    if full {
                        return Ok(out);
                    }
                }
                r => return Err(MetaError::Internal(format!("unexpected reply {r:?}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(chunk: u32, m: u8) -> ChunkLayout {
        ChunkLayout {
            object: 7,
            chunk,
            len: 10,
            data_shards: 2,
            parity_shards: m,
            shard_len: 5,
            nodes: (0..2 + u64::from(m)).collect(),
            ring_epoch: 1,
            content_crc: None,
        }
    }

    #[test]
    fn an_object_survives_what_its_weakest_chunk_does() {
        let chunks = vec![layout(0, 2), layout(1, 2)];
        assert_eq!(survives_of(&chunks, &[]), 2);
        let shard = |chunk: u32, index: u8, node: u64| {
            format!("{}@{node}", predastore_core::shard::ShardId { object: 7, chunk, index })
        };
        assert_eq!(survives_of(&chunks, &[shard(1, 3, 3)]), 1);
        assert_eq!(survives_of(&chunks, &[shard(1, 3, 3), shard(1, 0, 0)]), 0);
        // An entry naming another node than the layout's is not counted.
        assert_eq!(survives_of(&chunks, &[shard(0, 1, 9)]), 2);
        let d = |survives| DegradedRecord {
            bucket: "b".into(),
            key: "k".into(),
            version_id: 1,
            survives,
            since_ms: 0,
        };
        assert_eq!(Redundancy::of(&[]), Redundancy { below_full: 0, survives: None });
        assert_eq!(Redundancy::of(&[d(1), d(0)]), Redundancy { below_full: 2, survives: Some(0) });
    }
}
