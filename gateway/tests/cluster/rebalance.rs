//! The cluster changes shape under a writer: 3 nodes RS(2,1) grow to 5,
//! old chunks move onto the new nodes, the class becomes RS(3,2) and old
//! objects are encoded again — then any two of the five nodes are killed
//! and every object still reads. Then the class narrows to RS(2,2), one
//! node is decommissioned (proven empty, removed) and nothing is lost.

use std::time::{Duration, Instant};

use predastore_core::config::Erasure;
use predastore_gateway::server::Gateway;

use crate::common::*;
use crate::membership::{
    Writer, below_full, body, drain, edit_cluster_file, gateway_knowing, held, put_all, ring_size,
};

const KIB: usize = 1 << 10;

/// Every object reads back byte for byte, eight GETs at a time.
async fn read_every(s3: &aws_sdk_s3::Client, keys: impl Iterator<Item = u64>) {
    use futures::StreamExt as _;
    futures::stream::iter(keys)
        .for_each_concurrent(8, |i| async move {
            let got = get(s3, "mem", &format!("o{i}"), None).await;
            assert!(got == body(i), "o{i} differs");
        })
        .await;
}

/// `GET /admin/v1/rebalance`.
async fn rebalance(gw: &Gateway) -> serde_json::Value {
    admin(gw, reqwest::Method::GET, "rebalance").await
}

/// Waits until the gateway uses RS(k, m) for STANDARD.
async fn standard_is(gw: &Gateway, k: u8, m: u8) {
    eventually(&format!("STANDARD to become RS({k},{m})"), Duration::from_secs(30), || async {
        let c = admin(gw, reqwest::Method::GET, "cluster").await;
        c["storage_classes"].as_array().is_some_and(|cs| {
            cs.iter().any(|c| {
                c["name"] == "STANDARD" && c["data_shards"] == k && c["parity_shards"] == m
            })
        })
    })
    .await;
}

/// Chunks this gateway's passes (background or asked for) wrote again.
async fn rebalanced_total(gw: &Gateway) -> f64 {
    counter(&gw_metrics(gw).await, "predastore_gateway_rebalanced_chunks_total")
}

/// Runs passes until one finds nothing left to write again; returns what
/// the passes before it did, summed (moved, recoded).
async fn rebalanced(gw: &Gateway) -> (u64, u64) {
    let (mut moved, mut recoded) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = admin(gw, reqwest::Method::POST, "rebalance").await;
        assert_eq!(r["complete"], true, "{r}");
        let (m, c) = (r["moved"].as_u64().unwrap(), r["recoded"].as_u64().unwrap());
        if m + c == 0 && r["left"] == 0 {
            return (moved, recoded);
        }
        moved += m;
        recoded += c;
        assert!(Instant::now() < deadline, "rebalance did not settle: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_grow_to_five_under_a_writer_rebalance_and_recode_then_shrink_to_four() {
    let mut t = TestCluster::start_with(|dir| {
        let mut o = options(dir, 3, 2, 1, 256 * KIB as u64);
        o.gateway = false;
        o
    })
    .await;
    let (gw, s3) = gateway_knowing(&t, &[0, 1, 2]).await;
    s3.create_bucket().bucket("mem").send().await.unwrap();
    put_all(&s3, 0..24).await;
    // Paced, so the reads below (every object, ten times) stay short.
    let writer = Writer::start(&gw, 100, Duration::from_millis(100));

    // Two nodes join; the ring grows and old chunks move onto them.
    let started = Instant::now();
    for _ in 0..2 {
        t.c.add_node().await.unwrap();
    }
    ring_size(&gw, 5, "the ring to take nodes 3 and 4").await;
    eventually("old chunks to move onto the new nodes", Duration::from_secs(60), || async {
        rebalanced_total(&gw).await > 0.0
    })
    .await;
    let grown = started.elapsed();

    // Settle the moves, so what is written again from here is recoding.
    rebalanced(&gw).await;
    assert!(held(&t, 3) > 0 && held(&t, 4) > 0, "the new nodes hold shards");
    let status = rebalance(&gw).await;
    assert_eq!(
        (status["last"]["left"].as_u64(), status["last"]["complete"].as_bool()),
        (Some(0), Some(true)),
        "{status}"
    );
    let moved_before = rebalanced_total(&gw).await;
    // STANDARD becomes RS(3,2): old objects are encoded again.
    edit_cluster_file(&t, |f| {
        f.erasure = Erasure { data_shards: 3, parity_shards: 2, ..f.erasure }
    });
    standard_is(&gw, 3, 2).await;
    eventually("a pass to encode old objects in RS(3,2)", Duration::from_secs(60), || async {
        rebalanced_total(&gw).await > moved_before
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let written = writer.finish().await;
    // What the writer wrote in RS(2,1) just before the change is encoded
    // by the passes that follow; then nothing is left to do.
    let (moved, recoded) = rebalanced(&gw).await;
    assert_eq!(below_full(&gw).await, 0);
    eprintln!(
        "grew 3 -> 5 in {grown:?}; {} writes meanwhile; later passes moved {moved}, recoded {recoded}",
        written - 100
    );

    // Every object survives any two of the five nodes.
    let killing = Instant::now();
    let all = || (0..24).chain(100..written);
    for a in 0..5u64 {
        for b in a + 1..5 {
            let at = Instant::now();
            t.c.kill_node(a).await.unwrap();
            t.c.kill_node(b).await.unwrap();
            let killed = at.elapsed();
            read_every(&s3, all()).await;
            let read = at.elapsed();
            t.c.start_node(a).await.unwrap();
            t.c.start_node(b).await.unwrap();
            eprintln!("{a},{b}: killed {killed:?} read {read:?} back {:?}", at.elapsed());
        }
    }

    eprintln!("ten pairs of nodes killed and restarted in {:?}", killing.elapsed());
    let shrinking = Instant::now();
    // Back to four: a code that fits four nodes first, then node 4 drains.
    let before = rebalanced_total(&gw).await;
    edit_cluster_file(&t, |f| {
        f.erasure = Erasure { data_shards: 2, parity_shards: 2, ..f.erasure }
    });
    standard_is(&gw, 2, 2).await;
    rebalanced(&gw).await;
    // (Counted from the metric: the background pass may do it all before
    // the passes asked for here.) Draining below would fail without it:
    // RS(3,2) chunks cannot leave a node of five onto the other four.
    assert!(rebalanced_total(&gw).await > before, "objects encoded again in RS(2,2)");
    edit_cluster_file(&t, |f| f.nodes.iter_mut().find(|n| n.id == 4).unwrap().drain = true);
    eventually("node 4 to be proven empty", Duration::from_secs(90), || async {
        admin(&gw, reqwest::Method::POST, "drain").await;
        drain(&gw).await["draining"][0]["empty"] == true
    })
    .await;
    edit_cluster_file(&t, |f| f.nodes.retain(|n| n.id != 4));
    ring_size(&gw, 4, "the ring to drop node 4").await;
    t.c.kill_node(4).await.unwrap();
    eprintln!("recoded to RS(2,2) and drained node 4 in {:?}", shrinking.elapsed());
    assert_eq!(rebalanced(&gw).await, (0, 0), "four nodes place RS(2,2) chunks where they are");
    assert_eq!(below_full(&gw).await, 0);
    // Nothing lost, even with one more node gone (four voters keep a
    // quorum with one down).
    t.c.kill_node(0).await.unwrap();
    read_every(&s3, all()).await;
    t.c.shutdown().await;
}
