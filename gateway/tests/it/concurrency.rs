//! Concurrent writers and readers of one key: every GET returns exactly
//! one whole version.

use std::collections::HashMap;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_key_put_get_never_tears() {
    let t = TestGateway::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("cnc").send().await.unwrap();
    let versions: HashMap<String, u8> =
        (0..16u8).map(|i| (md5_hex(&vec![i; 200_000]), i)).collect();
    let mut tasks = Vec::new();
    for i in 0..32u8 {
        let s3 = s3.clone();
        let versions = versions.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..4u8 {
                if i % 2 == 0 {
                    let v = (i / 2 + round) % 16;
                    s3.put_object()
                        .bucket("cnc")
                        .key("hot")
                        .body(vec![v; 200_000].into())
                        .send()
                        .await
                        .unwrap();
                } else {
                    match s3.get_object().bucket("cnc").key("hot").send().await {
                        Ok(o) => {
                            let etag = o.e_tag().unwrap().trim_matches('"').to_string();
                            let body = o.body.collect().await.unwrap().to_vec();
                            assert_eq!(body.len(), 200_000);
                            let first = body[0];
                            assert!(body.iter().all(|b| *b == first), "torn read");
                            assert_eq!(versions.get(&etag), Some(&first), "ETag matches the body");
                        }
                        Err(e) => assert_eq!(code(&e), "NoSuchKey"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s3.list_objects_v2().bucket("cnc").send().await.unwrap().key_count(), Some(1));
}
