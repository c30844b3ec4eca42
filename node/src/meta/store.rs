//! The Raft store in sled: log, vote, state machine and snapshots. The only
//! module that touches sled, so the engine can be replaced without
//! changing the state machine ([`super::state`]).
//!
//! One sled database in `<data-dir>/meta` with four trees:
//!
//! | tree | key | value |
//! |------|-----|-------|
//! | `log` | index (u64 BE) | `Entry` record |
//! | `raft` | `vote`, `committed`, `purged` | `Vote` / `LogId` records |
//! | `sm` | see [`super::state`]; plus `s/applied`, `s/membership` | records |
//! | `snap` | `meta`, `data` | `SnapshotMeta` record; snapshot bytes |
//!
//! Values are [`predastore_core::meta::encode`] records (version byte,
//! postcard, CRC-32C). Durability: [`LogStore`] reports an append done to
//! openraft only after `flush_async` has returned — the log is the source of
//! truth, so a crash loses nothing acknowledged. Votes are flushed before
//! returning. State machine writes are not flushed on their own (a crash may
//! lose the tail of applied entries, which are then re-applied from the
//! flushed log); each applied batch is one atomic sled batch with the
//! applied log id, so a re-applied entry was never half-applied.
//!
//! # Snapshot format, version 1
//!
//! ```text
//! "PDSN" | version u16 LE = 1 | count u64 LE |
//!   count × (key len u32 LE, key, value len u32 LE, value) |
//! CRC-32C (u32 LE) of everything before it
//! ```
//!
//! The pairs are every state machine key except the store's own `s/`
//! keys; the applied log id and membership travel in openraft's
//! `SnapshotMeta`.

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, RwLock};

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    Entry, EntryPayload, LogId, LogState, RaftLogReader, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use predastore_core::checksum::crc32c;
use predastore_core::meta::{self, MetaResult, Query};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::state::{self, KvError, KvRead, Overlay, SYSTEM_PREFIX};
use super::{BatchReply, NodeId, TypeConfig};

type SErr = StorageError<NodeId>;

/// First bytes of a snapshot.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"PDSN";
/// Snapshot format version this build writes.
pub const SNAPSHOT_VERSION: u16 = 1;

const APPLIED: &[u8] = b"s/applied";
const MEMBERSHIP: &[u8] = b"s/membership";

/// The open metadata database of a node.
#[derive(Clone)]
pub struct MetaDb {
    db: sled::Db,
    log: sled::Tree,
    raft: sled::Tree,
    sm: sled::Tree,
    snap: sled::Tree,
    /// Held for writing while a batch applies or a snapshot installs, for
    /// reading while a snapshot is cut or a query reads: both see whole
    /// batches only.
    sm_lock: Arc<RwLock<()>>,
}

fn io(e: sled::Error) -> KvError {
    KvError::Io(e.to_string())
}

fn dec<T: DeserializeOwned>(what: &str, v: &[u8]) -> Result<T, KvError> {
    meta::decode(v).map_err(|source| KvError::Corrupt { key: what.to_string(), source })
}

struct SledView<'a>(&'a sled::Tree);

impl KvRead for SledView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.0.get(key).map_err(io)?.map(|v| v.to_vec()))
    }

    fn range(&self, from: &[u8], until: Option<&[u8]>, f: state::Visit<'_>) -> Result<(), KvError> {
        let hi = until.map_or(Bound::Unbounded, Bound::Excluded);
        for kv in self.0.range::<&[u8], _>((Bound::Included(from), hi)) {
            let (k, v) = kv.map_err(io)?;
            if !f(&k, &v)? {
                break;
            }
        }
        Ok(())
    }
}

impl MetaDb {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, KvError> {
        let db = sled::Config::new().path(dir).open().map_err(io)?;
        Ok(Self {
            log: db.open_tree("log").map_err(io)?,
            raft: db.open_tree("raft").map_err(io)?,
            sm: db.open_tree("sm").map_err(io)?,
            snap: db.open_tree("snap").map_err(io)?,
            db,
            sm_lock: Arc::new(RwLock::new(())),
        })
    }

    /// The log store half, for openraft.
    pub fn log_store(&self) -> LogStore {
        LogStore { db: self.clone() }
    }

    /// The state machine half, for openraft.
    pub fn state_machine(&self) -> StateMachine {
        StateMachine { db: self.clone() }
    }

    /// Answers `q` from this node's applied state (no leader check).
    pub fn query(&self, q: &Query) -> MetaResult {
        let _g = self.sm_lock.read().expect("state machine lock");
        state::query(&SledView(&self.sm), q)
    }

    /// Whether nothing was ever stored (no vote, no log, no state).
    pub fn is_pristine(&self) -> Result<bool, KvError> {
        Ok(self.raft.is_empty() && self.log.is_empty() && self.sm.is_empty())
    }

    /// Flushes everything to disk.
    pub async fn flush(&self) -> Result<(), KvError> {
        self.db.flush_async().await.map(|_| ()).map_err(io)
    }

    /// Fault injection for tests: rewrites the stored bytes of one object
    /// record with `f` (the node must be stopped).
    pub fn tamper_object(
        &self,
        bucket: &str,
        key: &str,
        f: impl FnOnce(&mut Vec<u8>),
    ) -> Result<bool, KvError> {
        let k = state::object_key(bucket, key);
        let Some(v) = self.sm.get(&k).map_err(io)? else { return Ok(false) };
        let mut v = v.to_vec();
        f(&mut v);
        self.sm.insert(k, v).map_err(io)?;
        self.db.flush().map_err(io)?;
        Ok(true)
    }

    fn get_rec<T: DeserializeOwned>(tree: &sled::Tree, key: &[u8]) -> Result<Option<T>, KvError> {
        tree.get(key).map_err(io)?.map(|v| dec(&String::from_utf8_lossy(key), &v)).transpose()
    }
}

fn put_rec<T: Serialize>(tree: &sled::Tree, key: &[u8], v: &T) -> Result<(), KvError> {
    tree.insert(key, meta::encode(v)).map(|_| ()).map_err(io)
}

/// The Raft log and vote (openraft's `RaftLogStorage`).
#[derive(Clone)]
pub struct LogStore {
    db: MetaDb,
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        let key = |b: Bound<&u64>| match b {
            Bound::Included(i) => Bound::Included(i.to_be_bytes()),
            Bound::Excluded(i) => Bound::Excluded(i.to_be_bytes()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for kv in self.db.log.range((key(range.start_bound()), key(range.end_bound()))) {
            let (k, v) = kv.map_err(|e| StorageIOError::read_logs(&e))?;
            let e: Entry<TypeConfig> =
                dec(&format!("log entry {k:?}"), &v).map_err(|e| StorageIOError::read_logs(&e))?;
            out.push(e);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SErr> {
        let purged: Option<LogId<NodeId>> =
            MetaDb::get_rec(&self.db.raft, b"purged").map_err(|e| StorageIOError::read_logs(&e))?;
        let last = match self.db.log.last().map_err(|e| StorageIOError::read_logs(&e))? {
            Some((_, v)) => {
                let e: Entry<TypeConfig> =
                    dec("last log entry", &v).map_err(|e| StorageIOError::read_logs(&e))?;
                Some(e.log_id)
            }
            None => purged,
        };
        Ok(LogState { last_purged_log_id: purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), SErr> {
        put_rec(&self.db.raft, b"vote", vote).map_err(|e| StorageIOError::write_vote(&e))?;
        self.db.flush().await.map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, SErr> {
        Ok(MetaDb::get_rec(&self.db.raft, b"vote").map_err(|e| StorageIOError::read_vote(&e))?)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), SErr> {
        put_rec(&self.db.raft, b"committed", &committed).map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, SErr> {
        let c: Option<Option<LogId<NodeId>>> =
            MetaDb::get_rec(&self.db.raft, b"committed").map_err(|e| StorageIOError::read(&e))?;
        Ok(c.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut batch = sled::Batch::default();
        for e in entries {
            batch.insert(&e.log_id.index.to_be_bytes(), meta::encode(&e));
        }
        self.db.log.apply_batch(batch).map_err(|e| StorageIOError::write_logs(&e))?;
        // Durable before openraft hears of it: the flush comes first.
        let flushed = self.db.flush().await;
        let reply = flushed.as_ref().map_err(|e| std::io::Error::other(e.to_string())).copied();
        callback.log_io_completed(reply);
        flushed.map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let mut batch = sled::Batch::default();
        for k in self.db.log.range(log_id.index.to_be_bytes()..).keys() {
            batch.remove(k.map_err(|e| StorageIOError::write_logs(&e))?);
        }
        self.db.log.apply_batch(batch).map_err(|e| StorageIOError::write_logs(&e))?;
        self.db.flush().await.map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        // Record the purge point first: a crash between the two steps
        // leaves extra entries, never a gap the log state does not admit.
        put_rec(&self.db.raft, b"purged", &log_id).map_err(|e| StorageIOError::write_logs(&e))?;
        self.db.flush().await.map_err(|e| StorageIOError::write_logs(&e))?;
        let mut batch = sled::Batch::default();
        for k in self.db.log.range(..=log_id.index.to_be_bytes()).keys() {
            batch.remove(k.map_err(|e| StorageIOError::write_logs(&e))?);
        }
        self.db.log.apply_batch(batch).map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}

/// The state machine and its snapshots (openraft's `RaftStateMachine`).
pub struct StateMachine {
    db: MetaDb,
}

/// Cuts snapshots of the state machine.
pub struct SnapshotBuilder {
    db: MetaDb,
}

type Membership = StoredMembership<NodeId, openraft::BasicNode>;

impl StateMachine {
    fn applied(&self) -> Result<(Option<LogId<NodeId>>, Membership), KvError> {
        let applied = MetaDb::get_rec(&self.db.sm, APPLIED)?;
        let membership = MetaDb::get_rec(&self.db.sm, MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, Membership), SErr> {
        Ok(self.applied().map_err(|e| StorageIOError::read_state_machine(&e))?)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchReply>, SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let _g = self.db.sm_lock.write().expect("state machine lock");
        let view = SledView(&self.db.sm);
        let mut ov = Overlay::new(&view);
        let mut replies = Vec::new();
        let mut last = None;
        let mut membership = None;
        for e in entries {
            last = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => replies.push(BatchReply::default()),
                EntryPayload::Normal(b) => replies.push(
                    state::apply_batch(&mut ov, &b)
                        .map_err(|err| StorageIOError::apply(e.log_id, &err))?,
                ),
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(e.log_id), m));
                    replies.push(BatchReply::default());
                }
            }
        }
        let mut batch = sled::Batch::default();
        for (k, v) in std::mem::take(&mut ov.writes) {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        if let Some(l) = last {
            batch.insert(APPLIED, meta::encode(&l));
        }
        if let Some(m) = membership {
            batch.insert(MEMBERSHIP, meta::encode(&m));
        }
        self.db.sm.apply_batch(batch).map_err(|e| StorageIOError::write_state_machine(&e))?;
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { db: self.db.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SErr> {
        let sig = Some(meta.signature());
        let data = snapshot.into_inner();
        let pairs =
            decode_snapshot(&data).map_err(|e| StorageIOError::read_snapshot(sig.clone(), &e))?;
        {
            let _g = self.db.sm_lock.write().expect("state machine lock");
            let mut batch = sled::Batch::default();
            for k in self.db.sm.iter().keys() {
                batch.remove(k.map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?);
            }
            for (k, v) in pairs {
                batch.insert(k, v);
            }
            if let Some(l) = meta.last_log_id {
                batch.insert(APPLIED, meta::encode(&l));
            }
            batch.insert(MEMBERSHIP, meta::encode(&meta.last_membership));
            self.db
                .sm
                .apply_batch(batch)
                .map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?;
        }
        store_snapshot(&self.db, meta, data)
            .await
            .map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SErr> {
        let err = |e: &KvError| StorageIOError::read_snapshot(None, e);
        let Some(meta) =
            MetaDb::get_rec::<SnapshotMeta<NodeId, openraft::BasicNode>>(&self.db.snap, b"meta")
                .map_err(|e| err(&e))?
        else {
            return Ok(None);
        };
        let data = self.db.snap.get(b"data").map_err(|e| err(&io(e)))?.map(|v| v.to_vec());
        let data = data.ok_or_else(|| err(&KvError::Io("snapshot data missing".into())))?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

async fn store_snapshot(
    db: &MetaDb,
    meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
    data: Vec<u8>,
) -> Result<(), KvError> {
    let mut batch = sled::Batch::default();
    batch.insert(b"meta".as_slice(), meta::encode(meta));
    batch.insert(b"data".as_slice(), data);
    db.snap.apply_batch(batch).map_err(io)?;
    db.flush().await
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SErr> {
        let err = |e: &KvError| StorageIOError::write_snapshot(None, e);
        let (data, applied, membership) = {
            let _g = self.db.sm_lock.read().expect("state machine lock");
            let mut pairs = Vec::new();
            for kv in self.db.sm.iter() {
                let (k, v) = kv.map_err(|e| err(&io(e)))?;
                if !k.starts_with(SYSTEM_PREFIX) {
                    pairs.push((k, v));
                }
            }
            let sm = StateMachine { db: self.db.clone() };
            let (applied, membership) = sm.applied().map_err(|e| err(&e))?;
            (encode_snapshot(pairs.iter().map(|(k, v)| (&k[..], &v[..]))), applied, membership)
        };
        let snapshot_id = match applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, uuid_like()),
            None => format!("empty-{}", uuid_like()),
        };
        let meta = SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id };
        store_snapshot(&self.db, &meta, data.clone()).await.map_err(|e| err(&e))?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

fn uuid_like() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Encodes state machine pairs in the snapshot format (module docs).
pub fn encode_snapshot<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    let mut n = 0u64;
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
        n += 1;
    }
    out[6..14].copy_from_slice(&n.to_le_bytes());
    let crc = crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Key-value pairs of a snapshot.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Decodes a snapshot written by [`encode_snapshot`].
pub fn decode_snapshot(b: &[u8]) -> Result<Pairs, KvError> {
    let bad = |m: &str| KvError::Corrupt {
        key: "snapshot".into(),
        source: meta::CodecError::Malformed(m.to_string()),
    };
    if b.len() < 18 || b[..4] != SNAPSHOT_MAGIC {
        return Err(bad("no snapshot magic"));
    }
    let (body, tail) = b.split_at(b.len() - 4);
    if crc32c(body) != u32::from_le_bytes(tail.try_into().expect("4 bytes")) {
        return Err(bad("checksum mismatch"));
    }
    let version = u16::from_le_bytes([b[4], b[5]]);
    if version != 1 {
        return Err(KvError::Corrupt {
            key: "snapshot".into(),
            source: meta::CodecError::UnknownVersion(version.min(255) as u8),
        });
    }
    let n = u64::from_le_bytes(body[6..14].try_into().expect("8 bytes"));
    let mut rest = &body[14..];
    let mut take = |what: &str| -> Result<Vec<u8>, KvError> {
        if rest.len() < 4 {
            return Err(bad(what));
        }
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        if rest.len() < 4 + len {
            return Err(bad(what));
        }
        let v = rest[4..4 + len].to_vec();
        rest = &rest[4 + len..];
        Ok(v)
    };
    let mut out = Vec::with_capacity(n.min(1 << 20) as usize);
    for _ in 0..n {
        let k = take("snapshot key")?;
        let v = take("snapshot value")?;
        out.push((k, v));
    }
    if !rest.is_empty() {
        return Err(bad("bytes after the last pair"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), SErr> {
            let dir = tempfile::tempdir().expect("temp dir");
            let db = MetaDb::open(dir.path()).expect("open sled");
            Ok((dir, db.log_store(), db.state_machine()))
        }
    }

    #[test]
    fn passes_the_openraft_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }

    #[test]
    fn snapshot_round_trips_and_rejects_damage() {
        let pairs: Vec<(&[u8], &[u8])> = vec![(b"b/x", b"1"), (b"o/x\0k", b"22")];
        let s = encode_snapshot(pairs.iter().copied());
        let back = decode_snapshot(&s).unwrap();
        assert_eq!(
            back,
            vec![(b"b/x".to_vec(), b"1".to_vec()), (b"o/x\0k".to_vec(), b"22".to_vec())]
        );
        let mut bad = s.clone();
        bad[15] ^= 0x40;
        assert!(decode_snapshot(&bad).is_err());
        assert!(decode_snapshot(&s[..10]).is_err());
    }
}

#[cfg(test)]
mod samples {
    use openraft::{CommittedLeaderId, Membership};
    use predastore_core::meta::{Command, MetaError, Reply};

    use super::*;
    use crate::meta::{Batch, Proposal};

    const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

    fn entry() -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(3, 1), 17),
            payload: EntryPayload::Normal(Batch(vec![
                Proposal { request_id: 7, time_ms: 1_760_000_000_000, command: Command::Noop },
                Proposal {
                    request_id: 8,
                    time_ms: 1_760_000_000_001,
                    command: Command::DeleteBucket { name: "old-bucket".into() },
                },
            ])),
        }
    }

    fn membership() -> StoredMembership<NodeId, openraft::BasicNode> {
        let nodes: std::collections::BTreeMap<u64, openraft::BasicNode> =
            (0..3).map(|i| (i, openraft::BasicNode { addr: format!("10.0.0.{i}:7000") })).collect();
        let voters = std::collections::BTreeSet::from([0, 1, 2]);
        StoredMembership::new(
            Some(LogId::new(CommittedLeaderId::new(1, 0), 1)),
            Membership::new(vec![voters], nodes),
        )
    }

    fn replies() -> BatchReply {
        BatchReply(vec![
            Ok(Reply::Done),
            Err(MetaError::PreconditionFailed {
                bucket: "b".into(),
                key: "k".into(),
                current: Some(3),
            }),
        ])
    }

    fn probe() -> crate::meta::admission::GroupView {
        crate::meta::admission::GroupView {
            initialized: true,
            admitted: false,
            term: 9,
            leader: Some(2),
            last_log: Some(4711),
        }
    }

    fn rejoined() -> Result<u64, String> {
        Ok(12)
    }

    /// Log entries, membership, replies and snapshots written by every
    /// record version must keep decoding. `UPDATE_SAMPLES=1` writes the
    /// files of the current version (older ones stay as they were written).
    #[test]
    fn stored_raft_samples_decode() {
        let pairs: Vec<(&[u8], &[u8])> = vec![(b"b/one", b"x"), (b"r", b"yz")];
        let v = meta::RECORD_VERSION;
        let files = [
            (format!("raft-v{v}-entry.bin"), meta::encode(&entry())),
            (format!("raft-v{v}-membership.bin"), meta::encode(&membership())),
            (format!("raft-v{v}-replies.bin"), meta::encode(&replies())),
            (format!("raft-v{v}-probe.bin"), meta::encode(&probe())),
            (format!("raft-v{v}-rejoin.bin"), meta::encode(&rejoined())),
        ];
        if std::env::var_os("UPDATE_SAMPLES").is_some() {
            for (f, b) in &files {
                std::fs::write(format!("{DATA}/{f}"), b).unwrap();
            }
        }
        let read = |f: &str| std::fs::read(format!("{DATA}/{f}")).unwrap();
        for v in 1..=meta::RECORD_VERSION {
            let read = |name: &str| {
                let b = read(&format!("raft-v{v}-{name}.bin"));
                assert_eq!(b[0], v, "raft-v{v}-{name}.bin is a version-{v} record");
                b
            };
            let e: Entry<TypeConfig> = meta::decode(&read("entry")).unwrap();
            assert_eq!(e.log_id, entry().log_id);
            assert_eq!(format!("{:?}", e.payload), format!("{:?}", entry().payload));
            let m: StoredMembership<NodeId, openraft::BasicNode> =
                meta::decode(&read("membership")).unwrap();
            assert_eq!(m, membership());
            assert_eq!(meta::decode::<BatchReply>(&read("replies")).unwrap(), replies());
            assert_eq!(
                meta::decode::<crate::meta::admission::GroupView>(&read("probe")).unwrap(),
                probe()
            );
            assert_eq!(meta::decode::<Result<u64, String>>(&read("rejoin")).unwrap(), rejoined());
        }
        // The snapshot framing has its own version (unchanged: 1).
        if std::env::var_os("UPDATE_SAMPLES").is_some() {
            let snap = encode_snapshot(pairs.iter().copied());
            std::fs::write(format!("{DATA}/raft-v1-snapshot.bin"), snap).unwrap();
        }
        let snap = decode_snapshot(&read("raft-v1-snapshot.bin")).unwrap();
        assert_eq!(snap, vec![(b"b/one".to_vec(), b"x".to_vec()), (b"r".to_vec(), b"yz".to_vec())]);
    }
}
