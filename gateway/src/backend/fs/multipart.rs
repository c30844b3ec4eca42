//! Multipart uploads in the fs backend: parts are stored like small objects
//! under `uploads/<upload_id>/` (record rename commits each part) and kept
//! until Complete or Abort. Complete streams the parts into one file and
//! commits it like a PUT; the upload disappears only after that commit.

use std::fs;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use s3s::crypto::Checksum as _;

use super::layout::{
    self, FORMAT_VERSION, PartRecord, TempPath, UploadRecord, read_record, remove_if_exists,
    write_record,
};
use super::{Bucket, blocking};
use crate::backend::rules;
use crate::backend::verify::BodySummary;
use crate::backend::{
    BackendError, ObjectInfo, PartInfo, Result, UploadInfo, UploadOptions, UploadsPage,
    UploadsQuery,
};

/// An upload that exists, with where its files are.
#[derive(Debug, Clone)]
pub(super) struct UploadDir {
    id: String,
    path: PathBuf,
    tmp: PathBuf,
    record: UploadRecord,
}

/// Starts an upload; returns its id (32 hex chars, never a path).
pub(super) async fn create(b: Arc<Bucket>, key: &str, options: UploadOptions) -> Result<String> {
    let id = rules::new_upload_id();
    let rec = UploadRecord {
        v: FORMAT_VERSION,
        key: key.into(),
        initiated: rules::now_millis(),
        options,
    };
    let dir = b.uploads().join(&id);
    let tmp = b.tmp();
    blocking(move || {
        super::layout::create_dir_durable(&dir)?;
        write_record(&tmp, &dir.join("upload.json"), &rec)?;
        Ok(())
    })
    .await?;
    Ok(id)
}

/// Finds upload `id` of `key`; anything else (bad id, other key) is
/// NoSuchUpload, so ids are never used as paths unchecked.
pub(super) async fn upload_dir(b: &Bucket, key: &str, id: &str) -> Result<UploadDir> {
    let missing = || BackendError::NoSuchUpload { upload_id: id.into() };
    if id.len() != 32 || !id.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) {
        return Err(missing());
    }
    let path = b.uploads().join(id);
    let p = path.clone();
    let record = blocking(move || Ok(read_record::<UploadRecord>(&p.join("upload.json"))?)).await?;
    match record {
        Some(record) if record.key == key => {
            Ok(UploadDir { id: id.into(), path, tmp: b.tmp(), record })
        }
        _ => Err(missing()),
    }
}

/// Commits a received part (replacing an earlier upload of the same number).
pub(super) async fn store_part(
    _b: Arc<Bucket>,
    up: UploadDir,
    n: u32,
    tmp: TempPath,
    summary: BodySummary,
    crc32c: u32,
) -> Result<PartInfo> {
    blocking(move || {
        let meta = up.path.join(format!("{n}.json"));
        if !up.path.join("upload.json").exists() {
            return Err(BackendError::NoSuchUpload {
                upload_id: up.path.file_name().unwrap_or_default().to_string_lossy().into(),
            });
        }
        let old = read_record::<PartRecord>(&meta)?;
        let vid = layout::new_version_id();
        let data = up.path.join(format!("{n}-{vid}.data"));
        fs::rename(tmp.path(), &data)?;
        tmp.disarm();
        let rec = PartRecord {
            v: FORMAT_VERSION,
            data: vid,
            crc32c,
            info: PartInfo {
                part_number: n,
                size: summary.size,
                etag: summary.md5_hex,
                last_modified: rules::now_millis(),
                checksums: summary.checksums,
            },
        };
        write_record(&up.tmp, &meta, &rec)?;
        if let Some(o) = old {
            remove_if_exists(&up.path.join(format!("{n}-{}.data", o.data)))?;
        }
        Ok(rec.info)
    })
    .await
}

fn read_parts(up: &UploadDir) -> io::Result<Vec<PartRecord>> {
    let mut parts = Vec::new();
    for e in fs::read_dir(&up.path)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some(num) = name.strip_suffix(".json")
            && num.parse::<u32>().is_ok()
            && let Some(rec) = read_record::<PartRecord>(&p)?
        {
            parts.push(rec);
        }
    }
    parts.sort_by_key(|p| p.info.part_number);
    Ok(parts)
}

/// Checks the client's part list and streams the parts into one temp
/// file; returns it with the final object's info and CRC32C.
pub(super) async fn assemble(
    b: Arc<Bucket>,
    key: &str,
    up: UploadDir,
    wanted: Vec<(u32, String)>,
) -> Result<(TempPath, ObjectInfo, u32)> {
    let key = key.to_string();
    blocking(move || {
        let stored = read_parts(&up)?;
        let infos: Vec<_> = stored.iter().map(|p| p.info.clone()).collect();
        let chosen: Vec<PartRecord> =
            rules::choose_parts(&wanted, &infos)?.into_iter().map(|i| stored[i].clone()).collect();
        let tmp = TempPath::new(&b.tmp());
        let mut out = io::BufWriter::with_capacity(1 << 20, fs::File::create(tmp.path())?);
        let mut crc = s3s::crypto::Crc32c::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        for p in &chosen {
            let data = up.path.join(format!("{}-{}.data", p.info.part_number, p.data));
            let mut f = fs::File::open(&data)?;
            let mut part_crc = s3s::crypto::Crc32c::new();
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                crc.update(&buf[..n]);
                part_crc.update(&buf[..n]);
                out.write_all(&buf[..n])?;
                total += n as u64;
            }
            if u32::from_be_bytes(part_crc.finalize()) != p.crc32c {
                tracing::error!(path = %data.display(), "stored part failed its checksum");
                return Err(BackendError::Corrupt { bucket: b.name.clone(), key: key.clone() });
            }
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let etag = rules::multipart_etag(
            &chosen.iter().map(|p| p.info.etag.as_str()).collect::<Vec<_>>(),
        )?;
        let opts = up.record.options.clone();
        let info = ObjectInfo {
            key: key.clone(),
            size: total,
            etag,
            last_modified: rules::now_millis(),
            http: opts.http,
            user_meta: opts.user_meta,
            checksums: rules::composite_checksums(
                &chosen.iter().map(|p| p.info.clone()).collect::<Vec<_>>(),
            ),
            storage_class: opts.storage_class.unwrap_or_else(|| "STANDARD".into()),
            parts: chosen.iter().map(|p| p.info.size).collect(),
            tags: opts.tags,
            upload_id: Some(up.id.clone()),
        };
        Ok((tmp, info, u32::from_be_bytes(crc.finalize())))
    })
    .await
}

/// Removes an upload and all its parts (rename first: never half-removed).
pub(super) async fn remove_upload(up: UploadDir) -> Result<()> {
    blocking(move || {
        let trash = up.tmp.join(format!("gone-{}", layout::new_version_id()));
        fs::rename(&up.path, &trash)?;
        fs::remove_dir_all(&trash)?;
        Ok(())
    })
    .await
}

fn upload_info(id: &str, rec: &UploadRecord) -> UploadInfo {
    UploadInfo {
        key: rec.key.clone(),
        upload_id: id.into(),
        initiated: rec.initiated,
        storage_class: rec.options.storage_class.clone().unwrap_or_else(|| "STANDARD".into()),
        checksum_algorithm: rec.options.checksum_algorithm.clone(),
    }
}

/// The upload and its parts in part-number order.
pub(super) async fn list_parts(up: UploadDir, id: &str) -> Result<(UploadInfo, Vec<PartInfo>)> {
    let info = upload_info(id, &up.record);
    let parts = blocking(move || Ok(read_parts(&up)?)).await?;
    Ok((info, parts.into_iter().map(|p| p.info).collect()))
}

/// ListMultipartUploads: ordered by key then initiation, with markers,
/// prefix, delimiter and max-uploads as S3 defines them.
pub(super) async fn list_uploads(b: Arc<Bucket>, q: UploadsQuery) -> Result<UploadsPage> {
    let all = blocking(move || {
        let mut all = Vec::new();
        for e in fs::read_dir(b.uploads())? {
            let e = e?;
            let id = e.file_name().to_string_lossy().to_string();
            if let Ok(Some(rec)) = read_record::<UploadRecord>(&e.path().join("upload.json")) {
                all.push(upload_info(&id, &rec));
            }
        }
        Ok(all)
    })
    .await?;
    Ok(rules::page_uploads(all, &q))
}
