//! Directory buckets: an existing directory served read/write, one plain
//! file per key, so what S3 clients write is what people see in the
//! directory and vice versa.
//!
//! A key maps to `<root>/<key>` only when it is a clean relative path: no
//! empty, `.` or `..` segments, no leading or trailing `/`, nothing under
//! `.predastore/`. Such keys (valid in managed buckets) are refused with a
//! clear error instead.
//!
//! Symbolic links are never followed. Every path is opened a component at
//! a time from the bucket root with `O_NOFOLLOW` (`openat`, `mkdirat`,
//! `renameat`, `unlinkat` on the opened directories), so a link placed in
//! the directory, or swapped in while a request runs, cannot lead a read,
//! write or delete outside it. A link is not an object: GET and HEAD
//! answer NoSuchKey, LIST skips it (so `a -> .` cannot loop), DELETE
//! leaves it, and a PUT through one is refused. A file and a directory cannot share a name, so `a` and
//! `a/b` cannot both be objects here either. Files placed by other means
//! have no sidecar: their ETag is derived from size and mtime and their
//! content type from the extension, until they are rewritten through S3.

use std::fs;
use std::io;
use std::ops::Bound;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use s3s::crypto::Checksum as _;
use time::OffsetDateTime;

use super::layout::{
    self, BucketRecord, DIR_BUCKET_META, FORMAT_VERSION, ObjectRecord, TempPath, read_record,
    remove_if_exists, write_record,
};
use super::{Bucket, Store, list_entry};
use crate::backend::listing::{KeySource, ListEntry, prefix_successor};
use crate::backend::{BackendError, HttpMeta, ObjectInfo, Result};

/// Opens `root` as bucket `name`, creating its hidden bucket dir.
pub(super) fn open(name: &str, root: &Path, public: bool) -> Result<Bucket> {
    if !root.is_dir() {
        return Err(BackendError::InvalidArgument(format!(
            "bucket {name}: pathname {} is not a directory",
            root.display()
        )));
    }
    let root = root.canonicalize()?;
    let meta = root.join(DIR_BUCKET_META);
    for d in ["tmp", "uploads", "meta"] {
        layout::create_dir_durable(&meta.join(d))?;
    }
    layout::empty_dir(&meta.join("tmp"))?;
    let mut rec = read_record::<BucketRecord>(&meta.join("bucket.json"))?.unwrap_or(BucketRecord {
        v: FORMAT_VERSION,
        name: name.into(),
        created: OffsetDateTime::now_utc(),
        public,
    });
    rec.public = public;
    write_record(&meta.join("tmp"), &meta.join("bucket.json"), &rec)?;
    let walk = Walk { root: root.clone(), meta: meta.clone() };
    let (mut count, mut bytes) = (0, 0);
    for e in walk.entries_from(Bound::Unbounded) {
        count += 1;
        bytes += e.size;
    }
    Ok(Bucket {
        name: name.into(),
        created: rec.created,
        public: AtomicBool::new(rec.public),
        dir: meta,
        store: Store::Directory { root },
        objects: AtomicU64::new(count),
        bytes: AtomicU64::new(bytes),
    })
}

fn refuse(reason: impl Into<String>) -> BackendError {
    BackendError::InvalidKey { reason: reason.into() }
}

/// The file that holds `key`, or why `key` cannot be a file here.
pub(super) fn key_path(root: &Path, key: &str) -> Result<PathBuf> {
    if key.starts_with('/') || key.ends_with('/') {
        return Err(refuse(
            "a directory bucket stores keys as files: a key cannot start or end with '/'",
        ));
    }
    for (i, seg) in key.split('/').enumerate() {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(refuse(format!(
                "a directory bucket cannot store a key with an empty, '.' or '..' segment ({key:?})"
            )));
        }
        if seg.len() > 255 {
            return Err(refuse("a path segment of a directory bucket key is limited to 255 bytes"));
        }
        if seg.contains('\0') {
            return Err(refuse("a directory bucket key cannot contain NUL"));
        }
        if i == 0 && seg == DIR_BUCKET_META {
            return Err(refuse(format!("{DIR_BUCKET_META}/ is reserved in a directory bucket")));
        }
    }
    Ok(root.join(key))
}

/// Sidecar of `key` in a directory bucket.
pub(super) fn sidecar_path(meta: &Path, key: &str) -> PathBuf {
    let h = layout::key_hash(key);
    meta.join("meta").join(&h[..2]).join(format!("{h}.json"))
}

fn fingerprint(md: &fs::Metadata) -> String {
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{}:{mtime}", md.len())
}

/// The current record of `key`: its sidecar when it still describes the
/// file, otherwise one derived from the file itself.
pub(super) fn load(root: &Path, meta: &Path, key: &str) -> Result<Option<ObjectRecord>> {
    let Ok(path) = key_path(root, key) else { return Ok(None) };
    let Some(file) = open_file(root, key)? else { return Ok(None) };
    let md = file.metadata()?;
    let fp = fingerprint(&md);
    if let Some(rec) = read_record::<ObjectRecord>(&sidecar_path(meta, key))?
        && rec.data == fp
    {
        return Ok(Some(rec));
    }
    let modified = md.modified().map(OffsetDateTime::from).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let info = ObjectInfo {
        key: key.into(),
        size: md.len(),
        etag: hex::encode(s3s::crypto::Md5::checksum(fp.as_bytes())),
        last_modified: modified
            .replace_nanosecond(modified.millisecond() as u32 * 1_000_000)
            .unwrap_or(modified),
        http: HttpMeta {
            content_type: Some(mime_guess::from_path(&path).first_or_octet_stream().to_string()),
            ..HttpMeta::default()
        },
        user_meta: Default::default(),
        checksums: Default::default(),
        storage_class: "STANDARD".into(),
        parts: Vec::new(),
        tags: Vec::new(),
        upload_id: None,
    };
    Ok(Some(ObjectRecord { v: FORMAT_VERSION, data: fp, crc32c: None, info }))
}

/// Whether an opened file is still the version `rec` describes.
pub(super) async fn still_current(file: &tokio::fs::File, rec: &ObjectRecord) -> Result<bool> {
    Ok(fingerprint(&file.metadata().await?) == rec.data)
}

/// Renames `tmp` to the file of `key` and writes its sidecar.
pub(super) fn commit(
    root: &Path,
    meta: &Path,
    key: &str,
    tmp: TempPath,
    info: ObjectInfo,
    crc32c: u32,
) -> Result<ObjectInfo> {
    key_path(root, key)?;
    let (dirs, name) = split(key);
    let conflict = || {
        refuse(format!(
            "{key:?} conflicts with an existing object or folder of the same name in this directory bucket"
        ))
    };
    let through_link =
        || refuse(format!("{key:?} leads through a symbolic link in this directory bucket"));
    let mut attempt = 0;
    let file = loop {
        attempt += 1;
        let parent = match open_dirs(root, &dirs, true) {
            Ok(fd) => fd,
            // A concurrent delete pruned a folder on the way: retry.
            Err(Errno::NOENT) if attempt < 4 => continue,
            Err(Errno::LOOP) => return Err(through_link()),
            Err(Errno::NOTDIR | Errno::EXIST) => return Err(conflict()),
            Err(e) => return Err(io::Error::from(e).into()),
        };
        let parent = &parent;
        match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => return Err(conflict()),
                FileType::Symlink => return Err(through_link()),
                _ => {}
            },
            Err(Errno::NOENT) => {}
            Err(e) => return Err(io::Error::from(e).into()),
        }
        match rustix::fs::renameat(rustix::fs::CWD, tmp.path(), parent, name) {
            Ok(()) => {}
            // A concurrent delete removed the (then empty) parent: retry.
            Err(Errno::NOENT) if attempt < 4 => continue,
            Err(Errno::ISDIR | Errno::NOTDIR | Errno::EXIST | Errno::NOTEMPTY) => {
                return Err(conflict());
            }
            Err(e) => return Err(io::Error::from(e).into()),
        }
        tmp.disarm();
        rustix::fs::fsync(parent).map_err(io::Error::from)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        break fs::File::from(
            rustix::fs::openat(parent, name, flags, Mode::empty()).map_err(io::Error::from)?,
        );
    };
    let rec = ObjectRecord {
        v: FORMAT_VERSION,
        data: fingerprint(&file.metadata()?),
        crc32c: Some(crc32c),
        info,
    };
    write_record(&meta.join("tmp"), &sidecar_path(meta, key), &rec)?;
    Ok(rec.info)
}

/// Removes the file of `key`, its sidecar, and parent directories left
/// empty. A symbolic link of that name is not an object and stays.
pub(super) fn delete(root: &Path, meta: &Path, key: &str) -> Result<()> {
    key_path(root, key)?;
    let (dirs, name) = split(key);
    if let Ok(parent) = open_dirs(root, &dirs, false) {
        let is_file = rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile);
        if is_file {
            match rustix::fs::unlinkat(&parent, name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(io::Error::from(e).into()),
            }
            rustix::fs::fsync(&parent).map_err(io::Error::from)?;
        }
        // Prune folders left empty, deepest first; each is reopened from
        // the root so no descriptor chain is held.
        for i in (0..dirs.len()).rev() {
            let Ok(up) = open_dirs(root, &dirs[..i], false) else { break };
            if rustix::fs::unlinkat(&up, dirs[i], AtFlags::REMOVEDIR).is_err() {
                break;
            }
        }
    }
    remove_if_exists(&sidecar_path(meta, key))?;
    Ok(())
}

/// A key's parent directory names and its file name.
fn split(key: &str) -> (Vec<&str>, &str) {
    let mut dirs: Vec<&str> = key.split('/').collect();
    let name = dirs.pop().expect("split yields one item at least");
    (dirs, name)
}

/// Opens the directory `dirs` (a path of names) below `root`, one name at
/// a time with `O_NOFOLLOW`, so no symbolic link (there now, or swapped in
/// meanwhile) is followed; with `create`, missing ones are made. Holds one
/// descriptor at a time, however deep the path. A link on the way fails
/// with `ELOOP`, a file with `ENOTDIR`.
fn open_dirs(root: &Path, dirs: &[&str], create: bool) -> std::result::Result<OwnedFd, Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut fd = rustix::fs::open(root, flags, Mode::empty())?;
    for d in dirs {
        fd = match rustix::fs::openat(&fd, *d, flags, Mode::empty()) {
            Err(Errno::NOENT) if create => {
                // Mode 0777 less the umask, as `create_dir_all` made them.
                match rustix::fs::mkdirat(&fd, *d, Mode::from_raw_mode(0o777)) {
                    // The new entry is durable before anything goes in.
                    Ok(()) => rustix::fs::fsync(&fd)?,
                    Err(Errno::EXIST) => {}
                    Err(e) => return Err(e),
                }
                rustix::fs::openat(&fd, *d, flags, Mode::empty())?
            }
            // O_DIRECTORY answers ENOTDIR for a link as for a file.
            Err(Errno::NOTDIR) if is_link(&fd, d) => return Err(Errno::LOOP),
            r => r?,
        };
    }
    Ok(fd)
}

/// Whether `name` in directory `dir` is a symbolic link (not followed).
fn is_link(dir: &OwnedFd, name: &str) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
}

/// Opens the file of `key` for reading without following any link; None
/// when no regular file is there (absent, a folder, a link, a path through
/// a link, a device or pipe).
pub(super) fn open_file(root: &Path, key: &str) -> Result<Option<fs::File>> {
    if key_path(root, key).is_err() {
        return Ok(None);
    }
    let (dirs, name) = split(key);
    let absent = |e: Errno| matches!(e, Errno::NOENT | Errno::NOTDIR | Errno::LOOP);
    let parent = match open_dirs(root, &dirs, false) {
        Ok(fd) => fd,
        Err(e) if absent(e) => return Ok(None),
        Err(e) => return Err(io::Error::from(e).into()),
    };
    // Non-blocking so that a pipe placed under the name cannot hang us.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let file = match rustix::fs::openat(&parent, name, flags, Mode::empty()) {
        Ok(fd) => fs::File::from(fd),
        Err(e) if absent(e) => return Ok(None),
        Err(e) => return Err(io::Error::from(e).into()),
    };
    Ok(file.metadata()?.is_file().then_some(file))
}

/// Lists a directory bucket by walking it in key order: entries of a
/// directory sorted as `name` (files) or `name/` (folders) visit keys in
/// byte order, and whole folders before the start key are skipped.
pub(super) struct Walk {
    pub root: PathBuf,
    pub meta: PathBuf,
}

impl KeySource for Walk {
    fn entries_from(&self, from: Bound<&str>) -> Box<dyn Iterator<Item = ListEntry> + '_> {
        let from = match from {
            Bound::Included(s) => Bound::Included(s.to_string()),
            Bound::Excluded(s) => Bound::Excluded(s.to_string()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let top = read_sorted(&self.root, "");
        Box::new(WalkIter { walk: self, from, stack: vec![(String::new(), top.into_iter())] })
    }
}

struct WalkIter<'a> {
    walk: &'a Walk,
    from: Bound<String>,
    stack: Vec<(String, std::vec::IntoIter<(String, bool)>)>,
}

/// Deepest folder a listing descends into: a key of at most 1024 bytes
/// has at most 512 segments.
const MAX_DEPTH: usize = 512;

/// Entries of folder `rel` (a key prefix ending in `/`, or empty for the
/// root) as (name, is_dir), in key order. Only regular files and folders:
/// links, pipes and devices, the hidden bucket dir and non-UTF-8 names are
/// left out. The folder is opened without following links.
fn read_sorted(root: &Path, rel: &str) -> Vec<(String, bool)> {
    let dirs: Vec<&str> = rel.split('/').filter(|d| !d.is_empty()).collect();
    if dirs.len() > MAX_DEPTH {
        return Vec::new();
    }
    let Ok(fd) = open_dirs(root, &dirs, false) else { return Vec::new() };
    let fd = &fd;
    let Ok(entries) = rustix::fs::Dir::read_from(fd) else { return Vec::new() };
    let mut out: Vec<(String, bool)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str().ok()?.to_string();
            if name == "." || name == ".." || (dirs.is_empty() && name == DIR_BUCKET_META) {
                return None;
            }
            let kind = match e.file_type() {
                FileType::Unknown => {
                    let st = rustix::fs::statat(fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW);
                    FileType::from_raw_mode(st.ok()?.st_mode)
                }
                k => k,
            };
            match kind {
                FileType::Directory => Some((name, true)),
                FileType::RegularFile => Some((name, false)),
                _ => None,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        let ka = if a.1 { format!("{}/", a.0) } else { a.0.clone() };
        let kb = if b.1 { format!("{}/", b.0) } else { b.0.clone() };
        ka.cmp(&kb)
    });
    out
}

impl Iterator for WalkIter<'_> {
    type Item = ListEntry;

    fn next(&mut self) -> Option<ListEntry> {
        loop {
            let (prefix, entries) = self.stack.last_mut()?;
            let Some((name, is_dir)) = entries.next() else {
                self.stack.pop();
                continue;
            };
            let key = format!("{prefix}{name}");
            if is_dir {
                let dir_key = format!("{key}/");
                let skip = match (&self.from, prefix_successor(&dir_key)) {
                    (Bound::Included(f) | Bound::Excluded(f), Some(succ)) => {
                        succ.as_str() <= f.as_str()
                    }
                    _ => false,
                };
                if !skip {
                    let entries = read_sorted(&self.walk.root, &dir_key);
                    self.stack.push((dir_key, entries.into_iter()));
                }
                continue;
            }
            let after_start = match &self.from {
                Bound::Included(f) => key.as_str() >= f.as_str(),
                Bound::Excluded(f) => key.as_str() > f.as_str(),
                Bound::Unbounded => true,
            };
            if !after_start {
                continue;
            }
            if let Ok(Some(rec)) = load(&self.walk.root, &self.walk.meta, &key) {
                return Some(list_entry(&rec.info));
            }
        }
    }
}
