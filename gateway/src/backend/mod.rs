//! The storage Backend: what the S3 layer needs from a store, object by object.
//!
//! The S3 front end (`crate::s3`) only translates S3 requests into these
//! calls; every backend (fs today, distributed next) implements the same
//! trait so the same behaviour tests run against all of them. Bodies are
//! streams of `Bytes` in both directions: no backend holds a whole object in
//! memory. Errors are typed ([`BackendError`]) and mapped to S3 error codes
//! in exactly one place (`crate::s3::error`).

pub mod distributed;
pub mod expiry;
pub mod fs;
pub mod listing;
pub mod registry;
pub mod rules;
pub mod verify;

use std::collections::BTreeMap;
use std::ops::Range;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use listing::{ListPage, ListQuery};
pub use verify::{BodyCheck, Checksums};

/// A body flowing into or out of a backend. Errors are I/O errors so a
/// client disconnect or a stalled upload surfaces as a failed read.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync>>;

/// Everything that can go wrong in a backend, each variant carrying the
/// values that explain it. Mapped to S3 codes once, in `s3::error`.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("bucket {bucket} does not exist")]
    NoSuchBucket { bucket: String },
    #[error("bucket {bucket} already exists")]
    BucketAlreadyOwnedByYou { bucket: String },
    #[error("bucket {bucket} is not empty")]
    BucketNotEmpty { bucket: String },
    #[error("no such key {bucket}/{key}")]
    NoSuchKey { bucket: String, key: String },
    #[error("no such upload {upload_id}")]
    NoSuchUpload { upload_id: String },
    #[error("range not satisfiable for an object of {size} bytes")]
    InvalidRange { size: u64 },
    #[error("part number {part_number} is not satisfiable")]
    InvalidPartNumber { part_number: u32 },
    #[error("precondition failed")]
    PreconditionFailed,
    #[error("Content-MD5 does not match the body")]
    BadDigest,
    #[error("Content-MD5 is not a base64 MD5 digest")]
    InvalidDigest,
    #[error("the {algorithm} checksum does not match the body")]
    ChecksumMismatch { algorithm: &'static str },
    #[error("the body ended after {received} of {expected} bytes")]
    IncompleteBody { expected: u64, received: u64 },
    #[error("the body is larger than the {limit}-byte limit")]
    EntityTooLarge { limit: u64 },
    #[error("part {part_number} is smaller than the 5 MiB minimum")]
    EntityTooSmall { part_number: u32 },
    #[error("part {part_number} is missing or its ETag does not match")]
    InvalidPart { part_number: u32 },
    #[error("parts must be listed in ascending order")]
    InvalidPartOrder,
    #[error("invalid key: {reason}")]
    InvalidKey { reason: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("the client stopped sending the body")]
    RequestTimeout,
    #[error("the body could not be read: {0}")]
    BodyRead(std::io::Error),
    #[error("write quorum not met: {acked} of {needed} shards")]
    QuorumNotMet { acked: usize, needed: usize },
    /// The cluster cannot serve this now (no Raft leader, too few nodes).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("stored data for {bucket}/{key} failed its checksum")]
    Corrupt { bucket: String, key: String },
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Shorthand used throughout the backends.
pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// One bucket as the S3 layer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    pub name: String,
    pub created: OffsetDateTime,
    /// Anonymous GET/HEAD allowed.
    pub public: bool,
}

/// Object count and bytes of a bucket, kept as counters so the admin API
/// never walks storage per request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketUsage {
    pub name: String,
    pub objects: u64,
    pub bytes: u64,
    pub public: bool,
    pub storage_class: String,
}

/// One storage node as `/admin/v1/cluster` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeView {
    pub id: u64,
    pub addr: String,
    /// Reachable as far as this gateway knows.
    pub healthy: bool,
}

/// One storage class as `/admin/v1/cluster` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageClassView {
    pub name: String,
    pub data_shards: u8,
    pub parity_shards: u8,
    /// Durable shards per chunk before a write is acknowledged.
    pub write_quorum: u8,
    /// Node losses an acknowledged write survives at worst until repaired
    /// (`write_quorum - data_shards`; 0 for RS(k, 1) at its default).
    pub acked_write_survives: u8,
}

/// What one repair pass found and did (`POST /admin/v1/repair`). A
/// backend without redundancy has nothing to repair and reports zeros.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RepairReport {
    /// Objects looked at.
    pub objects: u64,
    /// Objects that named missing shards.
    pub degraded: u64,
    /// Objects whose record now names fewer missing shards.
    pub repaired: u64,
    /// Shards rebuilt and stored.
    pub shards: u64,
    /// Degraded objects left as they were: a node still down, a chunk that
    /// could not be read, or a record replaced meanwhile.
    pub left: u64,
    /// When the pass ended, ms since the Unix epoch (0: no pass).
    pub finished_ms: u64,
}

/// What one relocation pass found and did (`POST /admin/v1/drain`).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct DrainReport {
    /// Ring epoch the pass read at its start.
    pub epoch: u64,
    /// Objects looked at.
    pub objects: u64,
    /// Shards rebuilt on ring members and committed.
    pub moved: u64,
    /// Shards on leaving nodes not moved: the chunk could not be read, no
    /// member was free for it, or the record changed meanwhile.
    pub left: u64,
    /// Shards of open multipart parts on leaving nodes (moved once the
    /// upload completes).
    pub upload_parts: u64,
    /// Every leaving node (draining, or no longer in the ring but named by
    /// a record) and the shards still named there after the pass.
    pub referenced: BTreeMap<u64, u64>,
    /// The pass read every record (none was unreadable).
    pub complete: bool,
    /// Draining nodes this pass proved empty: no record or open part names
    /// them, and no commit named them while it ran; with the node's
    /// `[since_ms, referenced]` then, so a later commit voids the proof.
    pub proven_empty: BTreeMap<u64, [u64; 2]>,
    /// When the pass started and ended, ms since the Unix epoch.
    pub started_ms: u64,
    pub finished_ms: u64,
}

/// What one rebalance pass found and did (`POST /admin/v1/rebalance`).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct RebalanceReport {
    /// Ring epoch the pass placed under.
    pub epoch: u64,
    /// Objects looked at.
    pub objects: u64,
    /// Chunks looked at.
    pub chunks: u64,
    /// Chunks written again under the current ring because their shards
    /// sat elsewhere (nodes were added).
    pub moved: u64,
    /// Chunks written again in their class's current erasure code.
    pub recoded: u64,
    /// Plain bytes of the chunks written again.
    pub bytes: u64,
    /// Chunks due but not written again: unreadable, too few nodes for
    /// their code, or the record changed meanwhile (the next pass retries).
    pub left: u64,
    /// The pass read every record (none was unreadable).
    pub complete: bool,
    /// When the pass started and ended, ms since the Unix epoch.
    pub started_ms: u64,
    pub finished_ms: u64,
}

/// `GET /admin/v1/rebalance`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct RebalanceStatus {
    /// A pass is under way.
    pub running: bool,
    /// The last pass this gateway finished (null before the first).
    pub last: Option<RebalanceReport>,
}

/// A draining node and whether it is proven empty (`GET /admin/v1/drain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrainingView {
    /// Node id.
    pub id: u64,
    /// When draining began (leader's clock, ms).
    pub since_ms: u64,
    /// Commits naming it since it began draining.
    pub referenced: u64,
    /// Last commit naming it (leader's clock, ms; 0: none since draining).
    pub referenced_ms: u64,
    /// Proven to hold nothing any record or open part still names: safe to
    /// remove from the cluster file.
    pub empty: bool,
}

/// `GET /admin/v1/drain`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct DrainStatus {
    /// A pass is under way.
    pub running: bool,
    /// Draining nodes now.
    pub draining: Vec<DrainingView>,
    /// The last pass this gateway finished (null before the first).
    pub last: Option<DrainReport>,
}

/// How many objects are below full redundancy now (`GET
/// /admin/v1/repair`), from the distributed backend's degraded index.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Redundancy {
    /// Objects on the index.
    pub below_full: u64,
    /// The fewest further shard losses any of them survives (None: no
    /// object is below full redundancy).
    pub survives: Option<u8>,
}

/// What one scrub pass found and did (`POST /admin/v1/scrub`). A backend
/// without redundancy reports zeros (fs mode checks every full read).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ScrubReport {
    /// Deep (every shard read, parity verified) or light (`Stat` only).
    pub deep: bool,
    /// Objects looked at.
    pub objects: u64,
    /// Chunks checked.
    pub chunks: u64,
    /// Shards checked.
    pub shards: u64,
    /// Shards their node does not have (a wiped disk, a lost file).
    pub missing: u64,
    /// Shards failing their checksums or of the wrong length.
    pub corrupt: u64,
    /// Chunks whose parity does not match their data though every shard
    /// passed its checksums (deep only). Reported, not rewritten: which
    /// shard is wrong cannot be told from parity alone.
    pub inconsistent: u64,
    /// Shards rebuilt and stored on the node the layout names.
    pub rebuilt: u64,
    /// Lost shards not rebuilt (their node refused, or the chunk could not
    /// be read), plus shards on nodes that could not be asked.
    pub left: u64,
    /// Chunks with fewer than k readable shards: data lost.
    pub unreadable: u64,
    /// Objects with a chunk below full redundancy after the pass.
    pub below_full: u64,
    /// The fewest further shard losses any checked chunk survives after
    /// the pass (m when every chunk is whole; null when nothing was checked).
    pub survives: Option<u64>,
    /// Shard bytes the nodes sent (deep).
    pub bytes: u64,
    /// When the pass started and ended, ms since the Unix epoch.
    pub started_ms: u64,
    pub finished_ms: u64,
}

/// `GET /admin/v1/scrub`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ScrubStatus {
    /// A pass is under way.
    pub running: bool,
    /// The last pass this gateway finished (null before the first).
    pub last: Option<ScrubReport>,
}

/// The storage behind a backend, for the admin API and the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    pub nodes: Vec<NodeView>,
    /// The Raft leader this gateway last reached.
    pub leader: Option<u64>,
    pub ring_epoch: u64,
    pub storage_classes: Vec<StorageClassView>,
}

/// System metadata a client sets on PUT and gets back on GET/HEAD.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// The `Expires` header as the client sent it (HTTP date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// Everything known about one stored object version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// Hex MD5 of the body, or `md5-of-part-md5s-N` for multipart; no quotes.
    pub etag: String,
    #[serde(with = "time::serde::rfc3339")]
    pub last_modified: OffsetDateTime,
    #[serde(default)]
    pub http: HttpMeta,
    /// `x-amz-meta-*` without the prefix, lowercase names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_meta: BTreeMap<String, String>,
    #[serde(default)]
    pub checksums: Checksums,
    #[serde(default = "standard")]
    pub storage_class: String,
    /// Sizes of the parts for a multipart object (for `partNumber` reads
    /// and GetObjectAttributes); empty for single-part objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<u64>,
    /// Object tags in the order they were set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    /// The multipart upload that wrote this version: a retried Complete of
    /// it is answered again, as S3 does, rather than with NoSuchUpload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
}

fn standard() -> String {
    "STANDARD".into()
}

impl ObjectInfo {
    /// Byte range covered by part `n` (1-based) of a multipart object, or
    /// the whole object as part 1 of a single-part object.
    pub fn part_range(&self, n: u32) -> Option<Range<u64>> {
        if self.parts.is_empty() {
            return (n == 1).then_some(0..self.size);
        }
        let idx = usize::try_from(n).ok()?.checked_sub(1)?;
        let start: u64 = self.parts.iter().take(idx).sum();
        let len = *self.parts.get(idx)?;
        Some(start..start + len)
    }

    /// Number of parts as S3 reports it (`x-amz-mp-parts-count`).
    pub fn parts_count(&self) -> Option<usize> {
        (!self.parts.is_empty()).then_some(self.parts.len())
    }
}

/// Which bytes of an object a read wants, resolved against the version
/// actually opened so a concurrent replace cannot mismatch range and body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadRange {
    /// `bytes=first-last` (`last` open when `None`), inclusive.
    Bytes { first: u64, last: Option<u64> },
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
    /// `partNumber=n` of a multipart object (1 for a single-part one).
    Part(u32),
}

impl ReadRange {
    /// The byte range this selects in `info`, or the S3 error it earns.
    pub fn resolve(&self, info: &ObjectInfo) -> Result<Range<u64>> {
        let size = info.size;
        let bad = || BackendError::InvalidRange { size };
        match *self {
            Self::Bytes { first, last } => {
                if first >= size {
                    return Err(bad());
                }
                let end = last.map_or(size, |l| l.min(size - 1) + 1);
                if end <= first {
                    return Err(bad());
                }
                Ok(first..end)
            }
            Self::Suffix(n) => {
                if n == 0 || size == 0 {
                    return Err(bad());
                }
                Ok(size - n.min(size)..size)
            }
            Self::Part(n) => {
                info.part_range(n).ok_or(BackendError::InvalidPartNumber { part_number: n })
            }
        }
    }
}

/// An opened object version: its metadata, the range being served, and the
/// bytes (lazy: nothing is read until the stream is polled).
pub struct GetResult {
    pub info: ObjectInfo,
    pub range: Option<Range<u64>>,
    pub body: ByteStream,
}

/// What must hold about the current version for a write to go ahead;
/// checked atomically with the commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WriteCondition {
    /// No condition.
    #[default]
    None,
    /// `If-None-Match: *` — the key must not exist.
    IfAbsent,
    /// `If-Match: "etag"` — the current version must have this ETag
    /// (`*`: must exist).
    IfMatch(String),
}

impl WriteCondition {
    /// Whether the write may go ahead given the current version's ETag.
    pub fn allows(&self, current: Option<&str>) -> bool {
        match (self, current) {
            (Self::None, _) => true,
            (Self::IfAbsent, current) => current.is_none(),
            (Self::IfMatch(want), Some(etag)) => want == "*" || want == etag,
            (Self::IfMatch(_), None) => false,
        }
    }
}

/// Options for storing an object.
#[derive(Debug, Default)]
pub struct PutOptions {
    pub http: HttpMeta,
    pub user_meta: BTreeMap<String, String>,
    pub storage_class: Option<String>,
    pub tags: Vec<(String, String)>,
    pub condition: WriteCondition,
    /// Declared length, when the client sent one.
    pub size: Option<u64>,
    pub check: BodyCheck,
}

/// Options for a new multipart upload (applied to the final object).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UploadOptions {
    #[serde(default)]
    pub http: HttpMeta,
    #[serde(default)]
    pub user_meta: BTreeMap<String, String>,
    #[serde(default)]
    pub storage_class: Option<String>,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// Checksum algorithm the client announced (`x-amz-checksum-algorithm`).
    #[serde(default)]
    pub checksum_algorithm: Option<String>,
}

/// One stored part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    pub part_number: u32,
    pub size: u64,
    /// Hex MD5 of the part, no quotes.
    pub etag: String,
    #[serde(with = "time::serde::rfc3339")]
    pub last_modified: OffsetDateTime,
    #[serde(default)]
    pub checksums: Checksums,
}

/// An in-progress multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    pub key: String,
    pub upload_id: String,
    pub initiated: OffsetDateTime,
    pub storage_class: String,
    pub checksum_algorithm: Option<String>,
}

/// A page of ListMultipartUploads.
#[derive(Debug, Clone, Default)]
pub struct UploadsPage {
    pub uploads: Vec<UploadInfo>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    pub next_key_marker: Option<String>,
    pub next_upload_id_marker: Option<String>,
}

/// Query for ListMultipartUploads.
#[derive(Debug, Clone, Default)]
pub struct UploadsQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub key_marker: Option<String>,
    pub upload_id_marker: Option<String>,
    pub max_uploads: usize,
}

/// The body of one part and what it must satisfy.
pub struct PartBody {
    pub stream: ByteStream,
    /// Declared length, when the client sent one.
    pub size: Option<u64>,
    pub check: BodyCheck,
}

/// AWS's minimum size for every part but the last.
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// AWS's part number range.
pub const MAX_PART_NUMBER: u32 = 10_000;

/// An object store as the S3 layer needs it. Implementations must make
/// writes visible only once durable and complete, and must never return
/// bytes that failed their checksum.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Name the registry knows this backend by (`fs`, `distributed`).
    fn kind(&self) -> &'static str;

    /// Storage class names a PUT may ask for (`x-amz-storage-class`);
    /// anything else is refused with InvalidStorageClass.
    fn storage_classes(&self) -> Vec<String> {
        vec!["STANDARD".into()]
    }

    /// What one streaming request holds in memory at worst; the
    /// admission budget charges requests by it. The default fits a
    /// backend that streams through buffers of about a MiB (fs).
    fn request_memory(&self) -> crate::admission::RequestMemory {
        crate::admission::RequestMemory { window: 2 << 20, open: 1 << 20 }
    }

    /// Whether the backend can serve requests now (`/readyz`): the
    /// distributed backend needs a reachable Raft leader.
    async fn ready(&self) -> bool {
        true
    }

    /// Nodes, leader, ring epoch and storage classes; one local store with
    /// no redundancy by default.
    async fn cluster(&self) -> ClusterView {
        ClusterView {
            nodes: Vec::new(),
            leader: None,
            ring_epoch: 0,
            storage_classes: vec![StorageClassView {
                name: "STANDARD".into(),
                data_shards: 1,
                parity_shards: 0,
                write_quorum: 1,
                acked_write_survives: 0,
            }],
        }
    }

    async fn create_bucket(&self, bucket: &str, public: bool) -> Result<()>;
    async fn delete_bucket(&self, bucket: &str) -> Result<()>;
    async fn bucket(&self, bucket: &str) -> Result<BucketInfo>;
    async fn list_buckets(&self) -> Result<Vec<BucketInfo>>;
    async fn set_bucket_public(&self, bucket: &str, public: bool) -> Result<()>;
    /// Sets the storage class objects of `bucket` get when their PUT names
    /// none. A backend with one class accepts only that one.
    async fn set_bucket_storage_class(&self, bucket: &str, class: &str) -> Result<()> {
        self.bucket(bucket).await?;
        if self.storage_classes().iter().any(|c| c == class) {
            Ok(())
        } else {
            Err(BackendError::InvalidArgument(format!("unknown storage class {class}")))
        }
    }
    /// Usage counters of every bucket.
    async fn usage(&self) -> Result<Vec<BucketUsage>>;

    async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectInfo>;
    /// Opens the current version and streams it, or the requested range of
    /// it. Full reads verify the stored checksum at the end and fail the
    /// stream rather than deliver corrupt bytes.
    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ReadRange>,
    ) -> Result<GetResult>;
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectInfo>;
    /// Idempotent: deleting a missing key succeeds.
    async fn delete_object(&self, bucket: &str, key: &str) -> Result<()>;
    /// Replaces the tag set of the current version.
    async fn set_object_tags(
        &self,
        bucket: &str,
        key: &str,
        tags: Vec<(String, String)>,
    ) -> Result<()>;
    async fn list_objects(&self, bucket: &str, query: &ListQuery) -> Result<ListPage>;

    /// CopyObject without moving bytes, when the backend can share the
    /// source's stored data: the source's current version must still have
    /// ETag `src_etag` (the one whose copy conditions were checked).
    /// `Ok(None)` means "not this way": the caller streams the copy.
    async fn copy_by_reference(
        &self,
        src: (&str, &str),
        src_etag: &str,
        dst: (&str, &str),
        opts: &PutOptions,
    ) -> Result<Option<ObjectInfo>> {
        let _ = (src, src_etag, dst, opts);
        Ok(None)
    }

    /// UploadPartCopy of a whole source object without moving bytes, as
    /// [`Backend::copy_by_reference`].
    async fn copy_part_by_reference(
        &self,
        src: (&str, &str),
        src_etag: &str,
        dst: (&str, &str),
        upload_id: &str,
        part_number: u32,
    ) -> Result<Option<PartInfo>> {
        let _ = (src, src_etag, dst, upload_id, part_number);
        Ok(None)
    }

    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        opts: UploadOptions,
    ) -> Result<String>;
    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: PartBody,
    ) -> Result<PartInfo>;
    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<(u32, String)>,
        condition: WriteCondition,
    ) -> Result<ObjectInfo>;
    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()>;
    /// The upload's options and its parts in part-number order.
    async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(UploadInfo, Vec<PartInfo>)>;
    async fn list_uploads(&self, bucket: &str, query: &UploadsQuery) -> Result<UploadsPage>;

    /// Rebuilds shards that writes could not store (their node was down)
    /// now that their nodes answer. Nothing to do without redundancy.
    async fn repair(&self) -> Result<RepairReport> {
        Ok(RepairReport::default())
    }
    /// The last repair pass this gateway ran (background or requested).
    async fn last_repair(&self) -> Option<RepairReport> {
        None
    }
    /// How many objects are below full redundancy right now (None: the
    /// backend has no redundancy to lose).
    async fn redundancy(&self) -> Result<Option<Redundancy>> {
        Ok(None)
    }
    /// Starts a pass that checks every shard of every object against its
    /// checksums (and, `deep`, its stripe's parity) and rebuilds those
    /// found lost, whatever lost them. With `wait`, answers its report once
    /// done; else None once started (the pass goes on in the background).
    /// Nothing to do without redundancy.
    async fn scrub(&self, deep: bool, wait: bool) -> Result<Option<ScrubReport>> {
        let _ = wait;
        Ok(Some(ScrubReport { deep, ..ScrubReport::default() }))
    }
    /// Whether a scrub pass runs and what the last one did.
    async fn scrub_status(&self) -> ScrubStatus {
        ScrubStatus::default()
    }
    /// Moves shards off draining and removed nodes now, answering once
    /// done. None: the backend has no nodes.
    async fn relocate(&self) -> Result<Option<DrainReport>> {
        Ok(None)
    }
    /// Draining nodes, whether each is proven empty, and the last
    /// relocation pass (empty without nodes).
    async fn drain_status(&self) -> Result<DrainStatus> {
        Ok(DrainStatus::default())
    }
    /// Runs one rebalance pass now (chunks onto their placement under the
    /// current ring, in their class's current code) and answers its
    /// report; `None` without nodes.
    async fn rebalance(&self) -> Result<Option<RebalanceReport>> {
        Ok(None)
    }
    /// Whether a rebalance pass runs, and the last one (empty without
    /// nodes).
    async fn rebalance_status(&self) -> RebalanceStatus {
        RebalanceStatus::default()
    }
    /// Flushes and releases resources; called once at shutdown.
    async fn close(&self) -> Result<()>;
}
