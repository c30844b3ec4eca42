//! Object data path: body bytes ⇄ erasure-coded shards on nodes, with no S3
//! and no metadata in sight. The distributed backend (issue 5) puts an S3
//! object through [`DataPath::write_object`], commits the returned layouts
//! in its Raft record, serves GETs with [`DataPath::read_range`] and frees
//! space with [`DataPath::delete_object`].
//!
//! It lives in core, not in the gateway, because it only needs core pieces
//! (chunker, codec, ring, shard client, [`ChunkLayout`]) and because the
//! nodes' repair and rebalance will read and rewrite chunks the same way;
//! it also lets the node crate's integration tests drive it against real
//! `predastore-node` processes without a dependency on the gateway.
//!
//! # Guarantees
//!
//! - Memory is bounded by `chunks_in_flight` chunks (plus their shards)
//!   whatever the object size: the body is pulled only when a slot frees.
//! - A chunk is written when at least `write_quorum` of its `k + m` shards
//!   are durable; the others are reported as [`MissingShard`]s so repair can
//!   rebuild them. Below quorum the write fails with
//!   [`DataError::QuorumNotMet`] after a best-effort delete of every shard
//!   it may have written.
//! - A read never returns wrong bytes: nodes verify checksums (a bad block
//!   is `Corrupt`, not data), a shard of the wrong length is discarded, and
//!   a chunk with fewer than `k` readable shards fails with
//!   [`DataError::TooFewShards`].
//! - A read replaces a failed shard (`NotFound`, `Corrupt`, `Unavailable`,
//!   …) by the next parity shard at once, and races a parity shard against
//!   a slow one after `hedge_after`, so one stalled node does not stall GETs.
//!   The node that stayed silent is pinged; if it stays silent it is marked
//!   down ([`Health`]) and later chunks do not wait for it at all.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};

use crate::checksum::crc32c;
use crate::client::{NodeAddr, ShardClient, ShardError};
use crate::config::Erasure;
use crate::erasure::{Chunker, Codec, CodecError};
use crate::meta::ChunkLayout;
use crate::ring::{Ring, RingError};
use crate::shard::ShardId;

/// Chunks written or read concurrently by default: one being filled by the
/// body plus a few on the wire keeps nodes busy without unbounded memory.
pub const DEFAULT_CHUNKS_IN_FLIGHT: usize = 4;

/// Why a data-path operation failed. Typed so the S3 layer can map each to
/// its own error (quorum → 503, range → 416, body → 400).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The storage class is unusable (k, m or chunk size).
    #[error("invalid storage class: {0}")]
    InvalidClass(String),
    /// The ring cannot place `k + m` distinct shards.
    #[error("placement failed: {0}")]
    Placement(#[from] RingError),
    /// The ring placed a shard on a node whose address is unknown.
    #[error("no address for node {0}")]
    UnknownNode(u64),
    /// Fewer than `write_quorum` shards of a chunk became durable.
    #[error("chunk {chunk}: only {durable} shards durable, {needed} needed: {errors:?}")]
    QuorumNotMet { chunk: u32, durable: usize, needed: usize, errors: Vec<String> },
    /// Fewer than `k` shards of a chunk could be read.
    #[error("chunk {chunk}: only {readable} shards readable, {needed} needed: {errors:?}")]
    TooFewShards { chunk: u32, readable: usize, needed: usize, errors: Vec<String> },
    /// The requested range is not within the object.
    #[error("range {start}..{end} not within an object of {size} bytes")]
    InvalidRange { start: u64, end: u64, size: u64 },
    /// The layout list is inconsistent (a bug or a damaged record).
    #[error("bad layout: {0}")]
    BadLayout(String),
    /// The body stream failed.
    #[error("body failed: {0}")]
    Body(String),
    /// Encoding or decoding failed where it should not have.
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    /// No set of the chunk's readable shards decodes to the bytes its
    /// content checksum names: the chunk is lost (never served).
    #[error("chunk {chunk}: no set of its shards decodes to the bytes that were written")]
    ContentMismatch { chunk: u32 },
}

/// A shard that was placed but is not durable: repair must rebuild it on
/// `node` (the layout still names that node, so placement stays the ring's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingShard {
    /// The shard.
    pub shard: ShardId,
    /// The node it was meant for.
    pub node: u64,
    /// Why the put failed.
    pub reason: String,
}

/// Result of [`DataPath::write_object`].
///
/// Missing shards are reported beside the layouts rather than inside
/// [`ChunkLayout`]: the layout is part of the postcard-encoded object
/// record in the Raft log, and a new field would change that format
/// (`meta::RECORD_VERSION`). Readers do not need the list — a missing shard
/// reads as `NotFound` and is replaced by parity — so it belongs to repair.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WrittenObject {
    /// One layout per chunk, in order; their `len`s sum to `size`.
    pub chunks: Vec<ChunkLayout>,
    /// Shards below full redundancy, for repair.
    pub missing: Vec<MissingShard>,
    /// Bytes written.
    pub size: u64,
}

impl WrittenObject {
    /// How many more shard (node) losses every chunk survives as written:
    /// parity minus the chunk's missing shards, the least over chunks
    /// (`None` without chunks). What an acknowledged write promises until
    /// repair restores the missing shards.
    pub fn survives(&self) -> Option<u8> {
        self.chunks
            .iter()
            .map(|c| {
                let missing = self
                    .missing
                    .iter()
                    .filter(|s| s.shard.object == c.object && s.shard.chunk == c.chunk)
                    .count();
                c.parity_shards.saturating_sub(u8::try_from(missing).unwrap_or(u8::MAX))
            })
            .min()
    }
}

/// What a scrub found of one shard ([`DataPath::check_chunk`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardHealth {
    /// Present and sound (deep: every block was read and passed).
    Intact,
    /// The node has no such shard: a wiped or replaced disk, a lost file.
    Missing,
    /// The node found it failing a checksum, or it has the wrong length.
    Corrupt(String),
    /// Its node could not be asked (believed down, unreachable): unknown.
    Unchecked(String),
}

impl ShardHealth {
    /// Whether the shard needs rebuilding (known lost, not merely unknown).
    pub fn is_lost(&self) -> bool {
        matches!(self, Self::Missing | Self::Corrupt(_))
    }
}

/// What a scrub found of one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkCheck {
    /// Each shard's state, by shard index.
    pub shards: Vec<ShardHealth>,
    /// Deep checks of a chunk whose every shard was read intact: whether
    /// parity matches data. `Some(false)` means a shard holds wrong bytes
    /// under valid checksums (written wrong), which no CRC can catch.
    pub consistent: Option<bool>,
    /// Deep checks of a chunk with a content checksum and `k` shards read
    /// intact: whether they decode to the bytes written. A shard whose
    /// bytes differ from what those bytes encode to is reported `Corrupt`
    /// (fixable); `Some(false)` means no set of shards gives the written
    /// bytes: the chunk is lost.
    pub content: Option<bool>,
    /// Shard bytes the nodes sent.
    pub bytes_read: u64,
}

/// The chunk decoded from `shards` (by index; `None`: unreadable) whose
/// CRC-32C is `want`: from all of them, else leaving each one out in turn
/// (one shard with wrong bytes is found that way, with `m >= 1` and one
/// shard to spare). Returns the bytes and the index left out, if any;
/// `None` when no such set decodes to `want` (the chunk is lost).
pub fn decode_checked(
    codec: &Codec,
    shards: &[Option<Bytes>],
    len: usize,
    want: u32,
) -> Option<(Bytes, Option<usize>)> {
    let try_decode =
        |s: Vec<Option<Bytes>>| codec.reconstruct(s, len).ok().filter(|b| crc32c(b) == want);
    if let Some(b) = try_decode(shards.to_vec()) {
        return Some((b, None));
    }
    (0..shards.len()).filter(|&i| shards[i].is_some()).find_map(|i| {
        let mut s = shards.to_vec();
        s[i] = None;
        try_decode(s).map(|b| (b, Some(i)))
    })
}

/// `(consistent, content, wrong shard indexes)`: see [`deep_check`].
type DeepVerdict = (Option<bool>, Option<bool>, Vec<usize>);

/// The deep verdict on one chunk's shards (`None`: not read intact):
/// `(consistent, content, wrong shard indexes)` as [`ChunkCheck`] reports
/// them. With a content checksum, the written bytes are found
/// ([`decode_checked`]) and re-encoded, and every shard that differs from
/// its re-encoding is wrong, data or parity alike. Without one (records
/// of version 1), only whether parity matches data when all are intact.
fn deep_check(
    codec: &Codec,
    shards: &[Option<Bytes>],
    len: usize,
    content_crc: Option<u32>,
) -> Result<DeepVerdict, DataError> {
    let all: Option<Vec<Bytes>> = shards.iter().cloned().collect();
    let verify = |all: &[Bytes]| codec.verify(all);
    let readable = shards.iter().flatten().count();
    let Some(want) = content_crc.filter(|_| readable >= codec.data_shards()) else {
        let consistent = all.map(|a| verify(&a)).transpose()?;
        return Ok((consistent, None, Vec::new()));
    };
    let Some((data, _)) = decode_checked(codec, shards, len, want) else {
        let consistent = all.map(|a| verify(&a)).transpose()?;
        return Ok((consistent, Some(false), Vec::new()));
    };
    let expected = codec.encode(&data);
    let wrong: Vec<usize> = shards
        .iter()
        .enumerate()
        .filter(|(i, b)| b.as_ref().is_some_and(|b| *b != expected[*i]))
        .map(|(i, _)| i)
        .collect();
    let consistent = if wrong.is_empty() { all.map(|_| true) } else { None };
    Ok((consistent, Some(true), wrong))
}

/// The codec and chunk length of a layout, or why the layout is unusable
/// (checked before any index into `nodes` or any shard offset is computed).
fn check_layout(l: &ChunkLayout) -> Result<(Codec, usize), DataError> {
    let (k, m) = (usize::from(l.data_shards), usize::from(l.parity_shards));
    if l.nodes.len() != k + m {
        return Err(DataError::BadLayout(format!(
            "chunk {} has {} nodes for RS({k},{m})",
            l.chunk,
            l.nodes.len()
        )));
    }
    let codec = Codec::new(k, m)?;
    let len = usize::try_from(l.len).map_err(|_| DataError::BadLayout("chunk len".into()))?;
    if codec.shard_len(len) as u64 != l.shard_len {
        return Err(DataError::BadLayout(format!("chunk {} shard length", l.chunk)));
    }
    Ok((codec, len))
}

/// A shard whose delete failed (the node keeps an orphan until scrub).
#[derive(Debug)]
pub struct FailedDelete {
    /// The shard.
    pub shard: ShardId,
    /// Its node.
    pub node: u64,
    /// Why.
    pub error: ShardError,
}

/// What the data path reports as it works, for metrics: the gateway counts
/// and times these without the data path knowing about Prometheus.
pub trait Observer: Send + Sync {
    /// One shard operation (`put`, `get`, or `ping` of a silent node) on
    /// `node` took `seconds`; `ok` if it succeeded.
    fn shard_op(&self, node: u64, op: &'static str, seconds: f64, ok: bool) {
        let _ = (node, op, seconds, ok);
    }
    /// A chunk read needed a shard other than its first choice.
    fn degraded_read(&self) {}
    /// A chunk was rebuilt from parity (a data shard was not used).
    fn reconstructed(&self) {}
    /// A node reported a shard failing its checksum.
    fn corrupt_shard(&self, node: u64, shard: ShardId, reason: &str) {
        let _ = (node, shard, reason);
    }
    /// A read found a shard its node does not have, or has corrupt: the
    /// chunk is below full redundancy (heal on read).
    fn lost_shard(&self, node: u64, shard: ShardId) {
        let _ = (node, shard);
    }
}

/// Nodes believed down. A shard on a down node is not waited for: reads
/// use parity at once and writes record it missing, so a dead node costs
/// no timeouts per chunk. A node is marked down when it cannot be reached,
/// or when it leaves a shard operation unanswered for `hedge_after` and
/// then a ping as well (a killed process sends no error); it is up again
/// when [`DataPath::probe_down_nodes`] reaches it.
#[derive(Debug, Default)]
pub struct Health {
    down: std::sync::Mutex<std::collections::BTreeSet<u64>>,
    /// Nodes being pinged after a shard operation on them went unanswered.
    checking: std::sync::Mutex<std::collections::BTreeSet<u64>>,
}

impl Health {
    /// Whether `node` is believed down.
    pub fn is_down(&self, node: u64) -> bool {
        self.down.lock().expect("health lock").contains(&node)
    }

    /// Records that `node` could not be reached.
    pub fn mark_down(&self, node: u64) {
        if self.down.lock().expect("health lock").insert(node) {
            tracing::warn!(node, "storage node unreachable; reading around it");
        }
    }

    /// Records that `node` answered.
    pub fn mark_up(&self, node: u64) {
        if self.down.lock().expect("health lock").remove(&node) {
            tracing::info!(node, "storage node reachable again");
        }
    }

    /// Claims the one liveness check of `node` (false when one is under
    /// way or the node is already believed down).
    fn start_check(&self, node: u64) -> bool {
        !self.is_down(node) && self.checking.lock().expect("health lock").insert(node)
    }

    fn end_check(&self, node: u64) {
        self.checking.lock().expect("health lock").remove(&node);
    }

    /// The nodes believed down.
    pub fn down(&self) -> Vec<u64> {
        self.down.lock().expect("health lock").iter().copied().collect()
    }
}

/// Reports nothing.
struct Silent;
impl Observer for Silent {}

/// Writes, reads and deletes objects as erasure-coded chunks. Cheap to
/// clone (all state is shared), so streams it returns own what they need.
#[derive(Clone)]
pub struct DataPath {
    client: Arc<ShardClient>,
    /// Where each node is; replaced as the committed ring changes.
    addrs: Arc<std::sync::RwLock<Arc<HashMap<u64, NodeAddr>>>>,
    in_flight: usize,
    hedge_after: Duration,
    observer: Arc<dyn Observer>,
    health: Arc<Health>,
}

/// How long a read waits for a shard before racing a parity shard against
/// it by default: well above a healthy fetch of an 8 MiB chunk's shard, well
/// below the client's deadlines, so a stalled node costs little latency.
pub const DEFAULT_HEDGE_AFTER: Duration = Duration::from_millis(1500);

impl DataPath {
    /// A data path over `client`, reaching node `id` at `addrs[id]`;
    /// `chunks_in_flight` (≥ 1) bounds memory and parallelism per call.
    pub fn new(
        client: Arc<ShardClient>,
        addrs: impl IntoIterator<Item = NodeAddr>,
        chunks_in_flight: usize,
    ) -> Self {
        Self {
            client,
            addrs: Arc::new(std::sync::RwLock::new(Arc::new(
                addrs.into_iter().map(|a| (a.id, a)).collect(),
            ))),
            in_flight: chunks_in_flight.max(1),
            hedge_after: DEFAULT_HEDGE_AFTER,
            observer: Arc::new(Silent),
            health: Arc::new(Health::default()),
        }
    }

    /// Which nodes are believed down.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Pings every node believed down (with `timeout`) and marks those
    /// that answer as up. Call it periodically.
    pub async fn probe_down_nodes(&self, timeout: Duration) {
        for node in self.health.down() {
            let Ok(addr) = self.addr(node) else { continue };
            if self.client.ping(&addr, timeout).await {
                self.health.mark_up(node);
            }
        }
    }

    /// Notes what an error says about the node's reachability.
    fn note(&self, node: u64, e: &ShardError) {
        if matches!(e, ShardError::Unavailable { .. }) {
            self.health.mark_down(node);
        }
    }

    /// A shard operation on `node` went unanswered for `hedge_after`. A
    /// node killed without closing its connection sends no error, so
    /// without this every chunk touching it would wait out a hedge until
    /// the connection's idle timeout. Pings it in the background (once at a
    /// time) and marks it down if it does not answer within `hedge_after`
    /// either; a node that is merely busy answers the ping.
    fn suspect(&self, node: u64) {
        if !self.health.start_check(node) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Ok(addr) = this.addr(node) {
                let t = std::time::Instant::now();
                let alive = this.client.ping(&addr, this.hedge_after).await;
                this.observer.shard_op(node, "ping", t.elapsed().as_secs_f64(), alive);
                if !alive {
                    this.health.mark_down(node);
                }
            }
            this.health.end_check(node);
        });
    }

    /// The shard client underneath (for listings by the collector).
    pub fn client(&self) -> &ShardClient {
        &self.client
    }

    /// Reports shard operations, degraded reads and corruption to `o`.
    pub fn with_observer(mut self, o: Arc<dyn Observer>) -> Self {
        self.observer = o;
        self
    }

    /// Sets how long a read waits on a shard before also asking for a
    /// parity shard (see [`DEFAULT_HEDGE_AFTER`]).
    pub fn with_hedge_after(mut self, after: Duration) -> Self {
        self.hedge_after = after;
        self
    }

    fn addr(&self, node: u64) -> Result<NodeAddr, DataError> {
        let addrs = self.addrs.read().expect("addrs lock");
        addrs.get(&node).cloned().ok_or(DataError::UnknownNode(node))
    }

    /// Adds or updates node addresses (the committed ring names members
    /// the gateway's cluster file did not); nodes not named keep theirs,
    /// so shards on a node that left the ring stay readable.
    pub fn update_addrs(&self, addrs: impl IntoIterator<Item = NodeAddr>) {
        let mut cur = self.addrs.write().expect("addrs lock");
        let mut next = HashMap::clone(&cur);
        let mut changed = false;
        for a in addrs {
            if next.get(&a.id) != Some(&a) {
                next.insert(a.id, a);
                changed = true;
            }
        }
        if changed {
            *cur = Arc::new(next);
        }
    }

    /// Cuts `body` into `class.chunk_size` chunks, RS-encodes each and puts
    /// its `k + m` shards in parallel on the nodes `ring` places for
    /// (`bucket`, `key`, chunk), as shards of `object` (a fresh version id).
    /// At most `chunks_in_flight` chunks are held at once. An empty body
    /// writes no chunk.
    pub async fn write_object<S, E>(
        &self,
        body: S,
        object: u128,
        class: &Erasure,
        ring: &Ring,
        bucket: &str,
        key: &str,
    ) -> Result<WrittenObject, DataError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let (k, m) = (usize::from(class.data_shards), usize::from(class.parity_shards));
        let codec = Codec::new(k, m)?;
        let quorum = usize::from(class.write_quorum());
        if quorum < k || quorum > k + m {
            return Err(DataError::InvalidClass(format!(
                "write quorum {quorum} not within {k}..={}",
                k + m
            )));
        }
        let chunk_size = usize::try_from(class.chunk_size)
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| DataError::InvalidClass("chunk size".into()))?;
        // Chunk index i gets its placement before its bytes are read, so a
        // failed write knows where every possibly-written shard lives.
        let started = std::sync::Mutex::new(Vec::<Vec<u64>>::new());
        let chunks = Chunker::new(body, chunk_size)
            .map_err(|e| DataError::Body(e.to_string()))
            .enumerate()
            .map(|(i, chunk)| {
                let placed = u32::try_from(i)
                    .map_err(|_| DataError::BadLayout("too many chunks".into()))
                    .and_then(|i| Ok((i, ring.place(bucket, key, u64::from(i), k + m)?)));
                if let Ok((_, nodes)) = &placed {
                    started.lock().expect("not poisoned").push(nodes.clone());
                }
                let codec = codec.clone();
                async move {
                    let chunk = chunk?;
                    let (i, nodes) = placed?;
                    self.write_chunk(&codec, object, i, chunk, nodes, ring.epoch(), quorum).await
                }
            })
            .buffered(self.in_flight);
        let mut chunks = Box::pin(chunks);
        let mut out = WrittenObject::default();
        while let Some(r) = chunks.next().await {
            match r {
                Ok((layout, missing)) => {
                    out.size += layout.len;
                    out.chunks.push(layout);
                    out.missing.extend(missing);
                }
                Err(e) => {
                    drop(chunks);
                    let placed = std::mem::take(&mut *started.lock().expect("not poisoned"));
                    self.cleanup(object, placed).await;
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Encodes and stores one chunk; `(layout, missing shards)` on quorum.
    #[allow(clippy::too_many_arguments)]
    async fn write_chunk(
        &self,
        codec: &Codec,
        object: u128,
        chunk: u32,
        data: Bytes,
        nodes: Vec<u64>,
        ring_epoch: u64,
        quorum: usize,
    ) -> Result<(ChunkLayout, Vec<MissingShard>), DataError> {
        let len = data.len();
        let enc = codec.clone();
        let (shards, content_crc) =
            tokio::task::spawn_blocking(move || (enc.encode(&data), crc32c(&data)))
                .await
                .map_err(|e| DataError::Body(format!("encoder task: {e}")))?;
        let puts = shards.into_iter().zip(&nodes).enumerate().map(|(index, (bytes, &node))| {
            let shard = ShardId { object, chunk, index: index as u8 };
            async move {
                if self.health.is_down(node) {
                    return (shard, node, Err(format!("node {node} is down")));
                }
                let t = std::time::Instant::now();
                let r = match self.addr(node) {
                    Ok(a) => self.client.put_bytes(&a, shard, bytes).await.map_err(|e| {
                        self.note(node, &e);
                        e.to_string()
                    }),
                    Err(e) => Err(e.to_string()),
                };
                self.observer.shard_op(node, "put", t.elapsed().as_secs_f64(), r.is_ok());
                (shard, node, r)
            }
        });
        // Wait for every shard, but once the quorum is durable give the
        // stragglers only `hedge_after` more: a dead or stalled node must
        // not stall the write (its shard is recorded missing for repair).
        let mut pending: futures::stream::FuturesUnordered<_> = puts.collect();
        let mut results = Vec::with_capacity(nodes.len());
        let mut durable = 0;
        let grace = tokio::time::sleep(Duration::from_secs(86_400));
        let mut grace = std::pin::pin!(grace);
        let mut grace_armed = false;
        loop {
            tokio::select! {
                next = pending.next() => match next {
                    None => break,
                    Some(r) => {
                        durable += usize::from(r.2.is_ok());
                        results.push(r);
                        if durable >= quorum && !grace_armed {
                            grace_armed = true;
                            grace.as_mut().reset(tokio::time::Instant::now() + self.hedge_after);
                        }
                    }
                },
                () = &mut grace, if grace_armed => break,
            }
        }
        drop(pending);
        let mut missing: Vec<MissingShard> = results
            .iter()
            .filter_map(|(shard, node, r)| {
                r.as_ref().err().map(|reason| MissingShard {
                    shard: *shard,
                    node: *node,
                    reason: reason.clone(),
                })
            })
            .collect();
        for (index, &node) in nodes.iter().enumerate() {
            let shard = ShardId { object, chunk, index: index as u8 };
            if !results.iter().any(|r| r.0 == shard) {
                let reason = format!("no answer within {:?} after the quorum", self.hedge_after);
                missing.push(MissingShard { shard, node, reason });
                self.suspect(node);
            }
        }
        if durable < quorum {
            return Err(DataError::QuorumNotMet {
                chunk,
                durable,
                needed: quorum,
                errors: missing.iter().map(|m| format!("{}: {}", m.shard, m.reason)).collect(),
            });
        }
        let layout = ChunkLayout {
            object,
            chunk,
            len: len as u64,
            data_shards: codec.data_shards() as u8,
            parity_shards: codec.parity_shards() as u8,
            shard_len: codec.shard_len(len) as u64,
            nodes,
            ring_epoch,
            content_crc: Some(content_crc),
        };
        Ok((layout, missing))
    }

    /// Reads chunk `l` whole (checked against its content CRC) and stores
    /// it again as chunk `chunk` of `object`, encoded in `class`'s code on
    /// `nodes` (placed under `ring_epoch`): the copy a rebalance or a
    /// change of code needs. Every shard must be stored — moving data
    /// must never lower its redundancy — so a node down fails it (the
    /// caller tries again later). The old shards are left alone. On
    /// failure the new shards written are removed (best effort).
    pub async fn rewrite_chunk(
        &self,
        l: &ChunkLayout,
        object: u128,
        chunk: u32,
        class: &Erasure,
        nodes: Vec<u64>,
        ring_epoch: u64,
    ) -> Result<ChunkLayout, DataError> {
        let (k, m) = (usize::from(class.data_shards), usize::from(class.parity_shards));
        let codec = Codec::new(k, m)?;
        if nodes.len() != k + m {
            return Err(DataError::BadLayout(format!("{} nodes for RS({k},{m})", nodes.len())));
        }
        let data = self.read_chunk(l).await?;
        let placed = nodes.clone();
        let r = self.write_chunk(&codec, object, chunk, data, nodes, ring_epoch, k + m).await;
        match r {
            Ok((layout, missing)) if missing.is_empty() => Ok(layout),
            other => {
                let shards = (0..placed.len())
                    .map(|i| (ShardId { object, chunk, index: i as u8 }, placed[i]))
                    .collect();
                self.delete_shards(shards).await;
                Err(match other {
                    Err(e) => e,
                    Ok((_, missing)) => DataError::QuorumNotMet {
                        chunk,
                        durable: k + m - missing.len(),
                        needed: k + m,
                        errors: missing
                            .iter()
                            .map(|m| format!("{}: {}", m.shard, m.reason))
                            .collect(),
                    },
                })
            }
        }
    }

    /// Best-effort removal of every shard a failed write may have stored.
    async fn cleanup(&self, object: u128, placed: Vec<Vec<u64>>) {
        let shards = placed.into_iter().enumerate().flat_map(|(c, nodes)| {
            nodes
                .into_iter()
                .enumerate()
                .map(move |(i, node)| (ShardId { object, chunk: c as u32, index: i as u8 }, node))
        });
        let failed = self.delete_shards(shards.collect()).await;
        if !failed.is_empty() {
            tracing::warn!(object = %format!("{object:032x}"), failed = failed.len(),
                "orphan shards left by a failed write");
        }
    }

    /// Rebuilds shards `indexes` of chunk `l` from the shards that are
    /// there and stores each one on the node the layout names for it: the
    /// repair of a write that left those shards missing. Returns the
    /// indexes now stored; a shard whose node is down or refuses stays
    /// missing. Fails when the chunk itself cannot be read.
    pub async fn repair_chunk(
        &self,
        l: &ChunkLayout,
        indexes: &[u8],
    ) -> Result<Vec<u8>, DataError> {
        let (_, len) = check_layout(l)?;
        let targets: Vec<(u8, u64)> = indexes
            .iter()
            .filter(|&&i| usize::from(i) < l.nodes.len())
            .map(|&i| (i, l.nodes[usize::from(i)]))
            .collect();
        if len == 0 {
            return Ok(Vec::new());
        }
        self.rebuild_onto(l, &targets).await
    }

    /// Rebuilds shards of chunk `l` (read where the layout puts them) and
    /// stores shard `i` on node `n` for each `(i, n)` of `targets` — the
    /// layout's own node for a repair, another one to move a shard off a
    /// draining or dead node. Returns the indexes stored (all of them for
    /// an empty chunk, which has no shard bytes); a shard whose node is
    /// down or refuses is not. Fails when the chunk cannot be read.
    pub async fn rebuild_onto(
        &self,
        l: &ChunkLayout,
        targets: &[(u8, u64)],
    ) -> Result<Vec<u8>, DataError> {
        let (codec, len) = check_layout(l)?;
        let targets: Vec<(usize, u64)> = targets
            .iter()
            .map(|&(i, n)| (usize::from(i), n))
            .filter(|&(i, _)| i < l.nodes.len())
            .collect();
        if len == 0 {
            return Ok(targets.iter().map(|&(i, _)| i as u8).collect());
        }
        if targets.iter().all(|&(_, n)| self.health.is_down(n)) {
            return Ok(Vec::new());
        }
        let data = self.read_chunk(l).await?;
        let shards = tokio::task::spawn_blocking(move || codec.encode(&data))
            .await
            .map_err(|e| DataError::Body(format!("encoder task: {e}")))?;
        let puts = targets.into_iter().map(|(i, node)| {
            let shard = ShardId { object: l.object, chunk: l.chunk, index: i as u8 };
            let bytes = shards[i].clone();
            async move {
                if self.health.is_down(node) {
                    return None;
                }
                let addr = self.addr(node).ok()?;
                let t = std::time::Instant::now();
                let r = self.client.put_bytes(&addr, shard, bytes).await;
                self.observer.shard_op(node, "put", t.elapsed().as_secs_f64(), r.is_ok());
                match r {
                    Ok(()) => Some(i as u8),
                    Err(e) => {
                        tracing::warn!(%shard, node, error = %e, "storing a rebuilt shard failed");
                        self.note(node, &e);
                        None
                    }
                }
            }
        });
        Ok(futures::future::join_all(puts).await.into_iter().flatten().collect())
    }

    /// Checks every shard of chunk `l` on the node the layout names, for
    /// scrub. Light (`deep = false`): a `Stat` per shard, so the node
    /// checks presence, header, block table and length and no data moves;
    /// it finds wiped disks and lost or truncated files. Deep: every shard
    /// is read whole (the node checks each block's CRC-32C as it sends) and,
    /// when all `k + m` are intact, [`Codec::verify`] checks that parity
    /// matches data across the stripe. Shards on nodes believed down are
    /// not asked. Holds one chunk's shards at most.
    pub async fn check_chunk(&self, l: &ChunkLayout, deep: bool) -> Result<ChunkCheck, DataError> {
        let (codec, len) = check_layout(l)?;
        if len == 0 {
            let shards = vec![ShardHealth::Intact; l.nodes.len()];
            let (consistent, content) = (deep.then_some(true), deep.then_some(true));
            return Ok(ChunkCheck { shards, consistent, content, bytes_read: 0 });
        }
        let checks = (0..l.nodes.len()).map(|i| self.check_shard(l, i, deep));
        let (mut shards, bytes): (Vec<ShardHealth>, Vec<Option<Bytes>>) =
            futures::future::join_all(checks).await.into_iter().unzip();
        let bytes_read = bytes.iter().flatten().map(|b| b.len() as u64).sum();
        if !deep {
            return Ok(ChunkCheck { shards, consistent: None, content: None, bytes_read });
        }
        let content_crc = l.content_crc;
        let (consistent, content, wrong) =
            tokio::task::spawn_blocking(move || deep_check(&codec, &bytes, len, content_crc))
                .await
                .map_err(|e| DataError::BadLayout(format!("verify task: {e}")))??;
        for i in wrong {
            let shard = ShardId { object: l.object, chunk: l.chunk, index: i as u8 };
            let reason = "bytes differ from what the chunk's written content encodes to";
            tracing::warn!(%shard, node = l.nodes[i], reason, "scrub found a wrong shard");
            self.observer.corrupt_shard(l.nodes[i], shard, reason);
            shards[i] = ShardHealth::Corrupt(reason.into());
        }
        Ok(ChunkCheck { shards, consistent, content, bytes_read })
    }

    /// One shard's state, with its bytes when `deep` read them intact.
    async fn check_shard(
        &self,
        l: &ChunkLayout,
        index: usize,
        deep: bool,
    ) -> (ShardHealth, Option<Bytes>) {
        let node = l.nodes[index];
        if self.health.is_down(node) {
            return (ShardHealth::Unchecked(format!("node {node} is believed down")), None);
        }
        let Ok(addr) = self.addr(node) else {
            return (ShardHealth::Unchecked(format!("no address for node {node}")), None);
        };
        let shard = ShardId { object: l.object, chunk: l.chunk, index: index as u8 };
        let t = std::time::Instant::now();
        let got = if deep {
            // To the end, so a shard longer than the layout says shows.
            self.client.get(&addr, shard, 0, None).await.map(|b| (b.len() as u64, Some(b)))
        } else {
            self.client.stat(&addr, shard).await.map(|info| (info.len, None))
        };
        let op = if deep { "get" } else { "stat" };
        self.observer.shard_op(node, op, t.elapsed().as_secs_f64(), got.is_ok());
        match got {
            Ok((n, _)) if n != l.shard_len => {
                let reason = format!("{n} bytes, the layout says {}", l.shard_len);
                self.observer.corrupt_shard(node, shard, &reason);
                (ShardHealth::Corrupt(reason), None)
            }
            Ok((_, b)) => (ShardHealth::Intact, b),
            Err(ShardError::NotFound { .. }) => (ShardHealth::Missing, None),
            Err(ShardError::Corrupt { reason, .. }) => {
                tracing::warn!(%shard, node, %reason, "scrub found a corrupt shard");
                self.observer.corrupt_shard(node, shard, &reason);
                (ShardHealth::Corrupt(reason), None)
            }
            Err(e) => {
                self.note(node, &e);
                (ShardHealth::Unchecked(e.to_string()), None)
            }
        }
    }

    /// Deletes every shard of `layouts`, in parallel, best effort. A shard
    /// already gone counts as deleted. Returns the shards still stored (or
    /// unknown) so the caller can log them for scrub.
    pub async fn delete_object(&self, layouts: &[ChunkLayout]) -> Vec<FailedDelete> {
        let shards = layouts
            .iter()
            .flat_map(|l| {
                l.nodes.iter().enumerate().map(|(i, &node)| {
                    (ShardId { object: l.object, chunk: l.chunk, index: i as u8 }, node)
                })
            })
            .collect();
        self.delete_shards(shards).await
    }

    async fn delete_shards(&self, shards: Vec<(ShardId, u64)>) -> Vec<FailedDelete> {
        futures::stream::iter(shards)
            .map(|(shard, node)| async move {
                let addr = match self.addr(node) {
                    Ok(a) => a,
                    Err(e) => {
                        let error = ShardError::Unavailable { node, reason: e.to_string() };
                        return Some(FailedDelete { shard, node, error });
                    }
                };
                match self.client.delete(&addr, shard).await {
                    Ok(()) | Err(ShardError::NotFound { .. }) => None,
                    Err(error) => Some(FailedDelete { shard, node, error }),
                }
            })
            .buffer_unordered(16)
            .filter_map(futures::future::ready)
            .collect()
            .await
    }

    /// Streams bytes `range` of the object made of `layouts` (in order).
    /// Only chunks overlapping the range are fetched; the next one is
    /// fetched while the current one is being consumed (up to
    /// `chunks_in_flight` ahead). Fails up front on a range outside the
    /// object; mid-stream on a chunk that cannot be rebuilt.
    pub fn read_range(
        &self,
        layouts: &[ChunkLayout],
        range: Range<u64>,
    ) -> Result<impl Stream<Item = Result<Bytes, DataError>> + Send + 'static, DataError> {
        let size: u64 = layouts.iter().map(|l| l.len).sum();
        if range.start > range.end || range.end > size {
            return Err(DataError::InvalidRange { start: range.start, end: range.end, size });
        }
        let mut wanted = Vec::new();
        let mut at = 0u64;
        for l in layouts {
            let (start, end) = (at, at + l.len);
            at = end;
            if end > range.start && start < range.end {
                let from = range.start.max(start) - start;
                let to = range.end.min(end) - start;
                wanted.push((l.clone(), from as usize..to as usize));
            }
        }
        let this = self.clone();
        Ok(futures::stream::iter(wanted)
            .map(move |(layout, cut)| {
                let this = this.clone();
                async move {
                    if cut.start == 0 && cut.end as u64 == layout.len {
                        this.read_chunk(&layout).await
                    } else {
                        this.read_part(&layout, cut).await
                    }
                }
            })
            .buffered(self.in_flight))
    }

    /// Fetches the `k` data shards of one chunk, replacing any that fail
    /// with parity shards, and rebuilds the chunk.
    async fn read_chunk(&self, l: &ChunkLayout) -> Result<Bytes, DataError> {
        let (codec, len) = check_layout(l)?;
        let (k, m) = (codec.data_shards(), codec.parity_shards());
        if len == 0 {
            return Ok(Bytes::new());
        }
        let mut slots: Vec<Option<Bytes>> = vec![None; k + m];
        let mut errors = Vec::new();
        let mut have = 0usize;
        // Data shards first; a failed shard is replaced by the next parity
        // shard at once, and a slow one gets a parity shard racing it every
        // `hedge_after`. The first k shards in win; the rest are dropped.
        // Shards on nodes believed down go last.
        let mut order: Vec<usize> = (0..k + m).collect();
        order.sort_by_key(|&i| (self.health.is_down(l.nodes[i]), i));
        let mut pending = futures::stream::FuturesUnordered::new();
        // Shard indexes asked for and not answered yet.
        let mut waiting = std::collections::BTreeSet::new();
        for &i in &order[..k] {
            pending.push(self.indexed_get(l, i));
            waiting.insert(i);
        }
        let mut next = k;
        let hedge = tokio::time::sleep(self.hedge_after);
        let mut hedge = std::pin::pin!(hedge);
        while have < k {
            tokio::select! {
                done = pending.next() => match done {
                    None => break,
                    Some((i, Ok(b))) => {
                        waiting.remove(&i);
                        slots[i] = Some(b);
                        have += 1;
                    }
                    Some((i, Err(e))) => {
                        waiting.remove(&i);
                        errors.push(e);
                        if next < k + m {
                            pending.push(self.indexed_get(l, order[next]));
                            waiting.insert(order[next]);
                            next += 1;
                        }
                    }
                },
                () = &mut hedge, if next < k + m => {
                    for &i in &waiting {
                        self.suspect(l.nodes[i]);
                    }
                    pending.push(self.indexed_get(l, order[next]));
                    waiting.insert(order[next]);
                    next += 1;
                    hedge.as_mut().reset(tokio::time::Instant::now() + self.hedge_after);
                }
            }
        }
        drop(pending);
        if have < k {
            return Err(DataError::TooFewShards {
                chunk: l.chunk,
                readable: have,
                needed: k,
                errors,
            });
        }
        if next > k || order[..k].iter().any(|&i| i >= k) {
            self.observer.degraded_read();
        }
        if slots[..k].iter().any(Option::is_none) {
            self.observer.reconstructed();
            tracing::debug!(chunk = l.chunk, ?errors, "chunk rebuilt from parity");
        }
        let Some(want) = l.content_crc else {
            return tokio::task::spawn_blocking(move || codec.reconstruct(slots, len))
                .await
                .map_err(|e| DataError::BadLayout(format!("decoder task: {e}")))?
                .map_err(DataError::from);
        };
        let dec = codec.clone();
        let first = tokio::task::spawn_blocking(move || {
            dec.reconstruct(slots, len).map(|b| (crc32c(&b) == want).then_some(b))
        })
        .await
        .map_err(|e| DataError::BadLayout(format!("decoder task: {e}")))??;
        match first {
            Some(b) => Ok(b),
            None => self.read_chunk_checked(l, codec, len, want).await,
        }
    }

    /// The slow path of a chunk whose shards decoded to bytes other than
    /// those written (a shard holds wrong bytes under a valid CRC): reads
    /// every shard and finds the one to leave out ([`decode_checked`]),
    /// which is reported corrupt and lost so repair rewrites it.
    async fn read_chunk_checked(
        &self,
        l: &ChunkLayout,
        codec: Codec,
        len: usize,
        want: u32,
    ) -> Result<Bytes, DataError> {
        let gets = (0..l.nodes.len()).map(|i| self.get_shard(l, i));
        let shards: Vec<Option<Bytes>> =
            futures::future::join_all(gets).await.into_iter().map(Result::ok).collect();
        let found = tokio::task::spawn_blocking(move || decode_checked(&codec, &shards, len, want))
            .await
            .map_err(|e| DataError::BadLayout(format!("decoder task: {e}")))?;
        let Some((bytes, wrong)) = found else {
            tracing::error!(object = %format!("{:032x}", l.object), chunk = l.chunk,
                "no set of shards decodes to the chunk's content checksum");
            return Err(DataError::ContentMismatch { chunk: l.chunk });
        };
        if let Some(i) = wrong {
            let (node, shard) =
                (l.nodes[i], ShardId { object: l.object, chunk: l.chunk, index: i as u8 });
            let reason = "bytes differ from the chunk's content checksum";
            tracing::warn!(%shard, node, reason, "wrong shard left out of a read");
            self.observer.corrupt_shard(node, shard, reason);
            self.observer.lost_shard(node, shard);
        }
        Ok(bytes)
    }

    /// Bytes `cut` of one chunk. Healthy case: only the byte ranges of the
    /// data shards that hold `cut` are fetched (a small range of an 8 MiB
    /// chunk moves a few bytes, not the chunk). Any failure, a wrong length
    /// or no answer within `hedge_after` falls back to rebuilding the whole
    /// chunk with parity.
    async fn read_part(&self, l: &ChunkLayout, cut: Range<usize>) -> Result<Bytes, DataError> {
        check_layout(l)?;
        let s = l.shard_len as usize;
        let (first, last) = (cut.start / s, (cut.end - 1) / s);
        if (first..=last).any(|i| self.health.is_down(l.nodes[i])) {
            return Ok(self.read_chunk(l).await?.slice(cut));
        }
        // Which shard fetches answered, so a timeout suspects only the rest.
        let answered: Vec<std::sync::atomic::AtomicBool> =
            (first..=last).map(|_| Default::default()).collect();
        let answered = &answered;
        let gets = (first..=last).map(|i| {
            let lo = if i == first { cut.start - i * s } else { 0 };
            let hi = if i == last { cut.end - i * s } else { s };
            let shard = ShardId { object: l.object, chunk: l.chunk, index: i as u8 };
            async move {
                let addr = self.addr(l.nodes[i]).ok()?;
                let want = (hi - lo) as u64;
                let got = self.client.get(&addr, shard, lo as u64, Some(want)).await;
                answered[i - first].store(true, std::sync::atomic::Ordering::Relaxed);
                if let Err(e) = &got {
                    self.note(l.nodes[i], e);
                }
                let b = got.ok()?;
                (b.len() as u64 == want).then_some(b)
            }
        });
        let parts = tokio::time::timeout(self.hedge_after, futures::future::join_all(gets)).await;
        if parts.is_err() {
            for i in first..=last {
                if !answered[i - first].load(std::sync::atomic::Ordering::Relaxed) {
                    self.suspect(l.nodes[i]);
                }
            }
        }
        match parts.ok().and_then(|p| p.into_iter().collect::<Option<Vec<Bytes>>>()) {
            Some(p) if p.len() == 1 => Ok(p.into_iter().next().expect("one part")),
            Some(p) => Ok(p.concat().into()),
            None => Ok(self.read_chunk(l).await?.slice(cut)),
        }
    }

    async fn indexed_get(&self, l: &ChunkLayout, index: usize) -> (usize, Result<Bytes, String>) {
        (index, self.get_shard(l, index).await)
    }

    /// One whole shard, or why not (any failure means "use another shard").
    async fn get_shard(&self, l: &ChunkLayout, index: usize) -> Result<Bytes, String> {
        let node = l.nodes[index];
        let shard = ShardId { object: l.object, chunk: l.chunk, index: index as u8 };
        let addr = self.addr(node).map_err(|e| e.to_string())?;
        let t = std::time::Instant::now();
        let got = self.client.get(&addr, shard, 0, Some(l.shard_len)).await;
        self.observer.shard_op(node, "get", t.elapsed().as_secs_f64(), got.is_ok());
        if let Err(e) = &got {
            self.note(node, e);
        }
        match &got {
            Err(ShardError::Corrupt { reason, .. }) => {
                tracing::warn!(%shard, node, %reason, "corrupt shard; reading parity instead");
                self.observer.corrupt_shard(node, shard, reason);
                self.observer.lost_shard(node, shard);
            }
            Err(ShardError::NotFound { .. }) => self.observer.lost_shard(node, shard),
            _ => {}
        }
        let b = got.map_err(|e| e.to_string())?;
        if b.len() as u64 != l.shard_len {
            return Err(format!(
                "{shard} on node {node}: {} bytes, expected {}",
                b.len(),
                l.shard_len
            ));
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(chunk: u32, parity: u8) -> ChunkLayout {
        ChunkLayout {
            object: 9,
            chunk,
            len: 1,
            data_shards: 2,
            parity_shards: parity,
            shard_len: 1,
            nodes: vec![0, 1, 2, 3],
            ring_epoch: 1,
            content_crc: None,
        }
    }

    fn missing(chunk: u32, index: u8) -> MissingShard {
        MissingShard { shard: ShardId { object: 9, chunk, index }, node: 0, reason: "down".into() }
    }

    fn flip(s: &mut [Option<Bytes>], i: usize) {
        let mut b = s[i].clone().unwrap().to_vec();
        b[10] ^= 1;
        s[i] = Some(b.into());
    }

    #[test]
    fn a_shard_with_wrong_bytes_is_found_and_never_decoded_into_the_chunk() {
        let codec = Codec::new(2, 1).unwrap();
        let chunk = Bytes::from((0..1000u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>());
        let (len, want) = (chunk.len(), crc32c(&chunk));
        let good: Vec<Option<Bytes>> = codec.encode(&chunk).into_iter().map(Some).collect();
        assert_eq!(decode_checked(&codec, &good, len, want), Some((chunk.clone(), None)));
        assert_eq!(
            deep_check(&codec, &good, len, Some(want)).unwrap(),
            (Some(true), Some(true), vec![])
        );
        for bad in 0..3 {
            let mut s = good.clone();
            flip(&mut s, bad);
            let (bytes, left_out) = decode_checked(&codec, &s, len, want).expect("one spare shard");
            assert_eq!(bytes, chunk, "shard {bad} wrong");
            // A wrong parity shard is not used when both data shards are there.
            assert_eq!(left_out, (bad < 2).then_some(bad));
            // Scrub names the wrong shard, parity or data.
            assert_eq!(
                deep_check(&codec, &s, len, Some(want)).unwrap(),
                (None, Some(true), vec![bad])
            );
            // Without a content checksum (version-1 records) only the
            // inconsistency shows, not which shard.
            assert_eq!(deep_check(&codec, &s, len, None).unwrap(), (Some(false), None, vec![]));
        }
        // Two wrong shards of RS(2,1): nothing decodes to the written bytes.
        let mut s = good.clone();
        flip(&mut s, 0);
        flip(&mut s, 1);
        assert_eq!(decode_checked(&codec, &s, len, want), None);
        assert_eq!(deep_check(&codec, &s, len, Some(want)).unwrap().1, Some(false));
        // Bytes wrong before they were encoded (all shards agree with each
        // other): the chunk is lost, and said so.
        let mut other = chunk.to_vec();
        other[3] ^= 1;
        let s: Vec<Option<Bytes>> = codec.encode(&other).into_iter().map(Some).collect();
        assert_eq!(decode_checked(&codec, &s, len, want), None);
        assert_eq!(
            deep_check(&codec, &s, len, Some(want)).unwrap(),
            (Some(true), Some(false), vec![])
        );
        // One shard missing and one wrong: no spare, so no guess.
        let mut s = good.clone();
        s[2] = None;
        flip(&mut s, 0);
        assert_eq!(decode_checked(&codec, &s, len, want), None);
    }

    #[test]
    fn an_acknowledged_write_survives_its_least_protected_chunk() {
        let mut w =
            WrittenObject { chunks: vec![layout(0, 2), layout(1, 2)], ..Default::default() };
        assert_eq!(w.survives(), Some(2), "all shards written: m more losses");
        w.missing = vec![missing(1, 3)];
        assert_eq!(w.survives(), Some(1), "chunk 1 lost a shard");
        w.missing.push(missing(1, 0));
        assert_eq!(w.survives(), Some(0), "chunk 1 has no redundancy left");
        assert_eq!(WrittenObject::default().survives(), None);
    }
}
