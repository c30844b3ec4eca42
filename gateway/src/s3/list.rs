//! Listings: ListObjects v1 and v2, and ListObjectVersions (every object is
//! its only version, `null`, on these unversioned buckets). Paging itself
//! is `backend::listing`; this file handles markers, tokens and encoding.

use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::error::OrS3;
use super::{Front, etag, owner, ts};
use crate::backend::ListQuery;
use crate::backend::listing::{ListEntry, ListPage};

/// Characters left as-is by `encoding-type=url` (RFC 3986 unreserved + `/`).
const KEEP: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

fn enc(url: bool, s: String) -> String {
    if url { utf8_percent_encode(&s, KEEP).to_string() } else { s }
}

fn max_keys(m: Option<i32>) -> S3Result<usize> {
    match m {
        None => Ok(1000),
        Some(n) if n < 0 => {
            Err(s3_error!(InvalidArgument, "max-keys must be a non-negative integer"))
        }
        Some(n) => Ok((n as usize).min(1000)),
    }
}

fn is_url(e: &Option<EncodingType>) -> S3Result<bool> {
    match e.as_ref().map(EncodingType::as_str) {
        None => Ok(false),
        Some(EncodingType::URL) => Ok(true),
        Some(_) => Err(s3_error!(InvalidArgument, "Invalid Encoding Method specified in Request")),
    }
}

/// Continuation tokens are the base64 of the key the next page starts
/// after: opaque to clients, stable across servers and restarts.
fn encode_token(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

fn decode_token(t: &str) -> S3Result<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "The continuation token provided is incorrect"))
}

async fn page(
    f: &Front,
    bucket: &str,
    prefix: &Option<String>,
    delimiter: &Option<String>,
    after: Option<String>,
    max: usize,
) -> S3Result<ListPage> {
    let q = ListQuery {
        prefix: prefix.clone().unwrap_or_default(),
        delimiter: delimiter.clone().filter(|d| !d.is_empty()),
        after: after.filter(|a| !a.is_empty()),
        max_keys: max,
    };
    f.backend.list_objects(bucket, &q).await.or_s3()
}

fn object(e: ListEntry, url: bool) -> Object {
    Object {
        e_tag: Some(etag(&e.etag)),
        key: Some(enc(url, e.key)),
        last_modified: Some(ts(e.last_modified)),
        size: Some(e.size as i64),
        storage_class: Some(ObjectStorageClass::from(e.storage_class)),
        ..Default::default()
    }
}

fn prefixes(cps: Vec<String>, url: bool) -> Vec<CommonPrefix> {
    cps.into_iter().map(|p| CommonPrefix { prefix: Some(enc(url, p)) }).collect()
}

pub async fn list_objects_v2(
    f: &Front,
    req: S3Request<ListObjectsV2Input>,
) -> S3Result<S3Response<ListObjectsV2Output>> {
    let i = req.input;
    let url = is_url(&i.encoding_type)?;
    let max = max_keys(i.max_keys)?;
    let after = match &i.continuation_token {
        Some(t) => Some(decode_token(t)?),
        None => i.start_after.clone(),
    };
    let p = page(f, &i.bucket, &i.prefix, &i.delimiter, after, max).await?;
    let fetch_owner = i.fetch_owner.unwrap_or(false);
    let key_count = (p.objects.len() + p.common_prefixes.len()) as i32;
    let contents: Vec<Object> = p
        .objects
        .into_iter()
        .map(|e| Object { owner: fetch_owner.then(owner), ..object(e, url) })
        .collect();
    Ok(S3Response::new(ListObjectsV2Output {
        name: Some(i.bucket),
        prefix: Some(enc(url, i.prefix.unwrap_or_default())),
        delimiter: i.delimiter.map(|d| enc(url, d)),
        max_keys: Some(max as i32),
        key_count: Some(key_count),
        continuation_token: i.continuation_token,
        next_continuation_token: p.next_marker.as_deref().map(encode_token),
        start_after: i.start_after.map(|s| enc(url, s)),
        is_truncated: Some(p.is_truncated),
        contents: Some(contents),
        common_prefixes: Some(prefixes(p.common_prefixes, url)),
        encoding_type: i.encoding_type,
        ..Default::default()
    }))
}

pub async fn list_objects(
    f: &Front,
    req: S3Request<ListObjectsInput>,
) -> S3Result<S3Response<ListObjectsOutput>> {
    let i = req.input;
    let url = is_url(&i.encoding_type)?;
    let max = max_keys(i.max_keys)?;
    let p = page(f, &i.bucket, &i.prefix, &i.delimiter, i.marker.clone(), max).await?;
    // AWS returns NextMarker only when a delimiter was given.
    let next_marker = if i.delimiter.as_deref().is_some_and(|d| !d.is_empty()) {
        p.next_marker.map(|m| enc(url, m))
    } else {
        None
    };
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(i.bucket),
        prefix: Some(enc(url, i.prefix.unwrap_or_default())),
        marker: Some(enc(url, i.marker.unwrap_or_default())),
        max_keys: Some(max as i32),
        is_truncated: Some(p.is_truncated),
        contents: Some(
            p.objects
                .into_iter()
                .map(|e| Object { owner: Some(owner()), ..object(e, url) })
                .collect(),
        ),
        common_prefixes: Some(prefixes(p.common_prefixes, url)),
        delimiter: i.delimiter.map(|d| enc(url, d)),
        next_marker,
        encoding_type: i.encoding_type,
        ..Default::default()
    }))
}

pub async fn list_object_versions(
    f: &Front,
    req: S3Request<ListObjectVersionsInput>,
) -> S3Result<S3Response<ListObjectVersionsOutput>> {
    let i = req.input;
    let url = is_url(&i.encoding_type)?;
    let max = max_keys(i.max_keys)?;
    let p = page(f, &i.bucket, &i.prefix, &i.delimiter, i.key_marker.clone(), max).await?;
    let versions: Vec<ObjectVersion> = p
        .objects
        .into_iter()
        .map(|e| ObjectVersion {
            e_tag: Some(etag(&e.etag)),
            is_latest: Some(true),
            key: Some(enc(url, e.key)),
            last_modified: Some(ts(e.last_modified)),
            owner: Some(owner()),
            size: Some(e.size as i64),
            storage_class: Some(ObjectVersionStorageClass::from(e.storage_class)),
            version_id: Some("null".into()),
            ..Default::default()
        })
        .collect();
    let truncated = p.is_truncated;
    Ok(S3Response::new(ListObjectVersionsOutput {
        common_prefixes: Some(prefixes(p.common_prefixes, url)),
        delimiter: i.delimiter.map(|d| enc(url, d)),
        encoding_type: i.encoding_type,
        is_truncated: Some(truncated),
        key_marker: Some(enc(url, i.key_marker.unwrap_or_default())),
        max_keys: Some(max as i32),
        name: Some(i.bucket),
        next_key_marker: p.next_marker.clone().map(|m| enc(url, m)),
        next_version_id_marker: truncated.then(|| "null".to_string()),
        prefix: Some(enc(url, i.prefix.unwrap_or_default())),
        version_id_marker: i.version_id_marker,
        versions: Some(versions),
        ..Default::default()
    }))
}
