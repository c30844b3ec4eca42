//! Directory buckets: an existing directory served read/write, one plain
//! file per key, so what S3 clients write is what people see in the
//! directory and vice versa.
//!
//! A key maps to `<root>/<key>` only when it is a clean relative path: no
//! empty, `.` or `..` segments, no leading or trailing `/`, nothing under
//! `.predastore/`, and it may not go through a symlink that leaves the
//! directory. Such keys (valid in managed buckets) are refused with a clear
//! error instead. A file and a directory cannot share a name, so `a` and
//! `a/b` cannot both be objects here either. Files placed by other means
//! have no sidecar: their ETag is derived from size and mtime and their
//! content type from the extension, until they are rewritten through S3.

use std::fs;
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};

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
        fs::create_dir_all(meta.join(d))?;
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
    let md = match fs::metadata(&path) {
        Ok(md) if md.is_file() => md,
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(20) => return Ok(None), // ENOTDIR
        Err(e) => return Err(e.into()),
    };
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

fn is_conflict(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory
    )
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
    let path = key_path(root, key)?;
    let parent = path.parent().expect("key path has a parent").to_path_buf();
    let conflict = || {
        refuse(format!(
            "{key:?} conflicts with an existing object or folder of the same name in this directory bucket"
        ))
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        if let Err(e) = fs::create_dir_all(&parent) {
            return Err(if is_conflict(&e) { conflict() } else { e.into() });
        }
        if !parent.canonicalize()?.starts_with(root) {
            return Err(refuse(format!(
                "{key:?} leads out of the bucket directory through a symlink"
            )));
        }
        if path.is_dir() {
            return Err(conflict());
        }
        match fs::rename(tmp.path(), &path) {
            Ok(()) => break,
            // A concurrent delete removed the (then empty) parent: retry.
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 4 => continue,
            Err(e) if is_conflict(&e) => return Err(conflict()),
            Err(e) => return Err(e.into()),
        }
    }
    tmp.disarm();
    layout::sync_parent(&path)?;
    let rec = ObjectRecord {
        v: FORMAT_VERSION,
        data: fingerprint(&fs::metadata(&path)?),
        crc32c: Some(crc32c),
        info,
    };
    write_record(&meta.join("tmp"), &sidecar_path(meta, key), &rec)?;
    Ok(rec.info)
}

/// Removes the file of `key`, its sidecar, and parent directories left empty.
pub(super) fn delete(root: &Path, meta: &Path, key: &str) -> Result<()> {
    let path = key_path(root, key)?;
    remove_if_exists(&path)?;
    layout::sync_parent(&path)?;
    remove_if_exists(&sidecar_path(meta, key))?;
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == root || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
    Ok(())
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
        let top = read_sorted(&self.root, true);
        Box::new(WalkIter { walk: self, from, stack: vec![(String::new(), top.into_iter())] })
    }
}

struct WalkIter<'a> {
    walk: &'a Walk,
    from: Bound<String>,
    stack: Vec<(String, std::vec::IntoIter<(String, bool)>)>,
}

/// Entries of `dir` as (name, is_dir), in key order; hidden bucket dir and
/// non-UTF-8 names left out.
fn read_sorted(dir: &Path, top: bool) -> Vec<(String, bool)> {
    let Ok(rd) = fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(String, bool)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if top && name == DIR_BUCKET_META {
                return None;
            }
            let md = fs::metadata(e.path()).ok()?;
            (md.is_dir() || md.is_file()).then_some((name, md.is_dir()))
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
                    let entries = read_sorted(&self.walk.root.join(&dir_key), false);
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
