//! Object metadata between the S3 layer's [`ObjectInfo`] and the Raft
//! records of the metadata plane ([`ObjectRecord`], [`MultipartUpload`],
//! [`PartRecord`]). Pure conversions, tested without a cluster.
//!
//! # Gateway attributes, version 1
//!
//! The Raft records carry what every client of the metadata plane needs
//! (size, ETag, content type, user metadata, checksums, storage class,
//! chunks). What only the S3 gateway needs — the other HTTP headers, tags,
//! part sizes, missing shards, the upload's checksum algorithm — travels as
//! JSON ([`Attrs`], field `v` = 1) under the user-metadata name
//! [`ATTRS_KEY`]. That name cannot come from a client (`:` is not allowed
//! in an HTTP header name), so it never collides with `x-amz-meta-*`, and
//! the Raft record format stays unchanged. A part record has no metadata
//! map; its checksums and missing shards follow the hex MD5 in its `etag`
//! field after a space (`<md5> {"v":1,…}`), see [`part_etag_field`].

use std::collections::BTreeMap;

use predastore_core::meta::{MultipartUpload, ObjectRecord, PartRecord};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::backend::{
    BackendError, Checksums, HttpMeta, ObjectInfo, PartInfo, Result, UploadInfo, UploadOptions,
};

/// User-metadata name of the gateway's attributes (not a valid header name).
pub const ATTRS_KEY: &str = ":predastore";

/// Version of [`Attrs`] this build writes.
pub const ATTRS_VERSION: u32 = 1;

/// What the gateway keeps beside the Raft record's own fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attrs {
    /// Format version ([`ATTRS_VERSION`]).
    pub v: u32,
    /// HTTP headers other than Content-Type.
    #[serde(default)]
    pub http: HttpMeta,
    /// Object tags, in the order set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    /// Part sizes of a multipart object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<u64>,
    /// Shards not written at PUT time (`<shard id>@<node>`), for repair.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Checksum algorithm announced for a multipart upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<String>,
    /// The multipart upload that wrote the object (answers a retried
    /// Complete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
}

fn ms(t: OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

fn time_of(ms: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Splits a record's user metadata into the client's pairs and the
/// gateway's attributes.
fn split_meta(mut meta: BTreeMap<String, String>) -> Result<(BTreeMap<String, String>, Attrs)> {
    let attrs = match meta.remove(ATTRS_KEY) {
        None => Attrs::default(),
        Some(json) => {
            let a: Attrs = serde_json::from_str(&json).map_err(|e| {
                BackendError::Internal(format!("object attributes do not decode: {e}"))
            })?;
            if a.v != ATTRS_VERSION {
                return Err(BackendError::Internal(format!(
                    "object attributes version {} is unknown to this build",
                    a.v
                )));
            }
            a
        }
    };
    Ok((meta, attrs))
}

fn join_meta(mut meta: BTreeMap<String, String>, attrs: &Attrs) -> BTreeMap<String, String> {
    if attrs != &(Attrs { v: ATTRS_VERSION, ..Attrs::default() }) {
        meta.insert(
            ATTRS_KEY.into(),
            serde_json::to_string(attrs).expect("attributes always serialize"),
        );
    }
    meta
}

fn checksums_to_map(c: &Checksums) -> BTreeMap<String, String> {
    c.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

fn checksums_from_map(m: &BTreeMap<String, String>) -> Checksums {
    let mut c = Checksums::default();
    for (n, v) in m {
        c.set(n, v.clone());
    }
    c
}

/// The S3 view of a stored record.
pub fn info_of(key: &str, r: &ObjectRecord) -> Result<ObjectInfo> {
    let (user_meta, attrs) = split_meta(r.user_metadata.clone())?;
    let mut http = attrs.http;
    http.content_type = r.content_type.clone();
    Ok(ObjectInfo {
        key: key.into(),
        size: r.size,
        etag: r.etag.clone(),
        last_modified: time_of(r.modified_ms),
        http,
        user_meta,
        checksums: checksums_from_map(&r.checksums),
        storage_class: r.storage_class.clone(),
        parts: attrs.parts,
        tags: attrs.tags,
        upload_id: attrs.upload_id,
    })
}

/// The fields of a record that come from an [`ObjectInfo`]; the caller
/// sets `version_id`, `chunks` and `inline`.
pub fn record_of(info: &ObjectInfo, version_id: u128, missing: Vec<String>) -> ObjectRecord {
    let mut http = info.http.clone();
    let content_type = http.content_type.take();
    let attrs = Attrs {
        v: ATTRS_VERSION,
        http,
        tags: info.tags.clone(),
        parts: info.parts.clone(),
        missing,
        checksum_algorithm: None,
        upload_id: info.upload_id.clone(),
    };
    ObjectRecord {
        version_id,
        size: info.size,
        etag: info.etag.clone(),
        content_type,
        user_metadata: join_meta(info.user_meta.clone(), &attrs),
        checksums: checksums_to_map(&info.checksums),
        storage_class: info.storage_class.clone(),
        modified_ms: ms(info.last_modified),
        chunks: Vec::new(),
        inline: None,
    }
}

/// `r` with its list of missing shards replaced (after a repair); every
/// other field, the version included, stays as it was.
pub fn with_missing(mut r: ObjectRecord, missing: Vec<String>) -> Result<ObjectRecord> {
    let (meta, mut attrs) = split_meta(std::mem::take(&mut r.user_metadata))?;
    attrs.v = ATTRS_VERSION;
    attrs.missing = missing;
    r.user_metadata = join_meta(meta, &attrs);
    Ok(r)
}

/// Shards a record says were not written (for repair and for tests).
pub fn missing_of(r: &ObjectRecord) -> Vec<String> {
    split_meta(r.user_metadata.clone()).map(|(_, a)| a.missing).unwrap_or_default()
}

/// The upload record for new upload `upload_id`.
pub fn upload_record(
    bucket: &str,
    key: &str,
    upload_id: &str,
    owner: &str,
    class: &str,
    opts: &UploadOptions,
    now: OffsetDateTime,
) -> MultipartUpload {
    let mut http = opts.http.clone();
    let content_type = http.content_type.take();
    let attrs = Attrs {
        v: ATTRS_VERSION,
        http,
        tags: opts.tags.clone(),
        parts: Vec::new(),
        missing: Vec::new(),
        checksum_algorithm: opts.checksum_algorithm.clone(),
        upload_id: None,
    };
    MultipartUpload {
        bucket: bucket.into(),
        key: key.into(),
        upload_id: upload_id.into(),
        created_ms: ms(now),
        content_type,
        user_metadata: join_meta(opts.user_meta.clone(), &attrs),
        storage_class: class.into(),
        owner: owner.into(),
    }
}

/// The options an upload was created with.
pub fn upload_options(u: &MultipartUpload) -> Result<UploadOptions> {
    let (user_meta, attrs) = split_meta(u.user_metadata.clone())?;
    let mut http = attrs.http;
    http.content_type = u.content_type.clone();
    Ok(UploadOptions {
        http,
        user_meta,
        storage_class: Some(u.storage_class.clone()),
        tags: attrs.tags,
        checksum_algorithm: attrs.checksum_algorithm,
    })
}

/// ListMultipartUploads' view of an upload.
pub fn upload_info(u: &MultipartUpload) -> Result<UploadInfo> {
    let opts = upload_options(u)?;
    Ok(UploadInfo {
        key: u.key.clone(),
        upload_id: u.upload_id.clone(),
        initiated: time_of(u.created_ms),
        storage_class: u.storage_class.clone(),
        checksum_algorithm: opts.checksum_algorithm,
    })
}

/// What a part record keeps after its MD5 (version 1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct PartAttrs {
    v: u32,
    #[serde(default)]
    checksums: Checksums,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    missing: Vec<String>,
}

/// The `etag` field of a part record: the hex MD5, then the part's
/// checksums and missing shards as JSON after a space when there are any.
pub fn part_etag_field(p: &PartInfo, missing: &[String]) -> String {
    if p.checksums.is_empty() && missing.is_empty() {
        return p.etag.clone();
    }
    let attrs =
        PartAttrs { v: ATTRS_VERSION, checksums: p.checksums.clone(), missing: missing.to_vec() };
    format!("{} {}", p.etag, serde_json::to_string(&attrs).expect("attributes always serialize"))
}

/// The S3 view of a stored part, and the shards it is missing.
pub fn part_info(p: &PartRecord) -> Result<(PartInfo, Vec<String>)> {
    let (etag, attrs) = match p.etag.split_once(' ') {
        None => (p.etag.clone(), PartAttrs::default()),
        Some((etag, json)) => {
            let a: PartAttrs = serde_json::from_str(json).map_err(|e| {
                BackendError::Internal(format!(
                    "part {} attributes do not decode: {e}",
                    p.part_number
                ))
            })?;
            if a.v != ATTRS_VERSION {
                return Err(BackendError::Internal(format!(
                    "part attributes version {} is unknown to this build",
                    a.v
                )));
            }
            (etag.to_string(), a)
        }
    };
    let info = PartInfo {
        part_number: p.part_number,
        size: p.size,
        etag,
        last_modified: time_of(p.modified_ms),
        checksums: attrs.checksums,
    };
    Ok((info, attrs.missing))
}

/// Milliseconds since the epoch of `t` (record timestamps).
pub fn millis(t: OffsetDateTime) -> u64 {
    ms(t)
}

/// The time a record timestamp stands for.
pub fn time_from_millis(ms: u64) -> OffsetDateTime {
    time_of(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::rules::now_millis;

    fn info() -> ObjectInfo {
        ObjectInfo {
            key: "k".into(),
            size: 5,
            etag: "0123456789abcdef0123456789abcdef".into(),
            last_modified: now_millis(),
            http: HttpMeta {
                content_type: Some("text/plain".into()),
                cache_control: Some("no-cache".into()),
                ..HttpMeta::default()
            },
            user_meta: [("colour".to_string(), "blue".to_string())].into(),
            checksums: Checksums { crc32c: Some("AAAAAA==".into()), ..Checksums::default() },
            storage_class: "REDUCED_REDUNDANCY".into(),
            parts: vec![3, 2],
            tags: vec![("a".into(), "1".into())],
            upload_id: Some("0123abcd".into()),
        }
    }

    #[test]
    fn object_info_round_trips_through_a_record() {
        let i = info();
        let r = record_of(&i, 9, vec!["x@1".into()]);
        assert_eq!(r.content_type.as_deref(), Some("text/plain"));
        assert_eq!(r.user_metadata["colour"], "blue");
        assert_eq!(info_of("k", &r).unwrap(), i);
        assert_eq!(missing_of(&r), vec!["x@1".to_string()]);
    }

    #[test]
    fn plain_objects_carry_no_attributes() {
        let i = ObjectInfo {
            http: HttpMeta::default(),
            parts: vec![],
            tags: vec![],
            upload_id: None,
            user_meta: BTreeMap::new(),
            ..info()
        };
        let r = record_of(&i, 1, vec![]);
        assert!(r.user_metadata.is_empty(), "{:?}", r.user_metadata);
        assert_eq!(info_of("k", &r).unwrap(), i);
    }

    #[test]
    fn a_stored_attribute_sample_decodes() {
        // Written by version 1; must keep decoding.
        let json = r#"{"v":1,"http":{"cache_control":"max-age=1"},"tags":[["t","v"]],"parts":[5242880,1],"missing":["0000-00000000-02@3"]}"#;
        let mut r = record_of(&info(), 1, vec![]);
        r.user_metadata.insert(ATTRS_KEY.into(), json.into());
        let i = info_of("k", &r).unwrap();
        assert_eq!(i.http.cache_control.as_deref(), Some("max-age=1"));
        assert_eq!(i.parts, vec![5242880, 1]);
        assert_eq!(i.tags, vec![("t".to_string(), "v".to_string())]);
        assert_eq!(i.upload_id, None, "written before upload ids were kept");
        r.user_metadata.insert(ATTRS_KEY.into(), r#"{"v":2}"#.into());
        assert!(info_of("k", &r).is_err(), "an unknown version is an error, not a guess");
    }

    #[test]
    fn part_checksums_ride_in_the_etag_field() {
        let p = PartInfo {
            part_number: 2,
            size: 7,
            etag: "ab".repeat(16),
            last_modified: now_millis(),
            checksums: Checksums { sha256: Some("c2hh".into()), ..Checksums::default() },
        };
        let rec = PartRecord {
            part_number: 2,
            size: 7,
            etag: part_etag_field(&p, &["s@1".to_string()]),
            modified_ms: millis(p.last_modified),
            chunks: vec![],
        };
        assert_eq!(part_info(&rec).unwrap(), (p.clone(), vec!["s@1".to_string()]));
        let plain = PartInfo { checksums: Checksums::default(), ..p };
        assert_eq!(part_etag_field(&plain, &[]), plain.etag);
    }

    #[test]
    fn upload_options_round_trip() {
        let opts = UploadOptions {
            http: HttpMeta { content_type: Some("a/b".into()), ..HttpMeta::default() },
            user_meta: [("m".to_string(), "1".to_string())].into(),
            storage_class: Some("STANDARD".into()),
            tags: vec![("t".into(), "2".into())],
            checksum_algorithm: Some("CRC32".into()),
        };
        let u = upload_record("b", "k", "id", "me", "STANDARD", &opts, now_millis());
        let back = upload_options(&u).unwrap();
        assert_eq!(back.http, opts.http);
        assert_eq!(back.user_meta, opts.user_meta);
        assert_eq!(back.tags, opts.tags);
        assert_eq!(back.checksum_algorithm, opts.checksum_algorithm);
        assert_eq!(upload_info(&u).unwrap().checksum_algorithm.as_deref(), Some("CRC32"));
    }
}
