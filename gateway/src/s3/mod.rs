//! The S3 front end: s3s parses and serialises the protocol; this module
//! only translates each operation into [`Backend`] calls. One file per
//! family of operations; errors are mapped once, in [`error`].
//!
//! Operations not listed in the `impl S3` below keep s3s's default answer:
//! 501 NotImplemented in S3 XML (see the README's API table).

mod bucket;
mod copy;
pub mod error;
mod get;
mod list;
mod multipart;
mod object_meta;
mod put;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use time::OffsetDateTime;

use crate::admission::{Budget, Exhausted, Ticket};
use crate::auth::Keyring;
use crate::backend::{Backend, BodyCheck, ByteStream, Checksums, HttpMeta};

/// Limits the front end enforces before a backend sees a request.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest object (or part) accepted, in bytes.
    pub max_object_size: u64,
    /// Longest pause allowed while a request body is arriving.
    pub idle_timeout: Duration,
}

/// The `S3` implementation: a backend plus who may do what.
pub struct Front {
    pub backend: Arc<dyn Backend>,
    pub keyring: Arc<Keyring>,
    pub limits: Limits,
    pub region: String,
    /// Memory shared by the object data of every request in flight.
    pub budget: Budget,
}

/// AWS's answer when it sheds load; SDKs retry it with backoff.
fn slow_down(_: Exhausted) -> s3s::S3Error {
    s3_error!(SlowDown, "Please reduce your request rate.")
}

impl Front {
    /// Charges writing a body of `declared` bytes to the memory budget.
    pub(crate) async fn admit_write(&self, declared: Option<u64>) -> S3Result<Ticket> {
        let charge = self.backend.request_memory().write(declared);
        self.budget.take(charge).await.map_err(slow_down)
    }

    /// Charges opening a read (`requested` bytes if the range says how
    /// many) before the object's size is known.
    pub(crate) async fn admit_open(&self, requested: Option<u64>) -> S3Result<Ticket> {
        let charge = self.backend.request_memory().open(requested);
        self.budget.take(charge).await.map_err(slow_down)
    }

    /// Resizes an opened read's ticket to streaming `len` bytes.
    pub(crate) async fn admit_read(&self, ticket: &mut Ticket, len: u64) -> S3Result<()> {
        let charge = self.backend.request_memory().read(len);
        self.budget.resize(ticket, charge).await.map_err(slow_down)
    }
}

/// A stream that holds its budget ticket until it is dropped, so a
/// response body pays for the memory it holds until its last byte.
pub(crate) fn ticketed(stream: ByteStream, ticket: Ticket) -> ByteStream {
    Box::pin(stream.inspect(move |_| {
        let _held = &ticket;
    }))
}

/// AWS's limit on user metadata (names + values), in bytes.
const MAX_USER_METADATA: usize = 2 << 10;

pub(crate) fn etag(hex: &str) -> ETag {
    ETag::Strong(hex.to_string())
}

pub(crate) fn ts(t: OffsetDateTime) -> Timestamp {
    Timestamp::from(t)
}

/// Whether an `If-Match`/`If-None-Match` condition matches an ETag.
pub(crate) fn etag_matches(cond: &ETagCondition, hex: &str) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == hex,
    }
}

/// Adapts a request body to a backend stream.
pub(crate) fn body_stream(blob: Option<StreamingBlob>) -> ByteStream {
    match blob {
        Some(b) => Box::pin(b.map_err(io::Error::other)),
        None => Box::pin(futures::stream::empty::<io::Result<Bytes>>()),
    }
}

/// Adapts a backend stream to a response body.
pub(crate) fn blob(stream: ByteStream) -> StreamingBlob {
    StreamingBlob::wrap(stream)
}

/// A declared length, refusing negative values.
pub(crate) fn declared_len(len: Option<i64>) -> S3Result<Option<u64>> {
    match len {
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "Content-Length must not be negative")),
        Some(n) => Ok(Some(n as u64)),
        None => Ok(None),
    }
}

/// Largest declared body read and thrown away before a refusal that came
/// before the body (EntityTooLarge) is answered, and for how long at most.
/// A client that did not send `Expect: 100-continue` is still writing its
/// body; answering and closing at once makes the kernel reset the
/// connection with the body unread, and the client then sees "connection
/// reset" instead of the error.
const DRAIN_MAX: u64 = 64 << 20;
const DRAIN_FOR: Duration = Duration::from_secs(10);

/// Reads and discards a refused request's body (see [`DRAIN_MAX`]), then
/// returns `err` for the caller to answer with. A client that sent
/// `Expect: 100-continue` over HTTP/1.1 has not sent its body and gets the
/// error at once (reading the body would invite it to); an HTTP/1.0 one
/// was never answered 100 and is sending its body already.
pub(crate) async fn refuse_after_body<T>(
    extensions: &http::Extensions,
    body: Option<StreamingBlob>,
    declared: u64,
    err: s3s::S3Error,
) -> S3Result<T> {
    let waits_for_continue = extensions.get::<crate::http::ContinueExpected>().is_some_and(|c| c.0);
    if let Some(mut body) = body.filter(|_| declared <= DRAIN_MAX && !waits_for_continue) {
        let drain = async { while let Ok(Some(_)) = body.try_next().await {} };
        let _ = tokio::time::timeout(DRAIN_FOR, drain).await;
    }
    Err(err)
}

/// Formats a timestamp as the HTTP date S3 echoes back for `Expires`.
pub(crate) fn http_date(t: &Timestamp) -> Option<String> {
    let mut buf = Vec::new();
    t.format(TimestampFormat::HttpDate, &mut buf).ok()?;
    String::from_utf8(buf).ok()
}

pub(crate) fn parse_http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, s).ok()
}

/// User metadata with AWS's size limit applied.
pub(crate) fn user_meta(
    meta: Option<Metadata>,
) -> S3Result<std::collections::BTreeMap<String, String>> {
    let meta: std::collections::BTreeMap<String, String> =
        meta.unwrap_or_default().into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    let size: usize = meta.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_USER_METADATA {
        return Err(s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size."
        ));
    }
    Ok(meta)
}

/// The storage classes fs mode offers (one tier: everything is STANDARD).
pub(crate) fn storage_class(f: &Front, sc: Option<&StorageClass>) -> S3Result<Option<String>> {
    match sc.map(StorageClass::as_str) {
        None => Ok(None),
        Some(name) if f.backend.storage_classes().iter().any(|c| c == name) => {
            Ok(Some(name.to_string()))
        }
        Some(_) => {
            Err(s3_error!(InvalidStorageClass, "The storage class you specified is not valid"))
        }
    }
}

/// Parses `x-amz-tagging` (`k1=v1&k2=v2`, URL-encoded) with AWS's limits.
pub(crate) fn parse_tagging_header(h: Option<&str>) -> S3Result<Vec<(String, String)>> {
    let Some(h) = h.filter(|h| !h.is_empty()) else { return Ok(Vec::new()) };
    let mut tags = Vec::new();
    for pair in h.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| s3_error!(InvalidArgument, "The tag header is not valid UTF-8"))
        };
        tags.push((dec(k)?, dec(v)?));
    }
    check_tags(&tags)?;
    Ok(tags)
}

/// AWS's object tag limits: 10 tags, key ≤ 128, value ≤ 256, unique keys.
pub(crate) fn check_tags(tags: &[(String, String)]) -> S3Result<()> {
    if tags.len() > 10 {
        return Err(error::custom(
            "BadRequest",
            http::StatusCode::BAD_REQUEST,
            "Object tags cannot be greater than 10",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(s3_error!(
                InvalidTag,
                "The TagKey or TagValue you have provided is invalid"
            ));
        }
        if !seen.insert(k) {
            return Err(s3_error!(InvalidTag, "Cannot provide multiple Tags with the same key"));
        }
    }
    Ok(())
}

/// HTTP metadata from the PUT-like request fields.
pub(crate) fn http_meta(
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<&Timestamp>,
) -> HttpMeta {
    HttpMeta {
        content_type,
        content_encoding,
        content_disposition,
        content_language,
        cache_control,
        expires: expires.and_then(http_date),
    }
}

/// What the client asked us to verify on a body.
#[allow(clippy::too_many_arguments)]
pub(crate) fn body_check(
    front: &Front,
    content_md5: Option<String>,
    algorithm: Option<&ChecksumAlgorithm>,
    crc32: Option<String>,
    crc32c: Option<String>,
    crc64nvme: Option<String>,
    sha1: Option<String>,
    sha256: Option<String>,
    trailer: Option<s3s::TrailingHeaders>,
) -> BodyCheck {
    let expected = Checksums { crc32, crc32c, crc64nvme, sha1, sha256 };
    let trailer = trailer.map(|t| {
        Arc::new(move || {
            let mut c = Checksums::default();
            t.read(|h| {
                for (name, value) in h {
                    if let Some(algo) = name.as_str().strip_prefix("x-amz-checksum-")
                        && let Ok(v) = value.to_str()
                    {
                        c.set(algo, v.to_string());
                    }
                }
            });
            c
        }) as crate::backend::verify::TrailerSource
    });
    BodyCheck {
        content_md5,
        expected,
        compute: algorithm.map(|a| vec![a.as_str().to_string()]).unwrap_or_default(),
        trailer,
        idle_timeout: Some(front.limits.idle_timeout),
        max_size: Some(front.limits.max_object_size),
    }
}

/// The owner every bucket and object reports (single-tenant store).
pub(crate) fn owner() -> Owner {
    Owner { display_name: Some("predastore".into()), id: Some("predastore".into()) }
}

#[async_trait::async_trait]
impl S3 for Front {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        bucket::list_buckets(self, req).await
    }
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        bucket::create_bucket(self, req).await
    }
    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        bucket::delete_bucket(self, req).await
    }
    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        bucket::head_bucket(self, req).await
    }
    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        bucket::get_bucket_location(self, req).await
    }
    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        bucket::get_bucket_versioning(self, req).await
    }
    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        bucket::get_bucket_acl(self, req).await
    }
    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        bucket::put_bucket_acl(self, req).await
    }
    async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        bucket::get_bucket_cors(self, req).await
    }
    async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        bucket::get_bucket_policy(self, req).await
    }
    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        bucket::get_bucket_lifecycle(self, req).await
    }
    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        bucket::get_bucket_tagging(self, req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        put::put_object(self, req).await
    }
    async fn post_object(
        &self,
        req: S3Request<PostObjectInput>,
    ) -> S3Result<S3Response<PostObjectOutput>> {
        put::post_object(self, req).await
    }
    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        get::get_object(self, req).await
    }
    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        get::head_object(self, req).await
    }
    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        put::delete_object(self, req).await
    }
    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        put::delete_objects(self, req).await
    }
    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        copy::copy_object(self, req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        list::list_objects(self, req).await
    }
    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        list::list_objects_v2(self, req).await
    }
    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        list::list_object_versions(self, req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        multipart::create(self, req).await
    }
    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        multipart::upload_part(self, req).await
    }
    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        copy::upload_part_copy(self, req).await
    }
    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        multipart::complete(self, req).await
    }
    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        multipart::abort(self, req).await
    }
    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        multipart::list_parts(self, req).await
    }
    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        multipart::list_uploads(self, req).await
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        object_meta::get_tagging(self, req).await
    }
    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        object_meta::put_tagging(self, req).await
    }
    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        object_meta::delete_tagging(self, req).await
    }
    async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        object_meta::get_acl(self, req).await
    }
    async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        object_meta::put_acl(self, req).await
    }
    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        object_meta::get_attributes(self, req).await
    }
}
