//! The fs backend: full S3 semantics on one local filesystem.
//!
//! Two kinds of bucket share the code: *managed* buckets under
//! `base_path/buckets/` store each key's bytes under the key's hash (so `a`,
//! `a/b`, `a/` and `../x` all coexist and nothing escapes `base_path`), and
//! *directory* buckets (`[[buckets]] pathname = ...`) serve an existing
//! directory read/write where keys are plain relative paths. See [`layout`]
//! for the on-disk format and its commit protocol.
//!
//! Listing of managed buckets comes from an in-memory ordered index of the
//! keys (rebuilt from the sidecars at startup, ~200 bytes per object), which
//! is also where the per-bucket object and byte counters come from. This is
//! the price of the hashed layout and is fine for the dev and single-node
//! sizes fs mode is for; the distributed backend lists from Raft instead.

mod directory;
pub mod layout;
mod locks;
mod multipart;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use predastore_core::config::{BucketConfig, validate_bucket_name};
use s3s::crypto::Checksum as _;
use time::OffsetDateTime;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use self::layout::{
    BucketRecord, DIR_BUCKET_META, FORMAT_FILE, FORMAT_VERSION, FormatMarker, ObjectRecord,
    TempPath, read_record, remove_if_exists, write_record,
};
use self::locks::KeyLocks;
use super::listing::{self, ListEntry};
use super::verify::{BodySummary, CheckedBody};
use super::*;

/// Read buffer for streaming objects out.
const READ_CHUNK: usize = 256 << 10;
/// Write buffer for streaming objects in.
const WRITE_BUF: usize = 1 << 20;

/// Where a bucket's objects live.
enum Store {
    /// Hashed layout with an in-memory key index.
    Managed { objects: PathBuf, index: RwLock<BTreeMap<String, ListEntry>> },
    /// Plain files under `root`.
    Directory { root: PathBuf },
}

/// One bucket and its counters.
struct Bucket {
    name: String,
    created: OffsetDateTime,
    public: AtomicBool,
    /// bucket.json, uploads/, tmp/ (and meta/ for directory buckets).
    dir: PathBuf,
    store: Store,
    objects: AtomicU64,
    bytes: AtomicU64,
}

impl Bucket {
    fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    fn uploads(&self) -> PathBuf {
        self.dir.join("uploads")
    }

    fn info(&self) -> BucketInfo {
        BucketInfo {
            name: self.name.clone(),
            created: self.created,
            public: self.public.load(Ordering::Relaxed),
        }
    }

    fn record(&self) -> BucketRecord {
        BucketRecord {
            v: FORMAT_VERSION,
            name: self.name.clone(),
            created: self.created,
            public: self.public.load(Ordering::Relaxed),
        }
    }

    /// Applies a replace (old → new) to the counters and the index.
    fn account(&self, key: &str, old: Option<&ObjectInfo>, new: Option<&ObjectInfo>) {
        if let Some(o) = old {
            self.objects.fetch_sub(1, Ordering::Relaxed);
            self.bytes.fetch_sub(o.size, Ordering::Relaxed);
        }
        if let Some(n) = new {
            self.objects.fetch_add(1, Ordering::Relaxed);
            self.bytes.fetch_add(n.size, Ordering::Relaxed);
        }
        if let Store::Managed { index, .. } = &self.store {
            let mut index = index.write().expect("index poisoned");
            match new {
                Some(n) => {
                    index.insert(key.to_string(), list_entry(n));
                }
                None => {
                    index.remove(key);
                }
            }
        }
    }

    /// Reads the current version's record (directory buckets synthesise
    /// one for files written by other means).
    fn load(&self, key: &str) -> Result<Option<ObjectRecord>> {
        match &self.store {
            Store::Managed { objects, .. } => {
                Ok(read_record::<ObjectRecord>(&layout::object_paths(objects, key).0)?)
            }
            Store::Directory { root } => directory::load(root, &self.dir, key),
        }
    }
}

fn list_entry(info: &ObjectInfo) -> ListEntry {
    ListEntry {
        key: info.key.clone(),
        size: info.size,
        etag: info.etag.clone(),
        last_modified: info.last_modified,
        storage_class: info.storage_class.clone(),
    }
}

/// The fs backend. Cheap to share: all state is behind `Arc`s and locks.
pub struct FsBackend {
    base: PathBuf,
    buckets: RwLock<BTreeMap<String, Arc<Bucket>>>,
    locks: KeyLocks,
    /// flock'd `LOCK` file, held until [`Backend::close`] so a second
    /// gateway on the same directory is refused instead of serving from a
    /// stale in-memory index.
    dir_lock: std::sync::Mutex<Option<std::fs::File>>,
}

/// Takes the exclusive lock on `base/LOCK`, or says who holds it. The
/// kernel drops it when the process exits, however it exits.
fn lock_data_dir(base: &Path) -> Result<std::fs::File> {
    let path = base.join("LOCK");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
        |_| {
            BackendError::Unavailable(format!(
                "data directory {} is in use by another predastore-gateway (it holds {}); \
             stop that process or use another --data-dir",
                base.display(),
                path.display()
            ))
        },
    )?;
    Ok(file)
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| BackendError::Internal(e.to_string()))?
}

impl FsBackend {
    /// Opens (or initialises) `base`, loads every bucket, removes what
    /// crashed writes left behind, and registers the config's buckets.
    pub async fn open(base: &Path, configured: &[BucketConfig]) -> Result<Self> {
        let base = base.to_path_buf();
        let configured = configured.to_vec();
        blocking(move || Self::open_blocking(base, &configured)).await
    }

    fn open_blocking(base: PathBuf, configured: &[BucketConfig]) -> Result<Self> {
        layout::create_dir_durable(&base.join("buckets"))?;
        let dir_lock = lock_data_dir(&base)?;
        let marker_path = base.join(FORMAT_FILE);
        match std::fs::read(&marker_path) {
            Ok(bytes) => {
                let m: FormatMarker = serde_json::from_slice(&bytes).map_err(|e| {
                    BackendError::Internal(format!("{}: {e}", marker_path.display()))
                })?;
                if m.format != "predastore-fs" || m.version != FORMAT_VERSION {
                    return Err(BackendError::Internal(format!(
                        "{} holds {} v{}; this build reads predastore-fs v{FORMAT_VERSION}",
                        base.display(),
                        m.format,
                        m.version
                    )));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let m = FormatMarker { format: "predastore-fs".into(), version: FORMAT_VERSION };
                std::fs::write(&marker_path, serde_json::to_vec(&m).expect("marker serialises"))?;
                layout::sync_parent(&marker_path)?;
            }
            Err(e) => return Err(e.into()),
        }
        sweep_trash(&base)?;
        let mut buckets = BTreeMap::new();
        for entry in std::fs::read_dir(base.join("buckets"))? {
            let dir = entry?.path();
            let Some(rec) = read_record::<BucketRecord>(&dir.join("bucket.json"))? else {
                continue;
            };
            let bucket = load_managed(dir, rec)?;
            buckets.insert(bucket.name.clone(), Arc::new(bucket));
        }
        for c in configured {
            validate_bucket_name(&c.name)
                .map_err(|e| BackendError::InvalidArgument(format!("bucket {}: {e}", c.name)))?;
            match (&c.pathname, buckets.get(&c.name)) {
                (Some(root), Some(_)) => {
                    return Err(BackendError::InvalidArgument(format!(
                        "bucket {} has a pathname ({}) but also exists under {}; remove one",
                        c.name,
                        root.display(),
                        base.display()
                    )));
                }
                (Some(root), None) => {
                    let b = directory::open(&c.name, root, c.public)?;
                    buckets.insert(c.name.clone(), Arc::new(b));
                }
                (None, Some(b)) => {
                    if b.public.swap(c.public, Ordering::Relaxed) != c.public {
                        write_record(&b.tmp(), &b.dir.join("bucket.json"), &b.record())?;
                    }
                }
                (None, None) => {
                    let b = create_managed(&base, &c.name, c.public)?;
                    buckets.insert(c.name.clone(), Arc::new(b));
                }
            }
        }
        Ok(Self {
            base,
            buckets: RwLock::new(buckets),
            locks: KeyLocks::default(),
            dir_lock: std::sync::Mutex::new(Some(dir_lock)),
        })
    }

    fn get(&self, bucket: &str) -> Result<Arc<Bucket>> {
        self.buckets
            .read()
            .expect("bucket map poisoned")
            .get(bucket)
            .cloned()
            .ok_or_else(|| BackendError::NoSuchBucket { bucket: bucket.into() })
    }

    fn lock_name(bucket: &str, key: &str) -> String {
        format!("o/{bucket}/{key}")
    }

    /// Streams `body` into a temp file of `b`, verifying it; returns the
    /// temp file (removed on drop), what the body was, and its CRC32C.
    async fn receive(
        b: &Bucket,
        body: ByteStream,
        size: Option<u64>,
        check: BodyCheck,
    ) -> Result<(TempPath, BodySummary, u32)> {
        let mut reader = CheckedBody::new(body, size, check)?;
        let tmp = TempPath::new(&b.tmp());
        let file = tokio::fs::File::create(tmp.path()).await?;
        let mut w = tokio::io::BufWriter::with_capacity(WRITE_BUF, file);
        let mut crc = s3s::crypto::Crc32c::new();
        while let Some(chunk) = reader.next().await? {
            crc.update(&chunk);
            w.write_all(&chunk).await?;
        }
        let summary = reader.finish()?;
        w.flush().await?;
        w.into_inner().sync_all().await?;
        Ok((tmp, summary, u32::from_be_bytes(crc.finalize())))
    }

    /// Makes `tmp` the current version of `key` if `condition` holds —
    /// atomically with respect to other writers of the key.
    async fn commit(
        &self,
        b: Arc<Bucket>,
        key: &str,
        tmp: TempPath,
        info: ObjectInfo,
        crc32c: u32,
        condition: WriteCondition,
    ) -> Result<ObjectInfo> {
        let _guard = self.locks.lock(&Self::lock_name(&b.name, key)).await;
        let key = key.to_string();
        blocking(move || {
            let old = b.load(&key)?;
            if !condition.allows(old.as_ref().map(|o| o.info.etag.as_str())) {
                return Err(BackendError::PreconditionFailed);
            }
            let info = match &b.store {
                Store::Managed { objects, .. } => {
                    let (meta, data) = layout::object_paths(objects, &key);
                    let vid = layout::new_version_id();
                    let data_path = data.with_extension(&vid);
                    layout::create_dir_durable(meta.parent().expect("object dir"))?;
                    std::fs::rename(tmp.path(), &data_path)?;
                    tmp.disarm();
                    let rec = ObjectRecord {
                        v: FORMAT_VERSION,
                        data: vid.clone(),
                        crc32c: Some(crc32c),
                        info,
                    };
                    if let Err(e) = write_record(&b.tmp(), &meta, &rec) {
                        let _ = remove_if_exists(&data_path);
                        return Err(e.into());
                    }
                    if let Some(o) = &old
                        && o.data != vid
                    {
                        remove_if_exists(&data.with_extension(&o.data))?;
                    }
                    rec.info
                }
                Store::Directory { root } => {
                    directory::commit(root, &b.dir, &key, tmp, info, crc32c)?
                }
            };
            b.account(&key, old.as_ref().map(|o| &o.info), Some(&info));
            Ok(info)
        })
        .await
    }
}

/// Deleted buckets are renamed to `<base>/.trash-<id>` before removal.
const TRASH_PREFIX: &str = ".trash-";

/// Removes what deleted buckets left when a crash stopped their removal.
fn sweep_trash(base: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(base)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(TRASH_PREFIX) && entry.file_type()?.is_dir() {
            tracing::info!(path = %entry.path().display(), "removing a deleted bucket's leftovers");
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

/// Opens a managed bucket: builds its index from the sidecars, drops data
/// files no sidecar references (crashed writes) and empties `tmp/`.
fn load_managed(dir: PathBuf, rec: BucketRecord) -> Result<Bucket> {
    let objects = dir.join("objects");
    for d in [objects.clone(), dir.join("uploads"), dir.join("tmp")] {
        layout::create_dir_durable(&d)?;
    }
    layout::empty_dir(&dir.join("tmp"))?;
    let mut index = BTreeMap::new();
    let (mut count, mut bytes) = (0u64, 0u64);
    for shard in std::fs::read_dir(&objects)? {
        let shard = shard?.path();
        if !shard.is_dir() {
            continue;
        }
        let mut current: HashMap<String, String> = HashMap::new();
        let mut data_files = Vec::new();
        for f in std::fs::read_dir(&shard)? {
            let p = f?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            match name.split_once('.') {
                Some((hash, "meta")) => match read_record::<ObjectRecord>(&p) {
                    Ok(Some(r)) => {
                        count += 1;
                        bytes += r.info.size;
                        index.insert(r.info.key.clone(), list_entry(&r.info));
                        current.insert(hash.to_string(), r.data);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(path = %p.display(), error = %e, "unreadable object record left in place")
                    }
                },
                Some((hash, vid)) => {
                    data_files.push((p.clone(), hash.to_string(), vid.to_string()))
                }
                None => {}
            }
        }
        for (path, hash, vid) in data_files {
            if current.get(&hash) != Some(&vid) {
                tracing::info!(path = %path.display(), "removing data of an uncommitted write");
                remove_if_exists(&path)?;
            }
        }
    }
    Ok(Bucket {
        name: rec.name,
        created: rec.created,
        public: AtomicBool::new(rec.public),
        dir,
        store: Store::Managed { objects, index: RwLock::new(index) },
        objects: AtomicU64::new(count),
        bytes: AtomicU64::new(bytes),
    })
}

fn create_managed(base: &Path, name: &str, public: bool) -> Result<Bucket> {
    let dir = base.join("buckets").join(name);
    layout::create_dir_durable(&dir.join("tmp"))?;
    let rec = BucketRecord {
        v: FORMAT_VERSION,
        name: name.into(),
        created: OffsetDateTime::now_utc(),
        public,
    };
    write_record(&dir.join("tmp"), &dir.join("bucket.json"), &rec)?;
    load_managed(dir, rec)
}

/// Wraps a full-object read so the last chunk is only delivered once the
/// CRC32C and length match the record; otherwise the stream fails (and the
/// HTTP response is cut short) instead of handing out corrupt bytes.
fn verified(inner: ByteStream, expect_crc: u32, expect_len: u64, what: String) -> ByteStream {
    Box::pin(Verified {
        inner,
        crc: s3s::crypto::Crc32c::new(),
        seen: 0,
        pending: None,
        expect_crc,
        expect_len,
        what,
        done: false,
    })
}

struct Verified {
    inner: ByteStream,
    crc: s3s::crypto::Crc32c,
    seen: u64,
    /// One chunk held back until the next arrives or the check passes.
    pending: Option<Bytes>,
    expect_crc: u32,
    expect_len: u64,
    what: String,
    done: bool,
}

impl futures::Stream for Verified {
    type Item = io::Result<Bytes>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match futures::ready!(this.inner.as_mut().poll_next(cx)) {
                Some(Ok(chunk)) => {
                    this.seen += chunk.len() as u64;
                    this.crc.update(&chunk);
                    if let Some(prev) = this.pending.replace(chunk) {
                        return Poll::Ready(Some(Ok(prev)));
                    }
                }
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    this.done = true;
                    let crc = std::mem::replace(&mut this.crc, s3s::crypto::Crc32c::new());
                    let got = u32::from_be_bytes(crc.finalize());
                    if got != this.expect_crc || this.seen != this.expect_len {
                        tracing::error!(object = %this.what, expected = this.expect_crc, got, seen = this.seen, "stored data failed its checksum");
                        crate::metrics::global().corruption_detected();
                        return Poll::Ready(Some(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("{}: stored data failed its checksum", this.what),
                        ))));
                    }
                    return Poll::Ready(this.pending.take().map(Ok));
                }
            }
        }
    }
}

#[async_trait]
impl Backend for FsBackend {
    fn kind(&self) -> &'static str {
        "fs"
    }

    async fn create_bucket(&self, bucket: &str, public: bool) -> Result<()> {
        validate_bucket_name(bucket).map_err(|e| BackendError::InvalidArgument(e.to_string()))?;
        let _guard = self.locks.lock(&format!("b/{bucket}")).await;
        if self.get(bucket).is_ok() {
            return Err(BackendError::BucketAlreadyOwnedByYou { bucket: bucket.into() });
        }
        let base = self.base.clone();
        let name = bucket.to_string();
        let b = blocking(move || create_managed(&base, &name, public)).await?;
        self.buckets.write().expect("bucket map poisoned").insert(bucket.into(), Arc::new(b));
        Ok(())
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        let _guard = self.locks.lock(&format!("b/{bucket}")).await;
        let b = self.get(bucket)?;
        if b.objects.load(Ordering::Relaxed) > 0 || !self.is_empty(&b).await? {
            return Err(BackendError::BucketNotEmpty { bucket: bucket.into() });
        }
        self.buckets.write().expect("bucket map poisoned").remove(bucket);
        let base = self.base.clone();
        blocking(move || {
            // Rename first so a crash mid-removal never leaves half a
            // bucket (the next open sweeps what is left of the trash), and
            // make the rename durable before acknowledging the delete.
            let trash = base.join(format!("{TRASH_PREFIX}{}", layout::new_version_id()));
            std::fs::rename(&b.dir, &trash)?;
            layout::sync_parent(&b.dir)?;
            layout::sync_parent(&trash)?;
            std::fs::remove_dir_all(&trash)?;
            Ok(())
        })
        .await
    }

    async fn bucket(&self, bucket: &str) -> Result<BucketInfo> {
        Ok(self.get(bucket)?.info())
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        Ok(self.buckets.read().expect("bucket map poisoned").values().map(|b| b.info()).collect())
    }

    async fn set_bucket_public(&self, bucket: &str, public: bool) -> Result<()> {
        let b = self.get(bucket)?;
        b.public.store(public, Ordering::Relaxed);
        blocking(move || Ok(write_record(&b.tmp(), &b.dir.join("bucket.json"), &b.record())?)).await
    }

    async fn usage(&self) -> Result<Vec<BucketUsage>> {
        Ok(self
            .buckets
            .read()
            .expect("bucket map poisoned")
            .values()
            .map(|b| BucketUsage {
                name: b.name.clone(),
                objects: b.objects.load(Ordering::Relaxed),
                bytes: b.bytes.load(Ordering::Relaxed),
                public: b.public.load(Ordering::Relaxed),
                storage_class: "STANDARD".into(),
            })
            .collect())
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        let b = self.get(bucket)?;
        rules::check_key(key)?;
        let k = key.to_string();
        let rec = blocking(move || b.load(&k)).await?;
        rec.map(|r| r.info).ok_or_else(|| no_such_key(bucket, key))
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ReadRange>,
    ) -> Result<GetResult> {
        let b = self.get(bucket)?;
        rules::check_key(key)?;
        // A concurrent replace may remove the data file between reading the
        // record and opening it; re-read the record then.
        for _ in 0..8 {
            let bb = Arc::clone(&b);
            let k = key.to_string();
            let Some(rec) = blocking(move || bb.load(&k)).await? else {
                return Err(no_such_key(bucket, key));
            };
            let mut file = match &b.store {
                Store::Managed { objects, .. } => {
                    let path = layout::object_paths(objects, key).1.with_extension(&rec.data);
                    match tokio::fs::File::open(&path).await {
                        Ok(f) => f,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Store::Directory { root } => {
                    let (root, k) = (root.clone(), key.to_string());
                    match blocking(move || directory::open_file(&root, &k)).await? {
                        Some(f) => tokio::fs::File::from_std(f),
                        None => continue,
                    }
                }
            };
            if let Store::Directory { .. } = &b.store
                && !directory::still_current(&file, &rec).await?
            {
                continue;
            }
            let range = range.map(|r| r.resolve(&rec.info)).transpose()?;
            let (start, len) = match &range {
                Some(r) => (r.start, r.end - r.start),
                None => (0, rec.info.size),
            };
            if start > 0 {
                file.seek(io::SeekFrom::Start(start)).await?;
            }
            let stream: ByteStream = Box::pin(tokio_util::io::ReaderStream::with_capacity(
                tokio::io::AsyncReadExt::take(file, len),
                READ_CHUNK,
            ));
            let body = match rec.crc32c {
                Some(crc) if range.is_none() => {
                    verified(stream, crc, rec.info.size, format!("{bucket}/{key}"))
                }
                _ => stream,
            };
            return Ok(GetResult { info: rec.info, range, body });
        }
        Err(BackendError::Internal(format!("{bucket}/{key} kept changing while being opened")))
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectInfo> {
        let b = self.get(bucket)?;
        rules::check_key(key)?;
        if let Store::Directory { root } = &b.store {
            directory::key_path(root, key)?;
        }
        if opts.condition != WriteCondition::None {
            // Fail fast before reading the body; checked again at commit.
            let current = self.head_object(bucket, key).await;
            let etag = match &current {
                Ok(i) => Some(i.etag.as_str()),
                Err(BackendError::NoSuchKey { .. }) => None,
                Err(_) => None,
            };
            if !opts.condition.allows(etag) {
                return Err(BackendError::PreconditionFailed);
            }
        }
        let (tmp, summary, crc) = Self::receive(&b, body, opts.size, opts.check).await?;
        let info = ObjectInfo {
            key: key.into(),
            size: summary.size,
            etag: summary.md5_hex,
            last_modified: rules::now_millis(),
            http: opts.http,
            user_meta: opts.user_meta,
            checksums: summary.checksums,
            storage_class: opts.storage_class.unwrap_or_else(|| "STANDARD".into()),
            parts: Vec::new(),
            tags: opts.tags,
            upload_id: None,
        };
        self.commit(b, key, tmp, info, crc, opts.condition).await
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        let b = self.get(bucket)?;
        rules::check_key(key)?;
        let _guard = self.locks.lock(&Self::lock_name(bucket, key)).await;
        let key = key.to_string();
        blocking(move || {
            let Some(old) = b.load(&key)? else { return Ok(()) };
            match &b.store {
                Store::Managed { objects, .. } => {
                    let (meta, data) = layout::object_paths(objects, &key);
                    std::fs::remove_file(&meta)?;
                    layout::sync_parent(&meta)?;
                    remove_if_exists(&data.with_extension(&old.data))?;
                }
                Store::Directory { root } => directory::delete(root, &b.dir, &key)?,
            }
            b.account(&key, Some(&old.info), None);
            Ok(())
        })
        .await
    }

    async fn set_object_tags(
        &self,
        bucket: &str,
        key: &str,
        tags: Vec<(String, String)>,
    ) -> Result<()> {
        let b = self.get(bucket)?;
        rules::check_key(key)?;
        let _guard = self.locks.lock(&Self::lock_name(bucket, key)).await;
        let (bucket, key) = (bucket.to_string(), key.to_string());
        blocking(move || {
            let Some(mut rec) = b.load(&key)? else { return Err(no_such_key(&bucket, &key)) };
            rec.info.tags = tags;
            let path = match &b.store {
                Store::Managed { objects, .. } => layout::object_paths(objects, &key).0,
                Store::Directory { .. } => directory::sidecar_path(&b.dir, &key),
            };
            write_record(&b.tmp(), &path, &rec)?;
            Ok(())
        })
        .await
    }

    async fn list_objects(&self, bucket: &str, query: &ListQuery) -> Result<ListPage> {
        let b = self.get(bucket)?;
        let query = query.clone();
        blocking(move || match &b.store {
            Store::Managed { index, .. } => {
                Ok(listing::list_page(&*index.read().expect("index poisoned"), &query))
            }
            Store::Directory { root } => {
                let src = directory::Walk { root: root.clone(), meta: b.dir.clone() };
                Ok(listing::list_page(&src, &query))
            }
        })
        .await
    }

    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        opts: UploadOptions,
    ) -> Result<String> {
        let b = self.get(bucket)?;
        rules::check_key(key)?;
        if let Store::Directory { root } = &b.store {
            directory::key_path(root, key)?;
        }
        multipart::create(b, key, opts).await
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: PartBody,
    ) -> Result<PartInfo> {
        let b = self.get(bucket)?;
        rules::check_part_number(part_number)?;
        let up = multipart::upload_dir(&b, key, upload_id).await?;
        let (tmp, summary, crc) = Self::receive(&b, body.stream, body.size, body.check).await?;
        let _guard = self.locks.lock(&format!("u/{upload_id}")).await;
        multipart::store_part(b, up, part_number, tmp, summary, crc).await
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<(u32, String)>,
        condition: WriteCondition,
    ) -> Result<ObjectInfo> {
        let b = self.get(bucket)?;
        // Locked first: a Complete retried while the first one runs finds
        // the upload gone (NoSuchUpload, answered again by the S3 layer),
        // not half-removed.
        let _guard = self.locks.lock(&format!("u/{upload_id}")).await;
        let up = multipart::upload_dir(&b, key, upload_id).await?;
        let (tmp, info, crc) = multipart::assemble(Arc::clone(&b), key, up.clone(), parts).await?;
        let info = self.commit(b, key, tmp, info, crc, condition).await?;
        multipart::remove_upload(up).await?;
        Ok(info)
    }

    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        let b = self.get(bucket)?;
        let _guard = self.locks.lock(&format!("u/{upload_id}")).await;
        let up = multipart::upload_dir(&b, key, upload_id).await?;
        multipart::remove_upload(up).await
    }

    async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(UploadInfo, Vec<PartInfo>)> {
        let b = self.get(bucket)?;
        let up = multipart::upload_dir(&b, key, upload_id).await?;
        multipart::list_parts(up, upload_id).await
    }

    async fn list_uploads(&self, bucket: &str, query: &UploadsQuery) -> Result<UploadsPage> {
        let b = self.get(bucket)?;
        multipart::list_uploads(b, query.clone()).await
    }

    async fn close(&self) -> Result<()> {
        // Every write was fsync'd before it was acknowledged; what is left
        // is to let the next process have the directory.
        drop(self.dir_lock.lock().expect("lock poisoned").take());
        Ok(())
    }
}

impl FsBackend {
    /// Whether the bucket holds no objects (directory buckets are walked, as
    /// files may have been added by other means).
    async fn is_empty(&self, b: &Arc<Bucket>) -> Result<bool> {
        match &b.store {
            Store::Managed { index, .. } => Ok(index.read().expect("index poisoned").is_empty()),
            Store::Directory { root } => {
                let src = directory::Walk { root: root.clone(), meta: b.dir.clone() };
                blocking(move || {
                    Ok(listing::KeySource::entries_from(&src, std::ops::Bound::Unbounded)
                        .next()
                        .is_none())
                })
                .await
            }
        }
    }
}

fn no_such_key(bucket: &str, key: &str) -> BackendError {
    BackendError::NoSuchKey { bucket: bucket.into(), key: key.into() }
}

/// Name of the hidden dir of a directory bucket (re-exported for docs).
pub const DIRECTORY_META_DIR: &str = DIR_BUCKET_META;
