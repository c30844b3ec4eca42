//! The metadata state machine: how a committed command changes the tables
//! and what a query reads. Pure logic over [`KvRead`]; the store module
//! owns the actual key-value engine (sled) and makes each applied batch
//! atomic, so the engine can change without touching this file.
//!
//! # Key layout (one ordered key space; values are [`meta::encode`] records)
//!
//! | key | value |
//! |-----|-------|
//! | `b/` bucket | [`BucketRecord`] |
//! | `o/` bucket `\0` key | [`ObjectRecord`] — bucket names never hold `\0`, so a range scan of `o/bucket\0` lists the bucket in S3 (UTF-8 byte) order |
//! | `u/` bucket `\0` upload id | [`MultipartUpload`] |
//! | `p/` bucket `\0` upload id `\0` part number (u32 BE) | [`PartRecord`] |
//! | `c/` name | [`StorageClassRecord`] |
//! | `r` | [`RingRecord`] |
//! | `n` | `Vec<`[`DrainingNode`]`>`: ring members taking no new shards |
//! | `d/` request id (u128 BE) | [`Dedup`]: the first outcome of a write |
//! | `t/` time ms (u64 BE) request id (u128 BE) | empty: expiry index of `d/` |
//! | `x/` owner (u128 BE) chunk (u32 BE) | `u64`: records referencing that chunk |
//! | `i/` owner (u128 BE) | [`meta::IntentRecord`]: shards being written |
//! | `g/` owner (u128 BE) | [`GarbageRecord`]: shards to delete |
//! | `h/` bucket `\0` key | [`DegradedRecord`]: an object below full redundancy; dropped when the object is replaced or deleted |
//!
//! # Chunk references
//!
//! Object and part records name their chunks by (owner, chunk). Each
//! committed record holds one reference per chunk (`x/`); a record may only
//! reference a chunk that is referenced already (a copy) or whose owner has
//! an open intent (a fresh write). When a command drops the last reference
//! to a chunk it moves the chunk to `g/` and returns it in
//! [`Reply::Freed`], so shards are deleted exactly when nothing can read
//! them any more and a failed delete stays on record.
//!
//! Keys starting with `s/` belong to the store (applied log id, membership).
//!
//! Writes are deduplicated by request id for [`DEDUP_TTL_MS`] of log time
//! (the proposer's clock stamped into the entry, so every node expires the
//! same ids at the same log position).

use std::collections::BTreeMap;

use predastore_core::config::validate_bucket_name;
use predastore_core::meta::{
    self, BucketRecord, ChunkLayout, CodecError, Command, DegradedRecord, DrainingNode,
    GarbageRecord, ListEntry, ListPage, ListRequest, MAX_KEYS, MetaError, MetaResult,
    MultipartUpload, ObjectRecord, PartRecord, Precondition, Query, Reply, RingRecord,
    StorageClassRecord,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Batch, BatchReply, Proposal};

/// How long a request id is remembered, in ms of log time.
pub const DEDUP_TTL_MS: u64 = 10 * 60 * 1000;
/// Expired dedup entries dropped per applied batch (bounds apply cost).
const DEDUP_GC_PER_BATCH: usize = 512;

/// Why the key-value layer failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// A stored record failed its checksum or did not decode.
    #[error("corrupt metadata record at {key}: {source}")]
    Corrupt { key: String, source: CodecError },
    /// The engine failed.
    #[error("metadata store: {0}")]
    Io(String),
}

/// Visitor of a range scan: gets each key and value, returns whether to go on.
pub type Visit<'f> = &'f mut dyn FnMut(&[u8], &[u8]) -> Result<bool, KvError>;

/// Read access to the ordered key space.
pub trait KvRead {
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError>;
    /// Visits keys in `[from, until)` (unbounded when `until` is None) in
    /// order until `f` returns false.
    fn range(&self, from: &[u8], until: Option<&[u8]>, f: Visit<'_>) -> Result<(), KvError>;
}

/// Printable form of a key for error messages.
pub fn show_key(k: &[u8]) -> String {
    String::from_utf8_lossy(k).replace('\0', "/")
}

fn dec<T: DeserializeOwned>(key: &[u8], v: &[u8]) -> Result<T, KvError> {
    meta::decode(v).map_err(|source| KvError::Corrupt { key: show_key(key), source })
}

fn read<T: DeserializeOwned>(kv: &dyn KvRead, key: &[u8]) -> Result<Option<T>, KvError> {
    kv.get(key)?.map(|v| dec(key, &v)).transpose()
}

/// The smallest key greater than every key starting with `p` (None: no
/// such key, `p` is all 0xFF).
pub fn prefix_end(p: &[u8]) -> Option<Vec<u8>> {
    let mut e = p.to_vec();
    while let Some(last) = e.pop() {
        if last < 0xFF {
            e.push(last + 1);
            return Some(e);
        }
    }
    None
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Key of a bucket record.
pub fn bucket_key(name: &str) -> Vec<u8> {
    cat(&[b"b/", name.as_bytes()])
}
/// Prefix of all object records of a bucket.
pub fn objects_prefix(bucket: &str) -> Vec<u8> {
    cat(&[b"o/", bucket.as_bytes(), b"\0"])
}
/// Key of an object record.
pub fn object_key(bucket: &str, key: &str) -> Vec<u8> {
    cat(&[b"o/", bucket.as_bytes(), b"\0", key.as_bytes()])
}
fn uploads_prefix(bucket: &str) -> Vec<u8> {
    cat(&[b"u/", bucket.as_bytes(), b"\0"])
}
fn upload_key(bucket: &str, upload: &str) -> Vec<u8> {
    cat(&[b"u/", bucket.as_bytes(), b"\0", upload.as_bytes()])
}
fn parts_prefix(bucket: &str, upload: &str) -> Vec<u8> {
    cat(&[b"p/", bucket.as_bytes(), b"\0", upload.as_bytes(), b"\0"])
}
fn part_key(bucket: &str, upload: &str, n: u32) -> Vec<u8> {
    cat(&[&parts_prefix(bucket, upload), &n.to_be_bytes()])
}
fn class_key(name: &str) -> Vec<u8> {
    cat(&[b"c/", name.as_bytes()])
}
const RING_KEY: &[u8] = b"r";
const DRAINING_KEY: &[u8] = b"n";
fn dedup_key(id: u128) -> Vec<u8> {
    cat(&[b"d/", &id.to_be_bytes()])
}
fn expiry_key(time_ms: u64, id: u128) -> Vec<u8> {
    cat(&[b"t/", &time_ms.to_be_bytes(), &id.to_be_bytes()])
}
fn ref_key(owner: u128, chunk: u32) -> Vec<u8> {
    cat(&[b"x/", &owner.to_be_bytes(), &chunk.to_be_bytes()])
}
fn refs_prefix(owner: u128) -> Vec<u8> {
    cat(&[b"x/", &owner.to_be_bytes()])
}
fn intent_key(owner: u128) -> Vec<u8> {
    cat(&[b"i/", &owner.to_be_bytes()])
}
fn garbage_key(owner: u128) -> Vec<u8> {
    cat(&[b"g/", &owner.to_be_bytes()])
}
const DEGRADED_PREFIX: &[u8] = b"h/";
fn degraded_key(bucket: &str, key: &str) -> Vec<u8> {
    cat(&[DEGRADED_PREFIX, bucket.as_bytes(), b"\0", key.as_bytes()])
}
/// Prefix of keys owned by the store, not the state machine.
pub const SYSTEM_PREFIX: &[u8] = b"s/";

/// The remembered outcome of an applied write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dedup {
    /// Log time it was applied at.
    pub time_ms: u64,
    /// What the first application returned.
    pub outcome: MetaResult,
}

/// Pending writes of one applied batch over a base view, so later
/// commands in the batch see earlier ones.
pub struct Overlay<'a> {
    base: &'a dyn KvRead,
    /// key → Some(value) to write, None to delete.
    pub writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a> Overlay<'a> {
    /// An empty overlay on `base`.
    pub fn new(base: &'a dyn KvRead) -> Self {
        Self { base, writes: BTreeMap::new() }
    }

    fn put<T: Serialize>(&mut self, key: Vec<u8>, v: &T) {
        self.writes.insert(key, Some(meta::encode(v)));
    }

    fn del(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    /// Live keys starting with `p`, in order, at most `limit`.
    fn keys_with_prefix(&self, p: &[u8], limit: usize) -> Result<Vec<Vec<u8>>, KvError> {
        let end = prefix_end(p);
        let mut out = Vec::new();
        self.range(p, end.as_deref(), &mut |k, _| {
            out.push(k.to_vec());
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }
}

impl KvRead for Overlay<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }

    fn range(&self, from: &[u8], until: Option<&[u8]>, f: Visit<'_>) -> Result<(), KvError> {
        // Merge the base range with the overlay's writes in key order.
        use std::ops::Bound;
        let hi = until.map_or(Bound::Unbounded, Bound::Excluded);
        let mut mine = self.writes.range::<[u8], _>((Bound::Included(from), hi)).peekable();
        let mut stopped = false;
        self.base.range(from, until, &mut |k, v| {
            while let Some((mk, mv)) = mine.peek() {
                if mk.as_slice() > k {
                    break;
                }
                let same = mk.as_slice() == k;
                if let Some(mv) = mv
                    && !f(mk, mv)?
                {
                    stopped = true;
                    return Ok(false);
                }
                mine.next();
                if same {
                    return Ok(true);
                }
            }
            if !f(k, v)? {
                stopped = true;
                return Ok(false);
            }
            Ok(true)
        })?;
        if !stopped {
            for (mk, mv) in mine {
                if let Some(mv) = mv
                    && !f(mk, mv)?
                {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Applies one batch of proposals, in order, into `ov`.
pub fn apply_batch(ov: &mut Overlay<'_>, batch: &Batch) -> Result<BatchReply, KvError> {
    let mut out = Vec::with_capacity(batch.0.len());
    let mut newest = 0;
    for p in &batch.0 {
        out.push(apply_proposal(ov, p)?);
        newest = newest.max(p.time_ms);
    }
    expire_dedup(ov, newest)?;
    Ok(BatchReply(out))
}

fn apply_proposal(ov: &mut Overlay<'_>, p: &Proposal) -> Result<MetaResult, KvError> {
    let dk = dedup_key(p.request_id);
    if let Some(d) = read::<Dedup>(ov, &dk)? {
        return Ok(d.outcome);
    }
    let outcome = apply_command(ov, &p.command, p.time_ms)?;
    ov.put(dk, &Dedup { time_ms: p.time_ms, outcome: outcome.clone() });
    ov.writes.insert(expiry_key(p.time_ms, p.request_id), Some(Vec::new()));
    Ok(outcome)
}

fn expire_dedup(ov: &mut Overlay<'_>, now_ms: u64) -> Result<(), KvError> {
    let Some(cutoff) = now_ms.checked_sub(DEDUP_TTL_MS) else { return Ok(()) };
    let until = expiry_key(cutoff, 0);
    let mut old = Vec::new();
    ov.range(b"t/", Some(&until), &mut |k, _| {
        old.push(k.to_vec());
        Ok(old.len() < DEDUP_GC_PER_BATCH)
    })?;
    for k in old {
        if k.len() == 2 + 8 + 16 {
            let id = u128::from_be_bytes(k[10..].try_into().expect("16 bytes"));
            ov.del(dedup_key(id));
        }
        ov.del(k);
    }
    Ok(())
}

fn need_bucket(kv: &dyn KvRead, name: &str) -> Result<Result<BucketRecord, MetaError>, KvError> {
    Ok(read::<BucketRecord>(kv, &bucket_key(name))?
        .ok_or_else(|| MetaError::NoSuchBucket(name.to_string())))
}

fn check(
    bucket: &str,
    key: &str,
    cur: Option<&ObjectRecord>,
    expect: Precondition,
) -> Result<(), MetaError> {
    let ok = match expect {
        Precondition::None => true,
        Precondition::Absent => cur.is_none(),
        Precondition::Exists => cur.is_some(),
        Precondition::VersionIs(v) => cur.is_some_and(|c| c.version_id == v),
    };
    if ok {
        Ok(())
    } else {
        Err(MetaError::PreconditionFailed {
            bucket: bucket.into(),
            key: key.into(),
            current: cur.map(|c| c.version_id),
        })
    }
}

/// `?` for the inner application error: returns it as the outcome.
macro_rules! fail {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        }
    };
}

fn apply_command(ov: &mut Overlay<'_>, c: &Command, now_ms: u64) -> Result<MetaResult, KvError> {
    match c {
        Command::Noop => Ok(Ok(Reply::Done)),
        Command::CreateBucket(b) => {
            fail!(validate_bucket_name(&b.name).map_err(|e| MetaError::Invalid(e.to_string())));
            let k = bucket_key(&b.name);
            if ov.get(&k)?.is_some() {
                return Ok(Err(MetaError::BucketExists(b.name.clone())));
            }
            ov.put(k, b);
            Ok(Ok(Reply::Done))
        }
        Command::DeleteBucket { name } => {
            fail!(need_bucket(ov, name)?);
            if !ov.keys_with_prefix(&objects_prefix(name), 1)?.is_empty()
                || !ov.keys_with_prefix(&uploads_prefix(name), 1)?.is_empty()
            {
                return Ok(Err(MetaError::BucketNotEmpty(name.clone())));
            }
            ov.del(bucket_key(name));
            Ok(Ok(Reply::Done))
        }
        Command::UpdateBucket { name, public, policy } => {
            let mut b = fail!(need_bucket(ov, name)?);
            b.public = *public;
            b.policy = policy.clone();
            ov.put(bucket_key(name), &b);
            Ok(Ok(Reply::Done))
        }
        Command::SetBucketClass { name, storage_class } => {
            let mut b = fail!(need_bucket(ov, name)?);
            b.storage_class = storage_class.clone();
            ov.put(bucket_key(name), &b);
            Ok(Ok(Reply::Done))
        }
        Command::PutObject { bucket, key, record, expect } => {
            fail!(need_bucket(ov, bucket)?);
            let k = object_key(bucket, key);
            let cur = read::<ObjectRecord>(ov, &k)?;
            fail!(check(bucket, key, cur.as_ref(), *expect));
            fail!(take_refs(ov, &record.chunks)?);
            let mut freed = Freed::default();
            if let Some(c) = &cur {
                drop_refs(ov, &c.chunks, now_ms, &mut freed)?;
            }
            touch_draining(ov, &record.chunks, now_ms)?;
            ov.put(k, record);
            ov.del(degraded_key(bucket, key));
            Ok(Ok(freed.reply(cur.map(|c| c.version_id))))
        }
        Command::DeleteObject { bucket, key, expect } => {
            fail!(need_bucket(ov, bucket)?);
            let k = object_key(bucket, key);
            let cur = read::<ObjectRecord>(ov, &k)?;
            fail!(check(bucket, key, cur.as_ref(), *expect));
            let mut freed = Freed::default();
            if let Some(c) = &cur {
                drop_refs(ov, &c.chunks, now_ms, &mut freed)?;
                ov.del(k);
                ov.del(degraded_key(bucket, key));
            }
            Ok(Ok(freed.reply(cur.map(|c| c.version_id))))
        }
        Command::CreateUpload(u) => {
            fail!(need_bucket(ov, &u.bucket)?);
            let k = upload_key(&u.bucket, &u.upload_id);
            if u.upload_id.is_empty() || u.upload_id.contains('\0') {
                return Ok(Err(MetaError::Invalid("upload id must be non-empty, no NUL".into())));
            }
            if ov.get(&k)?.is_some() {
                return Ok(Err(MetaError::Invalid(format!("upload {} exists", u.upload_id))));
            }
            ov.put(k, u);
            Ok(Ok(Reply::Done))
        }
        Command::PutPart { bucket, upload_id, part } => {
            if !(1..=10_000).contains(&part.part_number) {
                return Ok(Err(MetaError::Invalid(format!(
                    "part number {} outside 1..=10000",
                    part.part_number
                ))));
            }
            fail!(need_upload(ov, bucket, upload_id)?);
            fail!(take_refs(ov, &part.chunks)?);
            let pk = part_key(bucket, upload_id, part.part_number);
            let mut freed = Freed::default();
            if let Some(old) = read::<PartRecord>(ov, &pk)? {
                drop_refs(ov, &old.chunks, now_ms, &mut freed)?;
            }
            touch_draining(ov, &part.chunks, now_ms)?;
            ov.put(pk, part);
            Ok(Ok(freed.reply(None)))
        }
        Command::CompleteUpload { bucket, upload_id, record, expect } => {
            let u = fail!(need_upload(ov, bucket, upload_id)?);
            let k = object_key(bucket, &u.key);
            let cur = read::<ObjectRecord>(ov, &k)?;
            fail!(check(bucket, &u.key, cur.as_ref(), *expect));
            // References first, so chunks moving from parts to the object
            // never drop to zero.
            fail!(take_refs(ov, &record.chunks)?);
            let mut freed = Freed::default();
            drop_upload(ov, bucket, upload_id, now_ms, &mut freed)?;
            if let Some(c) = &cur {
                drop_refs(ov, &c.chunks, now_ms, &mut freed)?;
            }
            touch_draining(ov, &record.chunks, now_ms)?;
            ov.put(k, record);
            ov.del(degraded_key(bucket, &u.key));
            Ok(Ok(freed.reply(cur.map(|c| c.version_id))))
        }
        Command::AbortUpload { bucket, upload_id } => {
            fail!(need_upload(ov, bucket, upload_id)?);
            let mut freed = Freed::default();
            drop_upload(ov, bucket, upload_id, now_ms, &mut freed)?;
            Ok(Ok(freed.reply(None)))
        }
        Command::RecordIntent(i) => {
            ov.put(intent_key(i.owner), i);
            Ok(Ok(Reply::Done))
        }
        Command::AbandonIntent { owner } => {
            ov.del(intent_key(*owner));
            let mut freed = Freed::default();
            if ov.keys_with_prefix(&refs_prefix(*owner), 1)?.is_empty() {
                // Nothing references the owner: sweep all its shards.
                let g = GarbageRecord { owner: *owner, chunks: Vec::new(), since_ms: now_ms };
                ov.put(garbage_key(*owner), &g);
                freed.0.push(g);
            }
            Ok(Ok(freed.reply(None)))
        }
        Command::ForgetGarbage { chunks, owners } => {
            for o in owners {
                ov.del(garbage_key(*o));
            }
            for (owner, chunk) in chunks {
                let gk = garbage_key(*owner);
                if let Some(mut g) = read::<GarbageRecord>(ov, &gk)?
                    && !g.chunks.is_empty()
                {
                    g.chunks.retain(|c| c.chunk != *chunk);
                    if g.chunks.is_empty() {
                        ov.del(gk);
                    } else {
                        ov.put(gk, &g);
                    }
                }
            }
            Ok(Ok(Reply::Done))
        }
        Command::MarkDegraded(d) => {
            let cur = read::<ObjectRecord>(ov, &object_key(&d.bucket, &d.key))?;
            // A stale report (the object was replaced or deleted since)
            // changes nothing.
            if cur.is_some_and(|c| c.version_id == d.version_id) {
                ov.put(degraded_key(&d.bucket, &d.key), d);
            }
            Ok(Ok(Reply::Done))
        }
        Command::ClearDegraded { bucket, key, version_id } => {
            let k = degraded_key(bucket, key);
            if read::<DegradedRecord>(ov, &k)?.is_some_and(|d| d.version_id == *version_id) {
                ov.del(k);
            }
            Ok(Ok(Reply::Done))
        }
        Command::PutStorageClass(c) => {
            if c.name.is_empty() || c.data_shards == 0 || c.chunk_size == 0 {
                return Ok(Err(MetaError::Invalid(
                    "a storage class needs a name, data_shards ≥ 1 and chunk_size ≥ 1".into(),
                )));
            }
            ov.put(class_key(&c.name), c);
            Ok(Ok(Reply::Done))
        }
        Command::DeleteStorageClass { name } => {
            let k = class_key(name);
            if ov.get(&k)?.is_none() {
                return Ok(Err(MetaError::NoSuchStorageClass(name.clone())));
            }
            ov.del(k);
            Ok(Ok(Reply::Done))
        }
        Command::SetRing { members, virtual_nodes } => {
            let mut members = members.clone();
            members.sort();
            members.dedup_by_key(|m| m.id);
            if members.is_empty() || *virtual_nodes == 0 {
                return Ok(Err(MetaError::Invalid(
                    "a ring needs members and virtual nodes".into(),
                )));
            }
            let cur = read::<RingRecord>(ov, RING_KEY)?;
            if let Some(c) = &cur
                && c.members == members
                && c.virtual_nodes == *virtual_nodes
            {
                return Ok(Ok(Reply::RingEpoch(c.epoch)));
            }
            let epoch = cur.map_or(1, |c| c.epoch + 1);
            // Nodes that left the ring are no longer draining.
            let draining: Vec<DrainingNode> = read(ov, DRAINING_KEY)?.unwrap_or_default();
            let kept: Vec<DrainingNode> =
                draining.iter().filter(|d| members.iter().any(|m| m.id == d.id)).cloned().collect();
            if kept.len() != draining.len() {
                ov.put(DRAINING_KEY.to_vec(), &kept);
            }
            ov.put(
                RING_KEY.to_vec(),
                &RingRecord { epoch, members, virtual_nodes: *virtual_nodes },
            );
            Ok(Ok(Reply::RingEpoch(epoch)))
        }
        Command::SetDraining { nodes } => {
            let Some(mut ring) = read::<RingRecord>(ov, RING_KEY)? else {
                return Ok(Err(MetaError::Invalid("no ring to drain nodes of yet".into())));
            };
            let cur: Vec<DrainingNode> = read(ov, DRAINING_KEY)?.unwrap_or_default();
            let mut next: Vec<DrainingNode> = ring
                .members
                .iter()
                .filter(|m| nodes.contains(&m.id))
                .map(|m| match cur.iter().find(|d| d.id == m.id) {
                    Some(d) => d.clone(),
                    None => {
                        DrainingNode { id: m.id, since_ms: now_ms, referenced: 0, referenced_ms: 0 }
                    }
                })
                .collect();
            next.sort_by_key(|d| d.id);
            if next == cur {
                return Ok(Ok(Reply::RingEpoch(ring.epoch)));
            }
            // What stays must hold every shard of a chunk of every class.
            let widest = scan::<StorageClassRecord>(ov, b"c/", usize::MAX)?
                .iter()
                .map(|c| usize::from(c.data_shards) + usize::from(c.parity_shards))
                .max()
                .unwrap_or(1);
            let stay = ring.members.len() - next.len();
            if stay < widest {
                return Ok(Err(MetaError::Invalid(format!(
                    "draining {} of {} ring members would leave {stay}, fewer than the {widest} \
                     shards of a chunk",
                    next.len(),
                    ring.members.len()
                ))));
            }
            ring.epoch += 1;
            ov.put(DRAINING_KEY.to_vec(), &next);
            ov.put(RING_KEY.to_vec(), &ring);
            Ok(Ok(Reply::RingEpoch(ring.epoch)))
        }
    }
}

fn need_upload(
    kv: &dyn KvRead,
    bucket: &str,
    upload_id: &str,
) -> Result<Result<MultipartUpload, MetaError>, KvError> {
    Ok(read::<MultipartUpload>(kv, &upload_key(bucket, upload_id))?.ok_or_else(|| {
        MetaError::NoSuchUpload { bucket: bucket.into(), upload_id: upload_id.into() }
    }))
}

fn drop_upload(
    ov: &mut Overlay<'_>,
    bucket: &str,
    upload_id: &str,
    now_ms: u64,
    freed: &mut Freed,
) -> Result<(), KvError> {
    let prefix = parts_prefix(bucket, upload_id);
    let end = prefix_end(&prefix);
    let mut parts = Vec::new();
    ov.range(&prefix, end.as_deref(), &mut |k, v| {
        parts.push((k.to_vec(), dec::<PartRecord>(k, v)?));
        Ok(true)
    })?;
    for (k, p) in parts {
        drop_refs(ov, &p.chunks, now_ms, freed)?;
        ov.del(k);
    }
    ov.del(upload_key(bucket, upload_id));
    Ok(())
}

/// Counts on each draining node a committed record names
/// ([`DrainingNode::referenced`]).
fn touch_draining(
    ov: &mut Overlay<'_>,
    chunks: &[ChunkLayout],
    now_ms: u64,
) -> Result<(), KvError> {
    let Some(mut draining) = read::<Vec<DrainingNode>>(ov, DRAINING_KEY)? else {
        return Ok(());
    };
    let mut touched = false;
    for d in &mut draining {
        if chunks.iter().any(|c| c.nodes.contains(&d.id)) {
            d.referenced += 1;
            d.referenced_ms = now_ms;
            touched = true;
        }
    }
    if touched {
        ov.put(DRAINING_KEY.to_vec(), &draining);
    }
    Ok(())
}

/// Chunks a command freed, grouped by owner.
#[derive(Default)]
struct Freed(Vec<GarbageRecord>);

impl Freed {
    fn reply(self, replaced: Option<u128>) -> Reply {
        Reply::Freed { replaced, freed: self.0 }
    }
}

/// Adds one reference per chunk of a record being committed. Every chunk
/// must be referenced already or belong to an owner being written;
/// otherwise its shards may be deleted already and the record would point
/// at nothing.
fn take_refs(
    ov: &mut Overlay<'_>,
    chunks: &[ChunkLayout],
) -> Result<Result<(), MetaError>, KvError> {
    for c in chunks {
        if ov.get(&ref_key(c.object, c.chunk))?.is_none()
            && ov.get(&intent_key(c.object))?.is_none()
        {
            return Ok(Err(MetaError::ChunksGone(c.object)));
        }
    }
    // One at a time through the overlay: a record may name a chunk twice.
    for c in chunks {
        let rk = ref_key(c.object, c.chunk);
        let n = read::<u64>(ov, &rk)?.unwrap_or(0);
        ov.put(rk, &(n + 1));
    }
    // The write committed: its owners are referenced, no longer pending.
    for c in chunks {
        ov.del(intent_key(c.object));
    }
    Ok(Ok(()))
}

/// Drops one reference per chunk of a record going away; chunks left with
/// none become garbage.
fn drop_refs(
    ov: &mut Overlay<'_>,
    chunks: &[ChunkLayout],
    now_ms: u64,
    freed: &mut Freed,
) -> Result<(), KvError> {
    for c in chunks {
        let rk = ref_key(c.object, c.chunk);
        let n = read::<u64>(ov, &rk)?.unwrap_or(0);
        if n > 1 {
            ov.put(rk, &(n - 1));
            continue;
        }
        ov.del(rk);
        let gk = garbage_key(c.object);
        let mut g = read::<GarbageRecord>(ov, &gk)?.unwrap_or(GarbageRecord {
            owner: c.object,
            chunks: Vec::new(),
            since_ms: now_ms,
        });
        if !g.chunks.iter().any(|x| x.chunk == c.chunk) {
            g.chunks.push(c.clone());
        }
        ov.put(gk, &g);
        match freed.0.iter_mut().find(|f| f.owner == c.object) {
            Some(f) => f.chunks.push(c.clone()),
            None => freed.0.push(GarbageRecord {
                owner: c.object,
                chunks: vec![c.clone()],
                since_ms: now_ms,
            }),
        }
    }
    Ok(())
}

/// Answers a query from `kv`. A corrupt record becomes
/// [`MetaError::Corrupt`] naming it; the node keeps serving the rest.
pub fn query(kv: &dyn KvRead, q: &Query) -> MetaResult {
    query_inner(kv, q).unwrap_or_else(|e| match e {
        KvError::Corrupt { .. } => Err(MetaError::Corrupt(e.to_string())),
        KvError::Io(m) => Err(MetaError::Internal(m)),
    })
}

fn scan<T: DeserializeOwned>(
    kv: &dyn KvRead,
    prefix: &[u8],
    limit: usize,
) -> Result<Vec<T>, KvError> {
    scan_from(kv, prefix, prefix, limit)
}

/// Up to `limit` records under `prefix` from key `from` on, in key order.
fn scan_from<T: DeserializeOwned>(
    kv: &dyn KvRead,
    prefix: &[u8],
    from: &[u8],
    limit: usize,
) -> Result<Vec<T>, KvError> {
    let end = prefix_end(prefix);
    let mut out = Vec::new();
    kv.range(from, end.as_deref(), &mut |k, v| {
        out.push(dec(k, v)?);
        Ok(out.len() < limit)
    })?;
    Ok(out)
}

/// Records under `prefix` whose owner id (u128 BE after the prefix) is
/// greater than `after`, in owner order.
fn scan_after<T: DeserializeOwned>(
    kv: &dyn KvRead,
    prefix: &[u8],
    after: Option<u128>,
    limit: usize,
) -> Result<Vec<T>, KvError> {
    let Some(after) = after else { return scan(kv, prefix, limit) };
    let Some(next) = after.checked_add(1) else { return Ok(Vec::new()) };
    scan_from(kv, prefix, &cat(&[prefix, &next.to_be_bytes()]), limit)
}

fn query_inner(kv: &dyn KvRead, q: &Query) -> Result<MetaResult, KvError> {
    Ok(match q {
        Query::GetBucket { name } => need_bucket(kv, name)?.map(Reply::Bucket),
        Query::ListBuckets => Ok(Reply::Buckets(scan(kv, b"b/", usize::MAX)?)),
        Query::GetObject { bucket, key } => match read(kv, &object_key(bucket, key))? {
            Some(o) => Ok(Reply::Object(o)),
            None => {
                fail!(need_bucket(kv, bucket)?);
                Err(MetaError::NoSuchKey { bucket: bucket.clone(), key: key.clone() })
            }
        },
        Query::List(req) => list(kv, req)?.map(Reply::Page),
        Query::ListUploads { bucket, prefix } => {
            fail!(need_bucket(kv, bucket)?);
            Ok(Reply::Uploads(uploads_page(kv, bucket, prefix, None, MAX_KEYS)?))
        }
        Query::UploadsPage { bucket, prefix, after, limit } => {
            fail!(need_bucket(kv, bucket)?);
            Ok(Reply::Uploads(uploads_page(kv, bucket, prefix, after.as_ref(), *limit)?))
        }
        Query::ListParts { bucket, upload_id } => {
            let u = fail!(need_upload(kv, bucket, upload_id)?);
            let parts: Vec<PartRecord> = scan(kv, &parts_prefix(bucket, upload_id), usize::MAX)?;
            Ok(Reply::Parts(u, parts))
        }
        Query::StorageClasses => {
            Ok(Reply::StorageClasses(scan::<StorageClassRecord>(kv, b"c/", usize::MAX)?))
        }
        Query::Ring => Ok(Reply::Ring(read(kv, RING_KEY)?)),
        Query::Draining => Ok(Reply::Draining(read(kv, DRAINING_KEY)?.unwrap_or_default())),
        Query::Garbage { limit } => {
            let limit = (*limit).clamp(1, MAX_KEYS) as usize;
            Ok(Reply::Garbage { freed: scan(kv, b"g/", limit)?, intents: scan(kv, b"i/", limit)? })
        }
        Query::GarbagePage { after_freed, after_intent, limit } => {
            let limit = (*limit).clamp(1, MAX_KEYS) as usize;
            Ok(Reply::Garbage {
                freed: scan_after(kv, b"g/", *after_freed, limit)?,
                intents: scan_after(kv, b"i/", *after_intent, limit)?,
            })
        }
        Query::GetUpload { bucket, upload_id } => {
            need_upload(kv, bucket, upload_id)?.map(|u| Reply::Parts(u, Vec::new()))
        }
        Query::DegradedPage { after, limit } => {
            let limit = (*limit).clamp(1, MAX_KEYS) as usize;
            // Strictly after (bucket, key): its key with a NUL appended is
            // the first key past it.
            let from = match after {
                Some((b, k)) => cat(&[&degraded_key(b, k), b"\0"]),
                None => DEGRADED_PREFIX.to_vec(),
            };
            Ok(Reply::Degraded(scan_from(kv, DEGRADED_PREFIX, &from, limit)?))
        }
    })
}

/// Uploads of `bucket` under `prefix` in (key, upload id) order, after
/// `after`, at most `limit` (1..=1000). Uploads are stored by id, so every
/// page scans the bucket's open uploads.
fn uploads_page(
    kv: &dyn KvRead,
    bucket: &str,
    prefix: &str,
    after: Option<&(String, String)>,
    limit: u32,
) -> Result<Vec<MultipartUpload>, KvError> {
    let mut ups: Vec<MultipartUpload> = scan(kv, &uploads_prefix(bucket), usize::MAX)?;
    let order =
        |a: (&str, &str), b: (&str, &str)| meta::key_order(a.0, b.0).then_with(|| a.1.cmp(b.1));
    ups.retain(|u| {
        u.key.starts_with(prefix)
            && after.is_none_or(|(k, id)| {
                order((&u.key, &u.upload_id), (k, id)) == std::cmp::Ordering::Greater
            })
    });
    ups.sort_by(|a, b| order((&a.key, &a.upload_id), (&b.key, &b.upload_id)));
    ups.truncate(limit.clamp(1, MAX_KEYS) as usize);
    Ok(ups)
}

/// One listing page: keys after the start position, rolled up at the
/// delimiter, at most `max_keys` keys plus prefixes. The continuation
/// token is the next start position (inclusive) relative to the bucket.
pub fn list(kv: &dyn KvRead, req: &ListRequest) -> Result<Result<ListPage, MetaError>, KvError> {
    fail!(need_bucket(kv, &req.bucket)?);
    let max = match req.max_keys {
        0 => MAX_KEYS,
        n => n.min(MAX_KEYS),
    } as usize;
    let delim = req.delimiter.as_deref().filter(|d| !d.is_empty());
    let base = objects_prefix(&req.bucket);
    let lo = cat(&[&base, req.prefix.as_bytes()]);
    let hi = prefix_end(&lo).expect("object keys end before 0xFF");
    let mut start = lo.clone();
    if let Some(sa) = &req.start_after {
        start = start.max(cat(&[&base, sa.as_bytes(), b"\0"]));
    }
    if let Some(t) = &req.continuation {
        start = start.max(cat(&[&base, t]));
    }
    let mut page = ListPage::default();
    let mut count = 0;
    while count < max && start < hi {
        // Scan until the page is full or a common prefix needs a skip.
        let mut skip_to = None;
        let mut last_key = None;
        kv.range(&start, Some(&hi), &mut |k, v| {
            let key = std::str::from_utf8(&k[base.len()..]).map_err(|_| KvError::Corrupt {
                key: show_key(k),
                source: CodecError::Malformed("object key is not UTF-8".into()),
            })?;
            if let Some(d) = delim
                && let Some(pos) = key[req.prefix.len()..].find(d)
            {
                let cp = &key[..req.prefix.len() + pos + d.len()];
                page.common_prefixes.push(cp.to_string());
                count += 1;
                skip_to = Some(prefix_end(&cat(&[&base, cp.as_bytes()])).expect("bounded"));
                return Ok(false);
            }
            let o: ObjectRecord = dec(k, v)?;
            page.objects.push(ListEntry {
                key: key.to_string(),
                size: o.size,
                etag: o.etag,
                modified_ms: o.modified_ms,
                storage_class: o.storage_class,
            });
            count += 1;
            last_key = Some(k.to_vec());
            Ok(count < max)
        })?;
        match (skip_to, last_key) {
            (Some(s), _) => start = s,
            (None, Some(k)) => start = cat(&[&k, b"\0"]),
            (None, None) => {
                start = hi.clone();
            }
        }
    }
    if start < hi {
        // Is anything left? One more probe decides the continuation.
        let mut more = false;
        kv.range(&start, Some(&hi), &mut |_, _| {
            more = true;
            Ok(false)
        })?;
        if more {
            page.next_continuation = Some(start[base.len()..].to_vec());
        }
    }
    Ok(Ok(page))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use predastore_core::meta::IntentRecord;

    /// An in-memory [`KvRead`] for unit tests.
    #[derive(Default)]
    pub struct MemKv(pub BTreeMap<Vec<u8>, Vec<u8>>);

    impl KvRead for MemKv {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
            Ok(self.0.get(key).cloned())
        }
        fn range(&self, from: &[u8], until: Option<&[u8]>, f: Visit<'_>) -> Result<(), KvError> {
            use std::ops::Bound;
            let hi = until.map_or(Bound::Unbounded, Bound::Excluded);
            for (k, v) in self.0.range::<[u8], _>((Bound::Included(from), hi)) {
                if !f(k, v)? {
                    break;
                }
            }
            Ok(())
        }
    }

    impl MemKv {
        pub fn apply(&mut self, cmds: Vec<(u128, u64, Command)>) -> Vec<MetaResult> {
            let batch = Batch(
                cmds.into_iter()
                    .map(|(request_id, time_ms, command)| Proposal { request_id, time_ms, command })
                    .collect(),
            );
            let mut ov = Overlay::new(self);
            let r = apply_batch(&mut ov, &batch).unwrap();
            let writes = std::mem::take(&mut ov.writes);
            for (k, v) in writes {
                match v {
                    Some(v) => self.0.insert(k, v),
                    None => self.0.remove(&k),
                };
            }
            r.0
        }
    }

    pub fn bucket(name: &str) -> Command {
        Command::CreateBucket(BucketRecord {
            name: name.into(),
            owner: "o".into(),
            created_ms: 1,
            storage_class: "STANDARD".into(),
            public: false,
            policy: None,
        })
    }

    pub fn record(v: u128) -> ObjectRecord {
        ObjectRecord {
            version_id: v,
            size: 3,
            etag: "e".into(),
            content_type: None,
            user_metadata: BTreeMap::new(),
            checksums: BTreeMap::new(),
            storage_class: "STANDARD".into(),
            modified_ms: 1,
            chunks: Vec::new(),
            inline: Some(b"abc".to_vec()),
        }
    }

    fn put(key: &str, v: u128, expect: Precondition) -> Command {
        Command::PutObject { bucket: "bk1".into(), key: key.into(), record: record(v), expect }
    }

    #[test]
    fn a_bucket_keeps_the_default_class_set_for_it() {
        let mut kv = MemKv::default();
        let set = |name: &str| Command::SetBucketClass {
            name: name.into(),
            storage_class: "COLD".into(),
        };
        let r = kv.apply(vec![(1, 10, bucket("bk1")), (2, 10, set("bk1")), (3, 10, set("nope"))]);
        assert_eq!(r[1], Ok(Reply::Done));
        assert_eq!(r[2], Err(MetaError::NoSuchBucket("nope".into())));
        match query(&kv, &Query::GetBucket { name: "bk1".into() }).unwrap() {
            Reply::Bucket(b) => assert_eq!((b.storage_class.as_str(), b.public), ("COLD", false)),
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn the_degraded_index_follows_the_object_version() {
        let mut kv = MemKv::default();
        let mark = |key: &str, v: u128, survives: u8| {
            Command::MarkDegraded(DegradedRecord {
                bucket: "bk1".into(),
                key: key.into(),
                version_id: v,
                survives,
                since_ms: 5,
            })
        };
        let page = |kv: &MemKv, after: Option<(&str, &str)>, limit: u32| -> Vec<(String, u128)> {
            let after = after.map(|(b, k)| (b.to_string(), k.to_string()));
            match query(kv, &Query::DegradedPage { after, limit }).unwrap() {
                Reply::Degraded(d) => d.into_iter().map(|d| (d.key, d.version_id)).collect(),
                r => panic!("{r:?}"),
            }
        };
        kv.apply(vec![
            (1, 10, bucket("bk1")),
            (2, 10, put("a", 100, Precondition::None)),
            (3, 10, put("b", 200, Precondition::None)),
            (4, 10, put("c", 300, Precondition::None)),
            (5, 10, mark("a", 100, 0)),
            (6, 10, mark("b", 200, 0)),
            (7, 10, mark("c", 299, 0)), // stale: c is at 300
            (8, 10, mark("zz", 1, 0)),  // no such object
        ]);
        assert_eq!(page(&kv, None, 10), vec![("a".into(), 100), ("b".into(), 200)]);
        assert_eq!(page(&kv, Some(("bk1", "a")), 10), vec![("b".into(), 200)]);
        assert_eq!(page(&kv, None, 1), vec![("a".into(), 100)]);
        // Replacing or deleting an object drops its entry; so does a clear
        // naming its version, and only that.
        kv.apply(vec![
            (9, 10, put("a", 101, Precondition::None)),
            (
                10,
                10,
                Command::ClearDegraded { bucket: "bk1".into(), key: "b".into(), version_id: 1 },
            ),
        ]);
        assert_eq!(page(&kv, None, 10), vec![("b".into(), 200)]);
        kv.apply(vec![(
            11,
            10,
            Command::ClearDegraded { bucket: "bk1".into(), key: "b".into(), version_id: 200 },
        )]);
        assert!(page(&kv, None, 10).is_empty());
        kv.apply(vec![(12, 10, mark("c", 300, 1))]);
        kv.apply(vec![(
            13,
            10,
            Command::DeleteObject {
                bucket: "bk1".into(),
                key: "c".into(),
                expect: Precondition::None,
            },
        )]);
        assert!(page(&kv, None, 10).is_empty());
    }

    #[test]
    fn cas_and_dedup() {
        let mut kv = MemKv::default();
        let r = kv.apply(vec![
            (1, 10, bucket("bk1")),
            (2, 10, put("a", 100, Precondition::Absent)),
            (3, 10, put("a", 101, Precondition::Absent)),
            (4, 10, put("a", 102, Precondition::VersionIs(100))),
        ]);
        assert_eq!(r[0], Ok(Reply::Done));
        assert_eq!(r[1], Ok(Reply::Freed { replaced: None, freed: vec![] }));
        assert!(matches!(r[2], Err(MetaError::PreconditionFailed { current: Some(100), .. })));
        assert_eq!(r[3], Ok(Reply::Freed { replaced: Some(100), freed: vec![] }));
        // A retried request id returns its first outcome and changes nothing.
        let again = kv.apply(vec![(2, 11, put("a", 100, Precondition::Absent))]);
        assert_eq!(again[0], Ok(Reply::Freed { replaced: None, freed: vec![] }));
        let got = query(&kv, &Query::GetObject { bucket: "bk1".into(), key: "a".into() });
        assert_eq!(got.unwrap(), Reply::Object(record(102)));
        // Past the TTL the id is forgotten.
        kv.apply(vec![(9, 10 + DEDUP_TTL_MS + 1, Command::Noop)]);
        assert!(!kv.0.contains_key(&dedup_key(2)));
        assert!(kv.0.contains_key(&dedup_key(9)));
    }

    fn chunk(owner: u128, n: u32) -> ChunkLayout {
        ChunkLayout {
            object: owner,
            chunk: n,
            len: 10,
            data_shards: 2,
            parity_shards: 1,
            shard_len: 5,
            nodes: vec![1, 2, 3],
            ring_epoch: 1,
            content_crc: None,
        }
    }

    fn chunked(v: u128, chunks: Vec<ChunkLayout>) -> ObjectRecord {
        ObjectRecord { chunks, inline: None, ..record(v) }
    }

    fn intent(owner: u128) -> Command {
        Command::RecordIntent(IntentRecord {
            owner,
            bucket: "bk1".into(),
            key: "k".into(),
            started_ms: 5,
        })
    }

    fn freed(r: &MetaResult) -> Vec<(u128, Vec<u32>)> {
        match r {
            Ok(Reply::Freed { freed, .. }) => freed
                .iter()
                .map(|g| (g.owner, g.chunks.iter().map(|c| c.chunk).collect()))
                .collect(),
            other => panic!("not Freed: {other:?}"),
        }
    }

    #[test]
    fn chunks_are_freed_when_their_last_reference_goes() {
        let mut kv = MemKv::default();
        let put_rec = |key: &str, rec: ObjectRecord| Command::PutObject {
            bucket: "bk1".into(),
            key: key.into(),
            record: rec,
            expect: Precondition::None,
        };
        let del = |key: &str| Command::DeleteObject {
            bucket: "bk1".into(),
            key: key.into(),
            expect: Precondition::None,
        };
        let two = vec![chunk(7, 0), chunk(7, 1)];
        let r = kv.apply(vec![
            (1, 10, bucket("bk1")),
            // No intent, no reference: the record would dangle.
            (2, 10, put_rec("a", chunked(7, two.clone()))),
            (3, 10, intent(7)),
            (4, 10, put_rec("a", chunked(7, two.clone()))),
            // A copy by reference, naming chunk 1 twice.
            (5, 10, put_rec("b", chunked(8, vec![chunk(7, 1), chunk(7, 1)]))),
        ]);
        assert_eq!(r[1], Err(MetaError::ChunksGone(7)));
        assert_eq!(freed(&r[3]), vec![]);
        assert_eq!(freed(&r[4]), vec![]);
        assert!(!kv.0.contains_key(&intent_key(7)), "the commit ends the intent");
        // Replacing a: chunk 0 goes, chunk 1 is still b's.
        let r = kv.apply(vec![(6, 20, put_rec("a", record(9)))]);
        assert_eq!(freed(&r[0]), vec![(7, vec![0])]);
        // Chunk 0 is gone: nothing may reference it again.
        let r = kv.apply(vec![(7, 20, put_rec("c", chunked(10, vec![chunk(7, 0)])))]);
        assert_eq!(r[0], Err(MetaError::ChunksGone(7)));
        let r = kv.apply(vec![(8, 30, del("b"))]);
        assert_eq!(freed(&r[0]), vec![(7, vec![1])]);
        let g = query(&kv, &Query::Garbage { limit: 10 }).unwrap();
        let Reply::Garbage { freed: g, intents } = g else { panic!() };
        assert!(intents.is_empty());
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].chunks.iter().map(|c| c.chunk).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(g[0].since_ms, 20, "stamped when first freed");
        kv.apply(vec![(9, 40, Command::ForgetGarbage { chunks: vec![(7, 0)], owners: vec![] })]);
        let Reply::Garbage { freed: g, .. } = query(&kv, &Query::Garbage { limit: 10 }).unwrap()
        else {
            panic!()
        };
        assert_eq!(g[0].chunks.iter().map(|c| c.chunk).collect::<Vec<_>>(), vec![1]);
        kv.apply(vec![(10, 40, Command::ForgetGarbage { chunks: vec![(7, 1)], owners: vec![] })]);
        assert!(!kv.0.keys().any(|k| k.starts_with(b"g/") || k.starts_with(b"x/")));
        // Pages of garbage by owner id.
        let r = kv.apply(
            (20..25u128)
                .flat_map(|o| {
                    [
                        (100 + o * 2, 50, intent(o)),
                        (101 + o * 2, 50, Command::AbandonIntent { owner: o }),
                    ]
                })
                .collect(),
        );
        assert!(r.iter().all(|r| r.is_ok()));
        let page = |after: Option<u128>| {
            let q = Query::GarbagePage { after_freed: after, after_intent: None, limit: 2 };
            let Reply::Garbage { freed, .. } = query(&kv, &q).unwrap() else { panic!() };
            freed.iter().map(|g| g.owner).collect::<Vec<_>>()
        };
        assert_eq!(page(None), vec![20, 21]);
        assert_eq!(page(Some(21)), vec![22, 23]);
        assert_eq!(page(Some(23)), vec![24]);
        assert_eq!(page(Some(24)), Vec::<u128>::new());
    }

    /// The gateway's repair protocol (gateway/src/backend/distributed/
    /// repair.rs): the record re-put with the same chunks under a new
    /// version id, by compare-and-set on the version it read.
    #[test]
    fn a_repair_recommits_the_same_chunks_and_loses_any_race() {
        let mut kv = MemKv::default();
        let put = |key: &str, rec: ObjectRecord, expect| Command::PutObject {
            bucket: "bk1".into(),
            key: key.into(),
            record: rec,
            expect,
        };
        let two = vec![chunk(7, 0), chunk(7, 1)];
        kv.apply(vec![
            (1, 10, bucket("bk1")),
            (2, 10, intent(7)),
            (3, 10, put("a", chunked(7, two.clone()), Precondition::Absent)),
        ]);
        // Committed in place: nothing freed, still one reference a chunk.
        let r =
            kv.apply(vec![(4, 20, put("a", chunked(8, two.clone()), Precondition::VersionIs(7)))]);
        assert_eq!(r[0], Ok(Reply::Freed { replaced: Some(7), freed: vec![] }));
        assert_eq!(read::<u64>(&kv, &ref_key(7, 0)).unwrap(), Some(1));
        assert_eq!(read::<u64>(&kv, &ref_key(7, 1)).unwrap(), Some(1));
        // A tag change (new version) lands first: the repair that read
        // version 8 fails instead of putting the old tags back.
        let r = kv.apply(vec![
            (5, 30, put("a", chunked(9, two.clone()), Precondition::VersionIs(8))),
            (6, 30, put("a", chunked(10, two), Precondition::VersionIs(8))),
        ]);
        assert!(r[0].is_ok());
        assert!(matches!(r[1], Err(MetaError::PreconditionFailed { current: Some(9), .. })));
        // A delete lands first: the chunks are freed as garbage (deleted
        // after the grace, every shard index, repaired ones included).
        let r = kv.apply(vec![(
            7,
            40,
            Command::DeleteObject {
                bucket: "bk1".into(),
                key: "a".into(),
                expect: Precondition::None,
            },
        )]);
        assert_eq!(freed(&r[0]), vec![(7, vec![0, 1])]);
        let r = kv.apply(vec![(
            8,
            40,
            put("a", chunked(11, vec![chunk(7, 0)]), Precondition::VersionIs(9)),
        )]);
        assert!(matches!(
            r[0],
            Err(MetaError::NoSuchKey { .. }) | Err(MetaError::PreconditionFailed { .. })
        ));
    }

    #[test]
    fn abandoned_intents_become_sweeps_and_parts_free_on_complete() {
        let mut kv = MemKv::default();
        let up = MultipartUpload {
            bucket: "bk1".into(),
            key: "k".into(),
            upload_id: "u1".into(),
            created_ms: 1,
            content_type: None,
            user_metadata: BTreeMap::new(),
            storage_class: "STANDARD".into(),
            owner: "o".into(),
        };
        let part = |n: u32, owner: u128| Command::PutPart {
            bucket: "bk1".into(),
            upload_id: "u1".into(),
            part: PartRecord {
                part_number: n,
                size: 10,
                etag: "e".into(),
                modified_ms: 1,
                chunks: vec![chunk(owner, 0)],
            },
        };
        let r = kv.apply(vec![
            (1, 10, bucket("bk1")),
            (2, 10, Command::CreateUpload(up)),
            (3, 10, intent(21)),
            (4, 10, part(1, 21)),
            (5, 10, intent(22)),
            (6, 10, part(2, 22)),
            (7, 10, intent(23)),
            // Part 2 again: the first upload of it is freed.
            (8, 10, part(2, 23)),
            (9, 10, intent(24)),
            (10, 10, Command::AbandonIntent { owner: 24 }),
            (11, 10, Command::AbandonIntent { owner: 21 }),
        ]);
        assert_eq!(freed(&r[7]), vec![(22, vec![0])]);
        assert_eq!(freed(&r[9]), vec![(24, vec![])], "unreferenced: swept whole");
        assert_eq!(freed(&r[10]), vec![], "referenced by part 1: nothing to sweep");
        // Complete with part 2 only: part 1's chunk is freed.
        let r = kv.apply(vec![(
            12,
            20,
            Command::CompleteUpload {
                bucket: "bk1".into(),
                upload_id: "u1".into(),
                record: chunked(30, vec![chunk(23, 0)]),
                expect: Precondition::None,
            },
        )]);
        assert_eq!(freed(&r[0]), vec![(21, vec![0])]);
        assert_eq!(kv.0.get(&ref_key(23, 0)).map(|v| meta::decode::<u64>(v).unwrap()), Some(1));
    }

    #[test]
    fn uploads_page_by_key_then_id_past_one_thousand() {
        let mut kv = MemKv::default();
        let up = |key: String, id: String| {
            Command::CreateUpload(MultipartUpload {
                bucket: "bk1".into(),
                key,
                upload_id: id,
                created_ms: 1,
                content_type: None,
                user_metadata: BTreeMap::new(),
                storage_class: "STANDARD".into(),
                owner: String::new(),
            })
        };
        let mut cmds = vec![(1, 1, bucket("bk1"))];
        // Ids in the reverse of key order: the page order is by key.
        for i in 0..1200u128 {
            cmds.push((2 + i, 1, up(format!("k{i:04}"), format!("{:04}", 1200 - i))));
        }
        cmds.push((5000, 1, up("k0005".into(), "0000".into())));
        cmds.push((5001, 1, up("other".into(), "9999".into())));
        assert!(kv.apply(cmds).iter().all(|r| r.is_ok()));
        let page = |after: Option<(&str, &str)>, limit| {
            let q = Query::UploadsPage {
                bucket: "bk1".into(),
                prefix: "k".into(),
                after: after.map(|(k, id)| (k.to_string(), id.to_string())),
                limit,
            };
            let Reply::Uploads(us) = query(&kv, &q).unwrap() else { panic!() };
            us.into_iter().map(|u| (u.key, u.upload_id)).collect::<Vec<_>>()
        };
        let first = page(None, 5000);
        assert_eq!(first.len(), 1000, "capped at 1000 a page");
        assert_eq!(first[5], ("k0005".to_string(), "0000".to_string()));
        assert_eq!(first[6], ("k0005".to_string(), "1195".to_string()));
        let (k, id) = first.last().unwrap().clone();
        let rest = page(Some((&k, &id)), 1000);
        assert_eq!(rest.len(), 201);
        assert_eq!(rest.last().unwrap().0, "k1199");
        // The marker is exclusive on (key, id): the second k0005 upload
        // comes after the first.
        assert_eq!(page(Some(("k0005", "0000")), 1)[0], ("k0005".to_string(), "1195".to_string()));
        assert_eq!(page(Some(("k0005", "")), 1)[0].1, "0000");
        let missing = Query::UploadsPage {
            bucket: "nope".into(),
            prefix: String::new(),
            after: None,
            limit: 10,
        };
        assert!(matches!(query(&kv, &missing), Err(MetaError::NoSuchBucket(_))));
    }

    #[test]
    fn buckets_uploads_and_ring() {
        let mut kv = MemKv::default();
        let up = MultipartUpload {
            bucket: "bk1".into(),
            key: "big".into(),
            upload_id: "u1".into(),
            created_ms: 1,
            content_type: None,
            user_metadata: BTreeMap::new(),
            storage_class: "STANDARD".into(),
            owner: "o".into(),
        };
        let part = PartRecord {
            part_number: 1,
            size: 5,
            etag: "p".into(),
            modified_ms: 1,
            chunks: Vec::new(),
        };
        let r = kv.apply(vec![
            (1, 1, bucket("bk1")),
            (2, 1, bucket("bk1")),
            (3, 1, Command::CreateUpload(up.clone())),
            (4, 1, Command::PutPart { bucket: "bk1".into(), upload_id: "u1".into(), part }),
            (5, 1, Command::DeleteBucket { name: "bk1".into() }),
            (
                6,
                1,
                Command::CompleteUpload {
                    bucket: "bk1".into(),
                    upload_id: "u1".into(),
                    record: record(7),
                    expect: Precondition::None,
                },
            ),
            (
                7,
                1,
                Command::DeleteObject {
                    bucket: "bk1".into(),
                    key: "big".into(),
                    expect: Precondition::VersionIs(7),
                },
            ),
            (8, 1, Command::DeleteBucket { name: "bk1".into() }),
        ]);
        assert_eq!(r[1], Err(MetaError::BucketExists("bk1".into())));
        assert_eq!(r[4], Err(MetaError::BucketNotEmpty("bk1".into())));
        assert_eq!(r[5], Ok(Reply::Freed { replaced: None, freed: vec![] }));
        assert_eq!(r[6], Ok(Reply::Freed { replaced: Some(7), freed: vec![] }));
        assert_eq!(r[7], Ok(Reply::Done));
        assert!(kv.0.keys().all(|k| k.starts_with(b"d/") || k.starts_with(b"t/")));
        let m = |id| meta::RingMember { id, addr: format!("n{id}"), zone: None };
        let r = kv.apply(vec![
            (10, 1, Command::SetRing { members: vec![m(2), m(1)], virtual_nodes: 8 }),
            (11, 1, Command::SetRing { members: vec![m(1), m(2)], virtual_nodes: 8 }),
            (12, 1, Command::SetRing { members: vec![m(1)], virtual_nodes: 8 }),
        ]);
        assert_eq!(
            r,
            vec![Ok(Reply::RingEpoch(1)), Ok(Reply::RingEpoch(1)), Ok(Reply::RingEpoch(2))]
        );
    }

    #[test]
    fn draining_bumps_the_epoch_and_notes_commits_that_still_name_the_node() {
        let mut kv = MemKv::default();
        let m = |id| meta::RingMember { id, addr: format!("n{id}"), zone: None };
        let draining = |kv: &MemKv| match query(kv, &Query::Draining) {
            Ok(Reply::Draining(d)) => d,
            other => panic!("{other:?}"),
        };
        let r = kv.apply(vec![
            (1, 1, Command::SetDraining { nodes: vec![3] }),
            (2, 1, bucket("bk1")),
            (3, 2, Command::SetRing { members: vec![m(1), m(2), m(3), m(4)], virtual_nodes: 8 }),
            // Ids outside the ring are ignored.
            (4, 20, Command::SetDraining { nodes: vec![3, 9] }),
            (5, 30, Command::SetDraining { nodes: vec![3] }),
        ]);
        assert!(matches!(r[0], Err(MetaError::Invalid(_))), "no ring yet: {:?}", r[0]);
        assert_eq!(
            r[2..],
            [Ok(Reply::RingEpoch(1)), Ok(Reply::RingEpoch(2)), Ok(Reply::RingEpoch(2))]
        );
        assert_eq!(
            draining(&kv),
            [DrainingNode { id: 3, since_ms: 20, referenced: 0, referenced_ms: 0 }]
        );
        // A commit naming node 3 is noted; one that does not is not.
        let mut away = chunk(8, 0);
        away.nodes = vec![1, 2, 4];
        kv.apply(vec![
            (6, 40, intent(7)),
            (
                7,
                41,
                Command::PutObject {
                    bucket: "bk1".into(),
                    key: "a".into(),
                    record: chunked(1, vec![chunk(7, 0)]),
                    expect: Precondition::None,
                },
            ),
            (8, 50, intent(8)),
            (
                9,
                51,
                Command::PutObject {
                    bucket: "bk1".into(),
                    key: "b".into(),
                    record: chunked(2, vec![away]),
                    expect: Precondition::None,
                },
            ),
        ]);
        assert_eq!(
            draining(&kv),
            [DrainingNode { id: 3, since_ms: 20, referenced: 1, referenced_ms: 41 }]
        );
        // Draining everything would leave nowhere to write.
        let r = kv.apply(vec![(10, 60, Command::SetDraining { nodes: vec![1, 2, 3, 4] })]);
        assert!(matches!(r[0], Err(MetaError::Invalid(_))));
        // With an RS(2,1) class, neither would leaving fewer than three.
        let class = StorageClassRecord {
            name: "STANDARD".into(),
            data_shards: 2,
            parity_shards: 1,
            chunk_size: 1 << 20,
        };
        let mut rs21 = MemKv::default();
        let r = rs21.apply(vec![
            (20, 60, Command::PutStorageClass(class)),
            (21, 60, Command::SetRing { members: vec![m(1), m(2), m(3), m(4)], virtual_nodes: 8 }),
            (22, 60, Command::SetDraining { nodes: vec![2, 3] }),
            (23, 60, Command::SetDraining { nodes: vec![3] }),
        ]);
        assert!(
            matches!(&r[2], Err(MetaError::Invalid(m)) if m.contains("fewer than the 3")),
            "{r:?}"
        );
        assert_eq!(r[3], Ok(Reply::RingEpoch(2)));
        // Leaving the ring ends draining; calling it off bumps the epoch.
        let r = kv.apply(vec![(
            11,
            70,
            Command::SetRing { members: vec![m(1), m(2), m(4)], virtual_nodes: 8 },
        )]);
        assert_eq!(r, [Ok(Reply::RingEpoch(3))]);
        assert_eq!(draining(&kv), []);
        kv.apply(vec![(12, 80, Command::SetDraining { nodes: vec![4] })]);
        let r = kv.apply(vec![(13, 90, Command::SetDraining { nodes: vec![] })]);
        assert_eq!(r, [Ok(Reply::RingEpoch(5))]);
    }

    #[test]
    fn list_rolls_up_and_paginates() {
        let mut kv = MemKv::default();
        let mut cmds = vec![(1, 1, bucket("bk1"))];
        for (i, k) in ["a", "a/b", "a/c", "b", "c/d/e", "c/x"].iter().enumerate() {
            cmds.push((10 + i as u128, 1, put(k, i as u128, Precondition::None)));
        }
        kv.apply(cmds);
        let req = |cont: Option<Vec<u8>>| ListRequest {
            bucket: "bk1".into(),
            prefix: String::new(),
            delimiter: Some("/".into()),
            start_after: None,
            continuation: cont,
            max_keys: 2,
        };
        let p1 = list(&kv, &req(None)).unwrap().unwrap();
        assert_eq!(p1.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["a"]);
        assert_eq!(p1.common_prefixes, ["a/"]);
        let p2 = list(&kv, &req(p1.next_continuation)).unwrap().unwrap();
        assert_eq!(p2.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["b"]);
        assert_eq!(p2.common_prefixes, ["c/"]);
        assert_eq!(p2.next_continuation, None);
    }
}
