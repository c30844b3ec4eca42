//! Bucket operations and the configuration probes tools send.

use aws_sdk_s3::types::{BucketCannedAcl, BucketLocationConstraint, CreateBucketConfiguration};

use crate::common::*;

#[tokio::test]
async fn create_list_head_delete() {
    let t = TestGateway::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("alpha").send().await.unwrap();
    s3.create_bucket().bucket("beta").send().await.unwrap();
    let e = s3.create_bucket().bucket("alpha").send().await.unwrap_err();
    assert_eq!(code(&e), "BucketAlreadyOwnedByYou");
    assert_eq!(status(&e), 409);
    let names: Vec<_> = s3
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .map(|b| b.name().unwrap().to_string())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    s3.head_bucket().bucket("alpha").send().await.unwrap();
    let e = s3.head_bucket().bucket("missing").send().await.unwrap_err();
    assert_eq!(status(&e), 404);
    s3.put_object()
        .bucket("alpha")
        .key("k")
        .body("x".as_bytes().to_vec().into())
        .send()
        .await
        .unwrap();
    let e = s3.delete_bucket().bucket("alpha").send().await.unwrap_err();
    assert_eq!(code(&e), "BucketNotEmpty");
    assert_eq!(status(&e), 409);
    s3.delete_object().bucket("alpha").key("k").send().await.unwrap();
    s3.delete_bucket().bucket("alpha").send().await.unwrap();
    let e = s3.delete_bucket().bucket("alpha").send().await.unwrap_err();
    assert_eq!(code(&e), "NoSuchBucket");
    let e = s3.list_objects_v2().bucket("alpha").send().await.unwrap_err();
    assert_eq!(code(&e), "NoSuchBucket");
}

#[tokio::test]
async fn invalid_bucket_names_are_rejected() {
    let t = TestGateway::start().await;
    let s3 = t.client();
    for bad in ["ab", "UPPER", "under_score", "-leading", "a..b", "192.168.0.1"] {
        let e = s3.create_bucket().bucket(bad).send().await.unwrap_err();
        assert_eq!(code(&e), "InvalidBucketName", "{bad}");
        assert_eq!(status(&e), 400, "{bad}");
        let message =
            e.as_service_error().and_then(|s| aws_sdk_s3::error::ProvideErrorMetadata::message(s));
        assert!(
            message.is_some_and(|m| m.starts_with("The specified bucket is not valid")),
            "{bad}: {message:?}"
        );
    }
    let long = "a".repeat(64);
    let e = s3.create_bucket().bucket(&long).send().await.unwrap_err();
    assert_eq!(code(&e), "InvalidBucketName");
}

#[tokio::test]
async fn location_versioning_acl_and_absent_configs() {
    let t = TestGateway::start().await;
    let s3 = t.client();
    s3.create_bucket()
        .bucket("cfg")
        .create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from("us-east-1"))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let loc = s3.get_bucket_location().bucket("cfg").send().await.unwrap();
    assert!(loc.location_constraint().is_none_or(|l| l.as_str().is_empty()));
    let v = s3.get_bucket_versioning().bucket("cfg").send().await.unwrap();
    assert!(v.status().is_none());
    let acl = s3.get_bucket_acl().bucket("cfg").send().await.unwrap();
    assert_eq!(acl.grants().len(), 1);
    assert_eq!(acl.grants()[0].permission().unwrap().as_str(), "FULL_CONTROL");
    let e = s3.get_bucket_cors().bucket("cfg").send().await.unwrap_err();
    assert_eq!((code(&e).as_str(), status(&e)), ("NoSuchCORSConfiguration", 404));
    let e = s3.get_bucket_policy().bucket("cfg").send().await.unwrap_err();
    assert_eq!((code(&e).as_str(), status(&e)), ("NoSuchBucketPolicy", 404));
    let e = s3.get_bucket_lifecycle_configuration().bucket("cfg").send().await.unwrap_err();
    assert_eq!((code(&e).as_str(), status(&e)), ("NoSuchLifecycleConfiguration", 404));
    let e = s3.get_bucket_tagging().bucket("cfg").send().await.unwrap_err();
    assert_eq!((code(&e).as_str(), status(&e)), ("NoSuchTagSet", 404));
    let e = s3
        .create_bucket()
        .bucket("elsewhere")
        .create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::EuWest1)
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 400);
}

#[tokio::test]
async fn canned_acls_map_to_public_flag() {
    let t = TestGateway::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("pub").acl(BucketCannedAcl::PublicRead).send().await.unwrap();
    s3.put_object().bucket("pub").key("f").body(b"hi".to_vec().into()).send().await.unwrap();
    let anon = http_client();
    let url = format!("{}/pub/f", t.endpoint());
    let r = anon.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hi");
    let acl = s3.get_bucket_acl().bucket("pub").send().await.unwrap();
    assert_eq!(acl.grants().len(), 2);
    s3.put_bucket_acl().bucket("pub").acl(BucketCannedAcl::Private).send().await.unwrap();
    assert_eq!(anon.get(&url).send().await.unwrap().status(), 403);
    let e = s3
        .put_bucket_acl()
        .bucket("pub")
        .acl(BucketCannedAcl::PublicReadWrite)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidArgument");
    // The flag survives a restart.
    s3.put_bucket_acl().bucket("pub").acl(BucketCannedAcl::PublicRead).send().await.unwrap();
    let mut t = t;
    t.restart().await;
    let r = anon.get(format!("{}/pub/f", t.endpoint())).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
