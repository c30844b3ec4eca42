//! The fs backend's on-disk format (version 1) and its durable-write helpers.
//!
//! ```text
//! <base_path>/predastore-fs.json             {"format":"predastore-fs","version":1}
//! <base_path>/buckets/<bucket>/              a managed bucket ("bucket dir")
//!     bucket.json                            BucketRecord
//!     objects/<hh>/<sha256(key)>.meta        ObjectRecord (the sidecar; its rename commits)
//!     objects/<hh>/<sha256(key)>.<vid>       the object's bytes, one file per version
//!     uploads/<upload_id>/upload.json        UploadRecord
//!     uploads/<upload_id>/<n>.json           PartRecord (commits part n)
//!     uploads/<upload_id>/<n>-<vid>.data     part n's bytes
//!     tmp/                                   in-flight writes, emptied at startup
//! <pathname>/                                a directory bucket: keys are plain files
//!     .predastore/                           its bucket dir (bucket.json, uploads/, tmp/)
//!     .predastore/meta/<hh>/<sha256(key)>.json  ObjectRecord of files written through S3
//! ```
//!
//! Keys never become path components in managed buckets (they are hashed),
//! so any valid key, `..` segments included, stays inside `base_path`.
//! A write goes: temp file → fsync → rename into place → sidecar written to a
//! temp file → fsync → rename over the old sidecar (the commit) → fsync the
//! directory → old version's bytes removed. A crash at any point leaves the
//! previous version or the new one, never a mix; orphaned bytes are removed
//! at the next startup. Every record carries `"v": 1`; a new layout adds a
//! version and a migration, it never changes this one in place.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use time::OffsetDateTime;

use crate::backend::{ObjectInfo, PartInfo, UploadOptions};

/// Version written into every record of this layout.
pub const FORMAT_VERSION: u32 = 1;
/// Name of the format marker at the root of `base_path`.
pub const FORMAT_FILE: &str = "predastore-fs.json";
/// Name of a directory bucket's hidden bucket dir.
pub const DIR_BUCKET_META: &str = ".predastore";

/// Root marker: refuses to start on a directory written by a newer layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatMarker {
    pub format: String,
    pub version: u32,
}

/// `bucket.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub v: u32,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    pub public: bool,
}

/// An object's sidecar: what S3 reports plus where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub v: u32,
    /// Version id naming the data file (managed buckets), or the
    /// `size:mtime_ns` fingerprint of the plain file (directory buckets).
    pub data: String,
    /// CRC32C of the whole body, checked at the end of every full read;
    /// absent for files a directory bucket did not write itself.
    #[serde(default)]
    pub crc32c: Option<u32>,
    #[serde(flatten)]
    pub info: ObjectInfo,
}

/// `upload.json`: an in-progress multipart upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadRecord {
    pub v: u32,
    pub key: String,
    #[serde(with = "time::serde::rfc3339")]
    pub initiated: OffsetDateTime,
    pub options: UploadOptions,
}

/// `<n>.json`: one uploaded part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub v: u32,
    /// Version id naming `<n>-<vid>.data`.
    pub data: String,
    pub crc32c: u32,
    #[serde(flatten)]
    pub info: PartInfo,
}

/// Decodes any versioned record, refusing versions this build does not know.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &Path) -> io::Result<T> {
    #[derive(Deserialize)]
    struct Version {
        v: u32,
    }
    let v: Version = serde_json::from_slice(bytes).map_err(|e| bad_record(what, &e))?;
    if v.v != FORMAT_VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: record version {} is not supported (expected {FORMAT_VERSION})",
                what.display(),
                v.v
            ),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| bad_record(what, &e))
}

fn bad_record(what: &Path, e: &serde_json::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: corrupt record: {e}", what.display()))
}

/// Reads and decodes a record; `Ok(None)` when the file does not exist.
pub fn read_record<T: for<'de> Deserialize<'de>>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => decode(&bytes, path).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `value` as JSON to `path` durably and atomically: temp file in
/// `tmp_dir`, fsync, rename, fsync of the parent directory.
pub fn write_record<T: Serialize>(tmp_dir: &Path, path: &Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    let tmp = TempPath::new(tmp_dir);
    {
        let mut f = fs::File::create(tmp.path())?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    if let Some(parent) = path.parent() {
        create_dir_durable(parent)?;
    }
    fs::rename(tmp.path(), path)?;
    tmp.disarm();
    sync_parent(path)
}

/// Creates `dir` and its missing parents, fsyncing the parent of each
/// directory it creates: a file renamed into a new directory is lost at a
/// power cut if the directory's own entry was never made durable.
pub fn create_dir_durable(dir: &Path) -> io::Result<()> {
    create_dir_durable_with(dir, &mut |d| sync_parent(d))
}

/// [`create_dir_durable`] with the parent sync passed in (tests record it).
fn create_dir_durable_with(
    dir: &Path,
    sync_parent: &mut dyn FnMut(&Path) -> io::Result<()>,
) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    loop {
        match fs::metadata(at) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a directory", at.display()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(at);
                match at.parent() {
                    Some(p) if !p.as_os_str().is_empty() => at = p,
                    _ => break,
                }
            }
            Err(e) => return Err(e),
        }
    }
    for d in missing.into_iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => {}
            // Made meanwhile by a concurrent writer, which syncs it too;
            // syncing again is harmless and keeps this writer's promise.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        sync_parent(d)?;
    }
    Ok(())
}

/// fsyncs the directory holding `path` so a rename into it survives a crash.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Hex SHA-256 of a key: its file name in managed buckets and sidecar dirs.
pub fn key_hash(key: &str) -> String {
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// Where a managed object's sidecar and data live.
pub fn object_paths(objects_dir: &Path, key: &str) -> (PathBuf, PathBuf) {
    let h = key_hash(key);
    let dir = objects_dir.join(&h[..2]);
    (dir.join(format!("{h}.meta")), dir.join(h))
}

/// Fresh id for a version's data file: unique, so a new version never
/// overwrites bytes a reader may still have open.
pub fn new_version_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A temp file path removed on drop unless disarmed: a cancelled request
/// (client gone, error) leaves nothing behind.
#[derive(Debug)]
pub struct TempPath {
    path: PathBuf,
    armed: bool,
}

impl TempPath {
    /// A new unique path in `dir`.
    pub fn new(dir: &Path) -> Self {
        Self { path: dir.join(format!("tmp-{}", uuid::Uuid::new_v4().simple())), armed: true }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file has been renamed into place; keep it.
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Removes a file, treating "already gone" as success.
pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes every entry of a directory (used to empty `tmp/` at startup).
pub fn empty_dir(dir: &Path) -> io::Result<()> {
    match fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() { fs::remove_dir_all(&p)? } else { remove_if_exists(&p)? }
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_directory_created_is_synced_in_its_parent() {
        let base = tempfile::tempdir().unwrap();
        let deep = base.path().join("buckets/b/objects/ab");
        let mut synced = Vec::new();
        create_dir_durable_with(&deep, &mut |d| {
            synced.push(d.strip_prefix(base.path()).unwrap().to_path_buf());
            sync_parent(d)
        })
        .unwrap();
        assert!(deep.is_dir());
        let want: Vec<std::path::PathBuf> =
            ["buckets", "buckets/b", "buckets/b/objects", "buckets/b/objects/ab"]
                .iter()
                .map(Into::into)
                .collect();
        assert_eq!(synced, want, "parents first, each once");
        synced.clear();
        create_dir_durable_with(&deep, &mut |d| {
            synced.push(d.to_path_buf());
            Ok(())
        })
        .unwrap();
        assert!(synced.is_empty(), "nothing created, nothing to sync");
        std::fs::write(base.path().join("file"), b"x").unwrap();
        assert!(create_dir_durable(&base.path().join("file/sub")).is_err(), "below a file");
        assert!(create_dir_durable(&base.path().join("file")).is_err(), "a file in the way");
    }

    #[test]
    fn stored_samples_decode() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fs-v1");
        let obj: ObjectRecord =
            read_record(&base.join("object.meta")).unwrap().expect("sample present");
        assert_eq!(obj.info.key, "photos/../2024/a b.jpg");
        assert_eq!(obj.info.etag, "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert_eq!(obj.info.user_meta["camera"], "x100");
        assert_eq!(obj.info.checksums.crc32.as_deref(), Some("DUoRhQ=="));
        let bucket: BucketRecord = read_record(&base.join("bucket.json")).unwrap().unwrap();
        assert!(bucket.public);
        let upload: UploadRecord = read_record(&base.join("upload.json")).unwrap().unwrap();
        assert_eq!(upload.key, "big.bin");
        let part: PartRecord = read_record(&base.join("part.json")).unwrap().unwrap();
        assert_eq!(part.info.part_number, 1);
        let marker: FormatMarker =
            serde_json::from_slice(&fs::read(base.join(FORMAT_FILE)).unwrap()).unwrap();
        assert_eq!(marker.version, FORMAT_VERSION);
    }

    #[test]
    fn unknown_versions_are_refused() {
        let err = decode::<BucketRecord>(br#"{"v":2,"name":"b"}"#, Path::new("x")).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
    }

    #[test]
    fn temp_paths_clean_up_unless_disarmed() {
        let dir = tempfile::tempdir().unwrap();
        let t = TempPath::new(dir.path());
        fs::write(t.path(), b"x").unwrap();
        let p = t.path().to_path_buf();
        drop(t);
        assert!(!p.exists());
        let t = TempPath::new(dir.path());
        fs::write(t.path(), b"x").unwrap();
        let p = t.path().to_path_buf();
        t.disarm();
        assert!(p.exists());
    }
}
