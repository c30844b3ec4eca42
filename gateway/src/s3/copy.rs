//! Server-side copies: CopyObject (COPY/REPLACE metadata and tagging
//! directives, copy-source conditions) and UploadPartCopy (with a source
//! range). The bytes stream from source to destination; the caller must be
//! allowed to read the source as well as write the destination.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::error::OrS3;
use super::get::{Verdict, evaluate};
use super::multipart::part_number;
use super::put::{with_checksums, write_condition};
use super::{Front, etag, http_meta, parse_tagging_header, storage_class, ts, user_meta};
use crate::backend::{BodyCheck, GetResult, PartBody, PutOptions, ReadRange};

/// Source bucket and key, after checking the caller may read it.
fn source<T>(f: &Front, req: &S3Request<T>, cs: &CopySource) -> S3Result<(String, String)> {
    let CopySource::Bucket { bucket, key, version_id } = cs else {
        return Err(s3_error!(
            InvalidArgument,
            "Copy from an access point or outpost is not supported"
        ));
    };
    if version_id.as_deref().is_some_and(|v| v != "null") {
        return Err(s3_error!(NoSuchVersion, "The specified version does not exist."));
    }
    let ak = req.credentials.as_ref().map(|c| c.access_key.as_str()).unwrap_or_default();
    if !f.keyring.allows(ak, "s3:GetObject", Some(bucket)) {
        return Err(s3_error!(AccessDenied, "Access Denied"));
    }
    Ok((bucket.to_string(), key.to_string()))
}

/// Copy-source conditions fail with 412 whichever header failed.
fn check_source(
    got: &GetResult,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    match evaluate(&got.info, if_match, if_none_match, if_modified_since, if_unmodified_since) {
        Verdict::Proceed => Ok(()),
        _ => Err(s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        )),
    }
}

pub async fn copy_object(
    f: &Front,
    req: S3Request<CopyObjectInput>,
) -> S3Result<S3Response<CopyObjectOutput>> {
    let (src_bucket, src_key) = source(f, &req, &req.input.copy_source)?;
    let i = req.input;
    let mut ticket = f.admit_open(None).await?;
    let got = f.backend.get_object(&src_bucket, &src_key, None).await.or_s3()?;
    check_source(
        &got,
        i.copy_source_if_match.as_ref(),
        i.copy_source_if_none_match.as_ref(),
        i.copy_source_if_modified_since.as_ref(),
        i.copy_source_if_unmodified_since.as_ref(),
    )?;
    let replace_meta =
        i.metadata_directive.as_ref().is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
    let replace_tags =
        i.tagging_directive.as_ref().is_some_and(|d| d.as_str() == TaggingDirective::REPLACE);
    let new_class = storage_class(f, i.storage_class.as_ref())?;
    if src_bucket == i.bucket && src_key == i.key && !replace_meta && new_class.is_none() {
        return Err(s3_error!(
            InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
        ));
    }
    let src = got.info.clone();
    let (http, meta) = if replace_meta {
        let http = http_meta(
            i.content_type,
            i.content_encoding,
            i.content_disposition,
            i.content_language,
            i.cache_control,
            i.expires.as_ref(),
        );
        (http, user_meta(i.metadata)?)
    } else {
        (src.http.clone(), src.user_meta.clone())
    };
    let tags =
        if replace_tags { parse_tagging_header(i.tagging.as_deref())? } else { src.tags.clone() };
    // Keep the source's full-object checksums (recomputed while copying).
    let mut compute: Vec<String> = if src.parts.is_empty() {
        src.checksums.iter().map(|(n, _)| n.to_string()).collect()
    } else {
        Vec::new()
    };
    if let Some(a) = &i.checksum_algorithm {
        compute.push(a.as_str().to_string());
    }
    let opts = PutOptions {
        http,
        user_meta: meta,
        storage_class: new_class.or(Some(src.storage_class.clone())),
        tags,
        condition: write_condition(None, None)?,
        size: Some(src.size),
        check: BodyCheck {
            compute,
            max_size: Some(f.limits.max_object_size),
            ..Default::default()
        },
    };
    let by_ref = f
        .backend
        .copy_by_reference((&src_bucket, &src_key), &src.etag, (&i.bucket, &i.key), &opts)
        .await
        .or_s3()?;
    let info = match by_ref {
        Some(info) => info,
        None => {
            // Streamed through this gateway: a read and a write in flight.
            f.admit_read(&mut ticket, src.size).await?;
            let _write = f.admit_write(Some(src.size)).await?;
            f.backend.put_object(&i.bucket, &i.key, got.body, opts).await.or_s3()?
        }
    };
    drop(ticket);
    let mut result = CopyObjectResult {
        e_tag: Some(etag(&info.etag)),
        last_modified: Some(ts(info.last_modified)),
        ..Default::default()
    };
    with_checksums!(result, info);
    Ok(S3Response::new(CopyObjectOutput { copy_object_result: Some(result), ..Default::default() }))
}

/// `bytes=first-last` of x-amz-copy-source-range.
fn copy_range(r: &str) -> S3Result<ReadRange> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
        )
    };
    let (a, b) = r.strip_prefix("bytes=").and_then(|s| s.split_once('-')).ok_or_else(bad)?;
    let first: u64 = a.parse().map_err(|_| bad())?;
    let last: u64 = b.parse().map_err(|_| bad())?;
    if last < first {
        return Err(bad());
    }
    Ok(ReadRange::Bytes { first, last: Some(last) })
}

pub async fn upload_part_copy(
    f: &Front,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let (src_bucket, src_key) = source(f, &req, &req.input.copy_source)?;
    let i = req.input;
    let n = part_number(i.part_number)?;
    let range = i.copy_source_range.as_deref().map(copy_range).transpose()?;
    if let Some(ReadRange::Bytes { first, last: Some(last) }) = range {
        let info = f.backend.head_object(&src_bucket, &src_key).await.or_s3()?;
        if last >= info.size || first >= info.size {
            return Err(s3_error!(InvalidRange, "The requested range is not satisfiable"));
        }
    }
    let mut ticket = f.admit_open(None).await?;
    let got = f.backend.get_object(&src_bucket, &src_key, range).await.or_s3()?;
    check_source(
        &got,
        i.copy_source_if_match.as_ref(),
        i.copy_source_if_none_match.as_ref(),
        i.copy_source_if_modified_since.as_ref(),
        i.copy_source_if_unmodified_since.as_ref(),
    )?;
    let len = got.range.as_ref().map_or(got.info.size, |r| r.end - r.start);
    let by_ref = if len == got.info.size {
        let (src, dst) =
            ((src_bucket.as_str(), src_key.as_str()), (i.bucket.as_str(), i.key.as_str()));
        f.backend.copy_part_by_reference(src, &got.info.etag, dst, &i.upload_id, n).await.or_s3()?
    } else {
        None
    };
    let part = match by_ref {
        Some(part) => part,
        None => {
            f.admit_read(&mut ticket, len).await?;
            let _write = f.admit_write(Some(len)).await?;
            let check =
                BodyCheck { max_size: Some(f.limits.max_object_size), ..Default::default() };
            f.backend
                .upload_part(
                    &i.bucket,
                    &i.key,
                    &i.upload_id,
                    n,
                    PartBody { stream: got.body, size: Some(len), check },
                )
                .await
                .or_s3()?
        }
    };
    let mut result = CopyPartResult {
        e_tag: Some(etag(&part.etag)),
        last_modified: Some(ts(part.last_modified)),
        ..Default::default()
    };
    with_checksums!(result, part);
    Ok(S3Response::new(UploadPartCopyOutput {
        copy_part_result: Some(result),
        ..Default::default()
    }))
}
