//! The distributed backend: S3 objects on the node cluster. Metadata lives
//! in the nodes' Raft group ([`MetaClient`]); bytes are Reed–Solomon coded
//! chunks on the nodes ([`DataPath`]). See docs/data-path.md.
//!
//! - **PUT**: small bodies (≤ `inline_max_size`) go into the object record:
//!   one Raft commit, no shard I/O. Larger ones get a fresh owner id, an
//!   intent record (so a gateway dying mid-write leaks nothing), then
//!   stream chunk by chunk to the nodes while still arriving; the record
//!   commits in Raft only after every chunk reached its write quorum, so a
//!   reader sees the old version or the new one, never a part.
//! - **Conditional writes** are compare-and-set on the record version.
//! - **Delete/replace**: the state machine counts references per chunk and
//!   records the chunks nothing references any more; the [`collector`]
//!   deletes them after a grace period, so a GET of the replaced version
//!   that is still streaming finishes.
//! - **Multipart**: each part is written like an object under its own
//!   owner id; Complete stitches the parts' chunk lists into one record.

pub mod body;
pub mod collector;
pub mod degraded;
pub mod heal;
pub mod rebalance;
pub mod record;
pub mod relocate;
pub mod repair;
pub mod scrub;
pub mod walk;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use predastore_core::chunks::{DataError, DataPath, WrittenObject};
use predastore_core::client::{ClientOptions, NodeAddr, ShardClient};
use predastore_core::config::{
    BucketConfig, ClusterFile, DistributedStorageConfig, Erasure, GatewayConfig,
};
use predastore_core::meta::{
    BucketRecord, Command, DrainingNode, IntentRecord, ListRequest, MetaError, ObjectRecord,
    PartRecord, Precondition, Query, Reply, RingRecord,
};
use predastore_core::meta_client::{MetaClient, MetaClientOptions, new_request_id};
use predastore_core::ring::{Member, Ring};
use predastore_core::transport::{Connector, TlsMaterial};
use tokio::task::JoinHandle;

use self::body::Head;
use super::verify::{BodySummary, CheckedBody};
use super::*;
use crate::admission::RequestMemory;

/// Storage class every cluster has: the cluster file's `[erasure]`.
pub const STANDARD: &str = "STANDARD";

/// How often the gateway checks that a Raft leader answers (and picks up
/// a new ring epoch).
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Every this many probes the gateway reads the committed storage classes.
const CLASSES_EVERY: u64 = 5;

/// Erasure code of each storage class the cluster file offers.
pub fn classes_of(file: &ClusterFile) -> BTreeMap<String, Erasure> {
    let mut c = BTreeMap::new();
    c.insert(STANDARD.to_string(), file.erasure);
    for sc in &file.storage_classes {
        c.insert(sc.name.clone(), sc.erasure);
    }
    c
}

/// What one request holds at worst: `chunks_in_flight` chunks and the
/// one being filled, each with its parity shards, in the widest class;
/// opening a read fetches one such chunk.
fn request_memory(classes: &BTreeMap<String, Erasure>, chunks_in_flight: usize) -> RequestMemory {
    let chunk = classes
        .values()
        .map(|e| {
            let k = u64::from(e.data_shards.max(1));
            e.chunk_size.div_ceil(k) * (k + u64::from(e.parity_shards))
        })
        .max()
        .unwrap_or(0);
    RequestMemory { window: chunk * (chunks_in_flight as u64 + 1), open: chunk }
}

/// How long a gateway uses a bucket's default storage class before
/// reading it again.
const BUCKET_CLASS_TTL: Duration = Duration::from_secs(5);

/// The classes in force: the file's, with each committed class's code and
/// chunk size (committed classes the file lacks are added). A class keeps
/// the file's write quorum only while its code is unchanged.
fn merged_classes(
    file: &BTreeMap<String, Erasure>,
    committed: &[predastore_core::meta::StorageClassRecord],
) -> BTreeMap<String, Erasure> {
    let mut out = file.clone();
    for c in committed {
        let same_code = file
            .get(&c.name)
            .is_some_and(|e| (e.data_shards, e.parity_shards) == (c.data_shards, c.parity_shards));
        let write_quorum = if same_code { file[&c.name].write_quorum } else { None };
        out.insert(
            c.name.clone(),
            Erasure {
                data_shards: c.data_shards,
                parity_shards: c.parity_shards,
                chunk_size: c.chunk_size,
                write_quorum,
            },
        );
    }
    out
}

/// The placement ring a committed ring record describes: its members
/// except the draining ones, which take no new shards.
fn ring_of(r: &RingRecord, draining: &[DrainingNode]) -> std::result::Result<Ring, String> {
    Ring::new(
        r.epoch,
        r.members
            .iter()
            .filter(|m| !draining.iter().any(|d| d.id == m.id))
            .map(|m| Member { id: m.id, zone: m.zone.clone() }),
        r.virtual_nodes,
    )
    .map_err(|e| e.to_string())
}

/// Where the ring's members listen.
fn addrs_of(r: &RingRecord) -> Vec<NodeAddr> {
    r.members.iter().map(|m| NodeAddr { id: m.id, addr: m.addr.clone() }).collect()
}

/// Shared state of the backend and its background tasks.
pub struct Inner {
    meta: MetaClient,
    probe: MetaClient,
    data: DataPath,
    /// Nodes to list for shards (the collector's sweeps): the cluster
    /// file's until a ring is known, then the ring's members.
    nodes: RwLock<Vec<NodeAddr>>,
    /// Storage classes: the cluster file's at start, then the committed
    /// ones ([`Inner::follow_classes`]).
    classes: RwLock<BTreeMap<String, Erasure>>,
    /// The cluster file's classes, for the write quorum (not in Raft).
    file_classes: BTreeMap<String, Erasure>,
    ring: RwLock<Option<Arc<Ring>>>,
    inline_max: u64,
    /// Period of intent renewals while a write runs, in ms.
    intent_renew_ms: AtomicU64,
    /// When the collector first saw each garbage and intent entry.
    gc_first_seen: collector::FirstSeen,
    /// Default storage class of each bucket and when it was read.
    bucket_classes: Mutex<HashMap<String, (String, Instant)>>,
    ready: AtomicBool,
    configured: Vec<BucketConfig>,
    buckets_made: AtomicBool,
    /// A repair pass could achieve something: set at start-up and when a
    /// node this gateway saw down answers again.
    repair_wanted: AtomicBool,
    /// One repair pass at a time (background or admin).
    repair_lock: tokio::sync::Mutex<()>,
    /// What the last finished pass did (`GET /admin/v1/repair`).
    last_repair: Mutex<Option<RepairReport>>,
    /// A light scrub pass could find lost shards: a node this gateway saw
    /// down answers again, and may have come back empty.
    scrub_wanted: AtomicBool,
    /// One scrub pass at a time (background or admin).
    scrub_lock: tokio::sync::Mutex<()>,
    /// A scrub pass is under way.
    scrub_running: AtomicBool,
    /// What the last finished scrub pass did (`GET /admin/v1/scrub`).
    last_scrub: Mutex<Option<ScrubReport>>,
    /// Shard bytes per second a scrub pass may read.
    scrub_rate: u64,
    /// Objects GETs found below full redundancy ([`heal`]).
    heal_queue: tokio::sync::mpsc::Sender<heal::Wanted>,
    /// The ring changed (or the gateway started): a relocation pass may
    /// find shards on nodes that left it.
    relocate_wanted: AtomicBool,
    /// One relocation pass at a time (background or admin).
    relocate_lock: tokio::sync::Mutex<()>,
    /// A relocation pass is under way.
    relocate_running: AtomicBool,
    /// The last finished relocation pass and when it ended.
    last_relocate: Mutex<Option<(DrainReport, Instant)>>,
    /// The ring or a class changed (or the gateway started): chunks may be
    /// due to move or to be encoded again ([`rebalance`]).
    rebalance_wanted: AtomicBool,
    /// One rebalance pass at a time (background or admin).
    rebalance_lock: tokio::sync::Mutex<()>,
    /// A rebalance pass is under way.
    rebalance_running: AtomicBool,
    /// The last finished rebalance pass and when it ended.
    last_rebalance: Mutex<Option<(RebalanceReport, Instant)>>,
    /// Plain bytes per second a rebalance pass may write again.
    rebalance_rate: u64,
}

/// The backend registered as `storage.type = "distributed"`.
pub struct DistributedBackend {
    inner: Arc<Inner>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    memory: RequestMemory,
}

impl DistributedBackend {
    /// Connects to the cluster `config.storage.distributed` names. Does not
    /// wait for the cluster: until a Raft leader answers, `/readyz` is
    /// false and requests fail with 503.
    pub async fn open(config: &GatewayConfig) -> Result<Self> {
        let d = config.storage.distributed.as_ref().ok_or_else(|| {
            BackendError::InvalidArgument(
                "storage.type = \"distributed\" needs [storage.distributed]".into(),
            )
        })?;
        let file = ClusterFile::load(&d.cluster_file)
            .map_err(|e| BackendError::InvalidArgument(e.to_string()))?;
        Self::connect(d, &file, &config.buckets)
    }

    /// Connects with an already loaded cluster file.
    pub fn connect(
        d: &DistributedStorageConfig,
        file: &ClusterFile,
        buckets: &[BucketConfig],
    ) -> Result<Self> {
        let tls = TlsMaterial::load(&d.tls_ca, &d.tls_cert, &d.tls_key).map_err(|e| {
            BackendError::InvalidArgument(format!("storage.distributed TLS files: {e}"))
        })?;
        let nodes: Vec<NodeAddr> =
            file.nodes.iter().map(|n| NodeAddr { id: n.id, addr: n.addr.clone() }).collect();
        let connect_timeout = Duration::from_secs(2);
        let first = Connector::new(&tls, d.quic_bind, connect_timeout)
            .map_err(|e| BackendError::InvalidArgument(format!("QUIC endpoint: {e}")))?;
        let endpoint = first.endpoint().clone();
        // A Raft write takes milliseconds; an attempt that takes seconds is
        // at a dead leader, so move on to the next node quickly.
        let meta_opts = MetaClientOptions {
            attempt_timeout: Duration::from_secs(3),
            ..MetaClientOptions::default()
        };
        let meta = MetaClient::with_connector(first, nodes.clone(), meta_opts);
        let probe_opts = MetaClientOptions {
            attempt_timeout: Duration::from_secs(1),
            deadline: Duration::from_secs(2),
            ..MetaClientOptions::default()
        };
        let probe = MetaClient::with_connector(
            Connector::with_endpoint(endpoint.clone(), connect_timeout),
            nodes.clone(),
            probe_opts,
        );
        let shards = ShardClient::with_connector(
            Connector::with_endpoint(endpoint, connect_timeout),
            ClientOptions { connect_timeout, ..ClientOptions::default() },
        );
        let observer: Arc<dyn predastore_core::chunks::Observer> =
            Arc::new(crate::metrics::DataPathMetrics);
        let data = DataPath::new(Arc::new(shards), nodes.clone(), d.chunks_in_flight)
            .with_observer(observer);
        let (heal_queue, heal_rx) = tokio::sync::mpsc::channel(heal::QUEUE);
        for (name, e) in classes_of(file) {
            if e.parity_shards > 0 && e.write_quorum() == e.data_shards {
                tracing::warn!(
                    class = %name,
                    "storage class RS({}, {}) acknowledges writes with {} shards: one \
                     written while a node is down has no redundancy until repaired \
                     (counted in predastore_gateway_writes_without_redundancy_total); a \
                     write quorum of {} refuses such writes instead",
                    e.data_shards,
                    e.parity_shards,
                    e.write_quorum(),
                    e.data_shards + 1
                );
            }
        }
        let inner = Arc::new(Inner {
            meta,
            probe,
            data,
            nodes: RwLock::new(nodes),
            classes: RwLock::new(classes_of(file)),
            file_classes: classes_of(file),
            ring: RwLock::new(None),
            inline_max: d.inline_max_size,
            intent_renew_ms: AtomicU64::new(collector::INTENT_RENEW_EVERY.as_millis() as u64),
            gc_first_seen: collector::FirstSeen::default(),
            bucket_classes: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            configured: buckets.to_vec(),
            buckets_made: AtomicBool::new(false),
            repair_wanted: AtomicBool::new(true),
            repair_lock: tokio::sync::Mutex::new(()),
            last_repair: Mutex::new(None),
            scrub_wanted: AtomicBool::new(false),
            scrub_lock: tokio::sync::Mutex::new(()),
            scrub_running: AtomicBool::new(false),
            last_scrub: Mutex::new(None),
            scrub_rate: d.scrub_bytes_per_sec,
            heal_queue,
            relocate_wanted: AtomicBool::new(true),
            relocate_lock: tokio::sync::Mutex::new(()),
            relocate_running: AtomicBool::new(false),
            last_relocate: Mutex::new(None),
            rebalance_wanted: AtomicBool::new(true),
            rebalance_lock: tokio::sync::Mutex::new(()),
            rebalance_running: AtomicBool::new(false),
            last_rebalance: Mutex::new(None),
            rebalance_rate: d.rebalance_bytes_per_sec,
        });
        let tasks = vec![
            tokio::spawn(probe_loop(Arc::clone(&inner))),
            tokio::spawn(collector::run(Arc::clone(&inner), collector::Schedule::default())),
            tokio::spawn(repair::run(
                Arc::clone(&inner),
                Duration::from_secs(d.repair_interval_secs),
            )),
            tokio::spawn(scrub::run(
                Arc::clone(&inner),
                Duration::from_secs(d.scrub_interval_secs),
                d.scrub_bytes_per_sec,
            )),
            tokio::spawn(heal::run(Arc::clone(&inner), heal_rx)),
            tokio::spawn(relocate::run(Arc::clone(&inner))),
            tokio::spawn(rebalance::run(Arc::clone(&inner))),
        ];
        let memory = request_memory(&classes_of(file), d.chunks_in_flight);
        Ok(Self { inner, tasks: Mutex::new(tasks), memory })
    }

    /// The shared state (for the collector and tests).
    pub fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }
}

/// Keeps `ready` and the ring current, notices nodes coming back, and
/// creates the configured buckets once the cluster answers.
async fn probe_loop(inner: Arc<Inner>) {
    let mut probes = 0u64;
    loop {
        if probes.is_multiple_of(CLASSES_EVERY)
            && let Ok(Reply::StorageClasses(c)) = inner.probe.read(Query::StorageClasses).await
        {
            inner.follow_classes(&c);
        }
        probes += 1;
        let ok = match inner.probe.read(Query::Ring).await {
            Ok(Reply::Ring(Some(r))) => {
                let stale = inner.ring().is_none_or(|cur| cur.epoch() != r.epoch);
                if stale && let Err(e) = inner.follow_ring(&r).await {
                    tracing::error!(error = %e, "committed ring is unusable");
                }
                inner.ring().is_some()
            }
            Ok(_) => false,
            Err(e) => {
                if inner.ready.load(Ordering::Relaxed) {
                    tracing::warn!(error = %e, "metadata cluster unreachable");
                }
                false
            }
        };
        if ok && !inner.buckets_made.load(Ordering::Relaxed) {
            match inner.make_configured_buckets().await {
                Ok(()) => inner.buckets_made.store(true, Ordering::Relaxed),
                Err(e) => tracing::warn!(error = %e, "creating configured buckets"),
            }
        }
        inner.ready.store(ok && inner.buckets_made.load(Ordering::Relaxed), Ordering::Relaxed);
        let down = inner.data.health().down();
        inner.data.probe_down_nodes(Duration::from_millis(800)).await;
        if down.iter().any(|n| !inner.data.health().is_down(*n)) {
            // Writes while it was away left shards missing; rebuild them.
            // It may also have come back without its data: check.
            inner.repair_wanted.store(true, Ordering::Release);
            inner.scrub_wanted.store(true, Ordering::Release);
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// The name the ring places a multipart part's chunks under: the key
/// alone would put chunk 0 of every part (and chunk n of every part) on
/// the same k + m nodes, so one large upload would load only those.
fn part_placement_key(key: &str, upload_id: &str, part: u32) -> String {
    format!("{key}\0{upload_id}\0{part}")
}

/// One page (1000 keys) of every object in `bucket`, for walks over a
/// whole bucket (usage, repair).
fn whole_bucket(bucket: &str, continuation: Option<Vec<u8>>) -> ListRequest {
    ListRequest { bucket: bucket.into(), continuation, max_keys: 1000, ..ListRequest::default() }
}

/// Maps a metadata error to the backend's.
fn meta_err(e: MetaError) -> BackendError {
    match e {
        MetaError::NoSuchBucket(bucket) => BackendError::NoSuchBucket { bucket },
        MetaError::BucketExists(bucket) => BackendError::BucketAlreadyOwnedByYou { bucket },
        MetaError::BucketNotEmpty(bucket) => BackendError::BucketNotEmpty { bucket },
        MetaError::NoSuchKey { bucket, key } => BackendError::NoSuchKey { bucket, key },
        MetaError::NoSuchUpload { upload_id, .. } => BackendError::NoSuchUpload { upload_id },
        MetaError::PreconditionFailed { .. } => BackendError::PreconditionFailed,
        MetaError::Invalid(m) => BackendError::InvalidArgument(m),
        MetaError::NoSuchStorageClass(c) => {
            BackendError::InvalidArgument(format!("no such storage class {c}"))
        }
        e @ (MetaError::NotLeader { .. } | MetaError::NoQuorum(_) | MetaError::Unavailable(_)) => {
            BackendError::Unavailable(e.to_string())
        }
        e @ (MetaError::Corrupt(_) | MetaError::Internal(_) | MetaError::ChunksGone(_)) => {
            BackendError::Internal(e.to_string())
        }
    }
}

/// Maps a data-path error to the backend's.
fn data_err(e: DataError) -> BackendError {
    match e {
        DataError::QuorumNotMet { durable, needed, .. } => {
            crate::metrics::global().quorum_failures.inc();
            tracing::warn!(error = %e, "write quorum not met");
            BackendError::QuorumNotMet { acked: durable, needed }
        }
        DataError::InvalidRange { size, .. } => BackendError::InvalidRange { size },
        e @ (DataError::TooFewShards { .. } | DataError::Placement(_)) => {
            BackendError::Unavailable(e.to_string())
        }
        e => BackendError::Internal(e.to_string()),
    }
}

fn unexpected(r: Reply) -> BackendError {
    BackendError::Internal(format!("unexpected metadata reply {r:?}"))
}

impl Inner {
    /// The metadata client (tests and tools inspect records with it).
    pub fn meta(&self) -> &MetaClient {
        &self.meta
    }

    /// The data path (tests and tools list shards with it).
    pub fn data(&self) -> &DataPath {
        &self.data
    }

    /// The nodes that may hold shards: the ring's members once known.
    pub fn nodes(&self) -> Vec<NodeAddr> {
        self.nodes.read().expect("nodes lock").clone()
    }

    /// Takes up committed ring `r`: its placement (without draining
    /// members) for new writes, and its members' addresses for shards and
    /// metadata, so nodes added after this gateway started are reached
    /// without a restart. Asks for a relocation pass: shards may sit on
    /// nodes that left.
    async fn follow_ring(&self, r: &RingRecord) -> std::result::Result<(), String> {
        let draining = match self.probe.read(Query::Draining).await {
            Ok(Reply::Draining(d)) => d,
            other => return Err(format!("reading the draining nodes: {other:?}")),
        };
        let ring = ring_of(r, &draining)?;
        let addrs = addrs_of(r);
        self.data.update_addrs(addrs.clone());
        self.meta.set_nodes(addrs.clone());
        self.probe.set_nodes(addrs.clone());
        *self.nodes.write().expect("nodes lock") = addrs;
        tracing::info!(
            epoch = r.epoch,
            members = r.members.len(),
            draining = ?draining.iter().map(|d| d.id).collect::<Vec<_>>(),
            "ring loaded"
        );
        *self.ring.write().expect("ring lock") = Some(Arc::new(ring));
        self.relocate_wanted.store(true, Ordering::Release);
        self.rebalance_wanted.store(true, Ordering::Release);
        Ok(())
    }

    /// Takes up the committed storage classes (the leader writes them
    /// from its cluster file), so a class whose code was changed applies
    /// to new writes without a gateway restart and a rebalance pass
    /// encodes old chunks again. The write quorum is not committed: a
    /// class keeps this gateway's file's quorum while its code is the
    /// file's, else gets the default.
    fn follow_classes(&self, committed: &[predastore_core::meta::StorageClassRecord]) {
        let next = merged_classes(&self.file_classes, committed);
        let mut cur = self.classes.write().expect("classes lock");
        if *cur != next {
            tracing::info!(classes = ?next, "storage classes loaded");
            *cur = next;
            self.rebalance_wanted.store(true, Ordering::Release);
        }
    }

    /// Whether a Raft leader answered the last probe.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    fn ring(&self) -> Option<Arc<Ring>> {
        self.ring.read().expect("ring lock").clone()
    }

    fn need_ring(&self) -> Result<Arc<Ring>> {
        self.ring()
            .ok_or_else(|| BackendError::Unavailable("the cluster's ring is not known yet".into()))
    }

    fn class(&self, name: Option<&str>) -> Result<(String, Erasure)> {
        let name = name.unwrap_or(STANDARD);
        let classes = self.classes.read().expect("classes lock");
        let e = classes.get(name).ok_or_else(|| {
            BackendError::InvalidArgument(format!("unknown storage class {name}"))
        })?;
        Ok((name.to_string(), *e))
    }

    async fn make_configured_buckets(&self) -> Result<()> {
        for b in &self.configured {
            match self.create_bucket(&b.name, b.public).await {
                Ok(()) | Err(BackendError::BucketAlreadyOwnedByYou { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn create_bucket(&self, bucket: &str, public: bool) -> Result<()> {
        predastore_core::config::validate_bucket_name(bucket)
            .map_err(|e| BackendError::InvalidArgument(e.to_string()))?;
        self.meta
            .create_bucket(BucketRecord {
                name: bucket.into(),
                owner: String::new(),
                created_ms: record::millis(rules::now_millis()),
                storage_class: STANDARD.into(),
                public,
                policy: None,
            })
            .await
            .map_err(meta_err)
    }

    /// The class a write to `bucket` uses: the one it names, else the
    /// bucket's default (its record's, read at most every
    /// [`BUCKET_CLASS_TTL`]: a metadata read per PUT would cost small
    /// writes a round trip; another gateway's change shows within it).
    async fn class_for(&self, bucket: &str, named: Option<&str>) -> Result<(String, Erasure)> {
        if let Some(name) = named {
            return self.class(Some(name));
        }
        let cached = self.bucket_classes.lock().expect("class cache poisoned").get(bucket).cloned();
        let default = match cached {
            Some((class, at)) if at.elapsed() < BUCKET_CLASS_TTL => class,
            _ => {
                let class = self.bucket_record(bucket).await?.storage_class;
                let mut cache = self.bucket_classes.lock().expect("class cache poisoned");
                cache.insert(bucket.to_string(), (class.clone(), Instant::now()));
                class
            }
        };
        self.class(Some(&default))
    }

    async fn bucket_records(&self) -> Result<Vec<BucketRecord>> {
        match self.meta.read(Query::ListBuckets).await.map_err(meta_err)? {
            Reply::Buckets(bs) => Ok(bs),
            r => Err(unexpected(r)),
        }
    }

    async fn bucket_record(&self, bucket: &str) -> Result<BucketRecord> {
        match self.meta.read(Query::GetBucket { name: bucket.into() }).await.map_err(meta_err)? {
            Reply::Bucket(b) => Ok(b),
            r => Err(unexpected(r)),
        }
    }

    async fn object(&self, bucket: &str, key: &str) -> Result<ObjectRecord> {
        self.meta.get_object(bucket, key).await.map_err(meta_err)
    }

    /// The current record of `key`, if any.
    async fn current(&self, bucket: &str, key: &str) -> Result<Option<ObjectRecord>> {
        match self.object(bucket, key).await {
            Ok(r) => Ok(Some(r)),
            Err(BackendError::NoSuchKey { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The Raft precondition a write condition becomes, read against the
    /// current version (If-Match needs its ETag).
    async fn precondition(
        &self,
        bucket: &str,
        key: &str,
        c: &WriteCondition,
    ) -> Result<Precondition> {
        match c {
            WriteCondition::None => Ok(Precondition::None),
            WriteCondition::IfAbsent => Ok(Precondition::Absent),
            WriteCondition::IfMatch(want) => {
                let cur = self.current(bucket, key).await?;
                match cur {
                    Some(r) if want == "*" || *want == r.etag => {
                        Ok(Precondition::VersionIs(r.version_id))
                    }
                    _ => Err(BackendError::PreconditionFailed),
                }
            }
        }
    }

    /// Writes a streaming body as chunks of a new owner, under an intent.
    /// On any failure the shards are cleaned up (or left on record for the
    /// collector) and the typed error returned.
    async fn write_chunks(
        &self,
        bucket: &str,
        key: &str,
        place_as: &str,
        head: Vec<Bytes>,
        body: CheckedBody,
        class: &Erasure,
    ) -> Result<(u128, WrittenObject, BodySummary)> {
        let ring = self.need_ring()?;
        let intent = self.record_intent(bucket, key).await.map_err(meta_err)?;
        let owner = intent.owner;
        let (stream, verdict) = body::stream(head, body);
        let write = self.data.write_object(stream, owner, class, &ring, bucket, place_as);
        let written = tokio::select! {
            w = write => w,
            never = self.renew_intent(intent) => match never {},
        };
        let (err, chunks) = match written {
            Ok(w) => match body::take(&verdict) {
                Some(Ok(summary)) => return Ok((owner, w, summary)),
                Some(Err(e)) => (e, w.chunks),
                None => (BackendError::Internal("body not read to its end".into()), w.chunks),
            },
            // The data path already removed what it wrote.
            Err(e) => (body::body_error(&verdict).unwrap_or_else(|| data_err(e)), Vec::new()),
        };
        self.abandon(owner, &chunks).await;
        Err(err)
    }

    /// A fresh owner id for shards about to be written for `key`, recorded
    /// as a write intent first: if the writer dies, the collector finds
    /// the intent and sweeps the owner's shards.
    async fn record_intent(
        &self,
        bucket: &str,
        key: &str,
    ) -> std::result::Result<IntentRecord, MetaError> {
        let intent = IntentRecord {
            owner: new_request_id(),
            bucket: bucket.into(),
            key: key.into(),
            started_ms: record::millis(rules::now_millis()),
        };
        self.meta.write(Command::RecordIntent(intent.clone())).await?;
        Ok(intent)
    }

    /// Re-records `intent` as just started every renewal period, for as
    /// long as the write runs: a write slower than the collector's intent
    /// TTL (5 TiB at 200 MB/s takes 7 h) is then never taken for a dead
    /// gateway's and swept from under it. A failed renewal is retried at
    /// the next period (the TTL is six of them).
    async fn renew_intent(&self, intent: IntentRecord) -> std::convert::Infallible {
        loop {
            let every = Duration::from_millis(self.intent_renew_ms.load(Ordering::Relaxed));
            tokio::time::sleep(every).await;
            let renewed =
                IntentRecord { started_ms: record::millis(rules::now_millis()), ..intent.clone() };
            if let Err(e) = self.meta.write(Command::RecordIntent(renewed)).await {
                tracing::warn!(error = %e, owner = %format!("{:032x}", intent.owner),
                    "renewing a write intent failed; retrying at the next period");
            }
        }
    }

    /// Shortens the period of intent renewals (tests that shorten the
    /// collector's intent TTL).
    pub fn set_intent_renewal(&self, every: Duration) {
        self.intent_renew_ms.store(every.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    /// Ends the intent of a write that failed, or whose commit answered
    /// with an error that does not say whether it applied (a lost leader).
    /// Raft orders this after any such commit, so the answer is final:
    /// `Some(true)` — a record references the owner, the write committed
    /// after all; `Some(false)` — nothing does and nothing ever will (a late
    /// commit fails with `ChunksGone`), so the known `chunks` are deleted
    /// now and the collector sweeps any others after its grace; `None` —
    /// the metadata plane did not answer, nothing is deleted, and the
    /// collector ends the intent once it is stale.
    async fn abandon(
        &self,
        owner: u128,
        chunks: &[predastore_core::meta::ChunkLayout],
    ) -> Option<bool> {
        match self.meta.write_freeing(Command::AbandonIntent { owner }).await {
            Ok(f) if f.freed.iter().any(|g| g.owner == owner) => {
                let failed = self.data.delete_object(chunks).await;
                if !failed.is_empty() {
                    tracing::warn!(owner = %format!("{owner:032x}"), failed = failed.len(),
                        "shards of a failed write not deleted yet; the collector sweeps them");
                }
                Some(false)
            }
            Ok(_) => Some(true),
            Err(e) => {
                tracing::warn!(error = %e, owner = %format!("{owner:032x}"),
                    "ending a write intent failed; the collector will end it");
                None
            }
        }
    }

    /// Chunks a commit freed are not deleted here: a GET of the replaced
    /// version may still be streaming them. They stay on record and the
    /// [`collector`] deletes them once they are older than its grace
    /// period.
    fn free_later(&self, freed: Vec<predastore_core::meta::GarbageRecord>) {
        if !freed.is_empty() {
            let chunks: usize = freed.iter().map(|g| g.chunks.len()).sum();
            tracing::debug!(chunks, "chunks freed; the collector deletes them after its grace");
        }
    }

    /// Commits `rec` for `key` under `expect`; on failure deletes the
    /// shards the record would have referenced.
    async fn commit(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        rec: ObjectRecord,
        expect: Precondition,
        owner: Option<u128>,
    ) -> Result<()> {
        let chunks = rec.chunks.clone();
        // A record naming missing shards goes on the degraded index once
        // committed.
        let degraded = degraded::copy_if_degraded(&rec);
        match self.meta.put_object(bucket, key, rec, expect).await {
            Ok(f) => {
                self.free_later(f.freed);
                if let Some(rec) = degraded {
                    self.note_missing(bucket, key, &rec).await;
                }
                Ok(())
            }
            Err(e) => {
                if let Some(owner) = owner
                    && self.abandon(owner, &chunks).await == Some(true)
                {
                    tracing::info!(bucket, key, error = %e, "the commit applied despite the error");
                    if let Some(rec) = degraded {
                        self.note_missing(bucket, key, &rec).await;
                    }
                    return Ok(());
                }
                Err(meta_err(e))
            }
        }
    }

    /// The upload, checked to belong to `key`, with its parts when
    /// `with_parts` (only Complete and ListParts need them).
    async fn upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        with_parts: bool,
    ) -> Result<(predastore_core::meta::MultipartUpload, Vec<PartRecord>)> {
        let (bucket, upload_id) = (bucket.to_string(), upload_id.to_string());
        let q = if with_parts {
            Query::ListParts { bucket, upload_id: upload_id.clone() }
        } else {
            Query::GetUpload { bucket, upload_id: upload_id.clone() }
        };
        match self.meta.read(q).await.map_err(meta_err)? {
            Reply::Parts(u, parts) if u.key == key => Ok((u, parts)),
            Reply::Parts(..) => Err(BackendError::NoSuchUpload { upload_id }),
            r => Err(unexpected(r)),
        }
    }
}

#[async_trait]
impl Backend for DistributedBackend {
    fn kind(&self) -> &'static str {
        "distributed"
    }

    fn storage_classes(&self) -> Vec<String> {
        self.inner.classes.read().expect("classes lock").keys().cloned().collect()
    }

    fn request_memory(&self) -> RequestMemory {
        self.memory
    }

    async fn set_bucket_storage_class(&self, bucket: &str, class: &str) -> Result<()> {
        let inner = &self.inner;
        inner.class(Some(class))?;
        let cmd = Command::SetBucketClass { name: bucket.into(), storage_class: class.into() };
        inner.meta.write(cmd).await.map_err(meta_err)?;
        inner.bucket_classes.lock().expect("class cache poisoned").remove(bucket);
        Ok(())
    }

    async fn ready(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed)
    }

    async fn cluster(&self) -> ClusterView {
        let inner = &self.inner;
        let ready = inner.is_ready();
        ClusterView {
            nodes: inner
                .nodes()
                .iter()
                .map(|n| NodeView {
                    id: n.id,
                    addr: n.addr.clone(),
                    healthy: ready && !inner.data.health().is_down(n.id),
                })
                .collect(),
            // The readiness probe asks every second; the request client
            // only learns the leader from traffic.
            leader: inner.probe.leader().or_else(|| inner.meta.leader()).map(|n| n.id),
            ring_epoch: inner.ring().map_or(0, |r| r.epoch()),
            storage_classes: inner
                .classes
                .read()
                .expect("classes lock")
                .iter()
                .map(|(name, e)| StorageClassView {
                    name: name.clone(),
                    data_shards: e.data_shards,
                    parity_shards: e.parity_shards,
                    write_quorum: e.write_quorum(),
                    acked_write_survives: e.write_quorum().saturating_sub(e.data_shards),
                })
                .collect(),
        }
    }

    async fn create_bucket(&self, bucket: &str, public: bool) -> Result<()> {
        self.inner.create_bucket(bucket, public).await
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        self.inner
            .meta
            .write(Command::DeleteBucket { name: bucket.into() })
            .await
            .map(|_| ())
            .map_err(meta_err)
    }

    async fn bucket(&self, bucket: &str) -> Result<BucketInfo> {
        let b = self.inner.bucket_record(bucket).await?;
        Ok(BucketInfo {
            name: b.name,
            created: record::time_from_millis(b.created_ms),
            public: b.public,
        })
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        Ok(self
            .inner
            .bucket_records()
            .await?
            .into_iter()
            .map(|b| BucketInfo {
                name: b.name,
                created: record::time_from_millis(b.created_ms),
                public: b.public,
            })
            .collect())
    }

    async fn set_bucket_public(&self, bucket: &str, public: bool) -> Result<()> {
        let b = self.inner.bucket_record(bucket).await?;
        self.inner
            .meta
            .write(Command::UpdateBucket { name: bucket.into(), public, policy: b.policy })
            .await
            .map(|_| ())
            .map_err(meta_err)
    }

    /// Walks each bucket's listing: the metadata plane keeps no counters
    /// yet, so this costs one page read per 1000 objects.
    async fn usage(&self) -> Result<Vec<BucketUsage>> {
        let mut out = Vec::new();
        for b in self.inner.bucket_records().await? {
            let (mut objects, mut bytes) = (0u64, 0u64);
            let mut continuation = None;
            loop {
                let page = self
                    .inner
                    .meta
                    .list(whole_bucket(&b.name, continuation))
                    .await
                    .map_err(meta_err)?;
                objects += page.objects.len() as u64;
                bytes += page.objects.iter().map(|o| o.size).sum::<u64>();
                continuation = page.next_continuation;
                if continuation.is_none() {
                    break;
                }
            }
            out.push(BucketUsage {
                name: b.name,
                objects,
                bytes,
                public: b.public,
                storage_class: b.storage_class,
            });
        }
        Ok(out)
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        rules::check_key(key)?;
        let rec = self.inner.object(bucket, key).await?;
        record::info_of(key, &rec)
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ReadRange>,
    ) -> Result<GetResult> {
        rules::check_key(key)?;
        let rec = self.inner.object(bucket, key).await?;
        let info = record::info_of(key, &rec)?;
        let range = range.map(|r| r.resolve(&info)).transpose()?;
        let want = range.clone().unwrap_or(0..info.size);
        let body: ByteStream = match &rec.inline {
            Some(data) => {
                let (s, e) = (want.start as usize, want.end as usize);
                let bytes = Bytes::copy_from_slice(data.get(s..e).ok_or_else(|| {
                    BackendError::Internal(format!("inline data of {bucket}/{key} is short"))
                })?);
                Box::pin(futures::stream::iter([Ok(bytes)]))
            }
            None => {
                let what = format!("{bucket}/{key}");
                // This read's own observer: a shard found lost queues the
                // object for healing once the read is over.
                let watch = heal::ReadWatch::new();
                let data = self.inner.data.clone().with_observer(watch.clone());
                let heal_guard = heal::QueueOnDrop {
                    watch,
                    wanted: Some(heal::Wanted {
                        bucket: bucket.into(),
                        key: key.into(),
                        version: rec.version_id,
                    }),
                    queue: self.inner.heal_queue.clone(),
                };
                let mut s = Box::pin(data.read_range(&rec.chunks, want).map_err(data_err)?);
                // The first chunk is read before the answer starts: an object
                // whose data cannot be read now gets a 503, not a 200 whose
                // body breaks off. Later chunks can still fail mid-stream.
                let first = match s.next().await.transpose() {
                    Ok(first) => first,
                    Err(e) => {
                        tracing::error!(object = %what, error = %e, "object not readable");
                        return Err(data_err(e));
                    }
                };
                let rest = s.map(move |r| {
                    let _ = &heal_guard;
                    r.map_err(|e| {
                        tracing::error!(object = %what, error = %e, "read failed mid-stream");
                        std::io::Error::other(e.to_string())
                    })
                });
                Box::pin(futures::stream::iter(first.map(Ok)).chain(rest))
            }
        };
        Ok(GetResult { info, range, body })
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectInfo> {
        rules::check_key(key)?;
        let inner = &self.inner;
        let (class_name, class) = inner.class_for(bucket, opts.storage_class.as_deref()).await?;
        // Fail fast before reading the body; enforced again at commit.
        let expect = inner.precondition(bucket, key, &opts.condition).await?;
        if expect == Precondition::Absent && inner.current(bucket, key).await?.is_some() {
            return Err(BackendError::PreconditionFailed);
        }
        let mut checked = CheckedBody::new(body, opts.size, opts.check)?;
        let inline_fits = opts.size.is_none_or(|n| n <= inner.inline_max);
        let head = if inline_fits {
            body::read_head(&mut checked, inner.inline_max).await?
        } else {
            Head::Partial(Vec::new())
        };
        let mut info = ObjectInfo {
            key: key.into(),
            size: 0,
            etag: String::new(),
            last_modified: rules::now_millis(),
            http: opts.http,
            user_meta: opts.user_meta,
            checksums: Checksums::default(),
            storage_class: class_name,
            parts: Vec::new(),
            tags: opts.tags,
            upload_id: None,
        };
        match head {
            Head::Whole(parts) => {
                let summary = checked.finish()?;
                info.size = summary.size;
                info.etag = summary.md5_hex;
                info.checksums = summary.checksums;
                let mut rec = record::record_of(&info, new_request_id(), Vec::new());
                rec.inline = Some(body::concat(parts));
                inner.commit(bucket, key, rec, expect, None).await?;
            }
            Head::Partial(head) => {
                // No shard is written for a bucket that does not exist.
                inner.bucket_record(bucket).await?;
                let (owner, w, summary) =
                    inner.write_chunks(bucket, key, key, head, checked, &class).await?;
                info.size = summary.size;
                info.etag = summary.md5_hex;
                info.checksums = summary.checksums;
                let mut rec = record::record_of(&info, owner, missing_names(&w));
                rec.chunks = w.chunks.clone();
                inner.commit(bucket, key, rec, expect, Some(owner)).await?;
                acknowledged(bucket, key, &w);
            }
        }
        Ok(info)
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        rules::check_key(key)?;
        let f = self
            .inner
            .meta
            .delete_object(bucket, key, Precondition::None)
            .await
            .map_err(meta_err)?;
        self.inner.free_later(f.freed);
        Ok(())
    }

    async fn set_object_tags(
        &self,
        bucket: &str,
        key: &str,
        tags: Vec<(String, String)>,
    ) -> Result<()> {
        rules::check_key(key)?;
        // Read-modify-write under compare-and-set; a racing PUT wins and
        // the tags go onto the version current after it. Every rewrite of
        // a record gets a new version id, so a writer that read the record
        // before (a repair) cannot put the old tags back.
        for _ in 0..8 {
            let cur = self.inner.object(bucket, key).await?;
            let mut info = record::info_of(key, &cur)?;
            info.tags = tags.clone();
            let mut rec = record::record_of(&info, new_request_id(), record::missing_of(&cur));
            rec.chunks = cur.chunks.clone();
            rec.inline = cur.inline.clone();
            match self
                .inner
                .commit(bucket, key, rec, Precondition::VersionIs(cur.version_id), None)
                .await
            {
                Err(BackendError::PreconditionFailed) => continue,
                other => return other,
            }
        }
        Err(BackendError::Unavailable("the object kept changing while its tags were set".into()))
    }

    async fn list_objects(&self, bucket: &str, query: &ListQuery) -> Result<ListPage> {
        if query.max_keys == 0 {
            self.bucket(bucket).await?;
            return Ok(ListPage::default());
        }
        let delim = query.delimiter.clone().filter(|d| !d.is_empty());
        // A marker that is a common prefix means "after everything under it".
        let continuation = query.after.as_ref().and_then(|a| {
            let d = delim.as_deref()?;
            let rest = a.strip_prefix(query.prefix.as_str())?;
            (rest.ends_with(d) && rest.find(d) == Some(rest.len() - d.len()))
                .then(|| listing::prefix_successor(a))
                .flatten()
                .map(String::into_bytes)
        });
        let page = self
            .inner
            .meta
            .list(ListRequest {
                bucket: bucket.into(),
                prefix: query.prefix.clone(),
                delimiter: delim,
                start_after: query.after.clone(),
                continuation,
                max_keys: u32::try_from(query.max_keys.min(1000)).unwrap_or(1000),
            })
            .await
            .map_err(meta_err)?;
        let objects: Vec<listing::ListEntry> = page
            .objects
            .into_iter()
            .map(|o| listing::ListEntry {
                key: o.key,
                size: o.size,
                etag: o.etag,
                last_modified: record::time_from_millis(o.modified_ms),
                storage_class: o.storage_class,
            })
            .collect();
        let is_truncated = page.next_continuation.is_some();
        let last_key = objects.last().map(|o| o.key.clone());
        let last_prefix = page.common_prefixes.last().cloned();
        let next_marker = if is_truncated { last_key.max(last_prefix) } else { None };
        Ok(ListPage { objects, common_prefixes: page.common_prefixes, is_truncated, next_marker })
    }

    /// Shares the source's chunks (or inline bytes) when the bytes need no
    /// rehashing: a single-part source (its ETag is the MD5 of the bytes),
    /// the same storage class, and no checksum the source lacks.
    async fn copy_by_reference(
        &self,
        src: (&str, &str),
        src_etag: &str,
        dst: (&str, &str),
        opts: &PutOptions,
    ) -> Result<Option<ObjectInfo>> {
        let inner = &self.inner;
        let Some(cur) = inner.current(src.0, src.1).await? else { return Ok(None) };
        let src_info = record::info_of(src.1, &cur)?;
        let class = opts.storage_class.clone().unwrap_or_else(|| cur.storage_class.clone());
        let has_all = opts
            .check
            .compute
            .iter()
            .all(|a| src_info.checksums.iter().any(|(n, _)| n.eq_ignore_ascii_case(a)));
        if cur.etag != src_etag
            || !src_info.parts.is_empty()
            || class != cur.storage_class
            || !has_all
        {
            return Ok(None);
        }
        rules::check_key(dst.1)?;
        let expect = inner.precondition(dst.0, dst.1, &opts.condition).await?;
        let info = ObjectInfo {
            key: dst.1.into(),
            size: cur.size,
            etag: cur.etag.clone(),
            last_modified: rules::now_millis(),
            http: opts.http.clone(),
            user_meta: opts.user_meta.clone(),
            checksums: src_info.checksums,
            storage_class: class,
            parts: Vec::new(),
            tags: opts.tags.clone(),
            upload_id: None,
        };
        let mut rec = record::record_of(&info, new_request_id(), record::missing_of(&cur));
        rec.chunks = cur.chunks;
        rec.inline = cur.inline;
        let degraded = degraded::copy_if_degraded(&rec);
        match inner.meta.put_object(dst.0, dst.1, rec, expect).await {
            Ok(f) => {
                inner.free_later(f.freed);
                if let Some(rec) = degraded {
                    inner.note_missing(dst.0, dst.1, &rec).await;
                }
                Ok(Some(info))
            }
            // The source was replaced meanwhile and its chunks freed.
            Err(MetaError::ChunksGone(_)) => Ok(None),
            Err(e) => Err(meta_err(e)),
        }
    }

    async fn copy_part_by_reference(
        &self,
        src: (&str, &str),
        src_etag: &str,
        dst: (&str, &str),
        upload_id: &str,
        part_number: u32,
    ) -> Result<Option<PartInfo>> {
        rules::check_part_number(part_number)?;
        let inner = &self.inner;
        let Some(cur) = inner.current(src.0, src.1).await? else { return Ok(None) };
        let src_info = record::info_of(src.1, &cur)?;
        let (u, _) = inner.upload(dst.0, dst.1, upload_id, false).await?;
        if cur.etag != src_etag
            || !src_info.parts.is_empty()
            || cur.inline.is_some()
            || u.storage_class != cur.storage_class
        {
            return Ok(None);
        }
        let info = PartInfo {
            part_number,
            size: cur.size,
            etag: cur.etag.clone(),
            last_modified: rules::now_millis(),
            checksums: Checksums::default(),
        };
        let part = PartRecord {
            part_number,
            size: info.size,
            etag: record::part_etag_field(&info, &record::missing_of(&cur)),
            modified_ms: record::millis(info.last_modified),
            chunks: cur.chunks,
        };
        let cmd = Command::PutPart { bucket: dst.0.into(), upload_id: upload_id.into(), part };
        match inner.meta.write_freeing(cmd).await {
            Ok(f) => {
                inner.free_later(f.freed);
                Ok(Some(info))
            }
            Err(MetaError::ChunksGone(_)) => Ok(None),
            Err(e) => Err(meta_err(e)),
        }
    }

    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        opts: UploadOptions,
    ) -> Result<String> {
        rules::check_key(key)?;
        let class = self.inner.class_for(bucket, opts.storage_class.as_deref()).await?.0;
        let id = rules::new_upload_id();
        let u = record::upload_record(bucket, key, &id, "", &class, &opts, rules::now_millis());
        self.inner.meta.write(Command::CreateUpload(u)).await.map_err(meta_err)?;
        Ok(id)
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: PartBody,
    ) -> Result<PartInfo> {
        rules::check_part_number(part_number)?;
        let inner = &self.inner;
        let (u, _) = inner.upload(bucket, key, upload_id, false).await?;
        let (_, class) = inner.class(Some(&u.storage_class))?;
        let checked = CheckedBody::new(body.stream, body.size, body.check)?;
        let place_as = part_placement_key(key, upload_id, part_number);
        let (owner, w, summary) =
            inner.write_chunks(bucket, key, &place_as, Vec::new(), checked, &class).await?;
        let info = PartInfo {
            part_number,
            size: summary.size,
            etag: summary.md5_hex,
            last_modified: rules::now_millis(),
            checksums: summary.checksums,
        };
        let part = PartRecord {
            part_number,
            size: info.size,
            etag: record::part_etag_field(&info, &missing_names(&w)),
            modified_ms: record::millis(info.last_modified),
            chunks: w.chunks.clone(),
        };
        let cmd = Command::PutPart { bucket: bucket.into(), upload_id: upload_id.into(), part };
        match inner.meta.write_freeing(cmd).await {
            Ok(f) => {
                inner.free_later(f.freed);
                acknowledged(bucket, &format!("{key} (upload {upload_id} part {part_number})"), &w);
            }
            Err(e) => {
                if inner.abandon(owner, &w.chunks).await != Some(true) {
                    return Err(meta_err(e));
                }
            }
        }
        Ok(info)
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<(u32, String)>,
        condition: WriteCondition,
    ) -> Result<ObjectInfo> {
        let inner = &self.inner;
        let (u, stored) = inner.upload(bucket, key, upload_id, true).await?;
        let decoded: Vec<(PartInfo, Vec<String>)> =
            stored.iter().map(record::part_info).collect::<Result<_>>()?;
        let infos: Vec<PartInfo> = decoded.iter().map(|(i, _)| i.clone()).collect();
        let chosen: Vec<_> = rules::choose_parts(&parts, &infos)?
            .into_iter()
            .map(|i| (decoded[i].0.clone(), decoded[i].1.clone(), stored[i].chunks.clone()))
            .collect();
        let infos: Vec<PartInfo> = chosen.iter().map(|(i, _, _)| i.clone()).collect();
        let opts = record::upload_options(&u)?;
        let info = ObjectInfo {
            key: key.into(),
            size: infos.iter().map(|p| p.size).sum(),
            etag: rules::multipart_etag(
                &infos.iter().map(|p| p.etag.as_str()).collect::<Vec<_>>(),
            )?,
            last_modified: rules::now_millis(),
            http: opts.http,
            user_meta: opts.user_meta,
            checksums: rules::composite_checksums(&infos),
            storage_class: u.storage_class.clone(),
            parts: infos.iter().map(|p| p.size).collect(),
            tags: opts.tags,
            upload_id: Some(upload_id.into()),
        };
        let missing: Vec<String> = chosen.iter().flat_map(|(_, m, _)| m.clone()).collect();
        // Which part owns which chunks, to name a part replaced meanwhile.
        let part_of: Vec<(u128, u32)> = chosen
            .iter()
            .flat_map(|(p, _, c)| c.iter().map(move |c| (c.object, p.part_number)))
            .collect();
        let mut rec = record::record_of(&info, new_request_id(), missing);
        rec.chunks = chosen.into_iter().flat_map(|(_, _, c)| c).collect();
        let expect = inner.precondition(bucket, key, &condition).await?;
        let degraded = degraded::copy_if_degraded(&rec);
        let cmd = Command::CompleteUpload {
            bucket: bucket.into(),
            upload_id: upload_id.into(),
            record: rec,
            expect,
        };
        let f = match inner.meta.write_freeing(cmd).await {
            Ok(f) => f,
            // A listed part was uploaded again (or aborted) since it was read.
            Err(MetaError::ChunksGone(owner)) => {
                let n = part_of.iter().find(|(o, _)| *o == owner).map_or(0, |(_, n)| *n);
                return Err(BackendError::InvalidPart { part_number: n });
            }
            Err(e) => return Err(meta_err(e)),
        };
        inner.free_later(f.freed);
        if let Some(rec) = degraded {
            inner.note_missing(bucket, key, &rec).await;
        }
        Ok(info)
    }

    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        self.inner.upload(bucket, key, upload_id, false).await?;
        let cmd = Command::AbortUpload { bucket: bucket.into(), upload_id: upload_id.into() };
        let f = self.inner.meta.write_freeing(cmd).await.map_err(meta_err)?;
        self.inner.free_later(f.freed);
        Ok(())
    }

    async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(UploadInfo, Vec<PartInfo>)> {
        let (u, parts) = self.inner.upload(bucket, key, upload_id, true).await?;
        let parts =
            parts.iter().map(|p| record::part_info(p).map(|(i, _)| i)).collect::<Result<_>>()?;
        Ok((record::upload_info(&u)?, parts))
    }

    async fn list_uploads(&self, bucket: &str, query: &UploadsQuery) -> Result<UploadsPage> {
        // Batches of uploads from the markers on, until they fill the S3
        // page or run out. A prefix the page rolled up is skipped whole,
        // and a request stops after `MAX_BATCHES` with a truncated page
        // (S3 allows short pages), so its work stays bounded.
        const BATCH: u32 = 1000;
        const MAX_BATCHES: usize = 20;
        let delimiter = query.delimiter.as_deref().filter(|d| !d.is_empty());
        let rolled_up = |k: &str| delimiter.is_some_and(|d| k.ends_with(d));
        let mut after = match &query.key_marker {
            Some(k) if rolled_up(k) => Some((past_prefix(k), String::new())),
            Some(k) => Some((k.clone(), query.upload_id_marker.clone().unwrap_or_default())),
            None => None,
        };
        let mut all = Vec::new();
        for _ in 0..MAX_BATCHES {
            let q = Query::UploadsPage {
                bucket: bucket.into(),
                prefix: query.prefix.clone(),
                after: after.clone(),
                limit: BATCH,
            };
            let batch = match self.inner.meta.read(q).await.map_err(meta_err)? {
                Reply::Uploads(us) => us,
                r => return Err(unexpected(r)),
            };
            let done = batch.len() < BATCH as usize;
            for u in &batch {
                all.push(record::upload_info(u)?);
            }
            let page = rules::page_uploads(all.clone(), query);
            if done || page.is_truncated {
                return Ok(page);
            }
            after = batch.last().map(|u| match page.common_prefixes.last() {
                Some(cp) if u.key.starts_with(cp.as_str()) => (past_prefix(cp), String::new()),
                _ => (u.key.clone(), u.upload_id.clone()),
            });
        }
        let mut page = rules::page_uploads(all, query);
        page.is_truncated = true;
        Ok(page)
    }

    async fn repair(&self) -> Result<RepairReport> {
        repair::pass(&self.inner).await.map_err(meta_err)
    }

    async fn last_repair(&self) -> Option<RepairReport> {
        *self.inner.last_repair.lock().expect("repair report lock")
    }

    async fn redundancy(&self) -> Result<Option<Redundancy>> {
        let entries = self.inner.degraded().await.map_err(meta_err)?;
        Ok(Some(Redundancy::of(&entries)))
    }

    async fn scrub(&self, deep: bool, wait: bool) -> Result<Option<ScrubReport>> {
        let inner = Arc::clone(&self.inner);
        let opts = scrub::ScrubOptions { deep, bytes_per_sec: inner.scrub_rate };
        // A task of its own: a client that hangs up does not stop the pass.
        let task = tokio::spawn(async move { scrub::pass(&inner, opts).await });
        if !wait {
            return Ok(None);
        }
        match task.await {
            Ok(r) => r.map(Some).map_err(meta_err),
            Err(e) => Err(BackendError::Internal(format!("scrub task: {e}"))),
        }
    }

    async fn scrub_status(&self) -> ScrubStatus {
        ScrubStatus {
            running: self.inner.scrub_running.load(Ordering::Acquire),
            last: *self.inner.last_scrub.lock().expect("scrub report lock"),
        }
    }

    async fn relocate(&self) -> Result<Option<DrainReport>> {
        let inner = Arc::clone(&self.inner);
        // A task of its own: a client that hangs up does not stop the pass.
        let pass = tokio::spawn(async move { relocate::pass(&inner).await });
        let report = pass.await.map_err(|e| BackendError::Internal(e.to_string()))?;
        Ok(Some(report.map_err(meta_err)?))
    }

    async fn rebalance(&self) -> Result<Option<RebalanceReport>> {
        let inner = Arc::clone(&self.inner);
        // A task of its own: a client that hangs up does not stop the pass.
        let pass = tokio::spawn(async move { rebalance::pass(&inner).await });
        let report = pass.await.map_err(|e| BackendError::Internal(e.to_string()))?;
        Ok(Some(report.map_err(meta_err)?))
    }

    async fn rebalance_status(&self) -> RebalanceStatus {
        RebalanceStatus {
            running: self.inner.rebalance_running.load(Ordering::Acquire),
            last: self
                .inner
                .last_rebalance
                .lock()
                .expect("rebalance report lock")
                .as_ref()
                .map(|(r, _)| r.clone()),
        }
    }

    async fn drain_status(&self) -> Result<DrainStatus> {
        let (_, draining) = relocate::placement(&self.inner).await.map_err(meta_err)?;
        let last = self.inner.last_relocate.lock().expect("relocate report lock").clone();
        let last = last.map(|(r, _)| r);
        Ok(DrainStatus {
            running: self.inner.relocate_running.load(Ordering::Acquire),
            draining: draining
                .iter()
                .map(|d| DrainingView {
                    id: d.id,
                    since_ms: d.since_ms,
                    referenced: d.referenced,
                    referenced_ms: d.referenced_ms,
                    empty: relocate::is_empty(d, last.as_ref()),
                })
                .collect(),
            last,
        })
    }

    async fn close(&self) -> Result<()> {
        for t in self.tasks.lock().expect("tasks lock").drain(..) {
            t.abort();
        }
        self.inner.meta.close().await;
        Ok(())
    }
}

/// A key after every key starting with `prefix` (up to keys continuing
/// with U+10FFFF itself, which a listing then meets again harmlessly).
fn past_prefix(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// `<shard id>@<node>` of each shard a write could not store.
/// Makes an acknowledged write below full redundancy visible to the
/// operator (log and metrics): with the default write quorum of RS(k, 1)
/// (k), a write acknowledged while a node is down survives no further
/// loss until repair rebuilds its missing shards.
fn acknowledged(bucket: &str, key: &str, w: &WrittenObject) {
    if w.missing.is_empty() {
        return;
    }
    let m = crate::metrics::global();
    m.writes_below_full.inc();
    let survives = w.survives().unwrap_or(0);
    if survives == 0 {
        m.writes_unprotected.inc();
    }
    tracing::warn!(
        bucket,
        key,
        survives,
        missing = ?missing_names(w),
        "acknowledged below full redundancy: survives {survives} more node loss(es) until repaired"
    );
}

fn missing_names(w: &WrittenObject) -> Vec<String> {
    w.missing.iter().map(|m| format!("{}@{}", m.shard, m.node)).collect()
}

#[cfg(test)]
mod placement_tests {
    use super::*;

    #[test]
    fn the_parts_of_one_upload_spread_over_the_ring() {
        let members = (0..8).map(|id| Member { id, zone: None });
        let ring = Ring::new(1, members, 128).unwrap();
        let mut used = std::collections::BTreeSet::new();
        for part in 1..=16 {
            let nodes = ring.place("b", &part_placement_key("big", "up-1", part), 0, 3).unwrap();
            used.extend(nodes);
        }
        // Chunk 0 of 16 parts on one key would be 3 nodes; spread, all 8.
        assert_eq!(used.len(), 8, "{used:?}");
        assert_ne!(part_placement_key("k", "u", 1), part_placement_key("k", "u", 2));
    }
}

#[cfg(test)]
mod memory_tests {
    use super::*;

    #[test]
    fn a_request_is_charged_for_its_widest_class_with_parity() {
        let mut classes = BTreeMap::new();
        classes.insert("STANDARD".to_string(), Erasure::new(2, 1));
        let m = request_memory(&classes, 4);
        // 8 MiB chunks, RS(2,1): 12 MiB per chunk, 4 in flight + 1 filling.
        assert_eq!(m, RequestMemory { window: 60 << 20, open: 12 << 20 });
        classes.insert("WIDE".to_string(), Erasure::new(3, 2));
        let wide = (8u64 << 20).div_ceil(3) * 5;
        assert_eq!(request_memory(&classes, 1).window, 2 * wide);
    }
}
