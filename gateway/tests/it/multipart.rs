//! Multipart uploads end to end.

use std::time::Duration;

use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};

use crate::common::*;

const MIB: usize = 1 << 20;

fn parts(list: &[(i32, &str)]) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .set_parts(Some(
            list.iter()
                .map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(*e).build())
                .collect(),
        ))
        .build()
}

/// Starts an upload of `bucket/key`; its id.
async fn new_upload(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> String {
    let r = s3.create_multipart_upload().bucket(bucket).key(key).send().await.unwrap();
    r.upload_id().unwrap().to_string()
}

#[tokio::test]
async fn upload_complete_and_read_parts() {
    let t = TestGateway::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("mpu").send().await.unwrap();
    let up = s3
        .create_multipart_upload()
        .bucket("mpu")
        .key("big")
        .content_type("video/mp4")
        .metadata("x", "y")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let p1 = bytes(5 * MIB, 1);
    let p2 = bytes(5 * MIB, 2);
    let p3 = bytes(1234, 3);
    let mut etags = Vec::new();
    for (n, data) in [(1, &p1), (2, &p2), (3, &p3)] {
        let r = s3
            .upload_part()
            .bucket("mpu")
            .key("big")
            .upload_id(id)
            .part_number(n)
            .body(data.clone().into())
            .send()
            .await
            .unwrap();
        assert_eq!(r.e_tag().unwrap(), format!("\"{}\"", md5_hex(data)));
        etags.push(r.e_tag().unwrap().to_string());
    }
    // Re-uploading a part replaces it.
    let r = s3
        .upload_part()
        .bucket("mpu")
        .key("big")
        .upload_id(id)
        .part_number(3)
        .body(p3.clone().into())
        .send()
        .await
        .unwrap();
    etags[2] = r.e_tag().unwrap().to_string();
    let lp =
        s3.list_parts().bucket("mpu").key("big").upload_id(id).max_parts(2).send().await.unwrap();
    assert_eq!(lp.parts().len(), 2);
    assert_eq!(lp.is_truncated(), Some(true));
    let lp2 = s3
        .list_parts()
        .bucket("mpu")
        .key("big")
        .upload_id(id)
        .part_number_marker(lp.next_part_number_marker().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(lp2.parts().len(), 1);
    assert_eq!(lp2.parts()[0].size(), Some(1234));
    let ups = s3.list_multipart_uploads().bucket("mpu").send().await.unwrap();
    assert_eq!(ups.uploads().len(), 1);

    let done = s3
        .complete_multipart_upload()
        .bucket("mpu")
        .key("big")
        .upload_id(id)
        .multipart_upload(parts(&[(1, &etags[0]), (2, &etags[1]), (3, &etags[2])]))
        .send()
        .await
        .unwrap();
    let mut md5s = Vec::new();
    for d in [&p1, &p2, &p3] {
        md5s.extend(hex::decode(md5_hex(d)).unwrap());
    }
    assert_eq!(done.e_tag().unwrap(), format!("\"{}-3\"", md5_hex(&md5s)));
    let all: Vec<u8> = [p1.clone(), p2.clone(), p3.clone()].concat();
    let got = s3.get_object().bucket("mpu").key("big").send().await.unwrap();
    assert_eq!(got.content_type(), Some("video/mp4"));
    assert_eq!(got.metadata().unwrap()["x"], "y");
    assert_eq!(got.body.collect().await.unwrap().to_vec(), all);
    let p = s3.get_object().bucket("mpu").key("big").part_number(2).send().await.unwrap();
    assert_eq!(p.parts_count(), Some(3));
    assert_eq!(
        p.content_range(),
        Some(format!("bytes {}-{}/{}", 5 * MIB, 10 * MIB - 1, all.len()).as_str())
    );
    assert_eq!(p.body.collect().await.unwrap().to_vec(), p2);
    let e = s3.get_object().bucket("mpu").key("big").part_number(4).send().await.unwrap_err();
    assert_eq!(status(&e), 416);
    let e = s3.list_parts().bucket("mpu").key("big").upload_id(id).send().await.unwrap_err();
    assert_eq!(code(&e), "NoSuchUpload");
    assert!(s3.list_multipart_uploads().bucket("mpu").send().await.unwrap().uploads().is_empty());
}

/// A Complete whose answer was lost is retried by clients: S3 answers the
/// retry again while the object is still the one that upload wrote, and
/// NoSuchUpload for anything else.
#[tokio::test]
async fn a_retried_complete_is_answered_again() {
    let t = TestGateway::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("mpu").send().await.unwrap();
    let id = new_upload(&s3, "mpu", "k").await;
    let mut etags = Vec::new();
    for (n, data) in [(1, bytes(5 * MIB, 11)), (2, bytes(100, 12))] {
        let r = s3
            .upload_part()
            .bucket("mpu")
            .key("k")
            .upload_id(&id)
            .part_number(n)
            .body(data.into())
            .send()
            .await
            .unwrap();
        etags.push(r.e_tag().unwrap().to_string());
    }
    let complete = |key: &'static str, list: Vec<(i32, String)>| {
        let (s3, id) = (s3.clone(), id.clone());
        async move {
            let list: Vec<(i32, &str)> = list.iter().map(|(n, e)| (*n, e.as_str())).collect();
            s3.complete_multipart_upload()
                .bucket("mpu")
                .key(key)
                .upload_id(id)
                .multipart_upload(parts(&list))
                .send()
                .await
        }
    };
    let both = vec![(1, etags[0].clone()), (2, etags[1].clone())];
    // Two at once (a retry while the first still runs), then one more.
    let (first, concurrent) =
        tokio::join!(complete("k", both.clone()), complete("k", both.clone()));
    let (first, concurrent) = (first.unwrap(), concurrent.unwrap());
    assert_eq!(concurrent.e_tag(), first.e_tag());
    let again = complete("k", both.clone()).await.unwrap();
    assert_eq!(again.e_tag(), first.e_tag());
    assert_eq!(again.key(), Some("k"));
    // Other parts, another key, or a copy: the upload is gone.
    let e = complete("k", vec![(1, etags[0].clone())]).await.unwrap_err();
    assert_eq!((code(&e).as_str(), status(&e)), ("NoSuchUpload", 404));
    let e = complete("other", both.clone()).await.unwrap_err();
    assert_eq!(code(&e), "NoSuchUpload");
    s3.copy_object().bucket("mpu").key("copy").copy_source("mpu/k").send().await.unwrap();
    let e = complete("copy", both.clone()).await.unwrap_err();
    assert_eq!(code(&e), "NoSuchUpload");
    // Once the object is replaced, the retry must not claim it.
    s3.put_object().bucket("mpu").key("k").body(b"new".to_vec().into()).send().await.unwrap();
    let e = complete("k", both).await.unwrap_err();
    assert_eq!(code(&e), "NoSuchUpload");
    let got = s3.get_object().bucket("mpu").key("k").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().to_vec(), b"new");
}

#[tokio::test]
async fn complete_errors() {
    let t = TestGateway::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("mpu").send().await.unwrap();
    let id = new_upload(&s3, "mpu", "k").await;
    let small = s3
        .upload_part()
        .bucket("mpu")
        .key("k")
        .upload_id(&id)
        .part_number(1)
        .body(b"tiny".to_vec().into())
        .send()
        .await
        .unwrap();
    let s1 = small.e_tag().unwrap().to_string();
    let other = s3
        .upload_part()
        .bucket("mpu")
        .key("k")
        .upload_id(&id)
        .part_number(2)
        .body(b"tail".to_vec().into())
        .send()
        .await
        .unwrap();
    let s2 = other.e_tag().unwrap().to_string();
    let complete = |p: CompletedMultipartUpload| {
        s3.complete_multipart_upload()
            .bucket("mpu")
            .key("k")
            .upload_id(&id)
            .multipart_upload(p)
            .send()
    };
    let e = complete(parts(&[(1, &s1), (2, &s2)])).await.unwrap_err();
    assert_eq!((code(&e).as_str(), status(&e)), ("EntityTooSmall", 400));
    let e = complete(parts(&[(2, &s2), (1, &s1)])).await.unwrap_err();
    assert_eq!(code(&e), "InvalidPartOrder");
    let e = complete(parts(&[(1, "\"0000\"")])).await.unwrap_err();
    assert_eq!(code(&e), "InvalidPart");
    let e = complete(parts(&[(7, &s1)])).await.unwrap_err();
    assert_eq!(code(&e), "InvalidPart");
    // A single small part is fine (the last part may be small).
    complete(parts(&[(1, &s1)])).await.unwrap();
    let e = s3
        .upload_part()
        .bucket("mpu")
        .key("k")
        .upload_id("not-an-upload")
        .part_number(1)
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!((code(&e).as_str(), status(&e)), ("NoSuchUpload", 404));
    let e = s3
        .upload_part()
        .bucket("mpu")
        .key("k")
        .upload_id("../../../x")
        .part_number(1)
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "NoSuchUpload");
    let id2 = new_upload(&s3, "mpu", "k2").await;
    let e = s3
        .upload_part()
        .bucket("mpu")
        .key("k2")
        .upload_id(&id2)
        .part_number(10001)
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 400);
    s3.abort_multipart_upload().bucket("mpu").key("k2").upload_id(&id2).send().await.unwrap();
    let e = s3
        .abort_multipart_upload()
        .bucket("mpu")
        .key("k2")
        .upload_id(&id2)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "NoSuchUpload");
}

#[tokio::test]
async fn upload_part_copy_with_range_and_checksums() {
    let t = TestGateway::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("mpu").send().await.unwrap();
    let src = bytes(6 * MIB, 9);
    s3.put_object().bucket("mpu").key("src").body(src.clone().into()).send().await.unwrap();
    let id = s3
        .create_multipart_upload()
        .bucket("mpu")
        .key("dst")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
    let c1 = s3
        .upload_part_copy()
        .bucket("mpu")
        .key("dst")
        .upload_id(&id)
        .part_number(1)
        .copy_source("mpu/src")
        .send()
        .await
        .unwrap();
    let c2 = s3
        .upload_part_copy()
        .bucket("mpu")
        .key("dst")
        .upload_id(&id)
        .part_number(2)
        .copy_source("mpu/src")
        .copy_source_range("bytes=10-19")
        .send()
        .await
        .unwrap();
    let e = s3
        .upload_part_copy()
        .bucket("mpu")
        .key("dst")
        .upload_id(&id)
        .part_number(3)
        .copy_source("mpu/src")
        .copy_source_range(format!("bytes=0-{}", 6 * MIB))
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 416);
    let e1 = c1.copy_part_result().unwrap().e_tag().unwrap().to_string();
    let e2 = c2.copy_part_result().unwrap().e_tag().unwrap().to_string();
    s3.complete_multipart_upload()
        .bucket("mpu")
        .key("dst")
        .upload_id(&id)
        .multipart_upload(parts(&[(1, &e1), (2, &e2)]))
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket("mpu")
        .key("dst")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .to_vec();
    assert_eq!(got, [src.clone(), src[10..20].to_vec()].concat());
}

#[tokio::test]
async fn list_uploads_with_markers() {
    let t = TestGateway::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("mpu").send().await.unwrap();
    for k in ["a/1", "a/2", "b", "c"] {
        s3.create_multipart_upload().bucket("mpu").key(k).send().await.unwrap();
    }
    let out = s3.list_multipart_uploads().bucket("mpu").max_uploads(2).send().await.unwrap();
    assert_eq!(out.uploads().len(), 2);
    assert_eq!(out.is_truncated(), Some(true));
    let next = s3
        .list_multipart_uploads()
        .bucket("mpu")
        .key_marker(out.next_key_marker().unwrap())
        .upload_id_marker(out.next_upload_id_marker().unwrap())
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = next.uploads().iter().map(|u| u.key().unwrap()).collect();
    assert_eq!(keys, ["b", "c"]);
    let out = s3.list_multipart_uploads().bucket("mpu").delimiter("/").send().await.unwrap();
    assert_eq!(out.common_prefixes()[0].prefix(), Some("a/"));
    assert_eq!(out.uploads().len(), 2);
}

/// More open uploads than one page (1000), several of them for one key:
/// every upload is listed exactly once, in key then initiation order, and
/// a delimiter rolls the rest into prefixes without truncating.
#[tokio::test]
async fn list_uploads_beyond_one_thousand() {
    use futures::StreamExt;
    let t = TestGateway::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("many").send().await.unwrap();
    // Three uploads of "same", created one after the other.
    let mut same = Vec::new();
    for _ in 0..3 {
        let r = s3.create_multipart_upload().bucket("many").key("same").send().await.unwrap();
        same.push(r.upload_id().unwrap().to_string());
    }
    let created: Vec<String> = futures::stream::iter(0..1005)
        .map(|i| {
            let s3 = s3.clone();
            async move {
                let key = format!("d{}/k{i:04}", i % 3);
                s3.create_multipart_upload().bucket("many").key(&key).send().await.unwrap();
                key
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut listed: Vec<(String, String)> = Vec::new();
    let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
    let mut pages = 0;
    loop {
        let out = s3
            .list_multipart_uploads()
            .bucket("many")
            .set_key_marker(key_marker.clone())
            .set_upload_id_marker(id_marker.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        for u in out.uploads() {
            listed.push((u.key().unwrap().into(), u.upload_id().unwrap().into()));
        }
        if out.is_truncated() != Some(true) {
            break;
        }
        key_marker = out.next_key_marker().map(str::to_string);
        id_marker = out.next_upload_id_marker().map(str::to_string);
    }
    assert_eq!(pages, 2);
    assert_eq!(listed.len(), 1008);
    assert!(listed.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
    let mut want = created.clone();
    want.extend(std::iter::repeat_n("same".to_string(), 3));
    want.sort();
    assert_eq!(listed.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), want);
    let same_listed: Vec<_> =
        listed.iter().filter(|(k, _)| k == "same").map(|(_, id)| id.clone()).collect();
    assert_eq!(same_listed, same, "uploads of one key in initiation order");

    let out = s3.list_multipart_uploads().bucket("many").delimiter("/").send().await.unwrap();
    let prefixes: Vec<_> = out.common_prefixes().iter().map(|p| p.prefix().unwrap()).collect();
    assert_eq!(prefixes, ["d0/", "d1/", "d2/"]);
    assert_eq!(out.uploads().len(), 3);
    assert_eq!(out.is_truncated(), Some(false));
    // Paging by prefixes: a rolled-up prefix as the key marker.
    let out = s3
        .list_multipart_uploads()
        .bucket("many")
        .delimiter("/")
        .max_uploads(2)
        .send()
        .await
        .unwrap();
    let prefixes: Vec<_> = out.common_prefixes().iter().map(|p| p.prefix().unwrap()).collect();
    assert_eq!((prefixes, out.is_truncated()), (vec!["d0/", "d1/"], Some(true)));
    assert_eq!(out.next_key_marker(), Some("d1/"));
    let out = s3
        .list_multipart_uploads()
        .bucket("many")
        .delimiter("/")
        .key_marker("d1/")
        .send()
        .await
        .unwrap();
    let prefixes: Vec<_> = out.common_prefixes().iter().map(|p| p.prefix().unwrap()).collect();
    assert_eq!(prefixes, ["d2/"]);
    assert_eq!(out.uploads().len(), 3);
}

#[tokio::test]
async fn incomplete_uploads_are_aborted_after_their_age_limit() {
    let t = TestGateway::with(|c| c.abort_incomplete_uploads_secs = 3).await;
    let s3 = t.client();
    s3.create_bucket().bucket("stale").send().await.unwrap();
    let old = new_upload(&s3, "stale", "left/open").await;
    s3.upload_part()
        .bucket("stale")
        .key("left/open")
        .upload_id(&old)
        .part_number(1)
        .body(bytes(MIB, 4).into())
        .send()
        .await
        .unwrap();
    let listed = |r: aws_sdk_s3::operation::list_multipart_uploads::ListMultipartUploadsOutput| {
        r.uploads().iter().filter_map(|u| u.upload_id().map(str::to_string)).collect::<Vec<_>>()
    };
    let started = std::time::Instant::now();
    loop {
        let ids = listed(s3.list_multipart_uploads().bucket("stale").send().await.unwrap());
        if !ids.contains(&old) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the stale upload is still open");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(started.elapsed() >= Duration::from_secs(2), "aborted before its age");
    // A fresh upload is left alone.
    let fresh = new_upload(&s3, "stale", "fresh").await;
    let ids = listed(s3.list_multipart_uploads().bucket("stale").send().await.unwrap());
    assert_eq!(ids, vec![fresh]);
    let e = s3
        .upload_part()
        .bucket("stale")
        .key("left/open")
        .upload_id(&old)
        .part_number(2)
        .body(b"late".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "NoSuchUpload");
}
