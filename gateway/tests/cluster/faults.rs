//! Bad input through the cluster: a node answering garbage, a node whose
//! disk is full, an unknown storage class, an object over the size limit.
//! Each gets a clear error or is routed around; nothing is lost and the
//! gateway keeps serving.

use std::time::Duration;

use predastore_core::config::{Erasure, StorageClassConfig};
use predastore_core::transport::{TlsMaterial, server_endpoint};

use crate::common::*;

const MIB: usize = 1 << 20;

/// A fake node on node `id`'s address: QUIC with its certificate, every
/// stream answered with bytes that are no frame at all.
struct GarbageNode {
    endpoint: quinn::Endpoint,
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl GarbageNode {
    fn start(t: &TestCluster, id: u64) -> Self {
        let layout = t.c.layout();
        let (cert, key) = layout.node_cert(id);
        let tls = TlsMaterial::load(&layout.ca_cert(), &cert, &key).unwrap();
        let addr = t.c.node_addr(id).unwrap();
        let endpoint = server_endpoint(addr, &tls).unwrap();
        let ep = endpoint.clone();
        let task = tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        tokio::spawn(async move {
                            let _ = recv.read_chunk(4096, true).await;
                            let _ =
                                send.write_all(b"\x7fNOT A FRAME\x00\xff\xff\xff\xffgarbage").await;
                            let _ = send.finish();
                        });
                    }
                });
            }
        });
        GarbageNode { endpoint, addr, task }
    }

    /// Closes every connection and waits until the UDP port is free again,
    /// so the real node can bind it. Dropping the accept task alone is not
    /// enough: open connections keep the endpoint's socket alive.
    async fn stop(self) {
        self.endpoint.close(0u32.into(), b"gone");
        self.task.abort();
        let _ = self.task.await;
        self.endpoint.wait_idle().await;
        drop(self.endpoint);
        eventually("the fake node's port is free", Duration::from_secs(10), || {
            let addr = self.addr;
            async move { std::net::UdpSocket::bind(addr).is_ok() }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_answering_garbage_is_routed_around() {
    let (mut t, s3) = TestCluster::three_with_bucket("junk").await;
    let before = data(3 * MIB, 1);
    s3.put_object().bucket("junk").key("before").body(before.clone().into()).send().await.unwrap();
    t.c.kill_node(2).await.unwrap();
    let fake = GarbageNode::start(&t, 2);
    // Reads rebuild from the two good nodes; writes reach the quorum (2 of 3).
    assert!(get(&s3, "junk", "before", None).await == before);
    let after = data(2 * MIB + 9, 2);
    s3.put_object().bucket("junk").key("after").body(after.clone().into()).send().await.unwrap();
    assert!(get(&s3, "junk", "after", None).await == after);
    s3.put_object().bucket("junk").key("tiny").body(b"x".to_vec().into()).send().await.unwrap();
    // The real node comes back and everything is there.
    fake.stop().await;
    // Another process's ephemeral bind (tests run in parallel) may hold the
    // freed port for a moment; the node then exits at once. Try again.
    let mut tries = 0;
    while let Err(e) = t.c.start_node(2).await {
        tries += 1;
        assert!(tries < 5, "node 2 does not start again: {e}");
        eprintln!("node 2 did not start ({e}); retrying");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    assert!(get(&s3, "junk", "after", None).await == after);
    assert!(get(&s3, "junk", "before", None).await == before);
    t.c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_node_costs_a_shard_not_the_write() {
    let (mut t, s3) = TestCluster::three_with_bucket("full").await;
    t.c.stop_node(1).await.unwrap();
    // Node 1 comes back believing its disk is full: every put is refused.
    t.c.start_node_with(1, &["--min-free-bytes", "18000000000000000000"]).await.unwrap();
    let body = data(4 * MIB, 3);
    s3.put_object().bucket("full").key("k").body(body.clone().into()).send().await.unwrap();
    assert!(get(&s3, "full", "k", None).await == body);
    // Two full nodes: below quorum, a clear 503 and nothing visible.
    t.c.stop_node(2).await.unwrap();
    t.c.start_node_with(2, &["--min-free-bytes", "18000000000000000000"]).await.unwrap();
    let e = t
        .strict()
        .put_object()
        .bucket("full")
        .key("no")
        .body(data(2 * MIB, 4).into())
        .send()
        .await
        .expect_err("no quorum of shards can be stored");
    assert_eq!(code(&e), "ServiceUnavailable");
    assert!(s3.head_object().bucket("full").key("no").send().await.is_err());
    assert!(get(&s3, "full", "k", None).await == body, "older objects are intact");
    t.c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_classes_and_size_limits() {
    let t = TestCluster::start_with(|dir| {
        let mut o = options(dir, 3, 2, 1, MIB as u64);
        o.gateway = false;
        o
    })
    .await;
    // The gateway's cluster file also offers REDUCED_REDUNDANCY = RS(1,1).
    let mut file = t.c.cluster_file().clone();
    file.storage_classes.push(StorageClassConfig {
        name: "REDUCED_REDUNDANCY".into(),
        erasure: Erasure {
            data_shards: 1,
            parity_shards: 1,
            chunk_size: MIB as u64,
            write_quorum: None,
        },
    });
    let file_path = t.dir.path().join("classes.toml");
    std::fs::write(&file_path, file.to_toml()).unwrap();
    let (gw, s3) = t
        .extra_gateway(|config| {
            config.storage.distributed.as_mut().unwrap().cluster_file = file_path;
            config.max_object_size = 3 * MIB as u64;
            config.admin_token = Some(ADMIN_TOKEN.into());
        })
        .await;
    s3.create_bucket().bucket("classes").send().await.unwrap();
    let e = s3
        .put_object()
        .bucket("classes")
        .key("k")
        .storage_class(aws_sdk_s3::types::StorageClass::Glacier)
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidStorageClass");
    let ok = s3
        .put_object()
        .bucket("classes")
        .key("std")
        .storage_class(aws_sdk_s3::types::StorageClass::Standard)
        .body(data(MIB, 1).into())
        .send()
        .await;
    ok.unwrap();
    let h = s3.head_object().bucket("classes").key("std").send().await.unwrap();
    assert!(h.storage_class().is_none_or(|c| c.as_str() == "STANDARD"));
    let rr = data(2 * MIB + 1, 9);
    s3.put_object()
        .bucket("classes")
        .key("rr")
        .storage_class(aws_sdk_s3::types::StorageClass::ReducedRedundancy)
        .body(rr.clone().into())
        .send()
        .await
        .unwrap();
    let h = s3.head_object().bucket("classes").key("rr").send().await.unwrap();
    assert_eq!(h.storage_class().map(|c| c.as_str()), Some("REDUCED_REDUNDANCY"));
    let o = s3.get_object().bucket("classes").key("rr").send().await.unwrap();
    assert_eq!(o.storage_class().map(|c| c.as_str()), Some("REDUCED_REDUNDANCY"));
    assert!(o.body.collect().await.unwrap().into_bytes() == rr);
    let l = s3.list_objects_v2().bucket("classes").prefix("rr").send().await.unwrap();
    assert_eq!(l.contents()[0].storage_class().map(|c| c.as_str()), Some("REDUCED_REDUNDANCY"));
    let e = s3
        .put_object()
        .bucket("classes")
        .key("huge")
        .body(data(4 * MIB, 2).into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "EntityTooLarge", "{e:?}");
    assert!(s3.head_object().bucket("classes").key("huge").send().await.is_err());
    s3.put_object()
        .bucket("classes")
        .key("still")
        .body(b"up".to_vec().into())
        .send()
        .await
        .unwrap();

    // A bucket's default class (what the operator applies for a Bucket's
    // storageClass): PUTs and uploads naming none get it.
    let set = |bucket: &'static str, class: &'static str| {
        let url = format!("http://{}/admin/v1/buckets/{bucket}", gw.admin_addr());
        async move {
            let body = serde_json::json!({ "storage_class": class }).to_string();
            let r = reqwest::Client::new()
                .put(url)
                .bearer_auth(ADMIN_TOKEN)
                .body(body)
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };
    assert_eq!(set("classes", "REDUCED_REDUNDANCY").await, 200);
    assert_eq!(set("classes", "GLACIER").await, 400, "a class the cluster does not offer");
    assert_eq!(set("no-such-bucket", "STANDARD").await, 404);
    let class_of = |key: &'static str| {
        let s3 = s3.clone();
        async move {
            let h = s3.head_object().bucket("classes").key(key).send().await.unwrap();
            h.storage_class().map_or("STANDARD".to_string(), |c| c.as_str().to_string())
        }
    };
    s3.put_object().bucket("classes").key("dflt").body(data(MIB, 3).into()).send().await.unwrap();
    assert_eq!(class_of("dflt").await, "REDUCED_REDUNDANCY");
    multipart(&s3, "classes", "mp", &data(MIB, 4), 5 * MIB).await;
    assert_eq!(class_of("mp").await, "REDUCED_REDUNDANCY");
    s3.put_object()
        .bucket("classes")
        .key("named")
        .storage_class(aws_sdk_s3::types::StorageClass::Standard)
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();
    assert_eq!(class_of("named").await, "STANDARD", "a class the PUT names wins");
    let usage = admin(&gw, reqwest::Method::GET, "buckets/classes").await;
    assert_eq!(usage["storage_class"], "REDUCED_REDUNDANCY", "{usage}");
    assert_eq!(set("classes", "STANDARD").await, 200);
    s3.put_object().bucket("classes").key("back").body(b"y".to_vec().into()).send().await.unwrap();
    assert_eq!(class_of("back").await, "STANDARD");
    gw.shutdown().await;
}
