//! Bucket operations, including the configuration probes tools send to
//! every bucket (versioning, ACL, CORS, policy, lifecycle, tagging) with the
//! exact answers AWS gives for a bucket without such configuration.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::error::OrS3;
use super::{Front, owner, ts};

const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";

pub async fn list_buckets(
    f: &Front,
    req: S3Request<ListBucketsInput>,
) -> S3Result<S3Response<ListBucketsOutput>> {
    let access_key = req.credentials.as_ref().map(|c| c.access_key.clone()).unwrap_or_default();
    let prefix = req.input.prefix.clone().unwrap_or_default();
    let buckets: Vec<Bucket> = f
        .backend
        .list_buckets()
        .await
        .or_s3()?
        .into_iter()
        .filter(|b| b.name.starts_with(&prefix))
        // A credential limited to some buckets only sees those.
        .filter(|b| f.keyring.may_see_bucket(&access_key, &b.name))
        .map(|b| Bucket {
            name: Some(b.name),
            creation_date: Some(ts(b.created)),
            bucket_region: Some(f.region.clone()),
        })
        .collect();
    Ok(S3Response::new(ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(owner()),
        prefix: req.input.prefix,
        ..Default::default()
    }))
}

/// Maps a canned ACL onto the public flag (the only ACL state we keep).
fn public_from_canned(acl: &str) -> S3Result<bool> {
    match acl {
        "private" | "bucket-owner-full-control" => Ok(false),
        "public-read" => Ok(true),
        other => Err(s3_error!(
            InvalidArgument,
            "Unsupported canned ACL {other:?}: only private and public-read are supported"
        )),
    }
}

fn no_grants(grants: &[&Option<String>]) -> S3Result<()> {
    if grants.iter().any(|g| g.is_some()) {
        return Err(s3_error!(
            InvalidArgument,
            "x-amz-grant-* headers are not supported; use the canned ACLs private or public-read"
        ));
    }
    Ok(())
}

pub async fn create_bucket(
    f: &Front,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    let i = req.input;
    no_grants(&[
        &i.grant_full_control,
        &i.grant_read,
        &i.grant_read_acp,
        &i.grant_write,
        &i.grant_write_acp,
    ])?;
    let public = match &i.acl {
        Some(acl) => public_from_canned(acl.as_str())?,
        None => false,
    };
    if let Some(lc) =
        i.create_bucket_configuration.as_ref().and_then(|c| c.location_constraint.as_ref())
        && !lc.as_str().is_empty()
        && lc.as_str() != f.region
    {
        return Err(s3_error!(
            IllegalLocationConstraintException,
            "The {} location constraint is incompatible for the region specific endpoint this request was sent to.",
            lc.as_str()
        ));
    }
    f.backend.create_bucket(&i.bucket, public).await.or_s3()?;
    Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{}", i.bucket)) }))
}

pub async fn delete_bucket(
    f: &Front,
    req: S3Request<DeleteBucketInput>,
) -> S3Result<S3Response<DeleteBucketOutput>> {
    f.backend.delete_bucket(&req.input.bucket).await.or_s3()?;
    let mut resp = S3Response::new(DeleteBucketOutput {});
    resp.status = Some(http::StatusCode::NO_CONTENT);
    Ok(resp)
}

pub async fn head_bucket(
    f: &Front,
    req: S3Request<HeadBucketInput>,
) -> S3Result<S3Response<HeadBucketOutput>> {
    f.backend.bucket(&req.input.bucket).await.or_s3()?;
    Ok(S3Response::new(HeadBucketOutput {
        bucket_region: Some(f.region.clone()),
        ..Default::default()
    }))
}

pub async fn get_bucket_location(
    f: &Front,
    req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    f.backend.bucket(&req.input.bucket).await.or_s3()?;
    // AWS answers an empty LocationConstraint for us-east-1.
    let lc = (f.region != "us-east-1").then(|| BucketLocationConstraint::from(f.region.clone()));
    Ok(S3Response::new(GetBucketLocationOutput { location_constraint: lc }))
}

pub async fn get_bucket_versioning(
    f: &Front,
    req: S3Request<GetBucketVersioningInput>,
) -> S3Result<S3Response<GetBucketVersioningOutput>> {
    f.backend.bucket(&req.input.bucket).await.or_s3()?;
    // Versioning has never been enabled: no Status element, as on AWS.
    Ok(S3Response::new(GetBucketVersioningOutput::default()))
}

/// The ACL a bucket or object reports: owner FULL_CONTROL, plus AllUsers
/// READ when public.
pub(super) fn acl_grants(public: bool) -> Vec<Grant> {
    let o = owner();
    let mut grants = vec![Grant {
        grantee: Some(Grantee {
            display_name: o.display_name.clone(),
            email_address: None,
            id: o.id.clone(),
            type_: Type::from_static(Type::CANONICAL_USER),
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    }];
    if public {
        grants.push(Grant {
            grantee: Some(Grantee {
                display_name: None,
                email_address: None,
                id: None,
                type_: Type::from_static(Type::GROUP),
                uri: Some(ALL_USERS.into()),
            }),
            permission: Some(Permission::from_static(Permission::READ)),
        });
    }
    grants
}

pub async fn get_bucket_acl(
    f: &Front,
    req: S3Request<GetBucketAclInput>,
) -> S3Result<S3Response<GetBucketAclOutput>> {
    let b = f.backend.bucket(&req.input.bucket).await.or_s3()?;
    Ok(S3Response::new(GetBucketAclOutput {
        grants: Some(acl_grants(b.public)),
        owner: Some(owner()),
    }))
}

/// Whether an AccessControlPolicy body makes the bucket public; grants to
/// anyone but the owner and AllUsers-READ are refused.
pub(super) fn public_from_policy(p: &AccessControlPolicy) -> S3Result<bool> {
    let mut public = false;
    for g in p.grants.iter().flatten() {
        let grantee = g.grantee.as_ref();
        let perm = g.permission.as_ref().map(Permission::as_str);
        let is_all_users = grantee.and_then(|g| g.uri.as_deref()) == Some(ALL_USERS);
        let is_owner = grantee.and_then(|g| g.id.as_deref()) == owner().id.as_deref();
        match (is_all_users, is_owner, perm) {
            (true, _, Some(Permission::READ)) => public = true,
            (false, true, _) => {}
            _ => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Only an owner grant and an AllUsers READ grant are supported"
                ));
            }
        }
    }
    Ok(public)
}

pub async fn put_bucket_acl(
    f: &Front,
    req: S3Request<PutBucketAclInput>,
) -> S3Result<S3Response<PutBucketAclOutput>> {
    let i = req.input;
    no_grants(&[
        &i.grant_full_control,
        &i.grant_read,
        &i.grant_read_acp,
        &i.grant_write,
        &i.grant_write_acp,
    ])?;
    f.backend.bucket(&i.bucket).await.or_s3()?;
    let public = match (&i.acl, &i.access_control_policy) {
        (Some(acl), _) => public_from_canned(acl.as_str())?,
        (None, Some(p)) => public_from_policy(p)?,
        (None, None) => {
            return Err(s3_error!(
                MissingSecurityHeader,
                "Your request was missing a required header"
            ));
        }
    };
    f.backend.set_bucket_public(&i.bucket, public).await.or_s3()?;
    Ok(S3Response::new(PutBucketAclOutput {}))
}

pub async fn get_bucket_cors(
    f: &Front,
    req: S3Request<GetBucketCorsInput>,
) -> S3Result<S3Response<GetBucketCorsOutput>> {
    f.backend.bucket(&req.input.bucket).await.or_s3()?;
    Err(s3_error!(NoSuchCORSConfiguration, "The CORS configuration does not exist"))
}

pub async fn get_bucket_policy(
    f: &Front,
    req: S3Request<GetBucketPolicyInput>,
) -> S3Result<S3Response<GetBucketPolicyOutput>> {
    f.backend.bucket(&req.input.bucket).await.or_s3()?;
    Err(s3_error!(NoSuchBucketPolicy, "The bucket policy does not exist"))
}

pub async fn get_bucket_lifecycle(
    f: &Front,
    req: S3Request<GetBucketLifecycleConfigurationInput>,
) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
    f.backend.bucket(&req.input.bucket).await.or_s3()?;
    Err(s3_error!(NoSuchLifecycleConfiguration, "The lifecycle configuration does not exist"))
}

pub async fn get_bucket_tagging(
    f: &Front,
    req: S3Request<GetBucketTaggingInput>,
) -> S3Result<S3Response<GetBucketTaggingOutput>> {
    f.backend.bucket(&req.input.bucket).await.or_s3()?;
    Err(s3_error!(NoSuchTagSet, "The TagSet does not exist"))
}
