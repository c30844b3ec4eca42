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
//! | `snap` | `current` | (`SnapshotMeta`, name of its file in `snapshots/`) record |
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
//! # Snapshots
//!
//! A snapshot is a file in `<dir>/snapshots` ([`super::snapshot`] has the
//! format); the `snap` tree names the current one. Building one does not
//! stop applies and holds no copy of the state: the state machine is
//! *frozen* — applies go to an in-memory overlay that reads see through —
//! while the file is written from the unchanging `sm` tree, then the
//! overlay is written back in one batch. Installing one checks the whole
//! file first, then replaces `sm` in batches under an `s/installing` mark
//! that makes [`MetaDb::open`] finish an install a crash interrupted.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::{BufReader, BufWriter, Seek};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    Entry, EntryPayload, LogId, LogState, RaftLogReader, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use predastore_core::meta::{self, MetaResult, Query};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::snapshot;
use super::state::{self, KvError, KvRead, Overlay, SYSTEM_PREFIX};
use super::{BatchReply, NodeId, TypeConfig};

type SErr = StorageError<NodeId>;

const APPLIED: &[u8] = b"s/applied";
const MEMBERSHIP: &[u8] = b"s/membership";
/// Present in `sm` while a snapshot install replaces it.
const INSTALLING: &[u8] = b"s/installing";
/// Pairs per sled batch when an install replaces the state machine.
const INSTALL_BATCH: usize = 4096;

type SnapMeta = SnapshotMeta<NodeId, openraft::BasicNode>;

/// Writes made while the state machine is frozen for a snapshot build:
/// key → value, or None for a removal.
type Frozen = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The open metadata database of a node.
#[derive(Clone)]
pub struct MetaDb {
    db: sled::Db,
    log: sled::Tree,
    raft: sled::Tree,
    sm: sled::Tree,
    snap: sled::Tree,
    /// Held for writing while a batch applies or a snapshot installs, for
    /// reading while a query reads: both see whole batches only. Holds
    /// the overlay while a snapshot build has the state machine frozen.
    sm_lock: Arc<RwLock<Option<Frozen>>>,
    /// One snapshot build or install at a time: an install must not
    /// change `sm` under a build's feet.
    snapshots: Arc<tokio::sync::Mutex<()>>,
    /// Where snapshot files live.
    snap_dir: PathBuf,
    /// The file a snapshot being received is written to.
    incoming: Arc<Mutex<Option<PathBuf>>>,
}

fn io(e: sled::Error) -> KvError {
    KvError::Io(e.to_string())
}

fn dec<T: DeserializeOwned>(what: &str, v: &[u8]) -> Result<T, KvError> {
    meta::decode(v).map_err(|source| KvError::Corrupt { key: what.to_string(), source })
}

/// The state machine as applies left it: the `sm` tree, seen through the
/// overlay of writes made while it is frozen.
struct SmView<'a> {
    tree: &'a sled::Tree,
    frozen: Option<&'a Frozen>,
}

impl KvRead for SmView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        if let Some(v) = self.frozen.and_then(|f| f.get(key)) {
            return Ok(v.clone());
        }
        Ok(self.tree.get(key).map_err(io)?.map(|v| v.to_vec()))
    }

    fn range(&self, from: &[u8], until: Option<&[u8]>, f: state::Visit<'_>) -> Result<(), KvError> {
        let hi = until.map_or(Bound::Unbounded, Bound::Excluded);
        let mut tree = self.tree.range::<&[u8], _>((Bound::Included(from), hi)).peekable();
        let empty = Frozen::new();
        let mut over =
            self.frozen.unwrap_or(&empty).range::<[u8], _>((Bound::Included(from), hi)).peekable();
        loop {
            // The smaller key next; the overlay wins a tie.
            let take_over = match (tree.peek(), over.peek()) {
                (None, None) => return Ok(()),
                (Some(Err(_)), _) => {
                    return Err(io(tree.next().expect("peeked").expect_err("peeked an error")));
                }
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some(Ok((tk, _))), Some((ok, _))) => ok.as_slice() <= &tk[..],
            };
            let go_on = if take_over {
                let (k, v) = over.next().expect("peeked");
                if let Some(Ok((tk, _))) = tree.peek()
                    && &tk[..] == k.as_slice()
                {
                    tree.next();
                }
                match v {
                    Some(v) => f(k, v)?,
                    None => true,
                }
            } else {
                let (k, v) = tree.next().expect("peeked").map_err(io)?;
                f(&k, &v)?
            };
            if !go_on {
                return Ok(());
            }
        }
    }
}

impl MetaDb {
    /// Opens (or creates) the database in `dir`.
    /// A snapshot install a crash interrupted is finished here.
    pub fn open(dir: &Path) -> Result<Self, KvError> {
        let db = sled::Config::new().path(dir).open().map_err(io)?;
        let snap_dir = dir.join("snapshots");
        std::fs::create_dir_all(&snap_dir)
            .map_err(|e| KvError::Io(format!("creating {}: {e}", snap_dir.display())))?;
        let this = Self {
            log: db.open_tree("log").map_err(io)?,
            raft: db.open_tree("raft").map_err(io)?,
            sm: db.open_tree("sm").map_err(io)?,
            snap: db.open_tree("snap").map_err(io)?,
            db,
            sm_lock: Arc::new(RwLock::new(None)),
            snapshots: Arc::new(tokio::sync::Mutex::new(())),
            snap_dir,
            incoming: Arc::new(Mutex::new(None)),
        };
        this.migrate_inline_snapshot()?;
        if this.sm.contains_key(INSTALLING).map_err(io)? {
            match this.current_snapshot()? {
                Some((meta, path)) => {
                    tracing::warn!(snapshot = %meta.snapshot_id,
                        "finishing an interrupted snapshot install");
                    this.replace_state(Some((&meta, &path)))?;
                }
                // Interrupted before the snapshot was recorded, with none
                // before it: start from the empty state; the log has the rest.
                None => this.replace_state(None)?,
            }
        }
        this.remove_stray_files()?;
        Ok(this)
    }

    /// Stores of the first release kept the snapshot's bytes in the `snap`
    /// tree; moves them to a file.
    fn migrate_inline_snapshot(&self) -> Result<(), KvError> {
        let Some(data) = self.snap.get(b"data").map_err(io)? else { return Ok(()) };
        let Some(meta) = Self::get_rec::<SnapMeta>(&self.snap, b"meta")? else {
            self.snap.remove(b"data").map_err(io)?;
            return Ok(());
        };
        let fail = |e: std::io::Error| KvError::Io(format!("snapshot file: {e}"));
        let path = self.snap_dir.join(format!("snapshot-migrated-{}", uuid_like()));
        let mut f = std::fs::File::create(&path).map_err(fail)?;
        std::io::Write::write_all(&mut f, &data).map_err(fail)?;
        f.sync_all().map_err(fail)?;
        sync_dir(&self.snap_dir)?;
        self.record_snapshot(&meta, &path)
    }

    /// The current snapshot's meta and file, if any.
    fn current_snapshot(&self) -> Result<Option<(SnapMeta, PathBuf)>, KvError> {
        // One record for both, so a reader never pairs one snapshot's meta
        // with another's file.
        let Some((meta, name)) = Self::get_rec::<(SnapMeta, String)>(&self.snap, b"current")?
        else {
            return Ok(None);
        };
        Ok(Some((meta, self.snap_dir.join(name))))
    }

    /// Deletes snapshot files that are not the current one (left by a
    /// crash while one was built or received).
    fn remove_stray_files(&self) -> Result<(), KvError> {
        let keep = self.current_snapshot()?.map(|(_, p)| p);
        let entries = std::fs::read_dir(&self.snap_dir)
            .map_err(|e| KvError::Io(format!("listing {}: {e}", self.snap_dir.display())))?;
        for e in entries.flatten() {
            if Some(e.path()) != keep {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
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
        let g = self.sm_lock.read().expect("state machine lock");
        state::query(&SmView { tree: &self.sm, frozen: g.as_ref() }, q)
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
        let g = self.db.sm_lock.read().expect("state machine lock");
        let view = SmView { tree: &self.db.sm, frozen: g.as_ref() };
        let rec = |k: &[u8]| -> Result<Option<Vec<u8>>, KvError> { view.get(k) };
        let applied = rec(APPLIED)?.map(|v| dec("s/applied", &v)).transpose()?;
        let membership =
            rec(MEMBERSHIP)?.map(|v| dec("s/membership", &v)).transpose()?.unwrap_or_default();
        Ok((applied, membership))
    }
}

impl MetaDb {
    /// Sends applies to an overlay so `sm` stays as it is now; returns the
    /// applied log id and membership of that moment.
    fn freeze(&self) -> Result<(Option<LogId<NodeId>>, Membership), KvError> {
        let mut g = self.sm_lock.write().expect("state machine lock");
        if g.is_some() {
            // A thaw failed: those writes are applied and only here.
            return Err(KvError::Io("the state machine is still frozen by a failed build".into()));
        }
        *g = Some(Frozen::new());
        let applied = Self::get_rec(&self.sm, APPLIED)?;
        let membership = Self::get_rec(&self.sm, MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }

    /// Writes the overlay back to `sm` in one batch and ends the freeze.
    fn thaw(&self) -> Result<(), KvError> {
        let mut g = self.sm_lock.write().expect("state machine lock");
        let Some(writes) = g.as_ref() else { return Ok(()) };
        let mut batch = sled::Batch::default();
        for (k, v) in writes {
            match v {
                Some(v) => batch.insert(k.as_slice(), v.as_slice()),
                None => batch.remove(k.as_slice()),
            }
        }
        self.sm.apply_batch(batch).map_err(io)?;
        *g = None;
        Ok(())
    }

    /// Writes the frozen `sm` to a new snapshot file (two passes: count,
    /// then pairs; nothing held but one pair), fsynced; returns its path.
    fn write_snapshot_file(&self, id: &str) -> Result<PathBuf, KvError> {
        let user = |kv: Result<(sled::IVec, sled::IVec), sled::Error>| match kv {
            Ok((k, _)) if k.starts_with(SYSTEM_PREFIX) => None,
            other => Some(other.map_err(io)),
        };
        let count = self.sm.iter().filter_map(user).try_fold(0u64, |n, kv| kv.map(|_| n + 1))?;
        let fail = |e: std::io::Error| KvError::Io(format!("snapshot file: {e}"));
        let path = self.snap_dir.join(format!("snapshot-{id}"));
        let tmp = self.snap_dir.join(format!("building-{id}"));
        let file = std::fs::File::create(&tmp).map_err(fail)?;
        let w = snapshot::write(BufWriter::new(file), count, self.sm.iter().filter_map(user))?;
        let file = w.into_inner().map_err(|e| fail(e.into_error()))?;
        file.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(fail)?;
        sync_dir(&self.snap_dir)?;
        Ok(path)
    }

    /// Makes `path` the current snapshot (durably) and deletes the one
    /// it replaces.
    fn record_snapshot(&self, meta: &SnapMeta, path: &Path) -> Result<(), KvError> {
        let before = self.current_snapshot()?.map(|(_, p)| p);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| KvError::Io(format!("snapshot path {}", path.display())))?;
        let mut batch = sled::Batch::default();
        batch.insert(b"current".as_slice(), meta::encode(&(meta, name)));
        // Where first-release stores kept the meta and the bytes.
        batch.remove(b"meta".as_slice());
        batch.remove(b"data".as_slice());
        self.snap.apply_batch(batch).map_err(io)?;
        self.db.flush().map_err(io)?;
        if let Some(old) = before
            && old != path
        {
            let _ = std::fs::remove_file(old);
        }
        Ok(())
    }

    /// Replaces the state machine with the snapshot at `path` (verified
    /// already; None: the empty state), in batches under the install mark;
    /// the caller holds the state machine lock or has the store to itself.
    fn replace_state(&self, snap: Option<(&SnapMeta, &Path)>) -> Result<(), KvError> {
        self.sm.insert(INSTALLING, b"1".as_slice()).map_err(io)?;
        self.db.flush().map_err(io)?;
        // Clear everything but the mark, a batch at a time.
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for k in self.sm.iter().keys() {
                let k = k.map_err(io)?;
                if &k[..] != INSTALLING {
                    batch.remove(k);
                    n += 1;
                    if n == INSTALL_BATCH {
                        break;
                    }
                }
            }
            if n == 0 {
                break;
            }
            self.sm.apply_batch(batch).map_err(io)?;
        }
        let mut batch = sled::Batch::default();
        if let Some((meta, path)) = snap {
            let fail = |e: std::io::Error| KvError::Io(format!("snapshot file: {e}"));
            let file = std::fs::File::open(path).map_err(fail)?;
            let mut n = 0;
            snapshot::read(BufReader::new(file), |k, v| {
                batch.insert(k, v);
                n += 1;
                if n == INSTALL_BATCH {
                    self.sm.apply_batch(std::mem::take(&mut batch)).map_err(io)?;
                    n = 0;
                }
                Ok(())
            })?;
            if let Some(l) = meta.last_log_id {
                batch.insert(APPLIED, meta::encode(&l));
            }
            batch.insert(MEMBERSHIP, meta::encode(&meta.last_membership));
        }
        batch.remove(INSTALLING);
        self.sm.apply_batch(batch).map_err(io)?;
        self.db.flush().map_err(io)?;
        Ok(())
    }

    /// A new file to receive a snapshot into.
    fn incoming_file(&self) -> Result<std::fs::File, KvError> {
        let path = self.snap_dir.join(format!("incoming-{}", uuid_like()));
        let f = std::fs::OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| KvError::Io(format!("creating {}: {e}", path.display())))?;
        if let Some(old) = self.incoming.lock().expect("incoming lock").replace(path) {
            let _ = std::fs::remove_file(old);
        }
        Ok(f)
    }

    /// Installs the snapshot in `file`: checks it whole, keeps it as the
    /// current snapshot, then replaces the state machine.
    fn install(&self, meta: &SnapMeta, mut file: std::fs::File) -> Result<(), KvError> {
        let fail = |e: std::io::Error| KvError::Io(format!("snapshot file: {e}"));
        file.sync_all().map_err(fail)?;
        file.rewind().map_err(fail)?;
        snapshot::verify(BufReader::new(&file))?;
        let id = meta.snapshot_id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_");
        let path = self.snap_dir.join(format!("snapshot-{id}-{}", uuid_like()));
        let received = self.incoming.lock().expect("incoming lock").take().filter(|p| {
            use std::os::unix::fs::MetadataExt;
            let ino = |m: std::io::Result<std::fs::Metadata>| m.ok().map(|m| (m.dev(), m.ino()));
            ino(std::fs::metadata(p)).is_some_and(|i| Some(i) == ino(file.metadata()))
        });
        match received {
            Some(incoming) => std::fs::rename(incoming, &path).map_err(fail)?,
            None => {
                // Not received here (openraft handed a snapshot built
                // locally): keep a copy of its bytes.
                file.rewind().map_err(fail)?;
                let mut out = std::fs::File::create(&path).map_err(fail)?;
                std::io::copy(&mut file, &mut out).map_err(fail)?;
                out.sync_all().map_err(fail)?;
            }
        }
        sync_dir(&self.snap_dir)?;
        let _g = self.sm_lock.write().expect("state machine lock");
        // Marked before the new snapshot is recorded: a crash in between
        // restarts from the old one (or empty), never from a mix.
        self.sm.insert(INSTALLING, b"1".as_slice()).map_err(io)?;
        self.db.flush().map_err(io)?;
        self.record_snapshot(meta, &path)?;
        self.replace_state(Some((meta, &path)))
    }
}

fn sync_dir(dir: &Path) -> Result<(), KvError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| KvError::Io(format!("fsync {}: {e}", dir.display())))
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
        let mut g = self.db.sm_lock.write().expect("state machine lock");
        let view = SmView { tree: &self.db.sm, frozen: g.as_ref() };
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
        let mut writes = std::mem::take(&mut ov.writes);
        drop(ov);
        if let Some(l) = last {
            writes.insert(APPLIED.to_vec(), Some(meta::encode(&l)));
        }
        if let Some(m) = membership {
            writes.insert(MEMBERSHIP.to_vec(), Some(meta::encode(&m)));
        }
        if let Some(frozen) = g.as_mut() {
            // A snapshot is being cut from `sm`: keep it as it is.
            frozen.extend(writes);
            return Ok(replies);
        }
        let mut batch = sled::Batch::default();
        for (k, v) in writes {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.db.sm.apply_batch(batch).map_err(|e| StorageIOError::write_state_machine(&e))?;
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { db: self.db.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, SErr> {
        let db = self.db.clone();
        let f = tokio::task::spawn_blocking(move || db.incoming_file())
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Box::new(tokio::fs::File::from_std(f)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), SErr> {
        let sig = Some(meta.signature());
        let _one = self.db.snapshots.lock().await;
        let file = snapshot.into_std().await;
        let (db, m) = (self.db.clone(), meta.clone());
        tokio::task::spawn_blocking(move || db.install(&m, file))
            .await
            .map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?
            .map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SErr> {
        let err = |e: &KvError| StorageIOError::read_snapshot(None, e);
        // A build finishing meanwhile deletes the file it replaces: read
        // the current one again then.
        for _ in 0..3 {
            let Some((meta, path)) = self.db.current_snapshot().map_err(|e| err(&e))? else {
                return Ok(None);
            };
            match tokio::fs::File::open(&path).await {
                Ok(f) => return Ok(Some(Snapshot { meta, snapshot: Box::new(f) })),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(
                        err(&KvError::Io(format!("opening {}: {e}", path.display()))).into()
                    );
                }
            }
        }
        Err(err(&KvError::Io("the current snapshot kept changing under the reader".into())).into())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SErr> {
        let err = |e: &KvError| StorageIOError::write_snapshot(None, e);
        let _one = self.db.snapshots.lock().await;
        let (applied, membership) = self.db.freeze().map_err(|e| err(&e))?;
        let snapshot_id = match applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, uuid_like()),
            None => format!("empty-{}", uuid_like()),
        };
        let (db, id) = (self.db.clone(), snapshot_id.clone());
        let written = tokio::task::spawn_blocking(move || db.write_snapshot_file(&id)).await;
        // Applies resume on `sm` whatever happened.
        let thawed = {
            let db = self.db.clone();
            tokio::task::spawn_blocking(move || db.thaw()).await
        };
        let path =
            written.map_err(|e| StorageIOError::write_snapshot(None, &e))?.map_err(|e| err(&e))?;
        thawed.map_err(|e| StorageIOError::write_snapshot(None, &e))?.map_err(|e| err(&e))?;
        let meta = SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id };
        let db = self.db.clone();
        let (m, p) = (meta.clone(), path.clone());
        tokio::task::spawn_blocking(move || db.record_snapshot(&m, &p))
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?
            .map_err(|e| err(&e))?;
        let f = tokio::fs::File::open(&path)
            .await
            .map_err(|e| err(&KvError::Io(format!("opening {}: {e}", path.display()))))?;
        Ok(Snapshot { meta, snapshot: Box::new(f) })
    }
}

fn uuid_like() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
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

    use openraft::CommittedLeaderId;
    use predastore_core::meta::{BucketRecord, Command, ObjectRecord, Precondition, Reply};
    use tokio::io::AsyncWriteExt;

    use crate::meta::{Batch, Proposal};

    /// Entry `i`: puts object `k{i}` with `size` inline bytes.
    fn put(i: u64, size: usize) -> Entry<TypeConfig> {
        let record = ObjectRecord {
            version_id: u128::from(i) + 1,
            size: size as u64,
            etag: format!("e{i}"),
            content_type: None,
            user_metadata: Default::default(),
            checksums: Default::default(),
            storage_class: "STANDARD".into(),
            modified_ms: 1,
            chunks: Vec::new(),
            inline: Some(vec![i as u8; size]),
        };
        let command = Command::PutObject {
            bucket: "snap".into(),
            key: format!("k{i:06}"),
            record,
            expect: Precondition::None,
        };
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), i),
            payload: EntryPayload::Normal(Batch(vec![Proposal {
                request_id: u128::from(i) + 1000,
                time_ms: 1,
                command,
            }])),
        }
    }

    fn bucket_entry() -> Entry<TypeConfig> {
        let command = Command::CreateBucket(BucketRecord {
            name: "snap".into(),
            owner: "o".into(),
            created_ms: 1,
            storage_class: "STANDARD".into(),
            public: false,
            policy: None,
        });
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), 1),
            payload: EntryPayload::Normal(Batch(vec![Proposal {
                request_id: 1,
                time_ms: 1,
                command,
            }])),
        }
    }

    fn has(db: &MetaDb, i: u64) -> bool {
        let q = Query::GetObject { bucket: "snap".into(), key: format!("k{i:06}") };
        matches!(db.query(&q), Ok(Reply::Object(_)))
    }

    /// A state machine of ~24 MiB (far above openraft's 3 MiB snapshot
    /// chunks and any buffer here) is snapshotted while applies go on,
    /// streamed to a second store in small chunks and installed there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshots_stream_and_applies_go_on_while_one_is_built() {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = MetaDb::open(dir_a.path()).unwrap();
        let mut sm = a.state_machine();
        sm.apply(vec![bucket_entry()]).await.unwrap();
        const N: u64 = 3000;
        for i in (2..2 + N).step_by(100) {
            sm.apply((i..i + 100).map(|j| put(j, 8 << 10)).collect::<Vec<_>>()).await.unwrap();
        }
        // Frozen as a build starts: applies land in the overlay, reads
        // see them, `sm` does not change.
        let (applied, _) = a.freeze().unwrap();
        assert_eq!(applied.map(|l| l.index), Some(N + 1));
        let later: Vec<_> = (N + 2..N + 12).map(|j| put(j, 100)).collect();
        sm.apply(later).await.unwrap();
        assert!(has(&a, N + 11), "reads see applies made while frozen");
        assert!(!a.sm.contains_key(b"o/snap\0k003011").unwrap());
        let path = a.write_snapshot_file("t").unwrap();
        a.thaw().unwrap();
        assert!(has(&a, N + 11) && has(&a, 2));
        assert_eq!(sm.applied().unwrap().0.map(|l| l.index), Some(N + 11));
        assert!(std::fs::metadata(&path).unwrap().len() > 20 << 20);

        // The real builder: the same, through openraft's interface.
        let mut builder = sm.get_snapshot_builder().await;
        let snap = builder.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(N + 11));
        // Received in 1 MiB pieces, as openraft's chunks arrive.
        let b = MetaDb::open(dir_b.path()).unwrap();
        let mut sm_b = b.state_machine();
        let mut incoming = sm_b.begin_receiving_snapshot().await.unwrap();
        let mut from = std::fs::File::open(a.current_snapshot().unwrap().unwrap().1).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut from, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            incoming.write_all(&buf[..n]).await.unwrap();
        }
        incoming.flush().await.unwrap();
        sm_b.install_snapshot(&snap.meta, incoming).await.unwrap();
        for i in [2, 1500, N + 1, N + 11] {
            assert!(has(&b, i), "object {i} after install");
        }
        assert_eq!(sm_b.applied().unwrap().0, snap.meta.last_log_id);
        // The installed snapshot is b's current one, and it can serve it.
        let served = sm_b.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(served.meta, snap.meta);
        // Only the current snapshot's file is kept.
        assert_eq!(std::fs::read_dir(dir_b.path().join("snapshots")).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn a_damaged_snapshot_changes_nothing_and_an_interrupted_install_is_finished() {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = MetaDb::open(dir_a.path()).unwrap();
        let mut sm = a.state_machine();
        sm.apply(vec![bucket_entry(), put(2, 10), put(3, 10)]).await.unwrap();
        let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let bytes = std::fs::read(a.current_snapshot().unwrap().unwrap().1).unwrap();

        let b = MetaDb::open(dir_b.path()).unwrap();
        let mut sm_b = b.state_machine();
        sm_b.apply(vec![bucket_entry(), put(7, 10)]).await.unwrap();
        let mut bad = bytes.clone();
        let at = bad.len() / 2;
        bad[at] ^= 1;
        let mut incoming = sm_b.begin_receiving_snapshot().await.unwrap();
        incoming.write_all(&bad).await.unwrap();
        assert!(sm_b.install_snapshot(&snap.meta, incoming).await.is_err());
        assert!(has(&b, 7) && !has(&b, 2), "a damaged snapshot changed nothing");

        // A crash right after the install mark: reopening finishes it.
        let mut incoming = sm_b.begin_receiving_snapshot().await.unwrap();
        incoming.write_all(&bytes).await.unwrap();
        sm_b.install_snapshot(&snap.meta, incoming).await.unwrap();
        b.sm.insert(INSTALLING, b"1".as_slice()).unwrap();
        b.sm.insert(b"o/snap\0junk", b"x".as_slice()).unwrap();
        b.db.flush().unwrap();
        drop((sm_b, b));
        let b = MetaDb::open(dir_b.path()).unwrap();
        assert!(has(&b, 2) && has(&b, 3) && !has(&b, 7));
        assert!(!b.sm.contains_key(INSTALLING).unwrap());
        assert!(!b.sm.contains_key(b"o/snap\0junk").unwrap());
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
            let snap = snapshot::encode(pairs.iter().copied());
            std::fs::write(format!("{DATA}/raft-v1-snapshot.bin"), snap).unwrap();
        }
        let snap = snapshot::decode(&read("raft-v1-snapshot.bin")).unwrap();
        assert_eq!(snap, vec![(b"b/one".to_vec(), b"x".to_vec()), (b"r".to_vec(), b"yz".to_vec())]);
    }
}
