//! Listing through the real server: v1 and v2 paging, delimiters,
//! encoding-type=url and stability while objects are added.

use aws_sdk_s3::types::EncodingType;

use crate::common::*;

async fn filled(keys: &[&str]) -> (TestGateway, aws_sdk_s3::Client) {
    let t = TestGateway::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("lst").send().await.unwrap();
    for k in keys {
        s3.put_object().bucket("lst").key(*k).body(b"x".to_vec().into()).send().await.unwrap();
    }
    (t, s3)
}

#[tokio::test]
async fn v2_prefix_delimiter_and_pages() {
    let keys = ["a/1", "a/2", "a/b/3", "b", "c/1", "c/2", "d"];
    let (_t, s3) = filled(&keys).await;
    let out = s3.list_objects_v2().bucket("lst").delimiter("/").send().await.unwrap();
    let objs: Vec<_> = out.contents().iter().map(|o| o.key().unwrap()).collect();
    let cps: Vec<_> = out.common_prefixes().iter().map(|p| p.prefix().unwrap()).collect();
    assert_eq!(objs, ["b", "d"]);
    assert_eq!(cps, ["a/", "c/"]);
    assert_eq!(out.key_count(), Some(4));
    let out = s3.list_objects_v2().bucket("lst").prefix("a/").delimiter("/").send().await.unwrap();
    let objs: Vec<_> = out.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(objs, ["a/1", "a/2"]);
    assert_eq!(out.common_prefixes()[0].prefix(), Some("a/b/"));

    // Page through with max-keys 2 and continuation tokens.
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket("lst")
            .max_keys(2)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        seen.extend(out.contents().iter().map(|o| o.key().unwrap().to_string()));
        if out.is_truncated() != Some(true) {
            break;
        }
        token = out.next_continuation_token().map(str::to_string);
    }
    assert_eq!(seen, keys);
    let out = s3.list_objects_v2().bucket("lst").start_after("c/1").send().await.unwrap();
    let objs: Vec<_> = out.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(objs, ["c/2", "d"]);
    let e = s3.list_objects_v2().bucket("lst").continuation_token("%%%").send().await.unwrap_err();
    assert_eq!(code(&e), "InvalidArgument");
    let out = s3.list_objects_v2().bucket("lst").max_keys(5000).send().await.unwrap();
    assert_eq!(out.max_keys(), Some(1000));
}

#[tokio::test]
async fn v1_markers() {
    let keys = ["a/1", "a/2", "b/1", "c"];
    let (_t, s3) = filled(&keys).await;
    let out = s3.list_objects().bucket("lst").max_keys(1).delimiter("/").send().await.unwrap();
    assert_eq!(out.common_prefixes()[0].prefix(), Some("a/"));
    assert_eq!(out.is_truncated(), Some(true));
    assert_eq!(out.next_marker(), Some("a/"));
    let out = s3.list_objects().bucket("lst").marker("a/").delimiter("/").send().await.unwrap();
    let cps: Vec<_> = out.common_prefixes().iter().map(|p| p.prefix().unwrap()).collect();
    assert_eq!(cps, ["b/"]);
    assert_eq!(out.contents()[0].key(), Some("c"));
    let out = s3.list_objects().bucket("lst").marker("a/2").send().await.unwrap();
    assert_eq!(out.contents().len(), 2);
}

#[tokio::test]
async fn url_encoding() {
    let (t, s3) = filled(&["with space/x", "plus+sign", "ünï"]).await;
    let out =
        s3.list_objects_v2().bucket("lst").encoding_type(EncodingType::Url).send().await.unwrap();
    let keys: Vec<_> = out.contents().iter().map(|o| o.key().unwrap().to_string()).collect();
    assert_eq!(keys, ["plus%2Bsign", "with%20space/x", "%C3%BCn%C3%AF"]);
    // Raw XML says so too.
    let r =
        signed("GET", &format!("{}/lst?list-type=2&encoding-type=url", t.endpoint()), &[], vec![])
            .await;
    let xml = r.text().await.unwrap();
    assert!(xml.contains("<EncodingType>url</EncodingType>"), "{xml}");
}

#[tokio::test]
async fn pagination_is_stable_while_objects_are_added() {
    let keys: Vec<String> = (0..30).map(|i| format!("k{i:03}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let (_t, s3) = filled(&refs).await;
    let mut seen = Vec::new();
    let mut token = None;
    let mut round = 0;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket("lst")
            .max_keys(7)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        seen.extend(out.contents().iter().map(|o| o.key().unwrap().to_string()));
        // Add keys both before and after the cursor between pages.
        s3.put_object()
            .bucket("lst")
            .key(format!("a-early-{round}"))
            .body(b"x".to_vec().into())
            .send()
            .await
            .unwrap();
        s3.put_object()
            .bucket("lst")
            .key(format!("z-late-{round}"))
            .body(b"x".to_vec().into())
            .send()
            .await
            .unwrap();
        round += 1;
        if out.is_truncated() != Some(true) {
            break;
        }
        token = out.next_continuation_token().map(str::to_string);
    }
    // Every original key exactly once, in order; no early key (behind the
    // cursor) and the late keys that were added before the end.
    let originals: Vec<_> = seen.iter().filter(|k| k.starts_with('k')).cloned().collect();
    assert_eq!(originals, keys);
    assert!(seen.iter().all(|k| !k.starts_with("a-early")));
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "no duplicates, in order");
}
