//! Object operations: keys, bodies, metadata, ranges, conditions,
//! checksums, copies, deletes, tagging and attributes.

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, Delete, MetadataDirective, ObjectAttributes, ObjectIdentifier,
    StorageClass, Tag, Tagging,
};
use base64::Engine as _;

use crate::common::*;

async fn setup() -> (TestGateway, aws_sdk_s3::Client) {
    let t = TestGateway::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    (t, s3)
}

async fn get(s3: &aws_sdk_s3::Client, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket("bkt")
        .key(key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn s3_key_semantics() {
    let (t, s3) = setup().await;
    let long = "k".repeat(1024);
    let keys = [
        "a",
        "a/b",
        "a/",
        "a//b",
        "../../etc/passwd",
        "./x/../y",
        "ünïcødé/ключ/键",
        "sp ace+plus%percent?q=1#h",
        long.as_str(),
    ];
    for (i, k) in keys.iter().enumerate() {
        s3.put_object()
            .bucket("bkt")
            .key(*k)
            .body(format!("v{i}").into_bytes().into())
            .send()
            .await
            .unwrap();
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(get(&s3, k).await, format!("v{i}").into_bytes(), "{k}");
    }
    let listed: Vec<String> = s3
        .list_objects_v2()
        .bucket("bkt")
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .map(|o| o.key().unwrap().to_string())
        .collect();
    let mut want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    want.sort();
    assert_eq!(listed, want);
    let too_long = "k".repeat(1025);
    let e = s3
        .put_object()
        .bucket("bkt")
        .key(&too_long)
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 400);
    // Nothing was written outside the data dir.
    assert!(!t.dir.path().join("etc").exists());
    assert!(!t.data_dir().parent().unwrap().join("etc/passwd").exists());
}

#[tokio::test]
async fn put_get_head_with_metadata() {
    let (_t, s3) = setup().await;
    let data = bytes(100_000, 1);
    let put = s3
        .put_object()
        .bucket("bkt")
        .key("doc.bin")
        .body(data.clone().into())
        .content_type("application/x-test")
        .content_encoding("identity")
        .content_disposition("attachment; filename=\"doc.bin\"")
        .content_language("en")
        .cache_control("max-age=60")
        .expires(DateTime::from_secs(2_000_000_000))
        .metadata("color", "blue")
        .metadata("Mixed-Case", "Value")
        .storage_class(StorageClass::Standard)
        .send()
        .await
        .unwrap();
    assert_eq!(put.e_tag(), Some(format!("\"{}\"", md5_hex(&data)).as_str()));
    let got = s3.get_object().bucket("bkt").key("doc.bin").send().await.unwrap();
    assert_eq!(got.content_type(), Some("application/x-test"));
    assert_eq!(got.content_encoding(), Some("identity"));
    assert_eq!(got.content_disposition(), Some("attachment; filename=\"doc.bin\""));
    assert_eq!(got.content_language(), Some("en"));
    assert_eq!(got.cache_control(), Some("max-age=60"));
    assert_eq!(got.expires_string(), Some("Wed, 18 May 2033 03:33:20 GMT"));
    assert_eq!(got.metadata().unwrap()["color"], "blue");
    assert_eq!(got.metadata().unwrap()["mixed-case"], "Value");
    assert_eq!(got.content_length(), Some(100_000));
    assert_eq!(got.body.collect().await.unwrap().to_vec(), data);
    let head = s3.head_object().bucket("bkt").key("doc.bin").send().await.unwrap();
    assert_eq!(head.storage_class(), Some(&StorageClass::Standard));
    assert_eq!(head.e_tag(), Some(format!("\"{}\"", md5_hex(&data)).as_str()));
    let e = s3.head_object().bucket("bkt").key("nope").send().await.unwrap_err();
    assert_eq!(status(&e), 404);
    let e = s3.get_object().bucket("bkt").key("nope").send().await.unwrap_err();
    assert_eq!((code(&e).as_str(), status(&e)), ("NoSuchKey", 404));
    let e = s3.get_object().bucket("nob").key("nope").send().await.unwrap_err();
    assert_eq!(code(&e), "NoSuchBucket");
    let e = s3
        .put_object()
        .bucket("bkt")
        .key("x")
        .storage_class(StorageClass::Glacier)
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidStorageClass");
    // Zero-byte object.
    s3.put_object()
        .bucket("bkt")
        .key("empty")
        .body(ByteStream::from_static(b""))
        .send()
        .await
        .unwrap();
    assert!(get(&s3, "empty").await.is_empty());
}

#[tokio::test]
async fn replace_is_atomic_and_overwrites() {
    let (_t, s3) = setup().await;
    s3.put_object().bucket("bkt").key("k").body(b"one".to_vec().into()).send().await.unwrap();
    s3.put_object().bucket("bkt").key("k").body(b"second".to_vec().into()).send().await.unwrap();
    assert_eq!(get(&s3, "k").await, b"second");
    let l = s3.list_objects_v2().bucket("bkt").send().await.unwrap();
    assert_eq!(l.key_count(), Some(1));
    assert_eq!(l.contents()[0].size(), Some(6));
}

#[tokio::test]
async fn ranges() {
    let (_t, s3) = setup().await;
    let data = bytes(1000, 2);
    s3.put_object().bucket("bkt").key("r").body(data.clone().into()).send().await.unwrap();
    for (range, want, cr) in [
        ("bytes=0-9", &data[0..10], "bytes 0-9/1000"),
        ("bytes=990-", &data[990..], "bytes 990-999/1000"),
        ("bytes=-5", &data[995..], "bytes 995-999/1000"),
        ("bytes=500-5000", &data[500..], "bytes 500-999/1000"),
    ] {
        let o = s3.get_object().bucket("bkt").key("r").range(range).send().await.unwrap();
        assert_eq!(o.content_range(), Some(cr), "{range}");
        assert_eq!(o.content_length(), Some(want.len() as i64));
        assert_eq!(o.body.collect().await.unwrap().to_vec(), want, "{range}");
    }
    let e = s3.get_object().bucket("bkt").key("r").range("bytes=1000-").send().await.unwrap_err();
    assert_eq!((code(&e).as_str(), status(&e)), ("InvalidRange", 416));
    // Raw check of the 206 status code.
    let r =
        signed("GET", &format!("{}/bkt/r", _t.endpoint()), &[("range", "bytes=1-2")], vec![]).await;
    assert_eq!(r.status(), 206);
    let h = s3.head_object().bucket("bkt").key("r").range("bytes=0-0").send().await.unwrap();
    assert_eq!(h.content_length(), Some(1));
}

#[tokio::test]
async fn conditional_reads_and_writes() {
    let (t, s3) = setup().await;
    let put =
        s3.put_object().bucket("bkt").key("c").body(b"data".to_vec().into()).send().await.unwrap();
    let etag = put.e_tag().unwrap().to_string();
    let head = s3.head_object().bucket("bkt").key("c").send().await.unwrap();
    let modified = *head.last_modified().unwrap();
    let earlier = DateTime::from_secs(modified.secs() - 3600);
    let later = DateTime::from_secs(modified.secs() + 3600);

    s3.get_object().bucket("bkt").key("c").if_match(&etag).send().await.unwrap();
    let e = s3.get_object().bucket("bkt").key("c").if_match("\"nope\"").send().await.unwrap_err();
    assert_eq!((code(&e).as_str(), status(&e)), ("PreconditionFailed", 412));
    let e = s3.get_object().bucket("bkt").key("c").if_none_match(&etag).send().await.unwrap_err();
    assert_eq!(status(&e), 304);
    let e =
        s3.get_object().bucket("bkt").key("c").if_modified_since(later).send().await.unwrap_err();
    assert_eq!(status(&e), 304);
    s3.get_object().bucket("bkt").key("c").if_modified_since(earlier).send().await.unwrap();
    let e = s3
        .get_object()
        .bucket("bkt")
        .key("c")
        .if_unmodified_since(earlier)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 412);
    s3.get_object().bucket("bkt").key("c").if_unmodified_since(later).send().await.unwrap();
    let e = s3.head_object().bucket("bkt").key("c").if_none_match(&etag).send().await.unwrap_err();
    assert_eq!(status(&e), 304);
    // A raw 304 carries no body and keeps the ETag.
    let r = signed("GET", &format!("{}/bkt/c", t.endpoint()), &[("if-none-match", &etag)], vec![])
        .await;
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert!(r.bytes().await.unwrap().is_empty());

    // Conditional writes.
    let e = s3
        .put_object()
        .bucket("bkt")
        .key("c")
        .if_none_match("*")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!((code(&e).as_str(), status(&e)), ("PreconditionFailed", 412));
    s3.put_object()
        .bucket("bkt")
        .key("new")
        .if_none_match("*")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();
    let e = s3
        .put_object()
        .bucket("bkt")
        .key("c")
        .if_match("\"wrong\"")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 412);
    let e = s3
        .put_object()
        .bucket("bkt")
        .key("absent")
        .if_match(&etag)
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 412);
    s3.put_object()
        .bucket("bkt")
        .key("c")
        .if_match(&etag)
        .body(b"v2".to_vec().into())
        .send()
        .await
        .unwrap();
    assert_eq!(get(&s3, "c").await, b"v2");
}

#[tokio::test]
async fn content_md5_and_checksums() {
    let (t, s3) = setup().await;
    let data = b"hello world".to_vec();
    let md5 =
        base64::engine::general_purpose::STANDARD.encode(hex::decode(md5_hex(&data)).unwrap());
    s3.put_object()
        .bucket("bkt")
        .key("m")
        .content_md5(&md5)
        .body(data.clone().into())
        .send()
        .await
        .unwrap();
    let wrong = base64::engine::general_purpose::STANDARD.encode([0u8; 16]);
    let e = s3
        .put_object()
        .bucket("bkt")
        .key("m2")
        .content_md5(&wrong)
        .body(data.clone().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!((code(&e).as_str(), status(&e)), ("BadDigest", 400));
    let e = s3.head_object().bucket("bkt").key("m2").send().await.unwrap_err();
    assert_eq!(status(&e), 404, "a bad upload leaves nothing");

    for algo in [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ] {
        let key = format!("sum-{}", algo.as_str());
        let put = s3
            .put_object()
            .bucket("bkt")
            .key(&key)
            .checksum_algorithm(algo.clone())
            .body(data.clone().into())
            .send()
            .await
            .unwrap();
        let got = s3
            .get_object()
            .bucket("bkt")
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        let (p, g) = match algo {
            ChecksumAlgorithm::Crc32 => (put.checksum_crc32(), got.checksum_crc32()),
            ChecksumAlgorithm::Crc32C => (put.checksum_crc32_c(), got.checksum_crc32_c()),
            ChecksumAlgorithm::Crc64Nvme => (put.checksum_crc64_nvme(), got.checksum_crc64_nvme()),
            ChecksumAlgorithm::Sha1 => (put.checksum_sha1(), got.checksum_sha1()),
            _ => (put.checksum_sha256(), got.checksum_sha256()),
        };
        assert!(p.is_some(), "{algo:?} returned on PUT");
        assert_eq!(p, g, "{algo:?} returned on GET");
    }
    // Known CRC32 of "hello world".
    let got = s3
        .head_object()
        .bucket("bkt")
        .key("sum-CRC32")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(got.checksum_crc32(), Some("DUoRhQ=="));
    // A wrong checksum header is refused and nothing is stored.
    let r = signed(
        "PUT",
        &format!("{}/bkt/badsum", t.endpoint()),
        &[("x-amz-checksum-crc32", "AAAAAA==")],
        data.clone(),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("<Code>BadDigest</Code>"));
    let e = s3.head_object().bucket("bkt").key("badsum").send().await.unwrap_err();
    assert_eq!(status(&e), 404);
}

#[tokio::test]
async fn copy_object_directives_and_conditions() {
    let (_t, s3) = setup().await;
    let put = s3
        .put_object()
        .bucket("bkt")
        .key("src")
        .content_type("text/plain")
        .metadata("m", "1")
        .tagging("t=1")
        .body(b"source".to_vec().into())
        .send()
        .await
        .unwrap();
    let etag = put.e_tag().unwrap().to_string();
    s3.create_bucket().bucket("other").send().await.unwrap();
    let c =
        s3.copy_object().bucket("other").key("dst").copy_source("bkt/src").send().await.unwrap();
    assert_eq!(c.copy_object_result().unwrap().e_tag(), Some(etag.as_str()));
    let h = s3.head_object().bucket("other").key("dst").send().await.unwrap();
    assert_eq!(h.content_type(), Some("text/plain"));
    assert_eq!(h.metadata().unwrap()["m"], "1");
    let tags = s3.get_object_tagging().bucket("other").key("dst").send().await.unwrap();
    assert_eq!(tags.tag_set().len(), 1);
    // REPLACE
    s3.copy_object()
        .bucket("bkt")
        .key("dst2")
        .copy_source("bkt/src")
        .metadata_directive(MetadataDirective::Replace)
        .content_type("application/json")
        .metadata("n", "2")
        .send()
        .await
        .unwrap();
    let h = s3.head_object().bucket("bkt").key("dst2").send().await.unwrap();
    assert_eq!(h.content_type(), Some("application/json"));
    assert!(!h.metadata().unwrap().contains_key("m"));
    // Same key without REPLACE is illegal; with REPLACE it works.
    let e =
        s3.copy_object().bucket("bkt").key("src").copy_source("bkt/src").send().await.unwrap_err();
    assert_eq!((code(&e).as_str(), status(&e)), ("InvalidRequest", 400));
    s3.copy_object()
        .bucket("bkt")
        .key("src")
        .copy_source("bkt/src")
        .metadata_directive(MetadataDirective::Replace)
        .metadata("fresh", "yes")
        .send()
        .await
        .unwrap();
    let h = s3.head_object().bucket("bkt").key("src").send().await.unwrap();
    assert_eq!(h.metadata().unwrap()["fresh"], "yes");
    assert_eq!(get(&s3, "src").await, b"source");
    // Copy-source conditions.
    let e = s3
        .copy_object()
        .bucket("bkt")
        .key("x")
        .copy_source("bkt/src")
        .copy_source_if_match("\"zz\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 412);
    let e = s3
        .copy_object()
        .bucket("bkt")
        .key("x")
        .copy_source("bkt/src")
        .copy_source_if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 412);
    s3.copy_object()
        .bucket("bkt")
        .key("x")
        .copy_source("bkt/src")
        .copy_source_if_match(&etag)
        .send()
        .await
        .unwrap();
    let e = s3
        .copy_object()
        .bucket("bkt")
        .key("y")
        .copy_source("bkt/missing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "NoSuchKey");
}

#[tokio::test]
async fn deletes() {
    let (_t, s3) = setup().await;
    s3.delete_object().bucket("bkt").key("never-existed").send().await.unwrap();
    for k in ["d1", "d2", "d3"] {
        s3.put_object().bucket("bkt").key(k).body(b"x".to_vec().into()).send().await.unwrap();
    }
    s3.delete_object().bucket("bkt").key("d1").send().await.unwrap();
    s3.delete_object().bucket("bkt").key("d1").send().await.unwrap();
    let del = |keys: &[&str], quiet: bool| {
        Delete::builder()
            .set_objects(Some(
                keys.iter().map(|k| ObjectIdentifier::builder().key(*k).build().unwrap()).collect(),
            ))
            .quiet(quiet)
            .build()
            .unwrap()
    };
    let out = s3
        .delete_objects()
        .bucket("bkt")
        .delete(del(&["d2", "missing"], false))
        .send()
        .await
        .unwrap();
    assert_eq!(out.deleted().len(), 2);
    assert!(out.errors().is_empty());
    let out = s3
        .delete_objects()
        .bucket("bkt")
        .delete(del(&["d3", "../x", ""], true))
        .send()
        .await
        .unwrap();
    assert!(out.deleted().is_empty());
    assert_eq!(out.errors().len(), 1, "the empty key is a per-key error: {:?}", out.errors());
    assert_eq!(s3.list_objects_v2().bucket("bkt").send().await.unwrap().key_count(), Some(0));
}

#[tokio::test]
async fn tagging_attributes_and_object_acl() {
    let (_t, s3) = setup().await;
    s3.put_object()
        .bucket("bkt")
        .key("t")
        .tagging("a=1&b=two%20words")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();
    let tags = s3.get_object_tagging().bucket("bkt").key("t").send().await.unwrap();
    let pairs: Vec<_> =
        tags.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect();
    assert_eq!(pairs, [("a".to_string(), "1".to_string()), ("b".into(), "two words".into())]);
    s3.put_object_tagging()
        .bucket("bkt")
        .key("t")
        .tagging(
            Tagging::builder()
                .tag_set(Tag::builder().key("k").value("v").build().unwrap())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let tags = s3.get_object_tagging().bucket("bkt").key("t").send().await.unwrap();
    assert_eq!(tags.tag_set().len(), 1);
    let got = s3.get_object().bucket("bkt").key("t").send().await.unwrap();
    assert_eq!(got.tag_count(), Some(1));
    s3.delete_object_tagging().bucket("bkt").key("t").send().await.unwrap();
    assert!(
        s3.get_object_tagging().bucket("bkt").key("t").send().await.unwrap().tag_set().is_empty()
    );
    let too_many = (0..11).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join("&");
    let e = s3
        .put_object()
        .bucket("bkt")
        .key("t2")
        .tagging(too_many)
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 400);

    let attrs = s3
        .get_object_attributes()
        .bucket("bkt")
        .key("t")
        .object_attributes(ObjectAttributes::Etag)
        .object_attributes(ObjectAttributes::ObjectSize)
        .object_attributes(ObjectAttributes::StorageClass)
        .send()
        .await
        .unwrap();
    assert_eq!(attrs.object_size(), Some(1));
    assert_eq!(attrs.storage_class(), Some(&StorageClass::Standard));
    assert!(attrs.e_tag().is_some());

    let acl = s3.get_object_acl().bucket("bkt").key("t").send().await.unwrap();
    assert_eq!(acl.grants()[0].permission().unwrap().as_str(), "FULL_CONTROL");
    let e = s3.get_object_acl().bucket("bkt").key("missing").send().await.unwrap_err();
    assert_eq!(code(&e), "NoSuchKey");
}

#[tokio::test]
async fn versions_listing_of_unversioned_bucket() {
    let (_t, s3) = setup().await;
    s3.put_object().bucket("bkt").key("v").body(b"x".to_vec().into()).send().await.unwrap();
    let out = s3.list_object_versions().bucket("bkt").send().await.unwrap();
    assert_eq!(out.versions().len(), 1);
    assert_eq!(out.versions()[0].version_id(), Some("null"));
    assert_eq!(out.versions()[0].is_latest(), Some(true));
}
