//! Bad input gets a clear 4xx, nothing partial is stored, and the server
//! keeps serving.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::common::*;

async fn still_serving(t: &TestGateway) {
    t.client().list_buckets().send().await.expect("server still serves");
}

#[tokio::test]
async fn malformed_xml_bodies() {
    let t = TestGateway::start().await;
    t.client().create_bucket().bucket("xml").send().await.unwrap();
    let ep = t.endpoint();
    for (method, path, body) in [
        ("POST", "/xml?delete", "<Delete><Object><Key>a</Key></Object"),
        ("POST", "/xml?delete", "not xml at all"),
        ("PUT", "/xml/k?tagging", "<Tagging><TagSet><Tag><Key>a</Tag></TagSet></Tagging>"),
    ] {
        let md5 = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .encode(hex::decode(md5_hex(body.as_bytes())).unwrap())
        };
        let r = signed(
            method,
            &format!("{ep}{path}"),
            &[("content-md5", &md5)],
            body.as_bytes().to_vec(),
        )
        .await;
        assert_eq!(r.status(), 400, "{path}");
        let text = r.text().await.unwrap();
        assert!(text.contains("<Code>MalformedXML</Code><Message>"), "{path}: {text}");
    }
    still_serving(&t).await;
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let t = TestGateway::start().await;
    let big = "v".repeat(64 << 10);
    let r = http_client()
        .get(format!("{}/", t.endpoint()))
        .header("x-amz-meta-big", &big)
        .send()
        .await
        .unwrap();
    assert!(r.status() == 400 || r.status() == 431, "{}", r.status());
    if r.status() == 400 {
        assert!(r.text().await.unwrap().contains("RequestHeaderSectionTooLarge"));
    }
    // User metadata over AWS's 2 KiB limit.
    let meta = "m".repeat(3000);
    let e = t.client().create_bucket().bucket("yyy").send().await.map(|_| ());
    e.unwrap();
    let e = t
        .client()
        .put_object()
        .bucket("yyy")
        .key("k")
        .metadata("big", meta)
        .body(b"xml".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!((code(&e).as_str(), status(&e)), ("MetadataTooLarge", 400));
    still_serving(&t).await;
}

#[tokio::test]
async fn bad_content_lengths() {
    let t = TestGateway::with(|c| c.max_object_size = 1 << 20).await;
    t.client().create_bucket().bucket("zzz").send().await.unwrap();
    let addr = t.gw().s3_addr();
    for cl in ["-1", "abc", "99999999999999999999999"] {
        let headers = vec![
            ("host".to_string(), addr.to_string()),
            ("content-length".to_string(), cl.to_string()),
        ];
        let mut s = raw_request(addr, "PUT", "/zzz/k", &headers).await;
        let resp = read_response(&mut s, Duration::from_secs(5)).await;
        let status_line = resp.lines().next().unwrap_or_default().to_string();
        assert!(
            status_line.contains(" 400 ") || status_line.contains(" 403 "),
            "{cl}: {status_line}"
        );
    }
    // Declared size beyond the configured limit: refused before the body.
    let url = format!("http://{addr}/zzz/huge");
    let mut h = signed_headers("PUT", &url, &[("content-length", "1099511627776")]);
    h.retain(|(k, _)| k != "content-length");
    h.push(("content-length".into(), "1099511627776".into()));
    let mut s = raw_request(addr, "PUT", "/zzz/huge", &h).await;
    let resp = read_response(&mut s, Duration::from_secs(5)).await;
    assert!(resp.contains("EntityTooLarge"), "{resp}");
    // Bodies over the limit, sent without Expect: 100-continue: the gateway
    // reads them off before answering, so the client gets the error rather
    // than a connection reset.
    for len in [(1 << 20) + 1, 16 << 20, 48 << 20] {
        let e = t
            .client()
            .put_object()
            .bucket("zzz")
            .key("big")
            .body(vec![0u8; len].into())
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "EntityTooLarge", "{len} bytes: {e:?}");
    }
    // The same from a client that sends its body right behind the headers
    // and reads the answer only then.
    for _ in 0..3 {
        let url = format!("http://{addr}/zzz/raw");
        let len = 16 << 20;
        let h = signed_headers(
            "PUT",
            &url,
            &[("content-length", &len.to_string()), ("x-amz-content-sha256", "UNSIGNED-PAYLOAD")],
        );
        let mut s = raw_request(addr, "PUT", "/zzz/raw", &h).await;
        let sent = {
            use tokio::io::AsyncWriteExt;
            let piece = vec![0u8; 1 << 20];
            let mut ok = true;
            for _ in 0..16 {
                ok &= s.write_all(&piece).await.is_ok();
            }
            ok
        };
        let resp = read_response(&mut s, Duration::from_secs(5)).await;
        assert!(sent, "the gateway cut the body off");
        assert!(resp.contains("EntityTooLarge"), "{resp:?}");
    }
    let up = t.client().create_multipart_upload().bucket("zzz").key("mp").send().await.unwrap();
    let e = t
        .client()
        .upload_part()
        .bucket("zzz")
        .key("mp")
        .upload_id(up.upload_id().unwrap())
        .part_number(1)
        .body(vec![0u8; 16 << 20].into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "EntityTooLarge", "{e:?}");
    still_serving(&t).await;
}

#[tokio::test]
async fn stalled_upload_times_out_and_stores_nothing() {
    let t = TestGateway::with(|c| c.idle_timeout_secs = 1).await;
    let s3 = t.client();
    s3.create_bucket().bucket("sss").send().await.unwrap();
    let addr = t.gw().s3_addr();
    let url = format!("http://{addr}/sss/stalled");
    let h = signed_headers("PUT", &url, &[("content-length", "100")]);
    let mut s = raw_request(addr, "PUT", "/sss/stalled", &h).await;
    s.write_all(&[7u8; 10]).await.unwrap();
    let resp = read_response(&mut s, Duration::from_secs(10)).await;
    assert!(resp.contains("RequestTimeout"), "{resp}");
    let e = s3.head_object().bucket("sss").key("stalled").send().await.unwrap_err();
    assert_eq!(status(&e), 404);
    eventually("temp files removed", Duration::from_secs(5), || t.leftover_temp_files().is_empty())
        .await;
    still_serving(&t).await;
}

#[tokio::test]
async fn client_disconnect_mid_body_keeps_previous_version() {
    let t = TestGateway::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("ddd").send().await.unwrap();
    s3.put_object().bucket("ddd").key("k").body(b"previous".to_vec().into()).send().await.unwrap();
    let addr = t.gw().s3_addr();
    let url = format!("http://{addr}/ddd/k");
    for _ in 0..5 {
        let h = signed_headers("PUT", &url, &[("content-length", "1048576")]);
        let mut s = raw_request(addr, "PUT", "/ddd/k", &h).await;
        s.write_all(&vec![1u8; 300_000]).await.unwrap();
        drop(s);
    }
    eventually("temp files removed", Duration::from_secs(10), || {
        t.leftover_temp_files().is_empty()
    })
    .await;
    let got = s3.get_object().bucket("ddd").key("k").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().to_vec(), b"previous");
    let l = s3.list_objects_v2().bucket("ddd").send().await.unwrap();
    assert_eq!(l.key_count(), Some(1));
    assert_eq!(l.contents()[0].size(), Some(8));
}

#[tokio::test]
async fn unsupported_operations_answer_501_in_xml() {
    let t = TestGateway::start().await;
    t.client().create_bucket().bucket("uuu").send().await.unwrap();
    let r = signed("GET", &format!("{}/uuu?website", t.endpoint()), &[], vec![]).await;
    assert_eq!(r.status(), 501);
    assert!(r.text().await.unwrap().contains("<Code>NotImplemented</Code>"));
}

/// Headers that ask for encryption at rest or object lock are refused,
/// never ignored: a client must not believe its data encrypted under its
/// key, or locked, when it is not. Nothing is stored.
#[tokio::test]
async fn promises_the_store_cannot_keep_are_refused() {
    use base64::Engine as _;
    let t = TestGateway::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("promise").send().await.unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let key = [7u8; 32];
    let key_md5 = b64(&hex::decode(md5_hex(&key)).unwrap());
    let body = || aws_sdk_s3::primitives::ByteStream::from(b"plain".to_vec());
    let put = || s3.put_object().bucket("promise").key("k").body(body());
    // (code, status, debug text) of a refused call.
    macro_rules! refused {
        ($call:expr) => {{
            let e = $call.send().await.unwrap_err();
            (code(&e), status(&e), format!("{e:?}"))
        }};
    }
    use aws_sdk_s3::types::{ObjectLockLegalHoldStatus, ObjectLockMode, ServerSideEncryption};
    let until = aws_sdk_s3::primitives::DateTime::from_secs(4_000_000_000);
    let refused = [
        refused!(
            put()
                .sse_customer_algorithm("AES256")
                .sse_customer_key(b64(&key))
                .sse_customer_key_md5(&key_md5)
        ),
        refused!(put().server_side_encryption(ServerSideEncryption::Aes256)),
        refused!(put().server_side_encryption(ServerSideEncryption::AwsKms)),
        refused!(
            put().object_lock_mode(ObjectLockMode::Compliance).object_lock_retain_until_date(until)
        ),
        refused!(put().object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On)),
        refused!(
            s3.create_multipart_upload()
                .bucket("promise")
                .key("k")
                .server_side_encryption(ServerSideEncryption::Aes256)
        ),
        refused!(s3.create_bucket().bucket("locked-bucket").object_lock_enabled_for_bucket(true)),
    ];
    for (i, (code, status, text)) in refused.iter().enumerate() {
        assert_eq!((code.as_str(), *status), ("NotImplemented", 501), "case {i}: {text}");
        assert!(text.contains("x-amz-"), "case {i} names the header: {text}");
    }
    let e = s3.head_object().bucket("promise").key("k").send().await.unwrap_err();
    assert_eq!(status(&e), 404, "nothing was stored");
    assert!(s3.head_bucket().bucket("locked-bucket").send().await.is_err());
    // An object stored in clear is not served to a reader who presents a
    // customer key either (it would believe the bytes were decrypted).
    put().send().await.unwrap();
    let e = s3
        .get_object()
        .bucket("promise")
        .key("k")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(b64(&key))
        .sse_customer_key_md5(&key_md5)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 501);
}
