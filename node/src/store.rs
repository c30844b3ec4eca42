//! Shard store: shards as files under the data directory, durable before
//! they are acknowledged and verified on every read.
//!
//! # Layout
//!
//! ```text
//! DATA_DIR/LOCK                       flock'd: one node process per directory
//! DATA_DIR/shards/<2 hex>/<shard id>  committed shards (fan-out by object id)
//! DATA_DIR/tmp/<shard id>.<n>.tmp     writes in progress; removed at startup
//! ```
//!
//! A write goes to a temp file, is fsync'd, renamed over the final name, and
//! the directory is fsync'd; only then is it acknowledged. A crash leaves
//! either the old state or the complete new shard, never a torn one (temp
//! files are swept at startup).
//!
//! # Shard file format, version 1 (all integers little-endian)
//!
//! ```text
//! offset size  field
//!      0    4  magic "PDSH"
//!      4    2  format version = 1
//!      6    2  flags = 0
//!      8   16  object id (u128)
//!     24    4  chunk
//!     28    1  shard index
//!     29    3  reserved = 0
//!     32    8  data length L
//!     40    4  block size B (65536)
//!     44   16  reserved = 0
//!     60    4  CRC-32C of bytes 0..60
//!     64    L  data
//!   64+L  4·N  CRC-32C of each B-byte data block, N = ceil(L / B)
//! 64+L+4N   4  CRC-32C of the block table
//! ```
//!
//! Reads check the header, the file length, the table checksum and the
//! checksum of every block they touch, so a range read verifies only the
//! blocks it needs and bitrot surfaces as [`StoreError::Corrupt`], never as
//! wrong bytes. A new layout gets version 2 and this one keeps decoding
//! (`node/tests/data/shard-v1.bin` is the stored sample).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use predastore_core::checksum::{Crc32c, crc32c};
use predastore_core::shard::{ShardId, ShardInfo, Usage};

/// First bytes of every shard file.
pub const SHARD_MAGIC: [u8; 4] = *b"PDSH";
/// Current shard file format.
pub const SHARD_VERSION: u16 = 1;
/// Bytes before the data.
pub const HEADER_LEN: u64 = 64;
/// Bytes covered by one block checksum.
pub const BLOCK_SIZE: u64 = 64 << 10;
/// Largest piece a reader returns at once (whole blocks).
const READ_SPAN: u64 = 16 * BLOCK_SIZE;
/// Write buffer in front of the temp file.
const WRITE_BUFFER: usize = 64 << 10;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such shard.
    #[error("shard {0} not found")]
    NotFound(ShardId),
    /// The shard's bytes on disk fail their checks; nothing was returned.
    #[error("shard {id} is corrupt: {reason}")]
    Corrupt { id: ShardId, reason: String },
    /// Writing would leave less free space than the configured reserve.
    #[error("disk nearly full: {needed} bytes needed, {available} available")]
    Full { needed: u64, available: u64 },
    /// A range outside the shard.
    #[error("range {offset}+{len} is outside the {shard_len}-byte shard")]
    InvalidRange { offset: u64, len: u64, shard_len: u64 },
    /// The body was longer or shorter than declared.
    #[error("shard body is {got} bytes but {expected} were declared")]
    LengthMismatch { expected: u64, got: u64 },
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another process")]
    Locked(PathBuf),
    /// The filesystem failed.
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

/// Settings of a store.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreOptions {
    /// Free bytes to keep on the filesystem; writes that would dip below
    /// are refused with [`StoreError::Full`]. `None`: 2% of capacity.
    pub min_free: Option<u64>,
}

/// A shard store on one data directory. Cheap to clone; methods block on
/// disk I/O, so async callers run them on the blocking pool.
#[derive(Clone)]
pub struct ShardStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    shards: PathBuf,
    tmp: PathBuf,
    min_free: u64,
    used: AtomicU64,
    count: AtomicU64,
    /// Bytes promised to writes in progress.
    pending: AtomicU64,
    tmp_seq: AtomicU64,
    _lock: File,
}

/// On-disk size of a shard of `len` data bytes.
pub fn file_len(len: u64) -> u64 {
    HEADER_LEN + len + 4 * len.div_ceil(BLOCK_SIZE) + 4
}

fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("fsync directory {}", dir.display())))
}

fn statvfs(dir: &Path) -> Result<(u64, u64), StoreError> {
    let s = rustix::fs::statvfs(dir).map_err(|e| StoreError::Io {
        context: format!("statvfs {}", dir.display()),
        source: e.into(),
    })?;
    Ok((s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize))
}

impl ShardStore {
    /// Opens (creating if needed) the store in `root`: takes the directory
    /// lock, sweeps interrupted writes, and counts what is stored.
    pub fn open(root: impl Into<PathBuf>, opts: StoreOptions) -> Result<Self, StoreError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io_err(format!("create {}", root.display())))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join("LOCK"))
            .map_err(io_err("open LOCK"))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| StoreError::Locked(root.clone()))?;
        let shards = root.join("shards");
        let tmp = root.join("tmp");
        for d in [&shards, &tmp] {
            if !d.exists() {
                fs::create_dir(d).map_err(io_err(format!("create {}", d.display())))?;
                fsync_dir(&root)?;
            }
        }
        let mut created = false;
        for b in 0..=255u8 {
            let d = shards.join(format!("{b:02x}"));
            if !d.exists() {
                fs::create_dir(&d).map_err(io_err(format!("create {}", d.display())))?;
                created = true;
            }
        }
        if created {
            fsync_dir(&shards)?;
        }
        for e in fs::read_dir(&tmp).map_err(io_err("read tmp"))? {
            let e = e.map_err(io_err("read tmp"))?;
            fs::remove_file(e.path()).map_err(io_err(format!("remove {}", e.path().display())))?;
        }
        fsync_dir(&tmp)?;
        let (mut used, mut count) = (0, 0);
        for b in 0..=255u8 {
            for e in fs::read_dir(shards.join(format!("{b:02x}"))).map_err(io_err("scan shards"))? {
                let e = e.map_err(io_err("scan shards"))?;
                used += e.metadata().map_err(io_err("scan shards"))?.len();
                count += 1;
            }
        }
        let (capacity, _) = statvfs(&root)?;
        let min_free = opts.min_free.unwrap_or(capacity / 50);
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                shards,
                tmp,
                min_free,
                used: AtomicU64::new(used),
                count: AtomicU64::new(count),
                pending: AtomicU64::new(0),
                tmp_seq: AtomicU64::new(0),
                _lock: lock,
            }),
        })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    fn path(&self, id: &ShardId) -> PathBuf {
        let name = id.to_string();
        self.inner.shards.join(&name[..2]).join(name)
    }

    /// Space and shard counts.
    pub fn usage(&self) -> Result<Usage, StoreError> {
        let (capacity, free) = statvfs(&self.inner.root)?;
        let available = free
            .saturating_sub(self.inner.min_free)
            .saturating_sub(self.inner.pending.load(Ordering::Relaxed));
        Ok(Usage {
            capacity,
            available,
            used: self.inner.used.load(Ordering::Relaxed),
            shards: self.inner.count.load(Ordering::Relaxed),
        })
    }

    /// Starts writing shard `id` of exactly `len` bytes. Refuses up front
    /// with [`StoreError::Full`] when the bytes would not fit above the
    /// reserve, so a write never fails half-way for lack of space.
    pub fn writer(&self, id: ShardId, len: u64) -> Result<ShardWriter, StoreError> {
        let needed = file_len(len);
        let pending = self.inner.pending.fetch_add(needed, Ordering::AcqRel) + needed;
        let reservation = Reservation { store: Arc::clone(&self.inner), bytes: needed };
        let (_, free) = statvfs(&self.inner.root)?;
        let available = free.saturating_sub(self.inner.min_free);
        if pending > available {
            return Err(StoreError::Full {
                needed,
                available: available.saturating_sub(pending - needed),
            });
        }
        let seq = self.inner.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.inner.tmp.join(format!("{id}.{seq}.tmp"));
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&tmp)
            .map_err(io_err(format!("create {}", tmp.display())))?;
        let mut w = ShardWriter {
            file: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
            tmp,
            dest: self.path(&id),
            store: self.clone(),
            id,
            len,
            written: 0,
            block: Crc32c::default(),
            block_fill: 0,
            table: Vec::with_capacity(len.div_ceil(BLOCK_SIZE) as usize),
            _reservation: reservation,
        };
        let header = encode_header(&id, len);
        w.out().write_all(&header).map_err(io_err("write shard header"))?;
        Ok(w)
    }

    /// Stores `data` as shard `id` (whole-buffer convenience over [`Self::writer`]).
    pub fn put(&self, id: ShardId, data: &[u8]) -> Result<(), StoreError> {
        let mut w = self.writer(id, data.len() as u64)?;
        w.write(data)?;
        w.commit()
    }

    /// Opens `len` bytes of shard `id` from `offset` (`None`: to the end)
    /// for reading; the header and block table are verified here, the
    /// blocks as they are read.
    pub fn reader(
        &self,
        id: ShardId,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ShardReader, StoreError> {
        let (file, shard_len, table) = self.open_verified(&id)?;
        let len = len.unwrap_or(shard_len.saturating_sub(offset));
        let end = offset.checked_add(len);
        if offset > shard_len || end.is_none_or(|e| e > shard_len) {
            return Err(StoreError::InvalidRange { offset, len, shard_len });
        }
        Ok(ShardReader { file, id, shard_len, table, pos: offset, end: offset + len })
    }

    /// Reads a range of shard `id` into memory, verified.
    pub fn read(&self, id: ShardId, offset: u64, len: Option<u64>) -> Result<Bytes, StoreError> {
        let mut r = self.reader(id, offset, len)?;
        let mut out = Vec::with_capacity(r.remaining() as usize);
        while let Some(piece) = r.next_piece() {
            out.extend_from_slice(&piece?);
        }
        Ok(Bytes::from(out))
    }

    /// Length of shard `id` after checking its header and block table.
    pub fn stat(&self, id: ShardId) -> Result<ShardInfo, StoreError> {
        let (_, len, _) = self.open_verified(&id)?;
        Ok(ShardInfo { id, len })
    }

    /// Removes shard `id`; durable when it returns.
    pub fn delete(&self, id: ShardId) -> Result<(), StoreError> {
        let path = self.path(&id);
        let size = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NotFound(id)),
            Err(e) => return Err(io_err("stat shard")(e)),
        };
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NotFound(id)),
            Err(e) => return Err(io_err(format!("remove {}", path.display()))(e)),
        }
        fsync_dir(path.parent().expect("shard paths have a parent"))?;
        self.inner
            .used
            .fetch_sub(size.min(self.inner.used.load(Ordering::Relaxed)), Ordering::Relaxed);
        self.inner.count.fetch_sub(1, Ordering::Relaxed);
        Ok(())
    }

    /// Up to `limit` stored shards with ids greater than `after`, in id
    /// order — the enumeration scrub and repair page through. A shard whose
    /// header is unreadable is still listed (length 0) so scrub finds it.
    pub fn list(&self, after: Option<ShardId>, limit: usize) -> Result<Vec<ShardInfo>, StoreError> {
        let after_text = after.map(|a| a.to_string());
        let first =
            after_text.as_deref().map_or(0, |t| u8::from_str_radix(&t[..2], 16).unwrap_or(0));
        let mut out = Vec::new();
        for b in first..=255u8 {
            let dir = self.inner.shards.join(format!("{b:02x}"));
            let mut ids: Vec<ShardId> = fs::read_dir(&dir)
                .map_err(io_err(format!("read {}", dir.display())))?
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .filter(|id| after.is_none_or(|a| *id > a))
                .collect();
            ids.sort_unstable();
            for id in ids {
                if out.len() == limit {
                    return Ok(out);
                }
                let len = self.read_header(&id).map(|(_, l)| l).unwrap_or(0);
                out.push(ShardInfo { id, len });
            }
        }
        Ok(out)
    }

    fn open_file(&self, id: &ShardId) -> Result<File, StoreError> {
        File::open(self.path(id)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::NotFound(*id),
            _ => io_err("open shard")(e),
        })
    }

    fn read_header(&self, id: &ShardId) -> Result<(File, u64), StoreError> {
        let file = self.open_file(id)?;
        let mut h = [0u8; HEADER_LEN as usize];
        let corrupt = |reason: String| StoreError::Corrupt { id: *id, reason };
        file.read_exact_at(&mut h, 0).map_err(|e| corrupt(format!("short header: {e}")))?;
        let header = decode_header(&h).map_err(corrupt)?;
        if header.id != *id {
            return Err(corrupt(format!("file holds shard {}", header.id)));
        }
        Ok((file, header.len))
    }

    fn open_verified(&self, id: &ShardId) -> Result<(File, u64, Vec<u32>), StoreError> {
        let (file, len) = self.read_header(id)?;
        let corrupt = |reason: String| StoreError::Corrupt { id: *id, reason };
        let size = file.metadata().map_err(io_err("stat shard"))?.len();
        if size != file_len(len) {
            return Err(corrupt(format!("file is {size} bytes, expected {}", file_len(len))));
        }
        let blocks = len.div_ceil(BLOCK_SIZE) as usize;
        let mut raw = vec![0u8; 4 * blocks + 4];
        file.read_exact_at(&mut raw, HEADER_LEN + len).map_err(io_err("read block table"))?;
        let (table_bytes, sum) = raw.split_at(4 * blocks);
        if crc32c(table_bytes) != u32::from_le_bytes(sum.try_into().expect("4 bytes")) {
            return Err(corrupt("block table checksum mismatch".into()));
        }
        let table = table_bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        Ok((file, len, table))
    }
}

/// Bytes promised to a write in progress; released when the write ends.
struct Reservation {
    store: Arc<Inner>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.store.pending.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// A shard being written. Dropping it without [`ShardWriter::commit`]
/// removes the temp file: nothing becomes visible.
pub struct ShardWriter {
    file: Option<BufWriter<File>>,
    tmp: PathBuf,
    dest: PathBuf,
    store: ShardStore,
    id: ShardId,
    len: u64,
    written: u64,
    block: Crc32c,
    block_fill: u64,
    table: Vec<u32>,
    _reservation: Reservation,
}

impl ShardWriter {
    fn out(&mut self) -> &mut BufWriter<File> {
        self.file.as_mut().expect("file is open until commit")
    }

    /// Bytes still expected.
    pub fn remaining(&self) -> u64 {
        self.len - self.written
    }

    /// Appends the next bytes of the shard.
    pub fn write(&mut self, mut data: &[u8]) -> Result<(), StoreError> {
        if data.len() as u64 > self.remaining() {
            return Err(StoreError::LengthMismatch {
                expected: self.len,
                got: self.written + data.len() as u64,
            });
        }
        self.out().write_all(data).map_err(io_err("write shard"))?;
        self.written += data.len() as u64;
        while !data.is_empty() {
            let take = ((BLOCK_SIZE - self.block_fill) as usize).min(data.len());
            self.block.update(&data[..take]);
            self.block_fill += take as u64;
            data = &data[take..];
            if self.block_fill == BLOCK_SIZE {
                self.table.push(self.block.finish_reset());
                self.block_fill = 0;
            }
        }
        Ok(())
    }

    /// Makes the shard durable and visible: trailer, fsync, rename, fsync
    /// of the directory. Fails if fewer bytes than declared were written.
    pub fn commit(mut self) -> Result<(), StoreError> {
        if self.written != self.len {
            return Err(StoreError::LengthMismatch { expected: self.len, got: self.written });
        }
        if self.block_fill > 0 {
            let c = self.block.finish_reset();
            self.table.push(c);
        }
        let mut trailer = Vec::with_capacity(self.table.len() * 4 + 4);
        for c in &self.table {
            trailer.extend_from_slice(&c.to_le_bytes());
        }
        let sum = crc32c(&trailer);
        trailer.extend_from_slice(&sum.to_le_bytes());
        let mut out = self.file.take().expect("file is open until commit");
        out.write_all(&trailer).map_err(io_err("write shard trailer"))?;
        let file = out.into_inner().map_err(|e| io_err("flush shard")(e.into_error()))?;
        file.sync_data().map_err(io_err("fsync shard"))?;
        drop(file);
        let inner = &self.store.inner;
        let replaced = fs::metadata(&self.dest).ok().map(|m| m.len());
        fs::rename(&self.tmp, &self.dest)
            .map_err(io_err(format!("rename into {}", self.dest.display())))?;
        fsync_dir(self.dest.parent().expect("shard paths have a parent"))?;
        match replaced {
            Some(old) => {
                inner
                    .used
                    .fetch_sub(old.min(inner.used.load(Ordering::Relaxed)), Ordering::Relaxed);
            }
            None => {
                inner.count.fetch_add(1, Ordering::Relaxed);
            }
        }
        inner.used.fetch_add(file_len(self.len), Ordering::Relaxed);
        tracing::debug!(shard = %self.id, len = self.len, "shard committed");
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            self.file.take();
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// A verified range of a shard, read piece by piece.
pub struct ShardReader {
    file: File,
    id: ShardId,
    shard_len: u64,
    table: Vec<u32>,
    pos: u64,
    end: u64,
}

impl ShardReader {
    /// Full length of the shard.
    pub fn shard_len(&self) -> u64 {
        self.shard_len
    }

    /// Bytes of the range not yet returned.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    /// The next verified piece of the range (at most 1 MiB), or `None` at
    /// the end. A block failing its checksum yields `Corrupt`.
    pub fn next_piece(&mut self) -> Option<Result<Bytes, StoreError>> {
        if self.pos >= self.end {
            return None;
        }
        let first = self.pos / BLOCK_SIZE;
        let start = first * BLOCK_SIZE;
        // Whole blocks only, and only those the range touches.
        let stop =
            (start + READ_SPAN).min(self.end.div_ceil(BLOCK_SIZE) * BLOCK_SIZE).min(self.shard_len);
        let mut buf = vec![0u8; (stop - start) as usize];
        if let Err(e) = self.file.read_exact_at(&mut buf, HEADER_LEN + start) {
            return Some(Err(io_err("read shard")(e)));
        }
        for (i, block) in buf.chunks(BLOCK_SIZE as usize).enumerate() {
            let b = first as usize + i;
            if crc32c(block) != self.table[b] {
                return Some(Err(StoreError::Corrupt {
                    id: self.id,
                    reason: format!("block {b} checksum mismatch"),
                }));
            }
        }
        let take_end = stop.min(self.end);
        let piece =
            Bytes::from(buf).slice((self.pos - start) as usize..(take_end - start) as usize);
        self.pos = take_end;
        Some(Ok(piece))
    }
}

struct Header {
    id: ShardId,
    len: u64,
}

fn encode_header(id: &ShardId, len: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..4].copy_from_slice(&SHARD_MAGIC);
    h[4..6].copy_from_slice(&SHARD_VERSION.to_le_bytes());
    h[8..24].copy_from_slice(&id.object.to_le_bytes());
    h[24..28].copy_from_slice(&id.chunk.to_le_bytes());
    h[28] = id.index;
    h[32..40].copy_from_slice(&len.to_le_bytes());
    h[40..44].copy_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
    let sum = crc32c(&h[..60]);
    h[60..64].copy_from_slice(&sum.to_le_bytes());
    h
}

fn decode_header(h: &[u8; HEADER_LEN as usize]) -> Result<Header, String> {
    if h[0..4] != SHARD_MAGIC {
        return Err("bad magic".into());
    }
    let sum = u32::from_le_bytes(h[60..64].try_into().expect("4 bytes"));
    if crc32c(&h[..60]) != sum {
        return Err("header checksum mismatch".into());
    }
    match u16::from_le_bytes([h[4], h[5]]) {
        1 => {}
        v => return Err(format!("unknown shard format version {v}")),
    }
    let block = u32::from_le_bytes(h[40..44].try_into().expect("4 bytes"));
    if u64::from(block) != BLOCK_SIZE {
        return Err(format!("unsupported block size {block}"));
    }
    Ok(Header {
        id: ShardId {
            object: u128::from_le_bytes(h[8..24].try_into().expect("16 bytes")),
            chunk: u32::from_le_bytes(h[24..28].try_into().expect("4 bytes")),
            index: h[28],
        },
        len: u64::from_le_bytes(h[32..40].try_into().expect("8 bytes")),
    })
}
