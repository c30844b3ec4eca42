//! Multipart uploads end to end.

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

#[tokio::test]
async fn complete_errors() {
    let t = TestGateway::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("mpu").send().await.unwrap();
    let id = s3
        .create_multipart_upload()
        .bucket("mpu")
        .key("k")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
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
    let id2 = s3
        .create_multipart_upload()
        .bucket("mpu")
        .key("k2")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
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
