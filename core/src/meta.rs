//! Metadata model of the cluster: the records the Raft state machine keeps
//! (buckets, object records, multipart uploads and parts, storage classes,
//! the committed ring), the commands that change them, the queries that
//! read them, and the typed errors both return.
//!
//! Gateways build [`Command`]s and [`Query`]s and send them with
//! [`crate::meta_client::MetaClient`]; nodes apply commands in Raft log order.
//!
//! # Encoding, version 2
//!
//! Every record stored by a node and every metadata message on the wire is
//! encoded with [`encode`]:
//!
//! ```text
//! offset size  field
//!      0    1  record version = 2 (1 is still read)
//!      1    N  postcard encoding of the value (serde, varint integers)
//!    1+N    4  CRC-32C of bytes 0..1+N, little-endian
//! ```
//!
//! Version 2 added [`ChunkLayout::content_crc`] (the end-to-end check of a
//! chunk's bytes); a version-1 record decodes with it `None`. Everything
//! else is laid out as in version 1. A node or gateway of version 1 cannot
//! read version-2 records: upgrade every process of a cluster before
//! writing with a new one (a rolling upgrade stalls replication to the old
//! nodes until they run the new build; nothing is lost).
//!
//! Postcard names enum variants by index, so a new command, query, reply
//! or error variant is only ever appended; a changed field layout is a new
//! record version, never an in-place edit. `node/tests/data/meta-*.bin`
//! are the stored samples.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::checksum::crc32c;

/// The record version this build writes.
pub const RECORD_VERSION: u8 = 2;
/// Most keys one listing page returns (S3's limit).
pub const MAX_KEYS: u32 = 1000;

/// Why bytes did not decode as a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Shorter than a version byte and a checksum.
    #[error("record truncated ({0} bytes)")]
    Truncated(usize),
    /// A record version this build does not know.
    #[error("unknown record version {0}")]
    UnknownVersion(u8),
    /// The bytes changed since they were written.
    #[error("record checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    /// The checksum holds but the payload is not this type.
    #[error("record does not decode: {0}")]
    Malformed(String),
}

/// Encodes `v` as a record of [`RECORD_VERSION`] (see the module docs).
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    out = postcard::to_extend(v, out).expect("postcard encoding into a Vec cannot fail");
    let crc = crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a record written by [`encode`], checking version and checksum.
pub fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, CodecError> {
    if b.len() < 5 {
        return Err(CodecError::Truncated(b.len()));
    }
    let (body, tail) = b.split_at(b.len() - 4);
    let stored = u32::from_le_bytes(tail.try_into().expect("4 bytes"));
    let computed = crc32c(body);
    if stored != computed {
        return Err(CodecError::Checksum { stored, computed });
    }
    match body[0] {
        v @ 1..=RECORD_VERSION => decoding_version(v, || {
            postcard::from_bytes(&body[1..]).map_err(|e| CodecError::Malformed(e.to_string()))
        }),
        v => Err(CodecError::UnknownVersion(v)),
    }
}

thread_local! {
    /// The version of the record [`decode`] is reading on this thread:
    /// postcard carries no field names, so a type whose layout changed
    /// between versions ([`ChunkLayout`]) asks which one it is reading.
    static DECODING: std::cell::Cell<u8> = const { std::cell::Cell::new(RECORD_VERSION) };
}

/// Runs `f` (a synchronous decode) with the record version set to `v`.
fn decoding_version<R>(v: u8, f: impl FnOnce() -> R) -> R {
    let before = DECODING.with(|d| d.replace(v));
    let r = f();
    DECODING.with(|d| d.set(before));
    r
}

/// Optional byte fields as bytes rather than sequences of `u8`: postcard
/// lays both out the same way (a length, then the bytes), so records do
/// not change, but a sequence is encoded and decoded one element at a
/// time — for a 1 MiB inline object, long enough in a debug build to miss
/// a Raft heartbeat's deadline on every try.
mod opt_bytes {
    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    struct Raw<'a>(&'a [u8]);

    impl serde::Serialize for Raw<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&Raw(b)),
            None => s.serialize_none(),
        }
    }

    struct Buf;

    impl<'de> Visitor<'de> for Buf {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }

    struct Opt;

    impl<'de> Visitor<'de> for Opt {
        type Value = Option<Vec<u8>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("optional bytes")
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_byte_buf(Buf).map(Some)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        d.deserialize_option(Opt)
    }
}

/// A bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    /// S3 bucket name.
    pub name: String,
    /// Access key id of the creator.
    pub owner: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Storage class of new objects unless a PUT names another.
    pub storage_class: String,
    /// Anonymous GET/HEAD allowed.
    pub public: bool,
    /// Bucket policy document (JSON), if any.
    pub policy: Option<String>,
}

/// Where one chunk of an object lives: its RS parameters and the node of
/// each shard (shard `i` on `nodes[i]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChunkLayout {
    /// Object id of the shards (the version id of the object or part that
    /// wrote them; multipart completion keeps each part's).
    pub object: u128,
    /// Chunk index within `object`.
    pub chunk: u32,
    /// Plain bytes in the chunk.
    pub len: u64,
    /// k.
    pub data_shards: u8,
    /// m.
    pub parity_shards: u8,
    /// Bytes per shard.
    pub shard_len: u64,
    /// Node id of each shard, in shard order.
    pub nodes: Vec<u64>,
    /// Ring epoch the placement was computed under.
    pub ring_epoch: u64,
    /// CRC-32C of the chunk's plain bytes, computed by the gateway before
    /// encoding: shard CRCs only cover bytes from the moment a node got
    /// them, so this is what catches bytes that were wrong before (gateway
    /// memory, a repair that rebuilt wrong bytes, a shard whose wrong
    /// bytes carry a valid CRC). `None`: written before record version 2.
    pub content_crc: Option<u32>,
}

/// Version 1 had no `content_crc`; version 2 appends it.
impl<'de> Deserialize<'de> for ChunkLayout {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, SeqAccess, Visitor};
        fn field<'de, A: SeqAccess<'de>, T: Deserialize<'de>>(
            s: &mut A,
            i: usize,
        ) -> Result<T, A::Error> {
            s.next_element()?.ok_or_else(|| A::Error::invalid_length(i, &"a chunk layout"))
        }
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = ChunkLayout;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a chunk layout")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<ChunkLayout, A::Error> {
                let object = field(&mut s, 0)?;
                let chunk = field(&mut s, 1)?;
                let len = field(&mut s, 2)?;
                let data_shards = field(&mut s, 3)?;
                let parity_shards = field(&mut s, 4)?;
                let shard_len = field(&mut s, 5)?;
                let nodes = field(&mut s, 6)?;
                let ring_epoch = field(&mut s, 7)?;
                let content_crc =
                    if DECODING.with(|d| d.get()) >= 2 { field(&mut s, 8)? } else { None };
                Ok(ChunkLayout {
                    object,
                    chunk,
                    len,
                    data_shards,
                    parity_shards,
                    shard_len,
                    nodes,
                    ring_epoch,
                    content_crc,
                })
            }
        }
        const FIELDS: &[&str] = &[
            "object",
            "chunk",
            "len",
            "data_shards",
            "parity_shards",
            "shard_len",
            "nodes",
            "ring_epoch",
            "content_crc",
        ];
        d.deserialize_struct("ChunkLayout", FIELDS, Fields)
    }
}

/// The current version of an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// Fresh id per PUT; compare-and-set compares it.
    pub version_id: u128,
    /// Bytes in the object.
    pub size: u64,
    /// S3 ETag (quoted form is the gateway's business).
    pub etag: String,
    /// Content-Type, if given.
    pub content_type: Option<String>,
    /// `x-amz-meta-*` pairs.
    pub user_metadata: BTreeMap<String, String>,
    /// Checksums by algorithm name (`crc32c`, `sha256`, ...), base64.
    pub checksums: BTreeMap<String, String>,
    /// Storage class name.
    pub storage_class: String,
    /// Last-Modified, milliseconds since the Unix epoch.
    pub modified_ms: u64,
    /// Chunks in order; empty when `inline` holds the data.
    pub chunks: Vec<ChunkLayout>,
    /// Small objects' bytes kept in the record itself.
    #[serde(with = "opt_bytes")]
    pub inline: Option<Vec<u8>>,
}

/// An open multipart upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultipartUpload {
    /// Bucket.
    pub bucket: String,
    /// Key the upload completes into.
    pub key: String,
    /// Upload id (chosen by the gateway, unique).
    pub upload_id: String,
    /// Initiation time, ms since the epoch.
    pub created_ms: u64,
    /// Content-Type for the final object.
    pub content_type: Option<String>,
    /// User metadata for the final object.
    pub user_metadata: BTreeMap<String, String>,
    /// Storage class for the final object.
    pub storage_class: String,
    /// Initiator's access key id.
    pub owner: String,
}

/// An uploaded part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    /// 1..=10000.
    pub part_number: u32,
    /// Bytes.
    pub size: u64,
    /// ETag of the part.
    pub etag: String,
    /// Upload time, ms since the epoch.
    pub modified_ms: u64,
    /// Where its chunks live.
    pub chunks: Vec<ChunkLayout>,
}

/// A storage class: erasure parameters and chunk size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageClassRecord {
    /// Name, e.g. `STANDARD`.
    pub name: String,
    /// k.
    pub data_shards: u8,
    /// m.
    pub parity_shards: u8,
    /// Bytes per chunk before encoding.
    pub chunk_size: u64,
}

/// A member of the committed ring.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RingMember {
    /// Node id.
    pub id: u64,
    /// QUIC address.
    pub addr: String,
    /// Failure domain.
    pub zone: Option<String>,
}

/// The committed ring: who holds shards, under which epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingRecord {
    /// Bumped by every change of `members` or `virtual_nodes`.
    pub epoch: u64,
    /// Members sorted by id.
    pub members: Vec<RingMember>,
    /// Points per member.
    pub virtual_nodes: u32,
}

/// A write in progress: the gateway commits one before it puts the first
/// shard of a new owner id (object version or multipart part), so shards of
/// a write whose gateway died are never leaked — the collector finds them
/// by owner id. Committing a record that references the owner drops it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentRecord {
    /// Owner id of the shards being written ([`ChunkLayout::object`]).
    pub owner: u128,
    /// Bucket written to.
    pub bucket: String,
    /// Key written to.
    pub key: String,
    /// When the write began or last renewed it (a running write renews
    /// its intent periodically), ms since the epoch (log time).
    pub started_ms: u64,
}

/// Shards no record references any more: their owner's reference count
/// fell to zero. The gateway that freed them deletes them at once; entries
/// stay here until every shard's delete succeeded, so a failed delete is
/// retried by the collector instead of leaking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GarbageRecord {
    /// Owner id of the shards.
    pub owner: u128,
    /// The chunks (and so shards) to delete.
    pub chunks: Vec<ChunkLayout>,
    /// When they became garbage, ms since the epoch (log time).
    pub since_ms: u64,
}

/// Condition a write of an object record must meet (compare-and-set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precondition {
    /// Unconditional.
    None,
    /// Only when no record exists (If-None-Match: *).
    Absent,
    /// Only when a record exists.
    Exists,
    /// Only when the current version is this one.
    VersionIs(u128),
}

/// A state change; applied in log order, deterministically, on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Creates a bucket; `BucketExists` if it does.
    CreateBucket(BucketRecord),
    /// Deletes an empty bucket.
    DeleteBucket { name: String },
    /// Sets the public flag and policy of a bucket.
    UpdateBucket { name: String, public: bool, policy: Option<String> },
    /// Writes the object record of `key`, if `expect` holds.
    PutObject { bucket: String, key: String, record: ObjectRecord, expect: Precondition },
    /// Removes the object record of `key`, if `expect` holds (absent keys
    /// succeed under [`Precondition::None`], as S3 does).
    DeleteObject { bucket: String, key: String, expect: Precondition },
    /// Opens a multipart upload.
    CreateUpload(MultipartUpload),
    /// Records a part (replacing one with the same number).
    PutPart { bucket: String, upload_id: String, part: PartRecord },
    /// Turns an upload into an object record and drops its parts.
    CompleteUpload { bucket: String, upload_id: String, record: ObjectRecord, expect: Precondition },
    /// Drops an upload and its parts.
    AbortUpload { bucket: String, upload_id: String },
    /// Creates or replaces a storage class.
    PutStorageClass(StorageClassRecord),
    /// Removes a storage class.
    DeleteStorageClass { name: String },
    /// Sets the ring members; the epoch grows when they differ.
    SetRing { members: Vec<RingMember>, virtual_nodes: u32 },
    /// Does nothing (benchmarks, liveness probes through the log).
    Noop,
    /// Announces a write of shards under a new owner id (see
    /// [`IntentRecord`]); replied with `Done`.
    RecordIntent(IntentRecord),
    /// Ends an intent whose write will not commit (it failed, or its
    /// gateway is gone). When no record references the owner, the owner
    /// becomes garbage to sweep (a [`GarbageRecord`] with no chunks: every
    /// shard of the owner, found by listing the nodes) and no later record
    /// may reference it. Replied with `Freed`.
    AbandonIntent { owner: u128 },
    /// Drops garbage entries once their shards are deleted: single chunks
    /// as `(owner, chunk)`, and whole owners after a sweep. Replied with
    /// `Done`.
    ForgetGarbage { chunks: Vec<(u128, u32)>, owners: Vec<u128> },
    /// Puts an object on the index of objects below full redundancy (if
    /// `version_id` is still its version); replaces its entry.
    MarkDegraded(DegradedRecord),
    /// Takes an object's entry off that index, if it names `version_id`.
    ClearDegraded { bucket: String, key: String, version_id: u128 },
    /// Sets the ring members that take no new shards (decommissioning);
    /// ids not in the ring are ignored. A change bumps the ring's epoch,
    /// since placement changes with it; replied with `RingEpoch`.
    SetDraining { nodes: Vec<u64> },
    /// Sets the storage class a bucket's new objects get when their PUT
    /// names none (a Bucket resource's `storageClass`); replied `Done`.
    SetBucketClass { name: String, storage_class: String },
}

impl Command {
    /// Commands only the metadata plane issues itself — the leader
    /// following the cluster file (ring, draining, storage classes). A
    /// peer without a member node's certificate may not send them: a
    /// gateway could otherwise reshape the ring or the codes.
    pub fn is_membership(&self) -> bool {
        matches!(
            self,
            Command::SetRing { .. }
                | Command::SetDraining { .. }
                | Command::PutStorageClass(_)
                | Command::DeleteStorageClass { .. }
        )
    }
}

/// A ring member being decommissioned: placement skips it and gateways
/// move its shards away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainingNode {
    /// Node id.
    pub id: u64,
    /// When draining began, ms since the Unix epoch (log time): writes
    /// that began before it may still place shards on the node.
    pub since_ms: u64,
    /// Commits of a record naming a shard on this node since it began
    /// draining. A pass over every record during which this did not change,
    /// and that found no shard left here, proves the node empty: a write
    /// or copy committing meanwhile would have changed it.
    pub referenced: u64,
    /// When the last of those committed, ms (log time; 0: none), for
    /// people watching.
    pub referenced_ms: u64,
}

/// An object a gateway found below full redundancy: the index repair
/// works from and `GET /admin/v1/repair` counts, so neither has to read
/// every record. Replacing or deleting the object drops its entry (the
/// new version's writer marks it again if it needs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DegradedRecord {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// The version found degraded.
    pub version_id: u128,
    /// Further shard losses its weakest chunk survives (0: none).
    pub survives: u8,
    /// When it was found, ms since the Unix epoch (the finder's clock).
    pub since_ms: u64,
}

/// One S3 listing request (ListObjectsV2 semantics).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRequest {
    /// Bucket.
    pub bucket: String,
    /// Only keys starting with this.
    pub prefix: String,
    /// Roll keys up to the first delimiter after the prefix.
    pub delimiter: Option<String>,
    /// Only keys after this one.
    pub start_after: Option<String>,
    /// Token from a previous page's `next_continuation`.
    pub continuation: Option<Vec<u8>>,
    /// Keys plus common prefixes per page, 1..=1000 (0 means 1000).
    pub max_keys: u32,
}

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntry {
    /// Key.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// ETag.
    pub etag: String,
    /// Last-Modified, ms.
    pub modified_ms: u64,
    /// Storage class.
    pub storage_class: String,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPage {
    /// Objects in key order.
    pub objects: Vec<ListEntry>,
    /// Rolled-up prefixes in order (each ends with the delimiter).
    pub common_prefixes: Vec<String>,
    /// Pass back as `continuation` for the next page; `None`: done.
    pub next_continuation: Option<Vec<u8>>,
}

/// A read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    /// One bucket.
    GetBucket { name: String },
    /// All buckets in name order.
    ListBuckets,
    /// The record of one object.
    GetObject { bucket: String, key: String },
    /// A listing page.
    List(ListRequest),
    /// Open uploads of a bucket, by (key, upload id).
    ListUploads { bucket: String, prefix: String },
    /// The upload and its parts in part order.
    ListParts { bucket: String, upload_id: String },
    /// Storage classes by name.
    StorageClasses,
    /// The committed ring.
    Ring,
    /// Garbage and intents to collect, by owner id, at most `limit` of
    /// each.
    Garbage { limit: u32 },
    /// One upload without its parts (answered `Parts(upload, [])`).
    GetUpload { bucket: String, upload_id: String },
    /// Garbage and intents with owner ids after the given ones (a page of
    /// [`Query::Garbage`]), at most `limit` of each.
    GarbagePage { after_freed: Option<u128>, after_intent: Option<u128>, limit: u32 },
    /// Open uploads of a bucket whose key starts with `prefix`, in (key,
    /// upload id) order, after `after` (exclusive), at most `limit`: a page
    /// of [`Query::ListUploads`], which stops at 1000.
    UploadsPage { bucket: String, prefix: String, after: Option<(String, String)>, limit: u32 },
    /// Up to `limit` entries of the degraded index after (bucket, key).
    DegradedPage { after: Option<(String, String)>, limit: u32 },
    /// The draining ring members.
    Draining,
}

/// Answer to a command or a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The command applied.
    Done,
    /// An object write applied; the version it replaced, if any.
    Replaced(Option<u128>),
    /// A ring write applied; the epoch now committed.
    RingEpoch(u64),
    /// One bucket.
    Bucket(BucketRecord),
    /// Buckets.
    Buckets(Vec<BucketRecord>),
    /// One object record.
    Object(ObjectRecord),
    /// A listing page.
    Page(ListPage),
    /// Open uploads.
    Uploads(Vec<MultipartUpload>),
    /// An upload and its parts.
    Parts(MultipartUpload, Vec<PartRecord>),
    /// Storage classes.
    StorageClasses(Vec<StorageClassRecord>),
    /// The ring (None before the first commit of one).
    Ring(Option<RingRecord>),
    /// A write that dropped references applied: the object version it
    /// replaced or removed (if any) and the chunks no record references
    /// any more (also kept as [`GarbageRecord`]s until forgotten). Sent
    /// for `PutObject`, `DeleteObject`, `PutPart`, `CompleteUpload` and
    /// `AbortUpload`.
    Freed { replaced: Option<u128>, freed: Vec<GarbageRecord> },
    /// What the collector should look at.
    Garbage { freed: Vec<GarbageRecord>, intents: Vec<IntentRecord> },
    /// A page of the degraded index, in (bucket, key) order.
    Degraded(Vec<DegradedRecord>),
    /// The draining ring members, by id.
    Draining(Vec<DrainingNode>),
}

/// Why a metadata operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MetaError {
    /// This node does not lead; writes and linearizable reads go to the
    /// leader named here (if known).
    #[error("node is not the Raft leader (leader: {leader:?} at {addr:?})")]
    NotLeader { leader: Option<u64>, addr: Option<String> },
    /// No quorum of voters is reachable: the write was not (or not known
    /// to be) committed. Retrying with the same request id is safe.
    #[error("no quorum: {0}")]
    NoQuorum(String),
    /// No such bucket.
    #[error("no such bucket {0}")]
    NoSuchBucket(String),
    /// The bucket exists.
    #[error("bucket {0} already exists")]
    BucketExists(String),
    /// The bucket still holds objects or uploads.
    #[error("bucket {0} is not empty")]
    BucketNotEmpty(String),
    /// No such object.
    #[error("no such key {bucket}/{key}")]
    NoSuchKey { bucket: String, key: String },
    /// No such multipart upload.
    #[error("no such upload {upload_id} in {bucket}")]
    NoSuchUpload { bucket: String, upload_id: String },
    /// A compare-and-set failed; `current` is the version found.
    #[error("precondition failed on {bucket}/{key} (current version {current:?})")]
    PreconditionFailed { bucket: String, key: String, current: Option<u128> },
    /// No such storage class.
    #[error("no such storage class {0}")]
    NoSuchStorageClass(String),
    /// The request is invalid.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A stored record failed its checksum or did not decode.
    #[error("corrupt metadata record: {0}")]
    Corrupt(String),
    /// The node is shutting down or its Raft group stopped.
    #[error("node unavailable: {0}")]
    Unavailable(String),
    /// Anything else on the node.
    #[error("internal error: {0}")]
    Internal(String),
    /// A record referenced shards whose owner is neither referenced nor
    /// being written (a copy raced with the source's delete); retry with
    /// the source's current record.
    #[error("chunks of owner {0:032x} are no longer stored")]
    ChunksGone(u128),
}

/// A metadata request on the wire (body of a v2 `Meta` frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaRequest {
    /// A write; `request_id` is chosen once per logical write and reused
    /// by every retry, so the state machine applies it at most once.
    Write { request_id: u128, command: Command },
    /// A read; `linearizable` confirms leadership (read index) first and
    /// must go to the leader, otherwise the node answers from its own state.
    Read { query: Query, linearizable: bool },
}

/// The answer to a [`MetaRequest`].
pub type MetaResult = Result<Reply, MetaError>;

/// Key order used by listings: S3 orders keys by their UTF-8 bytes.
pub fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.as_bytes().cmp(b.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_fields_encode_as_a_plain_byte_sequence_did() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Plain(Option<Vec<u8>>, u8);
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Fast(#[serde(with = "opt_bytes")] Option<Vec<u8>>, u8);
        for v in [None, Some(Vec::new()), Some((0..=255).cycle().take(70_000).collect::<Vec<u8>>())]
        {
            let plain = postcard::to_allocvec(&Plain(v.clone(), 9)).unwrap();
            let fast = postcard::to_allocvec(&Fast(v.clone(), 9)).unwrap();
            assert_eq!(plain, fast, "same bytes on disk and wire");
            assert_eq!(postcard::from_bytes::<Fast>(&plain).unwrap(), Fast(v.clone(), 9));
            assert_eq!(postcard::from_bytes::<Plain>(&fast).unwrap(), Plain(v, 9));
        }
        // JSON (tools, debugging) reads and writes the same as before.
        let j = serde_json::to_string(&Fast(Some(vec![1, 2]), 0)).unwrap();
        assert_eq!(j, serde_json::to_string(&Plain(Some(vec![1, 2]), 0)).unwrap());
        assert_eq!(serde_json::from_str::<Fast>(&j).unwrap(), Fast(Some(vec![1, 2]), 0));
    }

    #[test]
    fn records_round_trip_and_detect_damage() {
        let c = Command::DeleteObject {
            bucket: "b".into(),
            key: "k".into(),
            expect: Precondition::VersionIs(7),
        };
        let mut b = encode(&c);
        assert_eq!(decode::<Command>(&b).unwrap(), c);
        b[3] ^= 1;
        assert!(matches!(decode::<Command>(&b), Err(CodecError::Checksum { .. })));
        assert!(matches!(decode::<Command>(&b[..3]), Err(CodecError::Truncated(3))));
        let next = RECORD_VERSION + 1;
        let mut later = vec![next, 0];
        later.extend_from_slice(&crc32c(&later).to_le_bytes());
        assert_eq!(decode::<Command>(&later), Err(CodecError::UnknownVersion(next)));
    }
}
