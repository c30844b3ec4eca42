//! Per-object metadata operations: tagging, ACLs (derived from the bucket's
//! public flag; objects carry no ACL of their own) and GetObjectAttributes.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::bucket::{acl_grants, public_from_policy};
use super::error::OrS3;
use super::{Front, check_tags, etag, owner, ts};

pub async fn get_tagging(
    f: &Front,
    req: S3Request<GetObjectTaggingInput>,
) -> S3Result<S3Response<GetObjectTaggingOutput>> {
    let i = req.input;
    let info = f.backend.head_object(&i.bucket, &i.key).await.or_s3()?;
    let tag_set =
        info.tags.into_iter().map(|(k, v)| Tag { key: Some(k), value: Some(v) }).collect();
    Ok(S3Response::new(GetObjectTaggingOutput { tag_set, version_id: None }))
}

pub async fn put_tagging(
    f: &Front,
    req: S3Request<PutObjectTaggingInput>,
) -> S3Result<S3Response<PutObjectTaggingOutput>> {
    let i = req.input;
    let tags: Vec<(String, String)> = i
        .tagging
        .tag_set
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
        .collect();
    check_tags(&tags)?;
    f.backend.set_object_tags(&i.bucket, &i.key, tags).await.or_s3()?;
    Ok(S3Response::new(PutObjectTaggingOutput { version_id: None }))
}

pub async fn delete_tagging(
    f: &Front,
    req: S3Request<DeleteObjectTaggingInput>,
) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
    let i = req.input;
    f.backend.set_object_tags(&i.bucket, &i.key, Vec::new()).await.or_s3()?;
    let mut resp = S3Response::new(DeleteObjectTaggingOutput { version_id: None });
    resp.status = Some(http::StatusCode::NO_CONTENT);
    Ok(resp)
}

pub async fn get_acl(
    f: &Front,
    req: S3Request<GetObjectAclInput>,
) -> S3Result<S3Response<GetObjectAclOutput>> {
    let i = req.input;
    let bucket = f.backend.bucket(&i.bucket).await.or_s3()?;
    f.backend.head_object(&i.bucket, &i.key).await.or_s3()?;
    Ok(S3Response::new(GetObjectAclOutput {
        grants: Some(acl_grants(bucket.public)),
        owner: Some(owner()),
        request_charged: None,
    }))
}

pub async fn put_acl(
    f: &Front,
    req: S3Request<PutObjectAclInput>,
) -> S3Result<S3Response<PutObjectAclOutput>> {
    let i = req.input;
    let bucket = f.backend.bucket(&i.bucket).await.or_s3()?;
    f.backend.head_object(&i.bucket, &i.key).await.or_s3()?;
    // Objects inherit the bucket's visibility; an ACL that asks for the
    // same is accepted, anything else is refused rather than ignored.
    let wants_public = match (&i.acl, &i.access_control_policy) {
        (Some(acl), _) => match acl.as_str() {
            "private" | "bucket-owner-full-control" => false,
            "public-read" => true,
            other => {
                return Err(s3_error!(InvalidArgument, "Unsupported canned ACL {other:?}"));
            }
        },
        (None, Some(p)) => public_from_policy(p)?,
        (None, None) => false,
    };
    if wants_public != bucket.public {
        return Err(s3_error!(
            InvalidArgument,
            "Objects share their bucket's visibility; set the bucket ACL to {} instead",
            if wants_public { "public-read" } else { "private" }
        ));
    }
    Ok(S3Response::new(PutObjectAclOutput::default()))
}

pub async fn get_attributes(
    f: &Front,
    req: S3Request<GetObjectAttributesInput>,
) -> S3Result<S3Response<GetObjectAttributesOutput>> {
    let i = req.input;
    let info = f.backend.head_object(&i.bucket, &i.key).await.or_s3()?;
    let want = |a: &str| i.object_attributes.iter().any(|x| x.as_str() == a);
    let mut out = GetObjectAttributesOutput {
        last_modified: Some(ts(info.last_modified)),
        ..Default::default()
    };
    if want(ObjectAttributes::ETAG) {
        out.e_tag = Some(etag(&info.etag));
    }
    if want(ObjectAttributes::OBJECT_SIZE) {
        out.object_size = Some(info.size as i64);
    }
    if want(ObjectAttributes::STORAGE_CLASS) {
        out.storage_class = Some(StorageClass::from(info.storage_class.clone()));
    }
    if want(ObjectAttributes::CHECKSUM) && !info.checksums.is_empty() {
        let c = &info.checksums;
        out.checksum = Some(Checksum {
            checksum_crc32: c.crc32.clone(),
            checksum_crc32c: c.crc32c.clone(),
            checksum_crc64nvme: c.crc64nvme.clone(),
            checksum_sha1: c.sha1.clone(),
            checksum_sha256: c.sha256.clone(),
            checksum_type: Some(ChecksumType::from_static(if info.parts.is_empty() {
                ChecksumType::FULL_OBJECT
            } else {
                ChecksumType::COMPOSITE
            })),
        });
    }
    if want(ObjectAttributes::OBJECT_PARTS) && !info.parts.is_empty() {
        let max = i.max_parts.map_or(1000, |m| m.clamp(0, 1000)) as usize;
        let marker = i.part_number_marker.unwrap_or(0).max(0) as usize;
        let rest: Vec<_> = info.parts.iter().enumerate().skip(marker).collect();
        let truncated = rest.len() > max;
        let page: Vec<ObjectPart> = rest
            .into_iter()
            .take(max)
            .map(|(idx, size)| ObjectPart {
                part_number: Some(idx as i32 + 1),
                size: Some(*size as i64),
                ..Default::default()
            })
            .collect();
        let next = page.last().and_then(|p| p.part_number);
        out.object_parts = Some(GetObjectAttributesParts {
            is_truncated: Some(truncated),
            max_parts: Some(max as i32),
            next_part_number_marker: if truncated { next } else { None },
            part_number_marker: i.part_number_marker,
            parts: Some(page),
            total_parts_count: Some(info.parts.len() as i32),
        });
    }
    Ok(S3Response::new(out))
}
