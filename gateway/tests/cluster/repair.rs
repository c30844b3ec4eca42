//! Repair: objects written while a node was down get their missing shards
//! back once it returns, so they survive losing another node afterwards.

use std::time::Duration;

use predastore_gateway::server::Gateway;

use crate::common::*;

const MIB: usize = 1 << 20;

async fn repair_now(gw: &Gateway) -> serde_json::Value {
    admin(gw, reqwest::Method::POST, "repair").await
}

/// (writes acknowledged below full redundancy, with none left).
async fn redundancy_counters(gw: &Gateway) -> (f64, f64) {
    let m = gw_metrics(gw).await;
    (
        counter(&m, "predastore_gateway_writes_below_full_redundancy_total"),
        counter(&m, "predastore_gateway_writes_without_redundancy_total"),
    )
}

async fn last_repair(gw: &Gateway) -> serde_json::Value {
    admin(gw, reqwest::Method::GET, "repair").await["last"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shards_missed_while_a_node_was_down_are_rebuilt_when_it_returns() {
    let (mut t, gw, s3) = admin_cluster(|d| d.repair_interval_secs = 1).await;
    s3.create_bucket().bucket("heal").send().await.unwrap();
    // The promise, stated: RS(2,1) acknowledges with 2 durable shards, so
    // an acknowledged write survives no further loss at worst.
    let cluster = admin(&gw, reqwest::Method::GET, "cluster").await;
    let standard = &cluster["storage_classes"][0];
    assert_eq!(standard["write_quorum"], 2, "{cluster}");
    assert_eq!(standard["acked_write_survives"], 0, "{cluster}");
    let (below, bare) = redundancy_counters(&gw).await;

    // Node 2 is down: every chunk written now lacks its shard there.
    t.c.kill_node(2).await.unwrap();
    let plain = data(3 * MIB + 11, 1);
    let parts = data(6 * MIB, 2);
    s3.put_object().bucket("heal").key("plain").body(plain.clone().into()).send().await.unwrap();
    multipart(&s3, "heal", "parts", &parts, 5 * MIB).await;
    s3.copy_object().bucket("heal").key("copy").copy_source("heal/plain").send().await.unwrap();
    s3.put_object()
        .bucket("heal")
        .key("tiny")
        .body(b"inline".to_vec().into())
        .send()
        .await
        .unwrap();
    let before = s3.head_object().bucket("heal").key("plain").send().await.unwrap();
    // Each acknowledged write (the object, two parts) was counted as
    // having no redundancy left (the counters are per process: other
    // tests' gateways may add to them).
    let (below_now, bare_now) = redundancy_counters(&gw).await;
    assert!(below_now - below >= 3.0 && bare_now - bare >= 3.0, "{below_now} {bare_now}");
    // The degraded index says so right now: three objects (the inline
    // one has no shards), none surviving another loss.
    let now = admin(&gw, reqwest::Method::GET, "repair").await;
    assert_eq!((now["below_full"].as_u64(), now["survives"].as_u64()), (Some(3), Some(0)), "{now}");
    // And it has none, for real: node 1 loses its shards of every first
    // chunk (moved aside) and "plain" cannot be read; the GET fails, it
    // never returns wrong bytes.
    let firsts: Vec<_> = files_under(&t.c.layout().node_data(1).join("shards"))
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains("-00000000-"))
        .collect();
    assert!(!firsts.is_empty());
    for p in &firsts {
        std::fs::rename(p, p.with_extension("aside")).unwrap();
    }
    let lost: Result<bytes::Bytes, String> =
        match s3.get_object().bucket("heal").key("plain").send().await {
            Ok(o) => o.body.collect().await.map(|b| b.into_bytes()).map_err(|e| e.to_string()),
            Err(e) => Err(format!("{e:?}")),
        };
    assert!(!lost.is_ok_and(|b| b == plain), "a read needing a lost shard must fail");
    for p in &firsts {
        std::fs::rename(p.with_extension("aside"), p).unwrap();
    }
    assert!(get(&s3, "heal", "plain", None).await == plain);

    // Nothing can be rebuilt while the node is away.
    let r = repair_now(&gw).await;
    assert_eq!((r["objects"].as_u64(), r["degraded"].as_u64()), (Some(4), Some(3)), "{r}");
    assert_eq!((r["repaired"].as_u64(), r["left"].as_u64()), (Some(0), Some(3)), "{r}");

    // It returns: a background pass (not requested) rebuilds the shards.
    let repaired_before = counter(&gw_metrics(&gw).await, "predastore_gateway_repaired_shards");
    t.c.start_node(2).await.unwrap();
    eventually("the background repair", Duration::from_secs(60), || async {
        let last = last_repair(&gw).await;
        last["repaired"].as_u64() > Some(0) && last["left"].as_u64() == Some(0)
    })
    .await;
    // 4 + 6 chunks, and the copy shares the first object's 4 (the metric
    // is per process: other tests' gateways may add to it).
    let m = gw_metrics(&gw).await;
    assert!(counter(&m, "predastore_gateway_repaired_shards") - repaired_before >= 14.0);
    let r = repair_now(&gw).await;
    assert_eq!((r["objects"].as_u64(), r["degraded"].as_u64()), (Some(4), Some(0)), "{r}");
    let now = admin(&gw, reqwest::Method::GET, "repair").await;
    assert_eq!(now["below_full"].as_u64(), Some(0), "{now}");
    assert!(now["survives"].is_null(), "nothing below full redundancy: {now}");
    // Readers see the same version.
    let after = s3.head_object().bucket("heal").key("plain").send().await.unwrap();
    assert_eq!(after.e_tag(), before.e_tag());
    assert_eq!(after.last_modified(), before.last_modified());

    // Node 0 dies: nodes 1 and 2 hold a shard of every chunk, so nothing
    // is lost (without the repair, node 1 alone would be left).
    t.c.kill_node(0).await.unwrap();
    assert!(get(&s3, "heal", "plain", None).await == plain);
    assert!(get(&s3, "heal", "copy", None).await == plain);
    assert!(get(&s3, "heal", "parts", None).await == parts);
    assert_eq!(&get(&s3, "heal", "tiny", None).await[..], b"inline");
    gw.shutdown().await;
    t.c.shutdown().await;
}
