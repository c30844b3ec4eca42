//! Bucket operations through a cluster's S3 endpoint with its root
//! credentials (aws-sdk-s3, plain HTTP inside the Kubernetes cluster; no
//! TLS stack so aws-lc is not built). Each call is idempotent so a
//! reconcile can repeat it.

use aws_credential_types::Credentials;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::BucketCannedAcl;

/// Why an S3 call failed.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The bucket still holds objects; `Delete` policy waits.
    #[error("bucket {0} is not empty")]
    NotEmpty(String),
    /// Any other failure, with the S3 error code when there is one.
    #[error("S3 {op} {bucket}: {code}: {message}")]
    Call {
        /// Operation name.
        op: &'static str,
        /// Bucket.
        bucket: String,
        /// S3 error code, or `<no code>` for transport errors.
        code: String,
        /// Details.
        message: String,
    },
}

fn call_error<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    op: &'static str,
    bucket: &str,
    e: &SdkError<E, R>,
) -> S3Error {
    let code = e.as_service_error().and_then(|s| s.code()).unwrap_or("<no code>").to_string();
    let message = match e.as_service_error().and_then(|s| s.message()) {
        Some(m) => m.to_string(),
        None => format!("{e:?}"),
    };
    S3Error::Call { op, bucket: bucket.to_string(), code, message }
}

/// A client for one cluster.
#[derive(Debug, Clone)]
pub struct S3 {
    client: Client,
}

impl S3 {
    /// A path-style client of `endpoint` (an `http://` URL).
    pub fn new(endpoint: &str, access_key_id: &str, secret_access_key: &str) -> Self {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new(
                access_key_id,
                secret_access_key,
                None,
                None,
                "predastore-operator",
            ))
            .force_path_style(true)
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        Self { client: Client::from_conf(conf) }
    }

    /// Creates `bucket` unless it exists already (owned by us).
    pub async fn ensure_bucket(&self, bucket: &str) -> Result<bool, S3Error> {
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => return Ok(false),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {}
            Err(e) => return Err(call_error("HeadBucket", bucket, &e)),
        }
        match self.client.create_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_owned_by_you()) => {
                Ok(false)
            }
            Err(e) => Err(call_error("CreateBucket", bucket, &e)),
        }
    }

    /// Applies the public flag as the canned ACL `public-read` or `private`.
    pub async fn set_public(&self, bucket: &str, public: bool) -> Result<(), S3Error> {
        let acl = if public { BucketCannedAcl::PublicRead } else { BucketCannedAcl::Private };
        self.client
            .put_bucket_acl()
            .bucket(bucket)
            .acl(acl)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| call_error("PutBucketAcl", bucket, &e))
    }

    /// Deletes `bucket` if it is empty; a missing bucket counts as deleted.
    pub async fn delete_bucket(&self, bucket: &str) -> Result<(), S3Error> {
        match self.client.delete_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error().and_then(|s| s.code()) {
                Some("NoSuchBucket") => Ok(()),
                Some("BucketNotEmpty") => Err(S3Error::NotEmpty(bucket.to_string())),
                _ => Err(call_error("DeleteBucket", bucket, &e)),
            },
        }
    }
}
