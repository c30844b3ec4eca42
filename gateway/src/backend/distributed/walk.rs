//! A walk over every object record of every bucket, a listing page at a
//! time, for the passes that must look at everything (repair, scrub).
//! Records are read linearizably one by one, so each is current when the
//! pass acts on it; memory holds one page of keys.

use std::collections::VecDeque;
use std::time::Instant;

use predastore_core::meta::{MetaError, ObjectRecord, Query, Reply};

use super::{Inner, whole_bucket};

/// One object as the walk found it.
pub struct Visited {
    pub bucket: String,
    pub key: String,
    /// The record, or why it could not be read (deleted meanwhile:
    /// `NoSuchKey`; a damaged record: anything else).
    pub record: Result<ObjectRecord, MetaError>,
    /// Taken before the record was read: anything done on its strength
    /// counts its freshness from here.
    pub read_at: Instant,
}

/// An object whose record could be read.
pub struct Found {
    pub bucket: String,
    pub key: String,
    pub record: ObjectRecord,
    /// As [`Visited::read_at`].
    pub read_at: Instant,
}

/// Cursor over every object of every bucket.
pub struct RecordWalk<'a> {
    inner: &'a Inner,
    buckets: VecDeque<String>,
    /// The bucket being listed and where its next page starts (`None`:
    /// its last page was taken).
    current: Option<(String, Option<Vec<u8>>)>,
    keys: VecDeque<String>,
}

impl<'a> RecordWalk<'a> {
    /// Starts at the first bucket.
    pub async fn start(inner: &'a Inner) -> Result<Self, MetaError> {
        let Reply::Buckets(buckets) = inner.meta.read(Query::ListBuckets).await? else {
            return Err(MetaError::Invalid("unexpected reply to ListBuckets".into()));
        };
        Ok(Self {
            inner,
            buckets: buckets.into_iter().map(|b| b.name).collect(),
            current: None,
            keys: VecDeque::new(),
        })
    }

    /// The next object, or None at the end. Fails (and the pass should
    /// stop) when the metadata cluster cannot answer: no leader, no
    /// quorum, unreachable. A record that cannot be read for another
    /// reason is returned as such, so one bad record does not stop a pass.
    pub async fn next(&mut self) -> Result<Option<Visited>, MetaError> {
        loop {
            if let Some(key) = self.keys.pop_front() {
                let bucket = self.current.as_ref().expect("keys come from a bucket").0.clone();
                let read_at = Instant::now();
                let record = match self.inner.meta.get_object(&bucket, &key).await {
                    Err(
                        e @ (MetaError::NotLeader { .. }
                        | MetaError::NoQuorum(_)
                        | MetaError::Unavailable(_)),
                    ) => return Err(e),
                    r => r,
                };
                return Ok(Some(Visited { bucket, key, record, read_at }));
            }
            match self.current.take() {
                Some((bucket, Some(continuation))) => self.page(bucket, Some(continuation)).await?,
                _ => match self.buckets.pop_front() {
                    Some(bucket) => self.page(bucket, None).await?,
                    None => return Ok(None),
                },
            }
        }
    }

    /// The next object whose record reads, skipping keys deleted
    /// meanwhile. An unreadable record is logged (naming what `pass` leaves
    /// undone) and counted in `unreadable`, and the walk goes on: one
    /// damaged record must not stop a pass.
    pub async fn next_found(
        &mut self,
        pass: &str,
        unreadable: &mut u64,
    ) -> Result<Option<Found>, MetaError> {
        while let Some(o) = self.next().await? {
            match o.record {
                Ok(record) => {
                    let Visited { bucket, key, read_at, .. } = o;
                    return Ok(Some(Found { bucket, key, record, read_at }));
                }
                Err(MetaError::NoSuchKey { .. }) => {}
                Err(e) => {
                    tracing::warn!(bucket = %o.bucket, key = %o.key, error = %e,
                        "object record unreadable; {pass}");
                    *unreadable += 1;
                }
            }
        }
        Ok(None)
    }

    async fn page(&mut self, bucket: String, from: Option<Vec<u8>>) -> Result<(), MetaError> {
        let page = match self.inner.meta.list(whole_bucket(&bucket, from)).await {
            Ok(p) => p,
            // Deleted since the bucket list was read: nothing to walk.
            Err(MetaError::NoSuchBucket(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.keys = page.objects.into_iter().map(|o| o.key).collect();
        self.current = Some((bucket, page.next_continuation));
        Ok(())
    }
}
