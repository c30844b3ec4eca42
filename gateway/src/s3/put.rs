//! Writes and deletes: PutObject, POST object (browser form upload, its
//! policy already checked by s3s), DeleteObject and DeleteObjects.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::error::{OrS3, to_s3};
use super::{
    Front, body_check, body_stream, declared_len, etag, http_meta, parse_tagging_header,
    refuse_after_body, storage_class, user_meta,
};
use crate::backend::{ObjectInfo, PutOptions, WriteCondition};

/// The write condition of `If-None-Match` / `If-Match` on a write. AWS
/// only accepts `*` for If-None-Match on writes.
pub(super) fn write_condition(
    if_none_match: Option<&ETagCondition>,
    if_match: Option<&ETagCondition>,
) -> S3Result<WriteCondition> {
    match (if_none_match, if_match) {
        (Some(ETagCondition::Any), None) => Ok(WriteCondition::IfAbsent),
        (Some(ETagCondition::ETag(_)), _) => {
            Err(s3_error!(InvalidArgument, "If-None-Match on a write only accepts the value *"))
        }
        (None, Some(ETagCondition::Any)) => Ok(WriteCondition::IfMatch("*".into())),
        (None, Some(ETagCondition::ETag(e))) => Ok(WriteCondition::IfMatch(e.value().to_string())),
        (None, None) => Ok(WriteCondition::None),
        (Some(_), Some(_)) => Err(s3_error!(
            InvalidArgument,
            "If-Match and If-None-Match cannot be combined on a write"
        )),
    }
}

/// Checksum headers a write response echoes.
macro_rules! with_checksums {
    ($out:expr, $info:expr) => {{
        let c = &$info.checksums;
        $out.checksum_crc32 = c.crc32.clone();
        $out.checksum_crc32c = c.crc32c.clone();
        $out.checksum_crc64nvme = c.crc64nvme.clone();
        $out.checksum_sha1 = c.sha1.clone();
        $out.checksum_sha256 = c.sha256.clone();
    }};
}
pub(super) use with_checksums;

pub async fn put_object(
    f: &Front,
    req: S3Request<PutObjectInput>,
) -> S3Result<S3Response<PutObjectOutput>> {
    let trailer = req.trailing_headers.clone();
    let i = req.input;
    let size = declared_len(i.content_length)?;
    if let Some(size) = size.filter(|&s| s > f.limits.max_object_size) {
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
    let opts = PutOptions {
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
        condition: write_condition(i.if_none_match.as_ref(), i.if_match.as_ref())?,
        size,
        check,
    };
    let _ticket = f.admit_write(size).await?;
    let info = f.backend.put_object(&i.bucket, &i.key, body_stream(i.body), opts).await.or_s3()?;
    let mut out = PutObjectOutput { e_tag: Some(etag(&info.etag)), ..Default::default() };
    with_checksums!(out, info);
    if !info.checksums.is_empty() {
        out.checksum_type = Some(ChecksumType::from_static(ChecksumType::FULL_OBJECT));
    }
    Ok(S3Response::new(out))
}

pub async fn post_object(
    f: &Front,
    req: S3Request<PostObjectInput>,
) -> S3Result<S3Response<PostObjectOutput>> {
    let i = req.input;
    let size = declared_len(i.content_length)?;
    let check = body_check(
        f,
        i.content_md5,
        i.checksum_algorithm.as_ref(),
        i.checksum_crc32,
        i.checksum_crc32c,
        i.checksum_crc64nvme,
        i.checksum_sha1,
        i.checksum_sha256,
        None,
    );
    let opts = PutOptions {
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
        condition: write_condition(i.if_none_match.as_ref(), i.if_match.as_ref())?,
        size,
        check,
    };
    let info: ObjectInfo =
        f.backend.put_object(&i.bucket, &i.key, body_stream(i.body), opts).await.or_s3()?;
    let mut out = PostObjectOutput { e_tag: Some(etag(&info.etag)), ..Default::default() };
    with_checksums!(out, info);
    Ok(S3Response::new(out))
}

pub async fn delete_object(
    f: &Front,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let i = req.input;
    if let Some(cond) = &i.if_match {
        match f.backend.head_object(&i.bucket, &i.key).await {
            Ok(info) if super::etag_matches(cond, &info.etag) => {}
            Ok(_) => return Err(to_s3(crate::backend::BackendError::PreconditionFailed)),
            Err(crate::backend::BackendError::NoSuchKey { .. }) => {
                return Err(s3_error!(NoSuchKey, "The specified key does not exist."));
            }
            Err(e) => return Err(to_s3(e)),
        }
    }
    f.backend.delete_object(&i.bucket, &i.key).await.or_s3()?;
    let mut resp = S3Response::new(DeleteObjectOutput::default());
    resp.status = Some(http::StatusCode::NO_CONTENT);
    Ok(resp)
}

pub async fn delete_objects(
    f: &Front,
    req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let i = req.input;
    if i.delete.objects.len() > 1000 {
        return Err(s3_error!(
            MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema"
        ));
    }
    f.backend.bucket(&i.bucket).await.or_s3()?;
    let quiet = i.delete.quiet.unwrap_or(false);
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for obj in i.delete.objects {
        match f.backend.delete_object(&i.bucket, &obj.key).await {
            Ok(()) => {
                if !quiet {
                    deleted.push(DeletedObject { key: Some(obj.key), ..Default::default() });
                }
            }
            Err(e) => {
                let e = to_s3(e);
                errors.push(Error {
                    code: Some(e.code().as_str().to_string()),
                    key: Some(obj.key),
                    message: e.message().map(str::to_string),
                    version_id: None,
                });
            }
        }
    }
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted: Some(deleted),
        errors: Some(errors),
        ..Default::default()
    }))
}
