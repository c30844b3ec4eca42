//! Multipart uploads: create, upload part, complete, abort, list parts and
//! list uploads. UploadPartCopy lives with the other copies in `copy`.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::error::OrS3;
use super::put::{with_checksums, write_condition};
use super::{
    Front, body_check, body_stream, declared_len, etag, http_meta, owner, parse_tagging_header,
    refuse_after_body, storage_class, ts, user_meta,
};
use crate::backend::{BackendError, ObjectInfo, PartBody, UploadOptions, UploadsQuery, rules};

pub async fn create(
    f: &Front,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let i = req.input;
    f.backend.bucket(&i.bucket).await.or_s3()?;
    let opts = UploadOptions {
        http: http_meta(
            i.content_type,
            i.content_encoding,
            i.content_disposition,
            i.content_language,
            i.cache_control,
            i.expires.as_ref(),
        ),
        user_meta: user_meta(i.metadata)?,
        storage_class: storage_class(f, i.storage_class.as_ref())?,
        tags: parse_tagging_header(i.tagging.as_deref())?,
        checksum_algorithm: i.checksum_algorithm.as_ref().map(|a| a.as_str().to_string()),
    };
    let id = f.backend.create_multipart(&i.bucket, &i.key, opts).await.or_s3()?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(i.bucket),
        key: Some(i.key),
        upload_id: Some(id),
        checksum_algorithm: i.checksum_algorithm,
        ..Default::default()
    }))
}

pub(super) fn part_number(n: i32) -> S3Result<u32> {
    u32::try_from(n).ok().filter(|n| (1..=crate::backend::MAX_PART_NUMBER).contains(n)).ok_or_else(
        || {
            s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            )
        },
    )
}

pub async fn upload_part(
    f: &Front,
    req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let trailer = req.trailing_headers.clone();
    let i = req.input;
    let n = part_number(i.part_number)?;
    let size = declared_len(i.content_length)?;
    if let Some(size) = size.filter(|&s| s > f.limits.max_object_size.min(5 << 30)) {
        let e = s3_error!(
            EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed object size."
        );
        return refuse_after_body(&req.extensions, i.body, size, e).await;
    }
    let check = body_check(
        f,
        i.content_md5,
        i.checksum_algorithm.as_ref(),
        i.checksum_crc32,
        i.checksum_crc32c,
        i.checksum_crc64nvme,
        i.checksum_sha1,
        i.checksum_sha256,
        trailer,
    );
    let _ticket = f.admit_write(size).await?;
    let part = f
        .backend
        .upload_part(
            &i.bucket,
            &i.key,
            &i.upload_id,
            n,
            PartBody { stream: body_stream(i.body), size, check },
        )
        .await
        .or_s3()?;
    let mut out = UploadPartOutput { e_tag: Some(etag(&part.etag)), ..Default::default() };
    with_checksums!(out, part);
    Ok(S3Response::new(out))
}

pub async fn complete(
    f: &Front,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let i = req.input;
    let parts = i.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
    if parts.is_empty() {
        return Err(s3_error!(
            MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema"
        ));
    }
    let mut list = Vec::with_capacity(parts.len());
    for p in parts {
        let n = part_number(p.part_number.unwrap_or(0))?;
        let e = p.e_tag.map(|e| e.value().to_string()).unwrap_or_default();
        list.push((n, e));
    }
    let condition = write_condition(i.if_none_match.as_ref(), i.if_match.as_ref())?;
    let wanted_etag = requested_etag(&list);
    let info = match f
        .backend
        .complete_multipart(&i.bucket, &i.key, &i.upload_id, list, condition)
        .await
    {
        Err(BackendError::NoSuchUpload { upload_id }) => {
            already_completed(f, &i.bucket, &i.key, &upload_id, wanted_etag.as_deref())
                .await
                .ok_or(BackendError::NoSuchUpload { upload_id })
        }
        r => r,
    }
    .or_s3()?;
    let mut out = CompleteMultipartUploadOutput {
        bucket: Some(i.bucket.clone()),
        key: Some(i.key.clone()),
        e_tag: Some(etag(&info.etag)),
        location: Some(format!("/{}/{}", i.bucket, i.key)),
        ..Default::default()
    };
    with_checksums!(out, info);
    if !info.checksums.is_empty() {
        out.checksum_type = Some(ChecksumType::from_static(ChecksumType::COMPOSITE));
    }
    Ok(S3Response::new(out))
}

/// The ETag a Complete of `parts` produces, if their ETags are well formed.
fn requested_etag(parts: &[(u32, String)]) -> Option<String> {
    let etags: Vec<&str> = parts.iter().map(|(_, e)| e.trim_matches('"')).collect();
    rules::multipart_etag(&etags).ok()
}

/// A retried Complete (its first answer lost) finds the upload gone: S3
/// answers it again when the current version is the one that upload wrote
/// from the same parts.
async fn already_completed(
    f: &Front,
    bucket: &str,
    key: &str,
    upload_id: &str,
    wanted_etag: Option<&str>,
) -> Option<ObjectInfo> {
    let info = f.backend.head_object(bucket, key).await.ok()?;
    (info.upload_id.as_deref() == Some(upload_id) && Some(info.etag.as_str()) == wanted_etag)
        .then_some(info)
}

pub async fn abort(
    f: &Front,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let i = req.input;
    f.backend.abort_multipart(&i.bucket, &i.key, &i.upload_id).await.or_s3()?;
    let mut resp = S3Response::new(AbortMultipartUploadOutput::default());
    resp.status = Some(http::StatusCode::NO_CONTENT);
    Ok(resp)
}

pub async fn list_parts(
    f: &Front,
    req: S3Request<ListPartsInput>,
) -> S3Result<S3Response<ListPartsOutput>> {
    let i = req.input;
    let max = i.max_parts.map_or(1000, |m| m.clamp(0, 1000)) as usize;
    let marker = i.part_number_marker.unwrap_or(0).max(0) as u32;
    let (upload, parts) = f.backend.list_parts(&i.bucket, &i.key, &i.upload_id).await.or_s3()?;
    let after: Vec<_> = parts.into_iter().filter(|p| p.part_number > marker).collect();
    let truncated = after.len() > max;
    let page: Vec<_> = after.into_iter().take(max).collect();
    let next = page.last().map(|p| p.part_number as i32);
    let parts: Vec<Part> = page
        .into_iter()
        .map(|p| {
            let mut out = Part {
                e_tag: Some(etag(&p.etag)),
                last_modified: Some(ts(p.last_modified)),
                part_number: Some(p.part_number as i32),
                size: Some(p.size as i64),
                ..Default::default()
            };
            with_checksums!(out, p);
            out
        })
        .collect();
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(i.bucket),
        key: Some(i.key),
        upload_id: Some(i.upload_id),
        initiator: Some(Initiator { display_name: owner().display_name, id: owner().id }),
        owner: Some(owner()),
        is_truncated: Some(truncated),
        max_parts: Some(max as i32),
        part_number_marker: i.part_number_marker,
        next_part_number_marker: if truncated { next } else { None },
        parts: Some(parts),
        storage_class: Some(StorageClass::from(upload.storage_class)),
        checksum_algorithm: upload.checksum_algorithm.map(ChecksumAlgorithm::from),
        ..Default::default()
    }))
}

pub async fn list_uploads(
    f: &Front,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let i = req.input;
    let q = UploadsQuery {
        prefix: i.prefix.clone().unwrap_or_default(),
        delimiter: i.delimiter.clone(),
        key_marker: i.key_marker.clone().filter(|m| !m.is_empty()),
        upload_id_marker: i.upload_id_marker.clone().filter(|m| !m.is_empty()),
        max_uploads: i.max_uploads.map_or(1000, |m| m.clamp(0, 1000)) as usize,
    };
    let page = f.backend.list_uploads(&i.bucket, &q).await.or_s3()?;
    let uploads = page
        .uploads
        .into_iter()
        .map(|u| MultipartUpload {
            initiated: Some(ts(u.initiated)),
            initiator: Some(Initiator { display_name: owner().display_name, id: owner().id }),
            key: Some(u.key),
            owner: Some(owner()),
            storage_class: Some(StorageClass::from(u.storage_class)),
            upload_id: Some(u.upload_id),
            checksum_algorithm: u.checksum_algorithm.map(ChecksumAlgorithm::from),
            ..Default::default()
        })
        .collect();
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(i.bucket),
        common_prefixes: Some(
            page.common_prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(p) }).collect(),
        ),
        delimiter: i.delimiter,
        is_truncated: Some(page.is_truncated),
        key_marker: i.key_marker,
        max_uploads: Some(q.max_uploads as i32),
        next_key_marker: page.next_key_marker.filter(|_| page.is_truncated),
        next_upload_id_marker: page.next_upload_id_marker.filter(|_| page.is_truncated),
        prefix: i.prefix,
        upload_id_marker: i.upload_id_marker,
        uploads: Some(uploads),
        ..Default::default()
    }))
}
